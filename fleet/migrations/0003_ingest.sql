-- Ingest (issue 3): the latest online/offline state of each terminal, from the
-- retained `clearday/v1/trucks/{terminal_id}/status` messages and their last wills.
-- One row per terminal; an older message never overwrites a newer state.

CREATE TABLE terminal_status (
    terminal_id text PRIMARY KEY,
    truck_id    text,          -- the truck carrying it when the state was received
    state       text NOT NULL CHECK (state IN ('online', 'offline')),
    changed_at  timestamptz NOT NULL,   -- the message's `at`, else when it was received
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX terminal_status_truck ON terminal_status (truck_id);
