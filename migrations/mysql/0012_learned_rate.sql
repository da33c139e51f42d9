-- Ran on MariaDB 10.11 only (MySQL 8.0 cannot run here); only statements both accept.
--
-- WeCom stricter than configured: the limit WeCom was seen to allow, learned from its 45009
-- and held to by every replica (the claim reads it in the same snapshot as the budget). The
-- rule that sets, uses and raises it back is in src/rules/rate_limit.rs (its module doc).

CALL wecom_add_column('wecom_robot_state', 'learned_rate_limit',
    'INT NULL COMMENT ''Sends WeCom accepted in the window before its last 45009, when fewer than rate_limit; grows back by one every 10 windows; cleared when rate_limit or rate_window changes''');
CALL wecom_add_column('wecom_robot_state', 'learned_at',
    'DATETIME(6) NULL COMMENT ''When learned_rate_limit was learned (UTC)''');

-- 0005's robot trigger, which also forgets the learned limit when the configured limit or
-- window changes: the operator's way to reset it.
DROP TRIGGER IF EXISTS wecom_webhooks_after_update;
CREATE TRIGGER wecom_webhooks_after_update
    AFTER UPDATE ON wecom_webhooks
    FOR EACH ROW
BEGIN
    IF NOT (CAST(NEW.webhook_url AS BINARY) <=> CAST(OLD.webhook_url AS BINARY) AND NEW.is_active <=> OLD.is_active
            AND NEW.pool_name <=> OLD.pool_name AND NEW.rate_limit <=> OLD.rate_limit
            AND NEW.rate_window <=> OLD.rate_window AND NEW.send_window_start <=> OLD.send_window_start
            AND NEW.send_window_end <=> OLD.send_window_end AND NEW.send_days <=> OLD.send_days
            AND NEW.timezone <=> OLD.timezone) THEN
        INSERT INTO wecom_robot_state (robot_id, next_check_at) VALUES (NEW.id, UTC_TIMESTAMP(6))
        ON DUPLICATE KEY UPDATE next_check_at = UTC_TIMESTAMP(6), paused_until = NULL;
    END IF;
    IF NOT (NEW.rate_limit <=> OLD.rate_limit AND NEW.rate_window <=> OLD.rate_window) THEN
        UPDATE wecom_robot_state SET learned_rate_limit = NULL, learned_at = NULL
        WHERE robot_id = NEW.id;
    END IF;
END;
