-- TimescaleDB policies that agree with the ingest's accepted past
-- (CLEARDAY_INGEST_MAX_PAST_S, 7 days by default): no policy settles data the ingestor
-- may still write. The reasoning and the start-up check: fleet/positions/policies.py,
-- docs/operations.md. Written for TimescaleDB 2.18+ (columnstore API).

-- Compression: after the accepted past plus a one-day margin (clocks, a batch that
-- waited for the database, the job's 12-hour schedule), never at its edge. The
-- ingestor refuses to start if this is less than CLEARDAY_INGEST_MAX_PAST_S + 1 day.
CALL remove_columnstore_policy('position', if_exists => true);
CALL add_columnstore_policy('position', after => INTERVAL '8 days');

-- truck_daily_distance, as the plain view of the same name (0002_timeseries.plain.sql):
-- real-time aggregation (today, and anything not materialized yet, is read from the
-- raw fixes) and a refresh window open towards the past, so that a late fix, a
-- backfill of any age and rows removed by retention all reach the aggregate at the
-- next refresh (15 minutes). Only invalidated buckets are recomputed, so the open
-- window costs nothing when nothing old changed. The current day is left to real-time
-- aggregation (a bucket is materialized only once it is complete, plus an hour).
ALTER MATERIALIZED VIEW truck_daily_distance SET (timescaledb.materialized_only = false);
SELECT remove_continuous_aggregate_policy('truck_daily_distance', if_exists => true);
SELECT add_continuous_aggregate_policy('truck_daily_distance',
    start_offset => NULL,
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');

-- No unused indexes: create_hypertable adds one on (recorded_at DESC) that no query
-- uses (time ranges are served by chunk exclusion, per-truck ranges by the primary key
-- (truck_id, recorded_at)) and that every write pays for.
DROP INDEX IF EXISTS position_recorded_at_idx;
DROP INDEX IF EXISTS device_event_recorded_at_idx;
