-- Ingest (issue 13): attempts at handling a message the broker redelivered (MQTT DUP
-- flag: it was in hand when an ingestor stopped). A message whose content keeps
-- stopping the ingestor is quarantined into dead_letter after a bounded number of
-- attempts instead of stopping it on every redelivery (docs/ingest.md).
-- A row lives only while its message is unsettled: the transaction that stores or
-- dead-letters the message deletes it.

CREATE TABLE ingest_attempt (
    digest     bytea PRIMARY KEY,          -- BLAKE2b-128 of topic, NUL, payload
    topic      text NOT NULL,
    attempts   integer NOT NULL,
    first_at   timestamptz NOT NULL DEFAULT now(),
    last_at    timestamptz NOT NULL DEFAULT now()
);
