-- The outbox and the state the worker keeps. Every statement is safe on a database whose
-- Phase-1 tables were adopted by 0001: columns are added, never redefined, and no row is lost.

-- ---------------------------------------------------------------------------------------
-- Robots: the Phase-1 table plus scheduling columns.
-- ---------------------------------------------------------------------------------------
ALTER TABLE wecom_webhooks
    ADD COLUMN IF NOT EXISTS pool_name         text NULL,
    ADD COLUMN IF NOT EXISTS rate_limit        int NOT NULL DEFAULT 20,
    ADD COLUMN IF NOT EXISTS rate_window       interval NOT NULL DEFAULT interval '60 seconds',
    ADD COLUMN IF NOT EXISTS send_window_start time NULL,
    ADD COLUMN IF NOT EXISTS send_window_end   time NULL,
    ADD COLUMN IF NOT EXISTS send_days         int[] NULL,
    ADD COLUMN IF NOT EXISTS timezone          text NULL,
    ADD COLUMN IF NOT EXISTS disabled_reason   text NULL,
    ADD COLUMN IF NOT EXISTS is_external       boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN wecom_webhooks.pool_name IS
    'Robots with the same pool serve one destination; a robot serves coalesce(pool_name, webhook_name).';
COMMENT ON COLUMN wecom_webhooks.is_external IS
    'Audience reads in WeChat (a customer group): markdown does not render there and is refused.';

ALTER TABLE wecom_webhooks
    ADD CONSTRAINT wecom_webhooks_rate_limit_positive CHECK (rate_limit > 0),
    ADD CONSTRAINT wecom_webhooks_rate_window_positive CHECK (rate_window > interval '0'),
    ADD CONSTRAINT wecom_webhooks_send_days_iso CHECK (send_days <@ ARRAY[1,2,3,4,5,6,7]),
    ADD CONSTRAINT wecom_webhooks_window_both_or_neither
        CHECK ((send_window_start IS NULL) = (send_window_end IS NULL));

-- ---------------------------------------------------------------------------------------
-- Deployment settings a DBA edits with UPDATE.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_settings (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    description text
);

INSERT INTO wecom_settings (name, value, description) VALUES
    ('default_timezone', 'Asia/Hong_Kong',
     'IANA zone for send windows of robots whose timezone is null')
ON CONFLICT (name) DO NOTHING;

-- ---------------------------------------------------------------------------------------
-- The outbox: one row per message.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_outbox (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_name  text NOT NULL,
    payload       jsonb NULL,
    content       text NULL,
    message_type  text NULL,
    enrollment_id bigint NULL,
    dedupe_key    text NULL UNIQUE,
    priority      smallint NOT NULL DEFAULT 0,
    not_before    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NULL,
    max_attempts  int NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled', 'expired')),
    attempts      int NOT NULL DEFAULT 0,
    last_errcode  int NULL,
    last_error    text NULL,
    robot_name    text NULL,
    locked_by     text NULL,
    locked_until  timestamptz NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz NULL
);

COMMENT ON COLUMN wecom_outbox.priority IS 'Higher goes first within a destination; then oldest first.';

-- The claim: pending rows of one destination, best first. Partial, so sent history never slows it.
CREATE INDEX IF NOT EXISTS wecom_outbox_claim_idx
    ON wecom_outbox (webhook_name, priority DESC, created_at)
    WHERE status = 'pending';
-- Lease rescue and the worker's "when is the next thing due" look-ups.
CREATE INDEX IF NOT EXISTS wecom_outbox_lease_idx
    ON wecom_outbox (locked_until) WHERE status = 'sending';
CREATE INDEX IF NOT EXISTS wecom_outbox_not_before_idx
    ON wecom_outbox (not_before) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS wecom_outbox_expires_idx
    ON wecom_outbox (expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS wecom_outbox_enrollment_idx
    ON wecom_outbox (enrollment_id) WHERE enrollment_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- The log: Phase-1 columns plus the outcome's details. One row per sent/failed outbox row.
-- ---------------------------------------------------------------------------------------
ALTER TABLE wecom_message_log
    ADD COLUMN IF NOT EXISTS outbox_id  uuid NULL,
    ADD COLUMN IF NOT EXISTS robot_name text NULL,
    ADD COLUMN IF NOT EXISTS errcode    int NULL,
    ADD COLUMN IF NOT EXISTS attempts   int NULL;

CREATE UNIQUE INDEX IF NOT EXISTS wecom_message_log_outbox_id_key ON wecom_message_log (outbox_id);
CREATE INDEX IF NOT EXISTS wecom_message_log_dest_time_idx
    ON wecom_message_log (webhook_name, send_timestamp);

-- ---------------------------------------------------------------------------------------
-- Per-robot worker state. The rate limit lives here, so every replica sees the same budget.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_robot_state (
    robot_id          int PRIMARY KEY REFERENCES wecom_webhooks (id) ON DELETE CASCADE,
    next_check_at     timestamptz NOT NULL DEFAULT now(),
    paused_until      timestamptz NULL,
    consecutive_45009 int NOT NULL DEFAULT 0,
    last_errcode      int NULL,
    last_error        text NULL,
    last_error_at     timestamptz NULL
);

CREATE INDEX IF NOT EXISTS wecom_robot_state_next_check_idx ON wecom_robot_state (next_check_at);

-- One row per send reserved against a robot's limit; `at` moves to when WeCom answered,
-- so a request that arrived late still counts from its arrival.
CREATE TABLE IF NOT EXISTS wecom_rate_slots (
    id       bigserial PRIMARY KEY,
    robot_id int NOT NULL REFERENCES wecom_webhooks (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS wecom_rate_slots_robot_at_idx ON wecom_rate_slots (robot_id, at);

INSERT INTO wecom_robot_state (robot_id)
SELECT id FROM wecom_webhooks
ON CONFLICT (robot_id) DO NOTHING;
