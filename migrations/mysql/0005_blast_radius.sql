-- MySQL 8.0 / MariaDB 10.6+. One mistake stops only itself (migrations/postgres/0003's robot
-- triggers and 0006): a robot row or a setting that can never mean what it says is refused when
-- it is written, with the rule it breaks and what to write instead (SIGNAL SQLSTATE '45000',
-- 'wecom_webhooks: ...' / 'wecom_settings: ...'). Rows already stored are left as they are.
-- Ran on: MariaDB 10.11 only. REGEXP is used only on short values with patterns both engines
-- (ICU on MySQL 8, PCRE on MariaDB) read alike.
--
-- Not here, unlike PostgreSQL: MySQL has no deferred (commit-time) triggers, so settings that
-- only conflict together (reminder_min_days above reminder_max_days, a cadence outside the
-- range) are not refused here; nor can TRUNCATE be refused (no TRUNCATE triggers).
-- Time zones are checked against wecom_timezones (filled by migrate from chrono-tz), never the
-- server's time zone tables, which may be empty on Cloud SQL.

-- Literals in the routines below take the connection's collation when they are created: the
-- server's default for utf8mb4, as their utf8mb4 variables and parameters have (sqlx would
-- otherwise give utf8mb4_unicode_ci, and comparisons would mix collations).
SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------------------
-- Shared checks. Each returns why the value cannot work, or NULL when it can.
-- ---------------------------------------------------------------------------------------

-- Only IANA zone names, as the worker reads them (chrono-tz).
DROP FUNCTION IF EXISTS wecom_timezone_problem;
CREATE FUNCTION wecom_timezone_problem(p_zone TEXT CHARACTER SET utf8mb4) RETURNS TEXT CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
    COMMENT 'Why p_zone is not an IANA zone name the worker can read, or NULL'
RETURN IF(EXISTS (SELECT 1 FROM wecom_timezones WHERE name = p_zone COLLATE utf8mb4_bin), NULL,
          CONCAT(COALESCE(p_zone, 'NULL'),
                 ' is not an IANA time zone name (such as Asia/Hong_Kong; names are case-sensitive)'));

-- send_days: NULL (every day) or a JSON array of ISO weekdays 1-7, not empty.
DROP FUNCTION IF EXISTS wecom_send_days_problem;
CREATE FUNCTION wecom_send_days_problem(p_days LONGTEXT CHARACTER SET utf8mb4) RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
    COMMENT 'Why send_days is not a plain non-empty list of ISO weekdays, or NULL'
BEGIN
    DECLARE i INT DEFAULT 0;
    DECLARE d LONGTEXT CHARACTER SET utf8mb4;
    IF p_days IS NULL THEN
        RETURN NULL;
    END IF;
    IF NOT JSON_VALID(p_days) OR JSON_TYPE(p_days) <> 'ARRAY' THEN
        RETURN CONCAT('send_days ', p_days, ' is not a JSON array: write ISO weekdays such as [1,2,3,4,5] (1 = Monday … 7 = Sunday), or NULL for every day');
    END IF;
    IF JSON_LENGTH(p_days) = 0 THEN
        RETURN 'send_days is empty ([]), so the robot would never send: set it to NULL for every day, or list ISO weekdays such as [1,2,3,4,5]';
    END IF;
    WHILE i < JSON_LENGTH(p_days) DO
        SET d = JSON_EXTRACT(p_days, CONCAT('$[', i, ']'));
        IF JSON_TYPE(d) NOT IN ('INTEGER', 'UNSIGNED INTEGER') OR CAST(d AS CHAR) NOT IN ('1', '2', '3', '4', '5', '6', '7') THEN
            RETURN CONCAT('send_days ', p_days, ' contains ', d,
                          ': list ISO weekdays 1 (Monday) to 7 (Sunday) only, such as [1,2,3,4,5]');
        END IF;
        SET i = i + 1;
    END WHILE;
    RETURN NULL;
END;

-- send_window_start/end: both NULL (any time), or a window that opens and closes within a day.
-- A window may wrap midnight (22:00-02:00). MySQL's TIME also holds durations (24:00, 838:59):
-- only times of day 00:00 to 23:59:59 are windows, so 00:00-24:00 cannot pose as one.
DROP FUNCTION IF EXISTS wecom_send_window_problem;
CREATE FUNCTION wecom_send_window_problem(p_start TIME, p_end TIME) RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
    COMMENT 'Why a send window cannot work, or NULL'
