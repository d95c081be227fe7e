"""Collection points (收集点, 垃圾房, 桶站): cleared every day."""
