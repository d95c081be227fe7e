-- Jobs on the engine (Procrastinate; its own schema is migration 0013_procrastinate.sql,
-- applied from the installed package by fleet/db.py). `plan_job` stays ClearDay's
-- record of a planning job: what was asked, progress, the worker, the plan stored;
-- its state while queued or running is the engine's (procrastinate_jobs.status).

ALTER TABLE plan_job DROP CONSTRAINT plan_job_state_check;
ALTER TABLE plan_job ADD CONSTRAINT plan_job_state_check
    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled'));
ALTER TABLE plan_job
    ADD COLUMN kind text NOT NULL DEFAULT 'plan' CHECK (kind IN ('plan', 'replan')),
    -- The request (solver budget, seed, re-plan inputs): the engine job carries only the id.
    ADD COLUMN request jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN engine_job_id bigint UNIQUE,
    ADD COLUMN worker text,
    ADD COLUMN started_at timestamptz;

-- A plan is stored once per job: a job retried after its worker died cannot store twice.
ALTER TABLE plan ADD COLUMN plan_job_id bigint UNIQUE REFERENCES plan_job;

-- Tomorrow's plans are queued at this local hour (NULL: only on request).
ALTER TABLE district ADD COLUMN plan_at_hour smallint CHECK (plan_at_hour BETWEEN 0 AND 23);

-- Alert evaluation is shared by district among the `clearday alerts run` workers: a
-- worker renews its leases every tick; a lease not renewed by `expires_at` is free.
CREATE TABLE alert_worker (
    name    text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
CREATE TABLE alert_lease (
    district_id text PRIMARY KEY REFERENCES district ON DELETE CASCADE,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Jobs of the threads that ran in the API process before: none of them is running now.
UPDATE plan_job SET state = 'failed', finished_at = now(),
       message = 'interrupted: the process running it stopped'
 WHERE state IN ('queued', 'running');
-- When the platform last heard each truck (the latest arrival, and the evaluating
-- worker's time when it first saw it): kept here, not only in a worker's memory, so a
-- district taken over by another worker is evaluated as its last worker would have.
CREATE TABLE alert_heard (
    truck_id    text PRIMARY KEY REFERENCES truck ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    heard_at    timestamptz NOT NULL
);
