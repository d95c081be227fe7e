-- TimescaleDB storage for the time-series tables (written for TimescaleDB 2.18+,
-- checked against 2.28). Everything TimescaleDB-specific lives in this one file.

-- position: hypertable partitioned by device time, one chunk per day.
SELECT create_hypertable('position', by_range('recorded_at', INTERVAL '1 day'));

-- Columnstore (compression) for chunks older than 7 days, segmented by truck so that
-- a truck's track decompresses on its own and ordered by time within each segment.
ALTER TABLE position SET (
    timescaledb.enable_columnstore = true,
    timescaledb.segmentby = 'truck_id',
    timescaledb.orderby = 'recorded_at DESC'
);
CALL add_columnstore_policy('position', after => INTERVAL '7 days');

-- Keep raw fixes for about 13 months (a year of 月通报 plus a margin).
SELECT add_retention_policy('position', drop_after => INTERVAL '400 days');

-- device_event: a hypertable too, with the same retention.
SELECT create_hypertable('device_event', by_range('recorded_at', INTERVAL '7 days'));
SELECT add_retention_policy('device_event', drop_after => INTERVAL '400 days');

-- Daily distance per truck from the terminal's odometer, bucketed by the local day.
-- WITH NO DATA lets this run inside the migration's transaction; the policy fills it.
CREATE MATERIALIZED VIEW truck_daily_distance
WITH (timescaledb.continuous) AS
SELECT truck_id,
       time_bucket(INTERVAL '1 day', recorded_at, 'Asia/Shanghai') AS day,
       max(odometer_km) - min(odometer_km) AS distance_km,
       count(*) AS fixes
FROM position
GROUP BY truck_id, time_bucket(INTERVAL '1 day', recorded_at, 'Asia/Shanghai')
WITH NO DATA;

SELECT add_continuous_aggregate_policy('truck_daily_distance',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
