-- Time-series tables written by the ingestor. A fix is unique on (truck, device time),
-- so a redelivered MQTT message or a restarted ingestor never duplicates a row.
-- TimescaleDB-specific storage is in 0002_timeseries.timescale.sql; plain PostgreSQL
-- gets its equivalent from 0002_timeseries.plain.sql.

CREATE TABLE position (
    truck_id    text NOT NULL,
    recorded_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    speed_kmh   real,
    heading_deg real,
    accuracy_m  real,
    odometer_km double precision,
    ignition    boolean,
    load_state  text,
    seq         bigint,
    PRIMARY KEY (truck_id, recorded_at)
);

CREATE TABLE device_event (
    truck_id    text NOT NULL,
    recorded_at timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('bin_lift', 'rfid', 'weighbridge')),
    point_id    text,
    station_id  text,
    rfid_tag    text,
    weight_kg   real,
    payload     jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (truck_id, recorded_at, kind)
);

-- Every message the ingestor could not store, with the reason: never silently dropped.
CREATE TABLE dead_letter (
    dead_letter_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    topic          text NOT NULL,
    reason         text NOT NULL,
    detail         text,
    payload        bytea NOT NULL
);
CREATE INDEX dead_letter_received ON dead_letter (received_at);
CREATE INDEX dead_letter_reason ON dead_letter (reason, received_at);
