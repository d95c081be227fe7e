"""A simulated fleet for tests, benchmarks and demos: ``city`` (a seeded synthetic
district) or ``district`` (one read from import files), ``trucks`` (``SimDay``: a
plan driven, with its emissions and ``truth``, the ground truth's typed records),
``faults``, ``mqtt`` / ``jt808`` / ``direct`` (ways to deliver the emissions), ``load``
(load mode), ``demo`` (``clearday demo``)."""