RETURN CASE
    WHEN p_start < '00:00:00' OR p_start > '23:59:59' OR p_end < '00:00:00' OR p_end > '23:59:59' THEN
        CONCAT('send window ', TIME_FORMAT(p_start, '%H:%i'), '-', TIME_FORMAT(p_end, '%H:%i'),
               ' is not two times of day: write them from 00:00 to 23:59, midnight as 00:00 (a window may wrap midnight, e.g. 22:00-02:00; both NULL = any time)')
    WHEN p_start = p_end THEN
        CONCAT('send window ', TIME_FORMAT(p_start, '%H:%i'), '-', TIME_FORMAT(p_end, '%H:%i'),
               ' starts and ends at the same time: set send_window_start and send_window_end to NULL to send at any time, or to the hours it may send, e.g. 09:00 and 20:00')
END;

-- rate_window (seconds): positive (the CHECK says so) and at most 366 days.
DROP FUNCTION IF EXISTS wecom_rate_window_problem;
CREATE FUNCTION wecom_rate_window_problem(p_window BIGINT) RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN IF(p_window > 366 * 86400,
          CONCAT('rate_window ', p_window, ' seconds is longer than 366 days: give a window of at most a year (WeCom''s own is 60 seconds)'),
          NULL);

-- ---------------------------------------------------------------------------------------
-- Robots: each value is checked when it is written, never on the worker's own UPDATEs of an
-- old row (last_used_at, total_messages_sent, is_active with its reason).
-- ---------------------------------------------------------------------------------------
DROP PROCEDURE IF EXISTS wecom_webhooks_check;
CREATE PROCEDURE wecom_webhooks_check(
    IN p_fresh BOOLEAN,
    IN p_zone TEXT CHARACTER SET utf8mb4, IN p_old_zone TEXT CHARACTER SET utf8mb4,
    IN p_days LONGTEXT CHARACTER SET utf8mb4, IN p_old_days LONGTEXT CHARACTER SET utf8mb4,
    IN p_start TIME, IN p_old_start TIME, IN p_end TIME, IN p_old_end TIME,
    IN p_window BIGINT, IN p_old_window BIGINT)
    READS SQL DATA
    COMMENT 'Refuses a robot row whose zone, days, window or rate window cannot work'
BEGIN
    DECLARE problem TEXT CHARACTER SET utf8mb4;
    IF p_zone IS NOT NULL AND (p_fresh OR NOT (p_zone <=> p_old_zone)) THEN
        SET problem = CONCAT('timezone ', wecom_timezone_problem(p_zone));
    END IF;
    IF problem IS NULL AND (p_fresh OR NOT (p_days <=> p_old_days)) THEN
        SET problem = wecom_send_days_problem(p_days);
    END IF;
    IF problem IS NULL AND (p_fresh OR NOT (p_start <=> p_old_start) OR NOT (p_end <=> p_old_end)) THEN
        SET problem = wecom_send_window_problem(p_start, p_end);
    END IF;
    IF problem IS NULL AND (p_fresh OR NOT (p_window <=> p_old_window)) THEN
        SET problem = wecom_rate_window_problem(p_window);
    END IF;
    IF problem IS NOT NULL THEN
        CALL wecom_refuse(CONCAT('wecom_webhooks: ', problem));
    END IF;
END;

DROP TRIGGER IF EXISTS wecom_webhooks_before_insert;
CREATE TRIGGER wecom_webhooks_before_insert
    BEFORE INSERT ON wecom_webhooks
    FOR EACH ROW
CALL wecom_webhooks_check(TRUE, NEW.timezone, NULL, NEW.send_days, NULL,
                          NEW.send_window_start, NULL, NEW.send_window_end, NULL, NEW.rate_window, NULL);

-- Also: a new URL for a robot the worker disabled (gone, host not allowed) puts it back in
-- service; re-enabling clears the old reason.
DROP TRIGGER IF EXISTS wecom_webhooks_before_update;
CREATE TRIGGER wecom_webhooks_before_update
    BEFORE UPDATE ON wecom_webhooks
    FOR EACH ROW
