-- OAuth2 for people: clients gain what the authorization-code grant needs
-- (public clients without a secret, redirect URIs, grant types), and the
-- authorization codes and refresh tokens of people's grants are kept.
--
-- Codes and refresh tokens are stored by their HMAC-SHA-256 (keyed with the
-- secret pepper, see extauthz/secret) only, never in clear: a database dump
-- holds no usable code or token. Each row keeps what resuming the grant
-- needs (client, user, scopes, audience, the token session).

-- +goose Up
-- A public client (a native app such as helixctl) has no secret: its
-- secret_hash is NULL, and every confidential client keeps one.
ALTER TABLE clients DROP CONSTRAINT clients_secret_hash_check;
ALTER TABLE clients ALTER COLUMN secret_hash DROP NOT NULL;
ALTER TABLE clients
    ADD COLUMN public        boolean NOT NULL DEFAULT false,
    ADD COLUMN redirect_uris text[]  NOT NULL DEFAULT '{}'
        CHECK (array_position(redirect_uris, NULL) IS NULL AND '' <> ALL (redirect_uris)
               AND cardinality(redirect_uris) <= 16),
    ADD COLUMN grant_types   text[]  NOT NULL DEFAULT '{client_credentials}'
        CHECK (grant_types <@ ARRAY['client_credentials', 'authorization_code', 'refresh_token']::text[]),
    ADD CONSTRAINT clients_secret_check
        CHECK (CASE WHEN public THEN secret_hash IS NULL
                    ELSE octet_length(secret_hash) > 0 END),
    -- A public client cannot keep a secret, so the client-credentials
    -- grant (which is only a secret) is not for it.
    ADD CONSTRAINT clients_public_grants_check
        CHECK (NOT (public AND 'client_credentials' = ANY (grant_types)));

CREATE TABLE oauth_codes (
    -- HMAC-SHA-256 of the code.
    signature      bytea       PRIMARY KEY CHECK (octet_length(signature) = 32),
    -- fosite's request id: the tokens the code is exchanged for keep it,
    -- so a code used twice finds (and revokes) them.
    request_id     text        NOT NULL CHECK (request_id <> '' AND length(request_id) <= 64),
    client_id      text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes         text[]      NOT NULL DEFAULT '{}',
    audience       text[]      NOT NULL DEFAULT '{}',
    redirect_uri   text        NOT NULL CHECK (length(redirect_uri) <= 2048),
    -- PKCE (RFC 7636), S256 only: BASE64URL(SHA-256(code_verifier)).
    code_challenge text        NOT NULL CHECK (length(code_challenge) = 43),
    requested_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX oauth_codes_expires_at_idx ON oauth_codes (expires_at);
CREATE INDEX oauth_codes_user_id_idx ON oauth_codes (user_id);

CREATE TABLE oauth_refresh_tokens (
    -- HMAC-SHA-256 of the refresh token.
    signature    bytea       PRIMARY KEY CHECK (octet_length(signature) = 32),
    -- The family: fosite keeps the request id across rotations, so every
    -- token of one grant shares it (RFC 9700 4.14: reuse revokes them all).
    family_id    text        NOT NULL CHECK (family_id <> '' AND length(family_id) <= 64),
    client_id    text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The token session (sessions.kind = 'token'): the family lives while
    -- it does, and its access tokens carry its id as sid.
    session_id   uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    scopes       text[]      NOT NULL DEFAULT '{}',
    audience     text[]      NOT NULL DEFAULT '{}',
    -- When the grant began (the code's time), kept across rotations.
    requested_at timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Idle lifetime (--refresh-token-lifetime); the session bounds the
    -- whole chain.
    expires_at   timestamptz NOT NULL,
    -- used_at: rotated (presenting it again is reuse); revoked_at: its
    -- family was revoked (reuse, logout, erasure).
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX oauth_refresh_tokens_family_id_idx ON oauth_refresh_tokens (family_id);
CREATE INDEX oauth_refresh_tokens_session_id_idx ON oauth_refresh_tokens (session_id);
CREATE INDEX oauth_refresh_tokens_user_id_idx ON oauth_refresh_tokens (user_id);
CREATE INDEX oauth_refresh_tokens_expires_at_idx ON oauth_refresh_tokens (expires_at);

-- +goose Down
DROP TABLE IF EXISTS oauth_refresh_tokens;
DROP TABLE IF EXISTS oauth_codes;
-- Public clients cannot exist without the columns: they go.
DELETE FROM clients WHERE public;
ALTER TABLE clients
    DROP CONSTRAINT IF EXISTS clients_public_grants_check,
    DROP CONSTRAINT IF EXISTS clients_secret_check,
    DROP COLUMN IF EXISTS grant_types,
    DROP COLUMN IF EXISTS redirect_uris,
    DROP COLUMN IF EXISTS public;
ALTER TABLE clients ALTER COLUMN secret_hash SET NOT NULL;
ALTER TABLE clients ADD CONSTRAINT clients_secret_hash_check CHECK (octet_length(secret_hash) > 0);
