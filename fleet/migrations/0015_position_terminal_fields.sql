-- What vehicle terminals (JT/T 808) report beside the position (docs/wire.md): all
-- nullable, so terminals that send none of it cost a few bits of null bitmap per row.
ALTER TABLE position
    ADD COLUMN altitude_m         real,
    ADD COLUMN fuel_l             real,
    ADD COLUMN recorder_speed_kmh real,     -- the tachograph's (行驶记录仪) speed
    ADD COLUMN signal_strength    smallint, -- wireless signal, as the terminal rates it
    ADD COLUMN satellites         smallint, -- GNSS satellites in view
    ADD COLUMN door_locked        boolean,
    ADD COLUMN doors_open         smallint[], -- door numbers 1-5
    ADD COLUMN extra              jsonb;    -- vendor items as text, e.g. {"jt808_E1": "0a0b"}
