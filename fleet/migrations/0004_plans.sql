-- Plans: one route per truck for a district's service date. The whole plan is kept as
-- the planner's JSON document; its stops are also stored as rows, because the ledger
-- and the alert rules hold each day against them in SQL.

CREATE TABLE plan (
    plan_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    district_id  text NOT NULL REFERENCES district,
    service_date date NOT NULL,
    status       text NOT NULL DEFAULT 'draft'
                 CHECK (status IN ('draft', 'published', 'superseded')),
    -- A re-plan made mid-day points at the plan it replaces.
    replaces_plan_id bigint REFERENCES plan,
    seed         integer NOT NULL DEFAULT 0,
    time_limit_s double precision,
    stats        jsonb NOT NULL DEFAULT '{}',
    document     jsonb NOT NULL,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
-- At most one published plan per district and day.
CREATE UNIQUE INDEX plan_one_published ON plan (district_id, service_date) WHERE status = 'published';
CREATE INDEX plan_by_date ON plan (district_id, service_date);

CREATE TABLE plan_stop (
    plan_id              bigint NOT NULL REFERENCES plan ON DELETE CASCADE,
    truck_id             text NOT NULL,
    seq                  integer NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('start', 'point', 'station', 'break', 'end')),
    point_id             text,
    station_id           text,
    depot_id             text,
    arrival_at           timestamptz NOT NULL,
    departure_at         timestamptz NOT NULL,
    load_after_kg        double precision NOT NULL DEFAULT 0,
    distance_from_prev_m double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (plan_id, truck_id, seq)
);
CREATE INDEX plan_stop_point ON plan_stop (point_id, plan_id) WHERE point_id IS NOT NULL;

CREATE TABLE plan_unassigned (
    plan_id  bigint NOT NULL REFERENCES plan ON DELETE CASCADE,
    point_id text NOT NULL,
    reason   text NOT NULL,
    PRIMARY KEY (plan_id, point_id)
);

-- Background planning jobs (the API starts one and polls its progress).
CREATE TABLE plan_job (
    job_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    district_id  text NOT NULL REFERENCES district,
    service_date date NOT NULL,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed')),
    progress     double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    message      text,
    plan_id      bigint REFERENCES plan,
    requested_by text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
