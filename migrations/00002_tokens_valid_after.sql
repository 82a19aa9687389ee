-- A client's tokens issued before tokens_valid_after (to the second: a
-- token's iat has whole seconds, so one issued in the same second counts as
-- before) are invalid. The store moves it to now() when the client's secret
-- is rotated and when it is disabled or enabled, in the same UPDATE, so the
-- existing clients_notify trigger announces it. NULL: no cutoff.

-- +goose Up
ALTER TABLE clients ADD COLUMN tokens_valid_after timestamptz;

-- +goose Down
ALTER TABLE clients DROP COLUMN IF EXISTS tokens_valid_after;