BEGIN
    CALL wecom_webhooks_check(FALSE, NEW.timezone, OLD.timezone, NEW.send_days, OLD.send_days,
                              NEW.send_window_start, OLD.send_window_start,
                              NEW.send_window_end, OLD.send_window_end, NEW.rate_window, OLD.rate_window);
    IF NOT (CAST(NEW.webhook_url AS BINARY) <=> CAST(OLD.webhook_url AS BINARY)) AND OLD.disabled_reason IS NOT NULL
       AND NEW.is_active <=> OLD.is_active AND NEW.disabled_reason <=> OLD.disabled_reason THEN
        SET NEW.is_active = TRUE, NEW.disabled_reason = NULL;
    ELSEIF COALESCE(NEW.is_active, TRUE) AND NOT COALESCE(OLD.is_active, TRUE)
       AND NEW.disabled_reason <=> OLD.disabled_reason THEN
        SET NEW.disabled_reason = NULL;
    END IF;
END;

-- Every robot has a state row, and any change by a DBA (new URL, window, limit, re-enabling)
-- makes the workers look at it again at once.
DROP TRIGGER IF EXISTS wecom_webhooks_after_insert;
CREATE TRIGGER wecom_webhooks_after_insert
    AFTER INSERT ON wecom_webhooks
    FOR EACH ROW
