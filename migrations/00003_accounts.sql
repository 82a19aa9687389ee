-- People: user accounts and their sessions (browser sessions, and the
-- sessions an OAuth2 authorization-code grant creates for an app such as
-- helixctl). Personal fields are listed in docs/privacy.md.

-- +goose Up
CREATE TABLE users (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Lower-cased by the service; NULL once the account is erased.
    email             text        UNIQUE CHECK (email <> '' AND length(email) <= 254),
    email_verified_at timestamptz,
    -- argon2id in PHC string form ($argon2id$v=19$m=...,t=...,p=...$salt$hash),
    -- so each hash carries its own parameters; NULL once erased.
    password_hash     text        CHECK (length(password_hash) <= 512),
    display_name      text        NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    organization      text        NOT NULL DEFAULT '' CHECK (length(organization) <= 200),
    preferences       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(preferences) = 'object'),
    platform_admin    boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Erasure keeps the row (its id is what audit rows point to) with
    -- every personal field removed.
    erased_at         timestamptz
);

CREATE TABLE sessions (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- SHA-256 of the cookie's secret: a database dump holds no session.
    secret_hash  bytea       NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- 'browser': a portal login (cookie); 'token': an OAuth2 grant to an
    -- app (client_id), whose refresh tokens live while it does.
    kind         text        NOT NULL CHECK (kind IN ('browser', 'token')),
    client_id    text        CHECK (length(client_id) <= 256),
    source       text        NOT NULL DEFAULT '' CHECK (length(source) <= 64),
    user_agent   text        NOT NULL DEFAULT '' CHECK (length(user_agent) <= 512),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Single-use links mailed to a person: email verification, password
-- reset, and the confirmation of a new address. The database keeps the
-- SHA-256 of the link's 32 random bytes only.
CREATE TABLE account_tokens (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text        NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
    -- The address a change_email link confirms (lower-cased); personal,
    -- gone with the row.
    new_email  text        CHECK (new_email <> '' AND length(new_email) <= 254),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    CHECK ((purpose = 'change_email') = (new_email IS NOT NULL))
);
CREATE INDEX account_tokens_user_id_idx ON account_tokens (user_id);
CREATE INDEX account_tokens_expires_at_idx ON account_tokens (expires_at);

-- +goose Down
DROP TABLE IF EXISTS account_tokens;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS users;
