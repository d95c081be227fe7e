-- A district owns its rows (docs/import.md, "Districts"). Ids stay unique across the
-- deployment; what these add is that no code path, present or future, can move a row
-- from one district to another or tie a truck to another district's depot.

CREATE FUNCTION refuse_district_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.district_id IS DISTINCT FROM OLD.district_id THEN
        RAISE EXCEPTION 'a % row stays in its district: district_id cannot change', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER depot_stays BEFORE UPDATE OF district_id ON depot
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER transfer_station_stays BEFORE UPDATE OF district_id ON transfer_station
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER collection_point_stays BEFORE UPDATE OF district_id ON collection_point
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER truck_stays BEFORE UPDATE OF district_id ON truck
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER road_stays BEFORE UPDATE OF district_id ON road
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER plan_stays BEFORE UPDATE OF district_id ON plan
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER plan_job_stays BEFORE UPDATE OF district_id ON plan_job
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER ledger_entry_stays BEFORE UPDATE OF district_id ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER alert_case_stays BEFORE UPDATE OF district_id ON alert_case
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();
CREATE TRIGGER alert_stays BEFORE UPDATE OF district_id ON alert
    FOR EACH ROW EXECUTE FUNCTION refuse_district_change();

-- A truck starts and ends at a depot of its own district. (On a database where a truck
-- already points at another district's depot this statement fails and names the truck:
-- give it a depot of its own district, then migrate again.)
ALTER TABLE depot ADD CONSTRAINT depot_in_district UNIQUE (depot_id, district_id);
ALTER TABLE truck
    DROP CONSTRAINT truck_depot_id_fkey,
    ADD CONSTRAINT truck_depot_in_district
        FOREIGN KEY (depot_id, district_id) REFERENCES depot (depot_id, district_id);
