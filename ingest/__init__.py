"""Positions in: ``wire`` (the one wire format, shared with the simulator), ``service``
(the ingestor: MQTT in, PostgreSQL out), ``mqtt`` and ``writer`` (its two sides),
``credentials`` (the broker's accounts), ``jt808`` (JT/T 808 terminals through a TCP
gateway), ``cli`` (``clearday ingest``, ``clearday jt808``)."""
