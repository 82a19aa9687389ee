-- The usage ledger (extauthz/usage): per hour, organization, client and
-- model, what was served and what it cost. Workers count requests,
-- inference rows, errors, compute time and latency; helix-authz counts
-- the requests it refused over a plan's limit. Each counter is added in
-- batches (proto/usage/v1): usage_batches remembers every applied batch,
-- so a batch sent again is not counted twice.

-- +goose Up
CREATE TABLE usage_hourly (
    -- The hour's start, UTC.
    hour            timestamptz NOT NULL CHECK (extract(epoch FROM hour)::bigint % 3600 = 0),
    -- The client's organization when the counts were written (NULL: an
    -- operator's client). No foreign keys: the ledger outlives deleted
    -- clients and organizations, as a bill does.
    org_id          uuid,
    client_id       text        NOT NULL CHECK (client_id <> '' AND length(client_id) <= 200),
    model           text        NOT NULL CHECK (model <> '' AND length(model) <= 200),
    requests        bigint      NOT NULL DEFAULT 0 CHECK (requests >= 0),
    inferences      bigint      NOT NULL DEFAULT 0 CHECK (inferences >= 0),
    errors          bigint      NOT NULL DEFAULT 0 CHECK (errors >= 0),
    throttled       bigint      NOT NULL DEFAULT 0 CHECK (throttled >= 0),
    compute_ns      bigint      NOT NULL DEFAULT 0 CHECK (compute_ns >= 0),
    -- Worker latency counts per bucket of internal/usage's LatencyBounds
    -- (the last bucket: above the last bound).
    latency_buckets bigint[]    NOT NULL DEFAULT '{}',
    PRIMARY KEY (hour, client_id, model)
);
CREATE INDEX usage_hourly_org_hour_idx ON usage_hourly (org_id, hour) WHERE org_id IS NOT NULL;
CREATE INDEX usage_hourly_client_hour_idx ON usage_hourly (client_id, hour);

-- Every batch applied, by reporter and number: the ledger's exactly-once
-- record. Pruned after the retention of unacknowledged batches (days).
CREATE TABLE usage_batches (
    reporter   text        NOT NULL CHECK (reporter <> '' AND length(reporter) <= 300),
    seq        bigint      NOT NULL CHECK (seq > 0),
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reporter, seq)
);
CREATE INDEX usage_batches_applied_at_idx ON usage_batches (applied_at);

-- +goose Down
DROP TABLE IF EXISTS usage_batches;
DROP TABLE IF EXISTS usage_hourly;
