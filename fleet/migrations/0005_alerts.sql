-- Alerts (fleet/alerts, see docs/alerts.md): visits detected from the tracks, the
-- clearance ledger (日产日清), alerts, the 一单四制 cases and webhook deliveries.
-- Everything here is derived from position / device_event / plan except the cases'
-- human transitions, so a day can be recomputed (`clearday alerts replay`).

-- The alert worker finds new and late data by arrival time. BRIN indexes are tiny
-- and nearly free to maintain on append-mostly tables (received_at grows with
-- insertion order).
CREATE INDEX position_received_brin ON position USING brin (received_at);
CREATE INDEX device_event_received_brin ON device_event USING brin (received_at);

-- A truck at a place: a stay (matched to a site, or site_kind 'none' for an off-route
-- stop), a pass through a point's fence without stopping, or an event-only visit.
CREATE TABLE visit (
    truck_id     text NOT NULL,
    service_date date NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('stay', 'pass', 'event')),
    site_kind    text NOT NULL CHECK (site_kind IN ('point', 'station', 'depot', 'none')),
    site_id      text NOT NULL DEFAULT '',
    arrived_at   timestamptz NOT NULL,
    departed_at  timestamptz NOT NULL,
    dwell_s      double precision NOT NULL CHECK (dwell_s >= 0),
    is_open      boolean NOT NULL DEFAULT false,  -- the track ends here: still there
    end_seen     boolean NOT NULL DEFAULT true,   -- false: the stay ends in a silence
    fixes        integer NOT NULL DEFAULT 0,
    distance_m   double precision,
    speed_kmh    real,
    evidence     jsonb NOT NULL DEFAULT '[]',     -- bin lifts, RFID reads, weighbridge tickets
    PRIMARY KEY (truck_id, arrived_at, kind, site_kind, site_id),
    CHECK (departed_at >= arrived_at)
);
CREATE INDEX visit_site ON visit (service_date, site_kind, site_id);
CREATE INDEX visit_truck_day ON visit (truck_id, service_date);

-- Silences of a terminal (no fix for longer than a minute), with where it was
-- before and after: the ledger asks whether a visit could hide in one.
CREATE TABLE track_gap (
    truck_id     text NOT NULL,
    service_date date NOT NULL,
    start_at     timestamptz NOT NULL,
    end_at       timestamptz NOT NULL,
    start_lat    double precision NOT NULL,
    start_lon    double precision NOT NULL,
    end_lat      double precision NOT NULL,
    end_lon      double precision NOT NULL,
    cadence_s    double precision NOT NULL DEFAULT 0,  -- reporting interval before it
    PRIMARY KEY (truck_id, start_at)
);
CREATE INDEX track_gap_day ON track_gap (truck_id, service_date);

-- First and last fix of each truck's local day.
CREATE TABLE truck_day (
    truck_id     text NOT NULL,
    service_date date NOT NULL,
    first_fix_at timestamptz NOT NULL,
    first_lat    double precision NOT NULL,
    first_lon    double precision NOT NULL,
    last_fix_at  timestamptz NOT NULL,
    last_lat     double precision NOT NULL,
    last_lon     double precision NOT NULL,
    PRIMARY KEY (truck_id, service_date)
);
CREATE INDEX truck_day_date ON truck_day (service_date);

-- One verdict per collection point due on a service date.
CREATE TABLE ledger_entry (
    service_date         date NOT NULL,
    point_id             text NOT NULL,
    district_id          text NOT NULL,
    stream               text NOT NULL,
    plan_id              bigint,
    planned_truck_id     text,
    planned_seq          integer,
    planned_arrival_at   timestamptz,
    window_start_at      timestamptz NOT NULL,
    window_end_at        timestamptz NOT NULL,
    deadline_at          timestamptz NOT NULL,
    status               text NOT NULL
                         CHECK (status IN ('pending', 'cleared', 'partial', 'missed', 'unverifiable')),
    reason               text,
    cleared_at           timestamptz,
    cleared_by_truck_id  text,
    dwell_s              double precision,
    delivery             text NOT NULL DEFAULT 'none'
                         CHECK (delivery IN ('none', 'on_truck', 'delivered', 'not_delivered')),
    delivered_at         timestamptz,
    delivered_station_id text,
    evidence             jsonb NOT NULL DEFAULT '{}',
    status_since         timestamptz NOT NULL,
    computed_at          timestamptz NOT NULL,
    PRIMARY KEY (service_date, point_id)
);
CREATE INDEX ledger_entry_district ON ledger_entry (district_id, service_date);
CREATE INDEX ledger_entry_truck ON ledger_entry (planned_truck_id, service_date);

