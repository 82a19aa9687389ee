-- helix-authz: OAuth2 clients, API keys, signing keys and revoked token ids.
-- Every change that a replica's cache must see is announced on the channel
-- helix_authz_changes as '<kind>:<id>' by triggers, so the notice is sent in
-- the same transaction as the change (and only if it commits).

-- +goose Up
CREATE TABLE clients (
    id          text        PRIMARY KEY CHECK (id <> '' AND length(id) <= 256),
    name        text        NOT NULL DEFAULT '' CHECK (length(name) <= 1024),
    secret_hash bytea       NOT NULL CHECK (octet_length(secret_hash) > 0),
    scopes      text[]      NOT NULL DEFAULT '{}'
                            CHECK (array_position(scopes, NULL) IS NULL AND '' <> ALL (scopes)),
    models      text[]      NOT NULL DEFAULT '{}'
                            CHECK (array_position(models, NULL) IS NULL AND '' <> ALL (models)),
    audience    text[]      NOT NULL DEFAULT '{}'
                            CHECK (array_position(audience, NULL) IS NULL AND '' <> ALL (audience)),
    plan        text        NOT NULL DEFAULT '' CHECK (length(plan) <= 256),
    -- Deny by default: a client row inserted by hand is off until enabled.
    enabled     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           text        PRIMARY KEY CHECK (id <> '' AND length(id) <= 256),
    prefix       text        NOT NULL UNIQUE CHECK (prefix <> '' AND length(prefix) <= 256),
    hash         bytea       NOT NULL CHECK (octet_length(hash) > 0),
    client_id    text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    name         text        NOT NULL DEFAULT '' CHECK (length(name) <= 1024),
    scopes       text[]      NOT NULL DEFAULT '{}'
                             CHECK (array_position(scopes, NULL) IS NULL AND '' <> ALL (scopes)),
    expires_at   timestamptz,
    last_used_at timestamptz,
    use_count    bigint      NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_client_id_idx ON api_keys (client_id);

CREATE TABLE signing_keys (
    kid            text        PRIMARY KEY CHECK (kid <> '' AND length(kid) <= 256),
    alg            text        NOT NULL CHECK (alg IN ('ES256', 'RS256')),
    -- json, not jsonb: the JWK's bytes come back exactly as stored.
    public_jwk     json        NOT NULL CHECK (json_typeof(public_jwk) = 'object'),
    private_sealed bytea       NOT NULL CHECK (octet_length(private_sealed) > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    signs_from     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    expires_at     timestamptz
);

CREATE TABLE revoked_tokens (
    jti        text        PRIMARY KEY CHECK (jti <> '' AND length(jti) <= 256),
    -- When the token would have expired anyway: the row may go after that.
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);
CREATE INDEX revoked_tokens_revoked_at_idx ON revoked_tokens (revoked_at);

-- helix_authz_notify(kind, column) announces '<kind>:<row.column>' for the
-- old and the new row; Postgres folds identical payloads within one
-- transaction, so an update that keeps the id sends one notice. An empty
-- column name sends '<kind>:'.
-- +goose StatementBegin
CREATE FUNCTION helix_authz_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('helix_authz_changes',
            TG_ARGV[0] || ':' || coalesce(to_jsonb(OLD) ->> TG_ARGV[1], ''));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('helix_authz_changes',
            TG_ARGV[0] || ':' || coalesce(to_jsonb(NEW) ->> TG_ARGV[1], ''));
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER clients_notify
    AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION helix_authz_notify('client', 'id');

CREATE TRIGGER api_keys_notify
    AFTER INSERT OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION helix_authz_notify('apikey', 'prefix');

-- Usage bookkeeping (last_used_at, use_count) changes on every batch of
-- requests and matters to no cache: only the other columns announce.
CREATE TRIGGER api_keys_notify_update
    AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN ((OLD.id, OLD.prefix, OLD.hash, OLD.client_id, OLD.name, OLD.scopes,
           OLD.expires_at, OLD.revoked_at, OLD.created_at)
          IS DISTINCT FROM
          (NEW.id, NEW.prefix, NEW.hash, NEW.client_id, NEW.name, NEW.scopes,
           NEW.expires_at, NEW.revoked_at, NEW.created_at))
    EXECUTE FUNCTION helix_authz_notify('apikey', 'prefix');

-- Pruning deletes rows of tokens that have expired anyway; announcing each
-- would only flood the channel, so deletes stay silent (a cache that keeps
-- denying a deleted jti fails closed).
CREATE TRIGGER revoked_tokens_notify
    AFTER INSERT OR UPDATE ON revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION helix_authz_notify('revoked', 'jti');

-- Caches reload the whole key set, so the notice carries no id ('keys:').
CREATE TRIGGER signing_keys_notify
    AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION helix_authz_notify('keys', '');

-- +goose Down
DROP TABLE IF EXISTS revoked_tokens;
DROP TABLE IF EXISTS signing_keys;
DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS clients;
DROP FUNCTION IF EXISTS helix_authz_notify();
