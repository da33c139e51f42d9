-- MySQL 8.0 / MariaDB 10.6+ (ran on MariaDB 10.11 only; only statements both accept).
-- Retention and requeue (`prune`, `retry`, the daily prune), as migrations/postgres/0010:
-- finished_at kept by the database, an index for prune and `status`'s recent counts, and the
-- setting prune_after_days.
SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------------------
-- finished_at: when the row became sent, failed, cancelled or expired (NULL while pending or
-- sending), set by triggers on every status change whoever makes it; nobody sets it by hand.
-- ---------------------------------------------------------------------------------------
CALL wecom_add_column('wecom_outbox', 'finished_at',
    'DATETIME(6) NULL COMMENT ''UTC; when the row became sent, failed, cancelled or expired''');

-- Rows finished before this migration: the latest time the row records (sent_at for sent rows;
-- otherwise its last scheduled attempt or its expiry), a lower bound of when it finished.
UPDATE wecom_outbox
SET finished_at = COALESCE(sent_at, GREATEST(created_at, not_before, COALESCE(expires_at, created_at)))
WHERE status IN ('sent', 'failed', 'cancelled', 'expired') AND finished_at IS NULL;

-- Created after 0003's and 0004's triggers, so they run after them (creation order).
DROP TRIGGER IF EXISTS wecom_outbox_finished_at_insert;
CREATE TRIGGER wecom_outbox_finished_at_insert
    BEFORE INSERT ON wecom_outbox
    FOR EACH ROW
    SET NEW.finished_at = NULL;

DROP TRIGGER IF EXISTS wecom_outbox_finished_at;
CREATE TRIGGER wecom_outbox_finished_at
    BEFORE UPDATE ON wecom_outbox
    FOR EACH ROW
    SET NEW.finished_at = CASE
        WHEN NEW.status <=> OLD.status THEN OLD.finished_at
        WHEN NEW.status IN ('sent', 'failed', 'cancelled', 'expired') THEN UTC_TIMESTAMP(6)
        ELSE NULL
    END;

-- prune (oldest finished first) and the recent counts `status` shows. Pending, sending and
-- failed rows are counted through wecom_outbox_claim_idx (status, webhook_name, …).
CALL wecom_add_index('wecom_outbox', 'wecom_outbox_finished_idx', FALSE, '(finished_at, webhook_name, status)');

-- ---------------------------------------------------------------------------------------
-- prune_after_days: empty = the workers never prune; N = once a day, one replica deletes
-- finished rows (and their log rows) that finished more than N days ago.
-- ---------------------------------------------------------------------------------------
DROP FUNCTION IF EXISTS wecom_setting_kind;
CREATE FUNCTION wecom_setting_kind(p_name VARCHAR(64)) RETURNS VARCHAR(32)
    DETERMINISTIC NO SQL
RETURN CASE p_name
    WHEN 'default_timezone'        THEN 'zone'
    WHEN 'reminder_destination'    THEN 'destination'
    WHEN 'reminder_status'         THEN 'text'
    WHEN 'reminder_min_days'       THEN 'days'
    WHEN 'reminder_max_days'       THEN 'days'
    WHEN 'reminder_cadence'        THEN 'day_list'
    WHEN 'reminder_urgent_days'    THEN 'days'
    WHEN 'reminder_run_time'       THEN 'run_time'
    WHEN 'reminder_route_column'   THEN 'route_column'
    WHEN 'reminder_route_fallback' THEN 'route_fallback'
    WHEN 'conversion_window_days'  THEN 'days_not_negative'
    WHEN 'prune_after_days'        THEN 'prune_days'
END;

