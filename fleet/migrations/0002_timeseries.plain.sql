-- Plain PostgreSQL (no TimescaleDB): the same queries work, without compression or
-- automatic retention (run `clearday retention` from cron instead).

-- Range scans by time over the whole fleet use a small BRIN index; per-truck scans use
-- the primary key (truck_id, recorded_at).
CREATE INDEX position_recorded_brin ON position USING brin (recorded_at);
CREATE INDEX device_event_recorded ON device_event (recorded_at);

-- Daily distance per truck from the terminal's odometer, in the district's local day.
-- A plain view: computed at query time from the primary key index.
CREATE VIEW truck_daily_distance AS
SELECT truck_id,
       (date_trunc('day', recorded_at AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai') AS day,
       max(odometer_km) - min(odometer_km) AS distance_km,
       count(*) AS fixes
FROM position
GROUP BY 1, 2;
