-- Rollouts of a model's new version or pool (docs/rollouts.md): helix-authz's
-- admin API writes the requests (start, pause, resume, abort, release);
-- helix-xds's rollout controller moves the weights step by step, evaluates
-- the SLOs and writes the state back. Expand-only: the previous release
-- never reads this table.

-- +goose Up
CREATE TABLE rollouts (
    id              bigserial PRIMARY KEY,
    model           text        NOT NULL,
    -- The stable variant (what serves before the rollout) and the canary;
    -- '' leaves a pool or version unpinned.
    from_version    text        NOT NULL DEFAULT '',
    from_pool       text        NOT NULL DEFAULT '',
    to_version      text        NOT NULL DEFAULT '',
    to_pool         text        NOT NULL DEFAULT '',
    -- Canary percentages, increasing, the last one 100.
    steps           integer[]   NOT NULL,
    interval_ms     bigint      NOT NULL CHECK (interval_ms > 0),
    -- The SLOs the canary must hold at each evaluation:
    -- {"error_ratio": 0.01, "p99_ms": 200} (either may be absent).
    slo             jsonb       NOT NULL,
    sticky          boolean     NOT NULL DEFAULT true,
    -- running | paused | completed | rolled_back | aborted | released
    state           text        NOT NULL CHECK (state IN ('running', 'paused', 'completed', 'rolled_back', 'aborted', 'released')),
    -- Index into steps of the step applied now (-1 before the first).
    step            integer     NOT NULL DEFAULT -1,
    -- The canary's percentage applied now.
    weight          integer     NOT NULL DEFAULT 0 CHECK (weight BETWEEN 0 AND 100),
    -- The last decision's reason: why it held, advanced or rolled back.
    reason          text        NOT NULL DEFAULT '',
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    step_started_at timestamptz,
    ended_at        timestamptz
);

-- One rollout in progress per model.
CREATE UNIQUE INDEX rollouts_one_in_progress ON rollouts (model) WHERE state IN ('running', 'paused');
CREATE INDEX rollouts_model_id ON rollouts (model, id DESC);

-- +goose Down
DROP TABLE rollouts;
