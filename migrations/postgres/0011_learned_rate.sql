-- WeCom stricter than configured: the limit WeCom was seen to allow, learned from its 45009
-- and held to by every replica (the claim reads it in the same snapshot as the budget). The
-- rule that sets, uses and raises it back is in src/rules/rate_limit.rs (its module doc).

ALTER TABLE wecom_robot_state
    ADD COLUMN IF NOT EXISTS learned_rate_limit int NULL
        CONSTRAINT wecom_robot_state_learned_rate_limit_check CHECK (learned_rate_limit >= 1),
    ADD COLUMN IF NOT EXISTS learned_at timestamptz NULL;

COMMENT ON COLUMN wecom_robot_state.learned_rate_limit IS
    'Sends WeCom accepted in the window before its last 45009, when fewer than rate_limit; it grows back by one every 10 windows. Cleared when rate_limit or rate_window changes.';
COMMENT ON COLUMN wecom_robot_state.learned_at IS
    'When learned_rate_limit was learned (the 45009).';

-- 0003's robot trigger, which also forgets the learned limit when the configured limit or
-- window changes: the operator's way to reset it.
CREATE OR REPLACE FUNCTION wecom_webhooks_after_write() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    reset_learned boolean := TG_OP = 'UPDATE'
        AND (NEW.rate_limit IS DISTINCT FROM OLD.rate_limit
             OR NEW.rate_window IS DISTINCT FROM OLD.rate_window);
BEGIN
    INSERT INTO wecom_robot_state (robot_id) VALUES (NEW.id)
    ON CONFLICT (robot_id) DO UPDATE
    SET next_check_at = now(), paused_until = NULL,
        learned_rate_limit = CASE WHEN reset_learned THEN NULL
                                  ELSE wecom_robot_state.learned_rate_limit END,
        learned_at = CASE WHEN reset_learned THEN NULL ELSE wecom_robot_state.learned_at END;
    PERFORM pg_notify('wecom_outbox', coalesce(NEW.pool_name, NEW.webhook_name));
    RETURN NULL;
END
$$;

-- CREATE OR REPLACE reset the trigger function's definer rights (see 0008): pin them again.
DO $definer$
DECLARE
    home_name text;
BEGIN
    SELECT n.nspname INTO home_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = to_regclass('wecom_outbox');
    EXECUTE format('ALTER FUNCTION wecom_webhooks_after_write() SECURITY DEFINER SET search_path = %I, pg_temp',
                   home_name);
END
$definer$;