-- 一单四制 cases: one open case per subject (a point or a truck) and service date.
CREATE TABLE alert_case (
    case_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    district_id      text NOT NULL,
    service_date     date NOT NULL,
    subject          text NOT NULL,            -- 'point:<id>' or 'truck:<id>'
    point_id         text,
    truck_id         text,
    state            text NOT NULL DEFAULT 'open'
                     CHECK (state IN ('open', 'assigned', 'feedback', 'closed')),
    severity         text NOT NULL CHECK (severity IN ('normal', 'high')),
    title            text NOT NULL,
    assignee         text,
    opened_at        timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    escalation_level integer NOT NULL DEFAULT 0,
    escalated_at     timestamptz,
    closed_at        timestamptz,
    closed_by        text,
    close_note       text,
    auto_closed      boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL,
    CHECK (state <> 'closed' OR (closed_at IS NOT NULL AND close_note IS NOT NULL AND close_note <> ''))
);
CREATE UNIQUE INDEX alert_case_one_open ON alert_case (district_id, service_date, subject)
    WHERE state <> 'closed';
CREATE INDEX alert_case_district ON alert_case (district_id, service_date);
CREATE INDEX alert_case_due ON alert_case (due_at) WHERE state <> 'closed';

CREATE TABLE case_event (
    case_event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id       bigint NOT NULL REFERENCES alert_case ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    actor         text NOT NULL CHECK (actor <> ''),
    action        text NOT NULL
                  CHECK (action IN ('open', 'attach', 'assign', 'feedback', 'close', 'auto_close', 'escalate')),
    from_state    text NOT NULL,
    to_state      text NOT NULL,
    assignee      text,
    note          text,
    alert_id      bigint
);
CREATE INDEX case_event_case ON case_event (case_id, at);

-- One row per crossing of a rule; dedupe_key makes raising idempotent.
CREATE TABLE alert (
    alert_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key   text NOT NULL UNIQUE,
    kind         text NOT NULL CHECK (kind IN ('missed', 'drive_by', 'not_cleared_by_deadline',
                                               'not_unloaded', 'offline', 'stationary')),
    severity     text NOT NULL CHECK (severity IN ('normal', 'high')),
    district_id  text NOT NULL,
    service_date date NOT NULL,
    subject      text NOT NULL,
    point_id     text,
    truck_id     text,
    condition_at timestamptz NOT NULL,   -- when the condition became true
    raised_at    timestamptz NOT NULL,   -- when the worker raised it
    message      text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}',
    case_id      bigint REFERENCES alert_case,
    resolved_at  timestamptz,            -- later evidence removed the condition
    resolution   text
);
CREATE INDEX alert_district ON alert (district_id, service_date);
CREATE INDEX alert_case_id ON alert (case_id);

-- Webhook outbox: written in the worker's transaction, sent by a separate loop with
-- retries, so a slow or dead receiver never holds up the pipeline.
CREATE TABLE webhook_delivery (
    delivery_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text NOT NULL,
    event           text NOT NULL,        -- alert.raised / case.escalated
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_status     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_delivery_pending ON webhook_delivery (next_attempt_at) WHERE state = 'pending';

-- The worker's progress: data received up to here has been processed.
CREATE TABLE alert_worker_state (
    name       text PRIMARY KEY,
    watermark  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