-- 0005's function with one more kind, prune_days.
DROP FUNCTION IF EXISTS wecom_setting_problem;
CREATE FUNCTION wecom_setting_problem(p_name VARCHAR(64), p_value TEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
    COMMENT 'Why p_value cannot work for setting p_name, or NULL'
BEGIN
    DECLARE kind VARCHAR(32) DEFAULT wecom_setting_kind(p_name);
    DECLARE v    TEXT CHARACTER SET utf8mb4 DEFAULT TRIM(p_value);
    DECLARE rest TEXT CHARACTER SET utf8mb4;
    DECLARE item TEXT CHARACTER SET utf8mb4;
    CASE
    WHEN kind IS NULL THEN
        RETURN CONCAT('unknown setting ', p_name, ': the settings are conversion_window_days, default_timezone, prune_after_days, reminder_cadence, reminder_destination, reminder_max_days, reminder_min_days, reminder_route_column, reminder_route_fallback, reminder_run_time, reminder_status, reminder_urgent_days');
    WHEN kind = 'zone' THEN
        -- The worker reads this value untrimmed.
        IF wecom_timezone_problem(p_value) IS NOT NULL THEN
            RETURN CONCAT(p_name, ' ', wecom_timezone_problem(p_value));
        END IF;
    WHEN kind = 'destination' THEN
        IF v = '' THEN
            RETURN CONCAT(p_name, ' is empty: name the robot or pool reminders go to (default parent_group)');
        END IF;
        IF wecom_destination_problem(v) IS NOT NULL THEN
            RETURN CONCAT(p_name, ' ', wecom_destination_problem(v));
        END IF;
    WHEN kind = 'text' THEN
        IF v = '' THEN
            RETURN CONCAT(p_name, ' is empty: give the renewal_action_status that gets reminders (default: the Not Yet Renewed status)');
        END IF;
    WHEN kind IN ('days', 'days_not_negative') THEN
        IF NOT wecom_is_int(v) THEN
            RETURN CONCAT(p_name, ' ''', p_value, ''' is not a whole number of days, such as 7');
        END IF;
        IF kind = 'days_not_negative' AND CAST(v AS SIGNED) < 0 THEN
            RETURN CONCAT(p_name, ' ', v, ' is negative: give 0 or more days');
        END IF;
    WHEN kind = 'day_list' THEN
        SET rest = REPLACE(v, ' ', '');
        WHILE rest <> '' DO
            SET item = SUBSTRING_INDEX(rest, ',', 1);
            SET rest = IF(LOCATE(',', rest) > 0, SUBSTRING(rest, LOCATE(',', rest) + 1), '');
            IF NOT wecom_is_int(item) THEN
                RETURN CONCAT(p_name, ' ''', p_value, ''' is not a list of whole numbers of days such as 7,3,1,0 (empty = every day in range): ''', item, ''' is not one');
            END IF;
        END WHILE;
    WHEN kind = 'run_time' THEN
        -- As the worker parses it (src/reminders/schedule.rs): H:MM or HH:MM[:SS], or off.
        IF LOWER(v) <> 'off' AND NOT v REGEXP '^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$' THEN
            RETURN CONCAT(p_name, ' ''', p_value, ''' is not a local time like 09:00 (00:00 to 23:59), or off');
        END IF;
    WHEN kind = 'route_column' THEN
        IF v <> ''
           AND EXISTS (SELECT 1 FROM information_schema.tables
                        WHERE table_schema = DATABASE() AND table_name = 'active_enrollments_needing_renewal')
           AND v NOT IN ('enrollment_id', 'id', 'days_until_renewal', 'reminder_date')
           AND NOT EXISTS (SELECT 1 FROM information_schema.columns
                            WHERE table_schema = DATABASE() AND table_name = 'active_enrollments_needing_renewal'
                              AND column_name = v) THEN
            RETURN CONCAT(p_name, ' ', v, ' is not a column of active_enrollments_needing_renewal (empty = no routing)');
        END IF;
    WHEN kind = 'route_fallback' THEN
        IF v NOT IN ('', 'skip') AND wecom_destination_problem(v) IS NOT NULL THEN
            RETURN CONCAT(p_name, ' ', wecom_destination_problem(v),
                          ' (or write skip to send nothing, empty for reminder_destination)');
        END IF;
    WHEN kind = 'prune_days' THEN
        -- Read by the worker's daily prune (src/worker/prune.rs): empty = off.
        IF v <> '' AND (NOT wecom_is_int(v) OR CAST(v AS SIGNED) < 1) THEN
            RETURN CONCAT(p_name, ' ''', p_value, ''' is not a whole number of days of at least 1, such as 90 (empty = never prune)');
        END IF;
    ELSE
        RETURN NULL;
    END CASE;
    RETURN NULL;
END;

INSERT IGNORE INTO wecom_settings (name, value, description) VALUES
    ('prune_after_days', '',
     'Empty: the workers never prune. N: once a day, delete sent/failed/cancelled/expired rows (and their log rows) finished more than N days ago');