INSERT INTO wecom_robot_state (robot_id, next_check_at) VALUES (NEW.id, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE next_check_at = UTC_TIMESTAMP(6), paused_until = NULL;

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
END;

-- ---------------------------------------------------------------------------------------
-- Settings.
-- ---------------------------------------------------------------------------------------

-- Settings a database lost come back with their defaults (before the triggers: the default
-- destination need not have a robot yet).
INSERT IGNORE INTO wecom_settings (name, value, description) VALUES
    ('default_timezone', 'Asia/Hong_Kong', 'IANA zone for send windows of robots whose timezone is null'),
    ('reminder_destination', 'parent_group', 'Where fee reminders go: a robot or pool name in wecom_webhooks'),
    ('reminder_status', '🔴 Not Yet Renewed', 'renewal_action_status value of enrollments that get reminders'),
    ('reminder_min_days', '0', 'Remind when days_until_renewal is at least this'),
    ('reminder_max_days', '7', 'Remind when days_until_renewal is at most this'),
    ('reminder_cadence', '', 'Empty: every day in the range. Or a list such as 7,3,1,0: only on those days_until_renewal'),
    ('reminder_urgent_days', '3', 'At most this many days left: the fee_reminder_urgent template, else fee_reminder_normal'),
    ('reminder_run_time', '09:00', 'Local time (default_timezone) the daily run enqueues reminders; off = the worker never runs it'),
    ('reminder_route_column', '', 'Empty: all reminders go to reminder_destination. Or a column of the view whose value is routed'),
    ('reminder_route_fallback', '', 'With routing: destination for values without a route; empty = reminder_destination; skip = send nothing'),
    ('conversion_window_days', '7', 'Counts a reminded enrollment as converted when renewed within this many days');

-- A setting's value, or p_fallback when it is missing or blank.
DROP FUNCTION IF EXISTS wecom_setting;
CREATE FUNCTION wecom_setting(p_name VARCHAR(64), p_fallback TEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
    COMMENT 'A setting, or p_fallback when missing or blank'
RETURN COALESCE((SELECT NULLIF(TRIM(value), '') FROM wecom_settings WHERE name = p_name), p_fallback);

-- What kind of value each setting's reader needs; NULL for an unknown name.
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
END;

-- Whether p is an integer an INT can hold, written plainly (7, -2, +3).
DROP FUNCTION IF EXISTS wecom_is_int;
CREATE FUNCTION wecom_is_int(p TEXT CHARACTER SET utf8mb4) RETURNS BOOLEAN
    DETERMINISTIC NO SQL
RETURN p IS NOT NULL AND p REGEXP '^[+-]?[0-9]{1,10}$'
       AND CAST(p AS DECIMAL(12, 0)) BETWEEN -2147483648 AND 2147483647;

-- Why p_value cannot work for setting p_name, checked the way its reader uses it.
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
        RETURN CONCAT('unknown setting ', p_name, ': the settings are conversion_window_days, default_timezone, reminder_cadence, reminder_destination, reminder_max_days, reminder_min_days, reminder_route_column, reminder_route_fallback, reminder_run_time, reminder_status, reminder_urgent_days');
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
    ELSE
        RETURN NULL;
    END CASE;
    RETURN NULL;
END;

DROP TRIGGER IF EXISTS wecom_settings_before_insert;
CREATE TRIGGER wecom_settings_before_insert
    BEFORE INSERT ON wecom_settings
    FOR EACH ROW
BEGIN
    IF NEW.value IS NOT NULL AND wecom_setting_problem(NEW.name, NEW.value) IS NOT NULL THEN
        CALL wecom_refuse(CONCAT('wecom_settings: ', wecom_setting_problem(NEW.name, NEW.value)));
    END IF;
END;

DROP TRIGGER IF EXISTS wecom_settings_before_update;
CREATE TRIGGER wecom_settings_before_update
    BEFORE UPDATE ON wecom_settings
    FOR EACH ROW
BEGIN
    IF NOT (NEW.name <=> OLD.name) AND wecom_setting_kind(OLD.name) IS NOT NULL THEN
        CALL wecom_refuse(CONCAT('wecom_settings: ', OLD.name, ' cannot be renamed, the worker and reminders read it: UPDATE its value instead'));
    END IF;
    -- A NULL value is left to the NOT NULL constraint.
    -- Compared as binary strings: 'asia/hong_kong' equals 'Asia/Hong_Kong' in the table's collation.
    IF NEW.value IS NOT NULL AND NOT (NEW.name <=> OLD.name AND CAST(NEW.value AS BINARY) <=> CAST(OLD.value AS BINARY))
       AND wecom_setting_problem(NEW.name, NEW.value) IS NOT NULL THEN
        CALL wecom_refuse(CONCAT('wecom_settings: ', wecom_setting_problem(NEW.name, NEW.value)));
    END IF;
END;

DROP TRIGGER IF EXISTS wecom_settings_before_delete;
CREATE TRIGGER wecom_settings_before_delete
    BEFORE DELETE ON wecom_settings
    FOR EACH ROW
BEGIN
    IF wecom_setting_kind(OLD.name) IS NOT NULL THEN
        CALL wecom_refuse(CONCAT('wecom_settings: ', OLD.name, ' cannot be deleted, the worker and reminders read it: UPDATE its value instead'));
    END IF;
END;

-- Robots with no zone of their own that an earlier worker disabled because default_timezone
-- was not a zone: the zone is fixed, so they are back in service.
DROP PROCEDURE IF EXISTS wecom_reenable_default_zone_victims;
CREATE PROCEDURE wecom_reenable_default_zone_victims()
    MODIFIES SQL DATA
    COMMENT 'Re-enables robots disabled only because default_timezone was not a zone'
BEGIN
    IF wecom_timezone_problem(wecom_setting('default_timezone', 'Asia/Hong_Kong')) IS NULL THEN
        UPDATE wecom_webhooks
           SET is_active = TRUE
         WHERE timezone IS NULL
           AND NOT COALESCE(is_active, TRUE)
           AND disabled_reason LIKE 'timezone "%" is not an IANA time zone name';
    END IF;
END;

-- After a setting changes, every robot is looked at again at once.
DROP PROCEDURE IF EXISTS wecom_settings_changed;
CREATE PROCEDURE wecom_settings_changed(IN p_name VARCHAR(64))
    MODIFIES SQL DATA
BEGIN
    IF p_name = 'default_timezone' THEN
        CALL wecom_reenable_default_zone_victims();
    END IF;
    UPDATE wecom_robot_state SET next_check_at = UTC_TIMESTAMP(6) WHERE next_check_at > UTC_TIMESTAMP(6);
END;

DROP TRIGGER IF EXISTS wecom_settings_after_insert;
CREATE TRIGGER wecom_settings_after_insert
    AFTER INSERT ON wecom_settings
    FOR EACH ROW
CALL wecom_settings_changed(NEW.name);

DROP TRIGGER IF EXISTS wecom_settings_after_update;
CREATE TRIGGER wecom_settings_after_update
    AFTER UPDATE ON wecom_settings
    FOR EACH ROW
BEGIN
    IF NOT (NEW.name <=> OLD.name AND CAST(NEW.value AS BINARY) <=> CAST(OLD.value AS BINARY)) THEN
        CALL wecom_settings_changed(NEW.name);
    END IF;
END;

CALL wecom_reenable_default_zone_victims();
