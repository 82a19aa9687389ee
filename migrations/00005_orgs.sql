-- Organizations: people's memberships with a role, the policy platform
-- admins set (which plans and scopes the organization's clients and keys
-- may have, how many), the clients and API keys that belong to an
-- organization, and API-key use per day. A client with org_id NULL is a
-- platform client, made with the admin API.

-- +goose Up
CREATE TABLE organizations (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Not unique: an organization is named by its id; a unique name would
    -- tell anyone creating one which names exist.
    name           text        NOT NULL CHECK (name <> '' AND length(name) <= 200),
    -- Policy: the service fills the defaults (the gateway's default plan,
    -- models:infer models:read, 10 keys, 5 clients) at creation.
    allowed_plans  text[]      NOT NULL DEFAULT '{}'
                               CHECK (array_position(allowed_plans, NULL) IS NULL AND '' <> ALL (allowed_plans)),
    allowed_scopes text[]      NOT NULL DEFAULT '{}'
                               CHECK (array_position(allowed_scopes, NULL) IS NULL AND '' <> ALL (allowed_scopes)),
    max_api_keys   integer     NOT NULL DEFAULT 10 CHECK (max_api_keys >= 0),
    max_clients    integer     NOT NULL DEFAULT 5 CHECK (max_clients >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- "At least one owner" is kept by the service (it locks the organization's
-- row while it changes members), not by a constraint: erasing a person
-- (GDPR) must be able to remove their memberships whatever they leave.
CREATE TABLE memberships (
    org_id     uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user_id_idx ON memberships (user_id);

-- Deleting an organization deletes its clients and, with them, their keys;
-- the existing triggers tell every replica's copy.
ALTER TABLE clients
    ADD COLUMN org_id     uuid REFERENCES organizations (id) ON DELETE CASCADE,
    ADD COLUMN created_by uuid REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX clients_org_id_idx ON clients (org_id) WHERE org_id IS NOT NULL;

-- replaces: the key this one was rotated from (the old key lives on until
-- its expires_at, the overlap the rotation chose).
ALTER TABLE api_keys
    ADD COLUMN created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN replaces   text REFERENCES api_keys (id) ON DELETE SET NULL;
CREATE INDEX api_keys_replaces_idx ON api_keys (replaces) WHERE replaces IS NOT NULL;

-- Uses per key per UTC day, added by the use flusher in the same statement
-- that moves api_keys.last_used_at and use_count.
CREATE TABLE api_key_usage_daily (
    key_id text   NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day    date   NOT NULL,
    count  bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
    PRIMARY KEY (key_id, day)
);

-- +goose Down
DROP TABLE IF EXISTS api_key_usage_daily;
ALTER TABLE api_keys DROP COLUMN IF EXISTS replaces, DROP COLUMN IF EXISTS created_by;
ALTER TABLE clients DROP COLUMN IF EXISTS created_by, DROP COLUMN IF EXISTS org_id;
DROP TABLE IF EXISTS memberships;
DROP TABLE IF EXISTS organizations;
