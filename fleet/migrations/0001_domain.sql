-- Domain tables: districts, depots (车场), transfer stations (中转站), collection
-- points (收集点), trucks and the road network. Ids are the district's own codes, so
-- re-importing a file updates rows instead of adding new ones.

CREATE TABLE district (
    district_id text PRIMARY KEY CHECK (district_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'Asia/Shanghai',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE DOMAIN waste_stream AS text
    CHECK (VALUE IN ('other', 'kitchen', 'recyclable', 'hazardous', 'mixed'));

CREATE TABLE depot (
    depot_id    text PRIMARY KEY,
    district_id text NOT NULL REFERENCES district,
    name        text NOT NULL,
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transfer_station (
    station_id        text PRIMARY KEY,
    district_id       text NOT NULL REFERENCES district,
    name              text NOT NULL,
    lat               double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon               double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    streams           waste_stream[] NOT NULL CHECK (cardinality(streams) > 0),
    opens_at          time NOT NULL DEFAULT '00:00',
    closes_at         time NOT NULL DEFAULT '23:59',
    tipping_time_s    integer NOT NULL DEFAULT 900 CHECK (tipping_time_s >= 0),
    daily_capacity_kg double precision CHECK (daily_capacity_kg > 0),
    active            boolean NOT NULL DEFAULT true,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE collection_point (
    point_id           text PRIMARY KEY,
    district_id        text NOT NULL REFERENCES district,
    name               text NOT NULL,
    lat                double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon                double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    stream             waste_stream NOT NULL,
    daily_amount_kg    double precision NOT NULL CHECK (daily_amount_kg >= 0),
    service_time_s     integer NOT NULL DEFAULT 300 CHECK (service_time_s >= 0),
    window_start       time NOT NULL DEFAULT '00:00',
    window_end         time NOT NULL DEFAULT '23:59',
    geofence_radius_m  double precision NOT NULL DEFAULT 30 CHECK (geofence_radius_m > 0),
    min_dwell_s        integer CHECK (min_dwell_s >= 0),
    clearance_deadline time NOT NULL DEFAULT '20:00',
    access_class       text NOT NULL DEFAULT 'normal' CHECK (access_class IN ('normal', 'narrow')),
    has_bins           boolean NOT NULL DEFAULT true,
    schedule           text NOT NULL DEFAULT 'daily',
    active             boolean NOT NULL DEFAULT true,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (window_start <= window_end)
);
CREATE INDEX collection_point_district ON collection_point (district_id);

CREATE TABLE truck (
    truck_id             text PRIMARY KEY,
    district_id          text NOT NULL REFERENCES district,
    plate                text NOT NULL,
    truck_type           text NOT NULL CHECK (truck_type IN ('compactor', 'kitchen', 'small')),
    capacity_kg          double precision NOT NULL CHECK (capacity_kg > 0),
    streams              waste_stream[] NOT NULL CHECK (cardinality(streams) > 0),
    depot_id             text NOT NULL REFERENCES depot,
    terminal_id          text NOT NULL UNIQUE,
    shift_start          time NOT NULL DEFAULT '05:00',
    shift_end            time NOT NULL DEFAULT '17:00',
    max_route_duration_s integer CHECK (max_route_duration_s > 0),
    break_duration_s     integer NOT NULL DEFAULT 1800 CHECK (break_duration_s >= 0),
    break_earliest       time NOT NULL DEFAULT '11:00',
    break_latest         time NOT NULL DEFAULT '13:00',
    can_enter_narrow     boolean NOT NULL DEFAULT false,
    active               boolean NOT NULL DEFAULT true,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (shift_start < shift_end)
);
CREATE INDEX truck_district ON truck (district_id);

-- One row per directed-or-two-way road segment; the planner and the dashboard's base
-- map both read it.
CREATE TABLE road (
    road_id     text PRIMARY KEY,
    district_id text NOT NULL REFERENCES district,
    from_node   bigint NOT NULL,
    to_node     bigint NOT NULL,
    road_class  text NOT NULL DEFAULT 'local'
                CHECK (road_class IN ('arterial', 'secondary', 'local', 'lane')),
    speed_kmh   double precision NOT NULL CHECK (speed_kmh > 0),
    oneway      boolean NOT NULL DEFAULT false,
    narrow      boolean NOT NULL DEFAULT false,
    length_m    double precision NOT NULL CHECK (length_m > 0),
    -- [[lon, lat], ...] as in GeoJSON, first point at from_node, last at to_node.
    coordinates jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX road_district ON road (district_id);
