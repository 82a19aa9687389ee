-- The audit trail (extauthz/audit): every account, admin and credential
-- action, appended to audit_log. Each row carries a hash chain:
--   hash = SHA-256(prev_hash || canonical(seq, at, actor, action, target,
--                                         result, detail, personal_digest))
-- The personal fields (operator, source, user_agent) stay outside the
-- chain: it covers personal_digest = SHA-256(personal_salt || fields), so
-- GDPR erasure can null the fields and the salt and the chain still
-- verifies. docs/privacy.md lists the personal fields.

-- +goose Up
CREATE TABLE audit_log (
    -- Contiguous, given by the appender under the chain's row lock (not a
    -- sequence: a rolled-back append would leave a gap, and a gap is how a
    -- deleted row shows).
    seq             bigint      PRIMARY KEY CHECK (seq > 0),
    at              timestamptz NOT NULL,
    actor           text        NOT NULL CHECK (actor <> ''),
    action          text        NOT NULL CHECK (action <> ''),
    target          text        NOT NULL DEFAULT '',
    result          text        NOT NULL CHECK (result IN ('success', 'failure', 'denied')),
    detail          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    -- Personal: NULL once erased (with personal_salt).
    operator        text,
    source          text,
    user_agent      text,
    personal_salt   bytea       CHECK (octet_length(personal_salt) = 16),
    personal_digest bytea       NOT NULL CHECK (octet_length(personal_digest) = 32),
    prev_hash       bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash            bytea       NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, seq);
CREATE INDEX audit_log_target_idx ON audit_log (target, seq);

-- One row: where the chain starts (the anchor: the last pruned row's seq
-- and hash, 0 and zeros before any pruning) and where it ends (the head:
-- the last appended row). Appends lock this row, one at a time; the head
-- shows rows deleted at the end, which no link after them could.
CREATE TABLE audit_chain (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    anchor_seq  bigint  NOT NULL DEFAULT 0 CHECK (anchor_seq >= 0),
    anchor_hash bytea   NOT NULL DEFAULT decode(repeat('00', 32), 'hex') CHECK (octet_length(anchor_hash) = 32),
    head_seq    bigint  NOT NULL DEFAULT 0 CHECK (head_seq >= anchor_seq),
    head_hash   bytea   NOT NULL DEFAULT decode(repeat('00', 32), 'hex') CHECK (octet_length(head_hash) = 32)
);
INSERT INTO audit_chain DEFAULT VALUES;

-- Append-only. UPDATE and DELETE are refused unless the transaction set
-- helix.audit_maintenance to 'on' (set_config(..., true): for that
-- transaction only), which only erasure and retention pruning do; even
-- then an UPDATE may only null the personal fields and the salt. A
-- superuser can bypass a trigger: the chain detects what they change.
-- +goose StatementBegin
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' OR coalesce(current_setting('helix.audit_maintenance', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF (NEW.seq, NEW.at, NEW.actor, NEW.action, NEW.target, NEW.result, NEW.detail,
        NEW.personal_digest, NEW.prev_hash, NEW.hash)
       IS DISTINCT FROM
       (OLD.seq, OLD.at, OLD.actor, OLD.action, OLD.target, OLD.result, OLD.detail,
        OLD.personal_digest, OLD.prev_hash, OLD.hash)
       OR NEW.operator IS NOT NULL OR NEW.source IS NOT NULL OR NEW.user_agent IS NOT NULL
       OR NEW.personal_salt IS NOT NULL THEN
        RAISE EXCEPTION 'audit_log: maintenance may only erase personal fields' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_guard();

-- The chain's row moves forward only: the head on every append, the
-- anchor only under maintenance (pruning); it is never deleted.
-- +goose StatementBegin
CREATE FUNCTION audit_chain_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit_chain: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.head_seq < OLD.head_seq OR NEW.anchor_seq < OLD.anchor_seq THEN
        RAISE EXCEPTION 'audit_chain: the chain only moves forward' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.anchor_seq, NEW.anchor_hash) IS DISTINCT FROM (OLD.anchor_seq, OLD.anchor_hash)
       AND coalesce(current_setting('helix.audit_maintenance', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit_chain: the anchor moves only when pruning' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_chain_forward_only
    BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_guard();
CREATE TRIGGER audit_chain_no_truncate
    BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_guard();

-- +goose Down
DROP TABLE IF EXISTS audit_chain;
DROP TABLE IF EXISTS audit_log;
DROP FUNCTION IF EXISTS audit_chain_guard();
DROP FUNCTION IF EXISTS audit_log_guard();
