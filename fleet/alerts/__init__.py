"""Supervision (监管): did each collection point get cleared, and what to do when not.

Pure cores, each taking ``now``: ``visits`` (stays and passes detected on a track),
``ledger`` (each due point's verdict), ``rules`` (the alerts those verdicts raise),
``cases`` (the 一单四制 case workflow). Around them: ``worker`` (the continuous
pipeline, ``Worker``, ``replay``, ``AlertConfig``), ``cache`` (its one shape of cache),
``service`` and ``api`` (what the HTTP views call), ``reports``, ``notify`` (webhooks),
``roads`` (which road a truck took past a point), ``repo`` (all of the package's SQL).
"""
