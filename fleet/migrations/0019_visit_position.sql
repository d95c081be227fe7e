-- Where a stay stood (the median of its fixes; NULL for passes and event-only visits).
-- A stop at no site is compared with the plan by where it was: a truck standing beside
-- the stop it is due at is at that stop of its route, and waits as the plan has it wait
-- there (fleet/alerts/rules.py, `stationary`).
ALTER TABLE visit
    ADD COLUMN lat double precision CHECK (lat BETWEEN -90 AND 90),
    ADD COLUMN lon double precision CHECK (lon BETWEEN -180 AND 180);
