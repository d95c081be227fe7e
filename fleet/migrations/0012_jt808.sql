-- JT/T 808 terminals (issue 18). A truck whose terminal speaks JT/T 808 carries the
-- terminal's phone number (终端手机号, the identity in every message header), imported
-- like terminal_id; the gateway publishes its locations under the truck's terminal_id.
-- Stored without the leading zeros the headers pad it with (12 digits in 2013, 20 in
-- 2019), so both editions of one terminal find the same truck.
ALTER TABLE truck ADD COLUMN jt808_phone text UNIQUE
    CHECK (jt808_phone ~ '^[1-9][0-9]{0,19}$');

-- A registered terminal (0x0100 answered with 0x8100) and the auth code it was given;
-- it authenticates with that code (0x0102) on every connection. Logout (0x0003)
-- deletes the row: the terminal must register again.
CREATE TABLE jt808_registration (
    jt808_phone   text PRIMARY KEY,
    truck_id      text NOT NULL REFERENCES truck ON DELETE CASCADE,
    auth_code     text NOT NULL CHECK (length(auth_code) BETWEEN 8 AND 64),
    manufacturer  text NOT NULL DEFAULT '',
    model         text NOT NULL DEFAULT '',
    device_id     text NOT NULL DEFAULT '',
    plate         text NOT NULL DEFAULT '',
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jt808_registration_truck ON jt808_registration (truck_id);

-- Alarm bits of a location report (JT/T 808 报警标志) become `alarm` events.
ALTER TABLE device_event DROP CONSTRAINT device_event_kind_check;
ALTER TABLE device_event ADD CONSTRAINT device_event_kind_check
    CHECK (kind IN ('bin_lift', 'rfid', 'weighbridge', 'alarm'));
