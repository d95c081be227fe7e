-- The pieces of a decomposed district solved as engine jobs (fleet/jobs/pieces.py): the
-- job that plans the district writes each sub-problem here and waits for its result;
-- any `clearday worker` takes the engine job that carries the piece's id.
CREATE TABLE plan_piece (
    piece_id      bigserial PRIMARY KEY,
    plan_job_id   bigint REFERENCES plan_job ON DELETE CASCADE,
    -- The engine job (and its attempt) that waits for the piece: a piece whose parent
    -- ended, was cancelled or was started again elsewhere is no longer worth solving.
    parent_engine_job_id bigint,
    parent_attempt integer NOT NULL DEFAULT 0,
    engine_job_id bigint,
    -- queued -> running -> done | failed; cancelled (its parent stopped waiting);
    -- replaced (its parent solved it itself: the worker died or never came).
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled', 'replaced')),
    worker        text,
    -- routing.pieces.SubSolve and routing.plan.Plan, pickled: written and read only by
    -- ClearDay's own processes, which trust the database as they trust their code;
    -- both are cleared once the parent has read the result.
    sub_solve     bytea,
    result        bytea,
    message       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX plan_piece_open ON plan_piece (plan_job_id) WHERE state IN ('queued', 'running');

-- The workers that take pieces, and how many at a time: a decomposed solve sizes its
-- rounds to the live ones (seen within the engine's stalled-worker time).
CREATE TABLE plan_piece_worker (
    name        text PRIMARY KEY,
    concurrency integer NOT NULL CHECK (concurrency > 0),
    seen_at     timestamptz NOT NULL
);
