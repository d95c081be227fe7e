-- Hostile clients (issue 14). Login attempts per throttle key, counted in the database so that every API
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

-- The secret that signs the webhooks to each receiver URL, generated on first use
-- (`clearday alerts webhook-secret` shows it, for the receiver's configuration).
CREATE TABLE webhook_endpoint (
    url        text PRIMARY KEY,
    secret     text NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
