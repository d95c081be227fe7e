-- Users, their district limits and their API tokens (issue 7).
--
-- Passwords are stored as argon2id hashes (argon2-cffi's PHC string). Tokens are
-- opaque random strings handed to the client once; only their SHA-256 digest is
-- stored, so a copy of this table does not let anyone log in. A token stops working
-- when it expires, when it is revoked (logout) or when its user is deactivated.

CREATE TABLE app_user (
    user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.@-]{2,64}$'),
    display_name  text NOT NULL DEFAULT '',
    role          text NOT NULL CHECK (role IN ('admin', 'dispatcher', 'supervisor', 'viewer')),
    password_hash text NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Usernames are case-insensitive: "Wang" and "wang" are one user.
CREATE UNIQUE INDEX app_user_username ON app_user (lower(username));

-- A user with no rows here sees every district; with rows, only those. Deleting a
-- district that limits a user is refused (no cascade): it would widen that user's view.
CREATE TABLE user_district (
    user_id     bigint NOT NULL REFERENCES app_user ON DELETE CASCADE,
    district_id text NOT NULL REFERENCES district,
    PRIMARY KEY (user_id, district_id)
);

CREATE TABLE auth_token (
    token_hash   bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id      bigint NOT NULL REFERENCES app_user ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    user_agent   text
);
CREATE INDEX auth_token_user ON auth_token (user_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_token_expires ON auth_token (expires_at);
