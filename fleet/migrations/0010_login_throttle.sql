-- Login attempts per throttle key (issue 14), counted in the database so that every API
-- process shares them and concurrent guesses are counted one at a time (the upsert
-- locks the row). A key is `user:<lower user name>|<address>` or `address:<address>`.
-- A row whose window has passed means nothing and is deleted by later logins, so the
-- table holds at most the keys seen within one window.
CREATE TABLE login_attempt (
    throttle_key      text PRIMARY KEY,
    attempts          integer NOT NULL CHECK (attempts >= 0),
    window_started_at timestamptz NOT NULL
);
CREATE INDEX login_attempt_window ON login_attempt (window_started_at);
