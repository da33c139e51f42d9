-- MySQL 8.0 / MariaDB 10.6+. Fee-renewal reminders (migrations/postgres/0004): templates and
-- routes as data, the daily procedure over the school's view active_enrollments_needing_renewal,
-- cancellation on renewal, the once-a-day run record and its EVENT.
-- Ran on: MariaDB 10.11 only. The procedure reads the view with PREPARE (allowed in procedures
-- on both servers; not in functions or triggers, which is why the view's columns are read
-- there and only there).
--
-- Local days without CONVERT_TZ: Cloud SQL's time zone tables may be empty, so zone offsets
-- come from wecom_timezone_offsets (UTC offset of a zone from an instant on), which `migrate`
-- fills from chrono-tz (the worker's own zone data). This file seeds the zones that keep one
-- offset (Asia/Hong_Kong and its neighbours, UTC). SET time_zone = '+08:00' (an offset, not a
-- name) needs no time zone tables either: the procedure sets it so that the view's CURDATE()
-- is the local day, and puts the session's zone back afterwards.

-- Literals in the routines below take the connection's collation when they are created: the
-- server's default for utf8mb4, as their utf8mb4 variables and parameters have (sqlx would
-- otherwise give utf8mb4_unicode_ci, and comparisons would mix collations).
SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------------------
-- Zone offsets, and the local time in a zone.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_timezone_offsets (
    name       VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    valid_from DATETIME NOT NULL COMMENT 'UTC instant this offset starts',
    utc_offset INT NOT NULL COMMENT 'seconds east of UTC',
    PRIMARY KEY (name, valid_from)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
  COMMENT = 'UTC offsets of IANA zones over time; filled by migrate from chrono-tz';

INSERT IGNORE INTO wecom_timezone_offsets (name, valid_from, utc_offset) VALUES
    ('Asia/Hong_Kong', '1979-10-21 00:00:00', 28800),
    ('Asia/Macau',     '1979-10-21 00:00:00', 28800),
    ('Asia/Shanghai',  '1991-09-15 00:00:00', 28800),
    ('Asia/Taipei',    '1979-09-30 00:00:00', 28800),
    ('Asia/Singapore', '1982-01-01 00:00:00', 28800),
    ('Asia/Tokyo',     '1951-09-08 00:00:00', 32400),
    ('UTC',            '1970-01-01 00:00:00', 0),
    ('Etc/UTC',        '1970-01-01 00:00:00', 0);

-- Seconds east of UTC of p_zone at UTC instant p_at; refuses a zone migrate has no offsets for.
DROP FUNCTION IF EXISTS wecom_utc_offset;
CREATE FUNCTION wecom_utc_offset(p_zone VARCHAR(64) CHARACTER SET utf8mb4, p_at DATETIME(6)) RETURNS INT
    NOT DETERMINISTIC READS SQL DATA
    COMMENT 'UTC offset in seconds of a zone at an instant (from wecom_timezone_offsets)'
BEGIN
    DECLARE o INT;
    SELECT utc_offset INTO o FROM wecom_timezone_offsets
    WHERE name = p_zone COLLATE utf8mb4_bin AND valid_from <= p_at
    ORDER BY valid_from DESC LIMIT 1;
    IF o IS NULL THEN
        CALL wecom_refuse(CONCAT('no UTC offsets for time zone ', COALESCE(p_zone, 'NULL'),
                                 ' in wecom_timezone_offsets: run wecom-outbox migrate (it fills them), or use a zone it has'));
    END IF;
    RETURN o;
END;

-- p_seconds as a time_zone value: 28800 -> '+08:00'.
DROP FUNCTION IF EXISTS wecom_offset_text;
CREATE FUNCTION wecom_offset_text(p_seconds INT) RETURNS VARCHAR(8)
    DETERMINISTIC NO SQL
RETURN CONCAT(IF(p_seconds < 0, '-', '+'), TIME_FORMAT(SEC_TO_TIME(ABS(p_seconds)), '%H:%i'));

-- The UTC instant of local time p_local in p_zone.
DROP FUNCTION IF EXISTS wecom_local_to_utc;
CREATE FUNCTION wecom_local_to_utc(p_zone VARCHAR(64) CHARACTER SET utf8mb4, p_local DATETIME(6)) RETURNS DATETIME(6)
    NOT DETERMINISTIC READS SQL DATA
RETURN p_local - INTERVAL wecom_utc_offset(p_zone, p_local - INTERVAL wecom_utc_offset(p_zone, p_local) SECOND) SECOND;

-- ---------------------------------------------------------------------------------------
-- Routes and templates (rows a DBA edits).
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_reminder_routes (
    route_value VARCHAR(255) PRIMARY KEY,
    destination VARCHAR(100) NOT NULL,
    note        TEXT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
  COMMENT = 'A value of reminder_route_column (zh, campus_mo) -> a destination';

CREATE TABLE IF NOT EXISTS wecom_templates (
    name        VARCHAR(100) PRIMARY KEY,
    content     TEXT NULL,
    title       TEXT NULL,
    description TEXT NULL,
    url         TEXT NULL,
    picurl      TEXT NULL,
    note        TEXT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
  COMMENT = '{{column}} placeholders: a column of the row being rendered';

-- Line breaks are written as CHAR(10), so the text is the same under NO_BACKSLASH_ESCAPES.
INSERT IGNORE INTO wecom_templates (name, content, title, description, note) VALUES
('fee_reminder_normal',
 CONCAT('💰 Fee Renewal Reminder / 学费续费提醒', CHAR(10), CHAR(10),
        'Student / 学生: {{student_name}}', CHAR(10),
        'Tutor / 导师: {{tutor_name}}', CHAR(10),
        'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}', CHAR(10), CHAR(10),
        '⏰ Expires in / 到期: {{days_until_renewal}} days / 天', CHAR(10),
        '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}', CHAR(10), CHAR(10),
        '🟡 Please arrange renewal soon / 请尽快安排续费', CHAR(10), CHAR(10),
        'Contact us to renew. Thank you! / 请联系我们续费，谢谢！'),
 '💰 Fee Renewal Reminder / 学费续费提醒 - {{student_name}}',
 CONCAT('Student / 学生: {{student_name}}', CHAR(10), 'Tutor / 导师: {{tutor_name}}', CHAR(10),
        'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}', CHAR(10), CHAR(10),
        '⏰ Expires in / 到期: {{days_until_renewal}} days / 天', CHAR(10),
        '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}', CHAR(10), CHAR(10),
        '🟡 Please arrange renewal / 请安排续费'),
 'Fee reminder, 4-7 days left. Set url (e.g. a payment link with {{student_id}}) to send news.'),
('fee_reminder_urgent',
 CONCAT('🔴 URGENT FEE RENEWAL / 紧急续费提醒', CHAR(10), CHAR(10),
        'Student / 学生: {{student_name}}', CHAR(10),
        'Tutor / 导师: {{tutor_name}}', CHAR(10),
        'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}', CHAR(10), CHAR(10),
        '⏰ Expires in / 到期: {{days_until_renewal}} days / 天', CHAR(10),
        '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}', CHAR(10), CHAR(10),
        '🔴 URGENT - Please renew immediately to avoid class interruption! / 请立即续费，以免影响上课！', CHAR(10), CHAR(10),
        'Contact us to renew. Thank you! / 请联系我们续费，谢谢！'),
 '🔴 URGENT Fee Renewal / 紧急续费提醒 - {{student_name}}',
 CONCAT('Student / 学生: {{student_name}}', CHAR(10), 'Tutor / 导师: {{tutor_name}}', CHAR(10),
        'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}', CHAR(10), CHAR(10),
        '⏰ Expires in / 到期: {{days_until_renewal}} days / 天', CHAR(10),
        '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}', CHAR(10), CHAR(10),
        '🔴 URGENT - Please renew soon! / 请尽快续费！'),
 'Fee reminder, 0-3 days left (reminder_urgent_days).'),
('payment_received',
 CONCAT('✅ Payment received / 已收到学费', CHAR(10), CHAR(10),
        'Student / 学生: {{student_name}}', CHAR(10), CHAR(10), 'Thank you! / 谢谢！'),
 NULL, NULL,
 'Phase-3 template, for a trigger on payments.');

-- ---------------------------------------------------------------------------------------
-- Rendering.
-- ---------------------------------------------------------------------------------------

-- p cut to at most p_max_bytes UTF-8 bytes on a character boundary, ending in '…' when cut.
DROP FUNCTION IF EXISTS wecom_truncate_utf8;
CREATE FUNCTION wecom_truncate_utf8(p LONGTEXT CHARACTER SET utf8mb4, p_max_bytes INT)
    RETURNS LONGTEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE keep INT;
    IF p IS NULL OR LENGTH(p) <= p_max_bytes THEN
        RETURN p;
    END IF;
    IF p_max_bytes < 3 THEN
        RETURN '';
    END IF;
    SET keep = p_max_bytes - 3;                   -- room for the 3-byte '…'; at most that many characters
    WHILE keep > 0 AND LENGTH(LEFT(p, keep)) > p_max_bytes - 3 DO
        SET keep = keep - 1;
    END WHILE;
    RETURN CONCAT(LEFT(p, keep), '…');
END;

-- A column's value in a rendered row: its text, '' for NULL.
DROP FUNCTION IF EXISTS wecom_row_value;
CREATE FUNCTION wecom_row_value(p_row LONGTEXT CHARACTER SET utf8mb4, p_col VARCHAR(255) CHARACTER SET utf8mb4)
    RETURNS LONGTEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE v LONGTEXT CHARACTER SET utf8mb4 DEFAULT JSON_EXTRACT(p_row, CONCAT('$."', p_col, '"'));
    IF v IS NULL OR JSON_TYPE(v) = 'NULL' THEN
        RETURN NULL;
    END IF;
    RETURN JSON_UNQUOTE(v);
END;

-- p_template with every {{column}} replaced by p_row's value (each value at most 200 bytes, so
-- one very long name cannot push the rest of the message out). One pass: a value containing
-- {{...}} is not expanded again. A placeholder naming no column is an error (a typo must not
-- reach parents).
DROP FUNCTION IF EXISTS wecom_render_template;
CREATE FUNCTION wecom_render_template(p_template TEXT CHARACTER SET utf8mb4, p_row LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE result TEXT CHARACTER SET utf8mb4 DEFAULT '';
    DECLARE rest   TEXT CHARACTER SET utf8mb4 DEFAULT p_template;
    DECLARE open_at  INT;
    DECLARE close_at INT;
    DECLARE col    VARCHAR(255) CHARACTER SET utf8mb4;
    IF p_template IS NULL THEN
        RETURN NULL;
    END IF;
    loop_: LOOP
        SET open_at = LOCATE('{{', rest);
        IF open_at = 0 THEN LEAVE loop_; END IF;
        SET close_at = LOCATE('}}', rest, open_at + 2);
        IF close_at = 0 THEN LEAVE loop_; END IF;
        SET result = CONCAT(result, LEFT(rest, open_at - 1));
        SET col = TRIM(SUBSTRING(rest, open_at + 2, close_at - open_at - 2));
        IF NOT JSON_CONTAINS_PATH(p_row, 'one', CONCAT('$."', col, '"')) THEN
            CALL wecom_refuse(CONCAT('template placeholder {{', col, '}} names no column; available: ',
                                     REPLACE(REPLACE(REPLACE(JSON_KEYS(p_row), '"', ''), '[', ''), ']', '')));
        END IF;
        SET result = CONCAT(result, COALESCE(wecom_truncate_utf8(wecom_row_value(p_row, col), 200), ''));
        SET rest = SUBSTRING(rest, close_at + 2);
    END LOOP;
    RETURN CONCAT(result, rest);
END;

-- The WeCom body for template p_name rendered from p_row, within WeCom's byte limits: news
-- (title <= 128, description <= 512 bytes) when the template's url renders non-empty, else text
-- (content <= 2048 bytes). NULL when the template renders nothing to send.
DROP FUNCTION IF EXISTS wecom_render_message;
CREATE FUNCTION wecom_render_message(p_name VARCHAR(100), p_row LONGTEXT CHARACTER SET utf8mb4)
    RETURNS LONGTEXT CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
BEGIN
    DECLARE t_content, t_title, t_description, t_url, t_picurl TEXT CHARACTER SET utf8mb4;
    DECLARE found_it BOOLEAN DEFAULT FALSE;
    DECLARE url TEXT CHARACTER SET utf8mb4;
    SELECT content, title, description, url, picurl, TRUE
      INTO t_content, t_title, t_description, t_url, t_picurl, found_it
      FROM wecom_templates WHERE name = p_name;
    IF NOT found_it THEN
        CALL wecom_refuse(CONCAT('no template ', p_name, ' in wecom_templates'));
    END IF;
    SET url = NULLIF(TRIM(wecom_render_template(t_url, p_row)), '');
    IF url IS NOT NULL THEN
        RETURN wecom_payload_from_columns(NULL,
            wecom_truncate_utf8(COALESCE(wecom_render_template(COALESCE(t_title, t_content), p_row), ''), 128),
            wecom_truncate_utf8(wecom_render_template(t_description, p_row), 512),
            url,
            NULLIF(TRIM(wecom_render_template(t_picurl, p_row)), ''));
    END IF;
    RETURN wecom_payload_from_columns(
        NULLIF(wecom_truncate_utf8(wecom_render_template(t_content, p_row), 2048), ''),
        NULL, NULL, NULL, NULL);
END;

-- Why a message to p_destination could not be enqueued, or NULL (the INSERT check's rules,
-- asked first so a bad row is skipped and reported instead of failing the batch).
DROP FUNCTION IF EXISTS wecom_enqueue_problem;
CREATE FUNCTION wecom_enqueue_problem(p_destination VARCHAR(255) CHARACTER SET utf8mb4,
                                      p_payload LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
RETURN CASE
    WHEN p_destination IS NULL THEN 'no destination'
    WHEN NOT EXISTS (SELECT 1 FROM wecom_webhooks WHERE destination = p_destination)
        THEN CONCAT('destination ', p_destination, ' has no robot in wecom_webhooks (add one: README, "Daily fee reminders")')
    ELSE wecom_payload_problem(p_payload)
END;

-- Where a reminder for view row p_row goes, by the routing settings; NULL = do not send.
DROP FUNCTION IF EXISTS wecom_reminder_destination;
CREATE FUNCTION wecom_reminder_destination(p_row LONGTEXT CHARACTER SET utf8mb4)
    RETURNS VARCHAR(255) CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
BEGIN
    DECLARE default_dest TEXT CHARACTER SET utf8mb4 DEFAULT wecom_setting('reminder_destination', 'parent_group');
    DECLARE route_col    TEXT CHARACTER SET utf8mb4 DEFAULT wecom_setting('reminder_route_column', NULL);
    DECLARE fallback     TEXT CHARACTER SET utf8mb4 DEFAULT wecom_setting('reminder_route_fallback', default_dest);
    DECLARE val          TEXT CHARACTER SET utf8mb4;
    DECLARE dest         TEXT CHARACTER SET utf8mb4;
    IF route_col IS NULL THEN
        RETURN default_dest;
    END IF;
    IF NOT JSON_CONTAINS_PATH(p_row, 'one', CONCAT('$."', route_col, '"')) THEN
        CALL wecom_refuse(CONCAT('reminder_route_column is ', route_col,
                                 ', which is not a column of active_enrollments_needing_renewal'));
    END IF;
    SET val = wecom_row_value(p_row, route_col);
    SELECT r.destination INTO dest FROM wecom_reminder_routes r WHERE r.route_value = val;
    IF dest IS NULL AND EXISTS (SELECT 1 FROM wecom_webhooks WHERE destination = val) THEN
        SET dest = val;                           -- the value names a destination (per-family groups)
    END IF;
    IF dest IS NULL AND fallback <> 'skip' THEN
        SET dest = fallback;
    END IF;
    RETURN dest;
END;

-- ---------------------------------------------------------------------------------------
-- The daily reminders.
-- ---------------------------------------------------------------------------------------

-- The view's rows that need a reminder on day p_today (shifted by p_shift days from the local
-- today), as JSON objects of all their columns, into the temporary table wecom_reminder_rows.
DROP PROCEDURE IF EXISTS wecom_read_renewal_view;
CREATE PROCEDURE wecom_read_renewal_view(IN p_shift INT)
    READS SQL DATA
BEGIN
    DECLARE cols TEXT;
    IF NOT EXISTS (SELECT 1 FROM information_schema.tables
                    WHERE table_schema = DATABASE() AND table_name = 'active_enrollments_needing_renewal') THEN
        CALL wecom_refuse('view active_enrollments_needing_renewal does not exist: create it over your enrollments (see sql/example_school.sql)');
    END IF;
    SELECT GROUP_CONCAT(CONCAT('''', REPLACE(column_name, '''', ''''''), ''', v.`', REPLACE(column_name, '`', '``'), '`')
                        ORDER BY ordinal_position SEPARATOR ', ')
      INTO cols
      FROM information_schema.columns
     WHERE table_schema = DATABASE() AND table_name = 'active_enrollments_needing_renewal';
    DROP TEMPORARY TABLE IF EXISTS wecom_reminder_rows;
    CREATE TEMPORARY TABLE wecom_reminder_rows (
        n INT AUTO_INCREMENT PRIMARY KEY,
        r LONGTEXT CHARACTER SET utf8mb4 NOT NULL
    ) DEFAULT CHARSET = utf8mb4;
    SET @wecom_view_sql = CONCAT(
        'INSERT INTO wecom_reminder_rows (r) SELECT JSON_OBJECT(', cols, ') ',
        'FROM active_enrollments_needing_renewal v ',
        'WHERE CONVERT(v.renewal_action_status USING utf8mb4) COLLATE utf8mb4_bin = CONVERT(? USING utf8mb4) COLLATE utf8mb4_bin ',
        'AND v.days_until_renewal - ? BETWEEN ? AND ?');
    SET @wecom_status = wecom_setting('reminder_status', '🔴 Not Yet Renewed'),
        @wecom_shift = p_shift,
        @wecom_min = CAST(wecom_setting('reminder_min_days', '0') AS SIGNED),
        @wecom_max = CAST(wecom_setting('reminder_max_days', '7') AS SIGNED);
    PREPARE wecom_view_stmt FROM @wecom_view_sql;
    EXECUTE wecom_view_stmt USING @wecom_status, @wecom_shift, @wecom_min, @wecom_max;
    DEALLOCATE PREPARE wecom_view_stmt;
END;

-- Enqueue the day's fee reminders (p_today NULL: today in default_timezone). Returns one row:
-- enqueued (how many), skipped (how many could not be sent) and problems (why, one per line).
-- A second call the same local day enqueues nothing (dedupe_key fee_reminder:<enrollment>:<day>).
DROP PROCEDURE IF EXISTS wecom_enqueue_fee_reminders;
CREATE PROCEDURE wecom_enqueue_fee_reminders(IN p_today DATE)
    MODIFIES SQL DATA
    COMMENT 'CALL wecom_enqueue_fee_reminders(NULL): enqueue today''s fee reminders; one row with the count'
BEGIN
    DECLARE n INT DEFAULT 0;
    DECLARE skipped INT DEFAULT 0;
    DECLARE problems TEXT CHARACTER SET utf8mb4 DEFAULT NULL;
    CALL wecom_enqueue_fee_reminders_into(p_today, n, skipped, problems);
    SELECT n AS enqueued, skipped, problems;
END;

-- The work of wecom_enqueue_fee_reminders, with its results as OUT parameters (for callers
-- that cannot take a result set, such as the daily run).
DROP PROCEDURE IF EXISTS wecom_enqueue_fee_reminders_into;
CREATE PROCEDURE wecom_enqueue_fee_reminders_into(IN p_today DATE, OUT p_enqueued INT, OUT p_skipped INT,
                                                  OUT p_problems TEXT CHARACTER SET utf8mb4)
    MODIFIES SQL DATA
BEGIN
    DECLARE zone        VARCHAR(64) CHARACTER SET utf8mb4 DEFAULT wecom_setting('default_timezone', 'Asia/Hong_Kong');
    DECLARE old_zone    VARCHAR(64) DEFAULT @@session.time_zone;
    DECLARE run_time    TIME DEFAULT IF(wecom_setting('reminder_run_time', '09:00') REGEXP '^[0-9]',
                                        CAST(wecom_setting('reminder_run_time', '09:00') AS TIME), '09:00');
    DECLARE urgent_days INT DEFAULT CAST(wecom_setting('reminder_urgent_days', '3') AS SIGNED);
    DECLARE cadence     TEXT DEFAULT REPLACE(COALESCE(wecom_setting('reminder_cadence', ''), ''), ' ', '');
    DECLARE local_today DATE;
    DECLARE d           DATE;
    DECLARE shift       INT;
    DECLARE done        BOOLEAN DEFAULT FALSE;
    DECLARE r           LONGTEXT CHARACTER SET utf8mb4;
    DECLARE k           TEXT CHARACTER SET utf8mb4;
    DECLARE days        INT;
    DECLARE urgent      BOOLEAN;
    DECLARE payload     LONGTEXT CHARACTER SET utf8mb4;
    DECLARE dest        VARCHAR(255) CHARACTER SET utf8mb4;
    DECLARE problem     TEXT CHARACTER SET utf8mb4;
    DECLARE rows_cursor CURSOR FOR SELECT t.r FROM wecom_reminder_rows t ORDER BY t.n;
    DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = TRUE;
    -- Whatever fails, the session gets its own time zone back.
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        SET time_zone = old_zone;
        DROP TEMPORARY TABLE IF EXISTS wecom_reminder_rows;
        RESIGNAL;
    END;

    SET p_enqueued = 0, p_skipped = 0, p_problems = NULL;
    -- The local day, and the view's CURDATE() in it.
    SET local_today = DATE(UTC_TIMESTAMP(6) + INTERVAL wecom_utc_offset(zone, UTC_TIMESTAMP(6)) SECOND);
    SET time_zone = wecom_offset_text(wecom_utc_offset(zone, UTC_TIMESTAMP(6)));
    SET d = COALESCE(p_today, local_today);
    SET shift = DATEDIFF(d, local_today);
    CALL wecom_read_renewal_view(shift);
    SET time_zone = old_zone;

    -- Each row: the reminder it calls for, or why it cannot go.
    OPEN rows_cursor;
    each_row: LOOP
        FETCH rows_cursor INTO r;
        IF done THEN LEAVE each_row; END IF;
        SET k = COALESCE(wecom_row_value(r, 'enrollment_id'), wecom_row_value(r, 'id'));
        IF k IS NULL THEN
            CALL wecom_refuse('active_enrollments_needing_renewal needs an enrollment_id (or id) column with a value');
        END IF;
        SET days = FLOOR(CAST(wecom_row_value(r, 'days_until_renewal') AS DECIMAL(20, 6))) - shift;
        IF cadence = '' OR FIND_IN_SET(CAST(days AS CHAR), cadence) > 0 THEN
            SET r = JSON_SET(JSON_INSERT(r, '$.enrollment_id', k, '$.id', k),
                             '$.days_until_renewal', days, '$.reminder_date', CAST(d AS CHAR));
            SET urgent = days <= urgent_days;
            SET payload = wecom_render_message(IF(urgent, 'fee_reminder_urgent', 'fee_reminder_normal'), r);
            SET dest = wecom_reminder_destination(r);
            SET problem = IF(dest IS NULL,
                             CONCAT('no route for ', wecom_setting('reminder_route_column', ''), ' = ',
                                    COALESCE(wecom_row_value(r, wecom_setting('reminder_route_column', '')), 'NULL'),
                                    ' and reminder_route_fallback is skip'),
                             wecom_enqueue_problem(dest, payload));
            IF problem IS NULL THEN
                INSERT INTO wecom_outbox (webhook_name, payload, message_type, enrollment_id, dedupe_key,
                                          priority, not_before, expires_at)
                VALUES (dest, payload, 'fee_reminder',
                        IF(k REGEXP '^[0-9]{1,18}$', CAST(k AS SIGNED), NULL),
                        CONCAT('fee_reminder:', k, ':', d),
                        IF(urgent, 1, 0),
                        IF(d > local_today, wecom_local_to_utc(zone, TIMESTAMP(d, run_time)), UTC_TIMESTAMP(6)),
                        wecom_local_to_utc(zone, TIMESTAMP(d + INTERVAL 1 DAY)))
                ON DUPLICATE KEY UPDATE id = id;
                -- Stored, or a repeated dedupe_key? (ROW_COUNT() cannot say: with the client flag
                -- CLIENT_FOUND_ROWS, which sqlx sets, an unchanged duplicate counts 1.)
                IF EXISTS (SELECT 1 FROM wecom_outbox WHERE id = @wecom_last_outbox_id) THEN
                    SET p_enqueued = p_enqueued + 1;
                END IF;
            ELSE
                SET p_skipped = p_skipped + 1;
                SET p_problems = CONCAT_WS(CHAR(10), p_problems,
                    CONCAT('enrollment ', k, ' (', COALESCE(wecom_row_value(r, 'student_name'), ''), '): ', problem));
            END IF;
        END IF;
    END LOOP;
    CLOSE rows_cursor;
    DROP TEMPORARY TABLE IF EXISTS wecom_reminder_rows;
END;

-- ---------------------------------------------------------------------------------------
-- Cancellation on renewal: a school calls this from its own triggers, e.g.
--   CREATE TRIGGER enrollments_renewed AFTER INSERT ON enrollments FOR EACH ROW
--     CALL wecom_cancel_reminders(NEW.renewed_from_id, 'renewal enrollment created');
-- It cancels the enrollment's pending fee reminders (parents must not be chased after paying)
-- and records the renewal; @wecom_cancelled is how many were cancelled. Rows being sent at this
-- instant cannot be recalled. (No result set: triggers cannot CALL procedures that return one.)
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_renewals (
    enrollment_id BIGINT NOT NULL,
    renewed_at    DATETIME(6) NOT NULL COMMENT 'UTC',
    reason        TEXT NULL,
    INDEX wecom_renewals_enrollment_idx (enrollment_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
  COMMENT = 'Renewals seen by wecom_cancel_reminders (a school may INSERT its own history too)';

DROP PROCEDURE IF EXISTS wecom_cancel_reminders;
CREATE PROCEDURE wecom_cancel_reminders(IN p_enrollment_id BIGINT, IN p_reason TEXT CHARACTER SET utf8mb4)
    MODIFIES SQL DATA
    COMMENT 'Cancels the pending fee reminders of a renewed enrollment; count in @wecom_cancelled'
BEGIN
    DECLARE reason TEXT CHARACTER SET utf8mb4 DEFAULT COALESCE(p_reason, 'enrollment renewed');
    SET @wecom_cancelled = 0;
    IF p_enrollment_id IS NOT NULL THEN
        UPDATE wecom_outbox
           SET status = 'cancelled', last_error = CONCAT('cancelled: ', reason)
         WHERE enrollment_id = p_enrollment_id AND status = 'pending' AND message_type = 'fee_reminder';
        SET @wecom_cancelled = ROW_COUNT();
        INSERT INTO wecom_renewals (enrollment_id, renewed_at, reason)
        VALUES (p_enrollment_id, UTC_TIMESTAMP(6), reason);
    END IF;
END;

-- ---------------------------------------------------------------------------------------
-- The once-a-day run: one record per job and local day, shared by the workers and the EVENT.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_daily_runs (
    job         VARCHAR(64) NOT NULL,
    local_date  DATE NOT NULL,
    status      VARCHAR(16) NOT NULL,
    runner      VARCHAR(255) NULL,
    started_at  DATETIME(6) NOT NULL COMMENT 'UTC',
    finished_at DATETIME(6) NULL,
    enqueued    INT NULL,
    error       TEXT NULL,
    attempts    INT NOT NULL DEFAULT 1,
    PRIMARY KEY (job, local_date),
    CONSTRAINT wecom_daily_runs_status_known CHECK (status IN ('done', 'failed'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The local day whose fee-reminder run is due now, or NULL: the run time has passed in
-- default_timezone, the view exists, and the day has no done run (nor a failure in the last
-- 5 minutes). The same rule as src/reminders/daily.rs.
DROP FUNCTION IF EXISTS wecom_daily_reminders_due;
CREATE FUNCTION wecom_daily_reminders_due() RETURNS DATE
    NOT DETERMINISTIC READS SQL DATA
BEGIN
    DECLARE zone     VARCHAR(64) CHARACTER SET utf8mb4 DEFAULT wecom_setting('default_timezone', 'Asia/Hong_Kong');
    DECLARE at_text  TEXT DEFAULT wecom_setting('reminder_run_time', '09:00');
    DECLARE local_ts DATETIME(6);
    IF LOWER(at_text) = 'off' OR NOT EXISTS (
           SELECT 1 FROM information_schema.tables
            WHERE table_schema = DATABASE() AND table_name = 'active_enrollments_needing_renewal') THEN
        RETURN NULL;
    END IF;
    SET local_ts = UTC_TIMESTAMP(6) + INTERVAL wecom_utc_offset(zone, UTC_TIMESTAMP(6)) SECOND;
    IF TIME(local_ts) < CAST(at_text AS TIME) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM wecom_daily_runs
                WHERE job = 'fee_reminders' AND local_date = DATE(local_ts)
                  AND (status = 'done' OR finished_at > UTC_TIMESTAMP(6) - INTERVAL 5 MINUTE)) THEN
        RETURN NULL;
    END IF;
    RETURN DATE(local_ts);
END;

-- Run today's fee reminders if due and nobody else is: the record and the reminders commit
-- together; a failure is recorded and retried 5 minutes later. @wecom_daily_enqueued is how
-- many were enqueued (NULL: nothing to do).
DROP PROCEDURE IF EXISTS wecom_run_daily_reminders;
CREATE PROCEDURE wecom_run_daily_reminders(IN p_runner VARCHAR(255))
    MODIFIES SQL DATA
    COMMENT 'The once-a-day fee reminder run (the EVENT and the workers share its record)'
proc: BEGIN
    DECLARE d DATE;
    DECLARE n, skipped INT;
    DECLARE problems TEXT CHARACTER SET utf8mb4;
    DECLARE err TEXT CHARACTER SET utf8mb4;
    SET @wecom_daily_enqueued = NULL;
    IF wecom_daily_reminders_due() IS NULL OR GET_LOCK(CONCAT(DATABASE(), ':wecom_daily_runs'), 0) <> 1 THEN
        LEAVE proc;
    END IF;
    SET d = wecom_daily_reminders_due();          -- again, now that no one else is running it
    IF d IS NOT NULL THEN
        BEGIN
            DECLARE EXIT HANDLER FOR SQLEXCEPTION
            BEGIN
                GET DIAGNOSTICS CONDITION 1 err = MESSAGE_TEXT;
                ROLLBACK;
                INSERT INTO wecom_daily_runs (job, local_date, status, runner, started_at, finished_at, error)
                VALUES ('fee_reminders', d, 'failed', p_runner, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), err)
                ON DUPLICATE KEY UPDATE status = 'failed', runner = VALUES(runner),
                    finished_at = VALUES(finished_at), error = VALUES(error), attempts = attempts + 1;
                COMMIT;
            END;
            START TRANSACTION;
            CALL wecom_enqueue_fee_reminders_into(d, n, skipped, problems);
            INSERT INTO wecom_daily_runs (job, local_date, status, runner, started_at, finished_at, enqueued, error)
            VALUES ('fee_reminders', d, 'done', p_runner, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), n, problems)
            ON DUPLICATE KEY UPDATE status = 'done', runner = VALUES(runner), started_at = VALUES(started_at),
                finished_at = VALUES(finished_at), enqueued = VALUES(enqueued), error = VALUES(error),
                attempts = attempts + 1;
            COMMIT;
            SET @wecom_daily_enqueued = n;
        END;
    END IF;
    DO RELEASE_LOCK(CONCAT(DATABASE(), ':wecom_daily_runs'));
END proc;

-- The daily run as an EVENT, checked every minute (it does the work once per local day).
-- It fires only where the event scheduler is on (Cloud SQL: the event_scheduler flag, off by
-- default); otherwise the workers' own once-a-day scheduler runs the same procedure's rule.
-- Both may be on: they share wecom_daily_runs and a lock, so a day runs once. Creating it needs
-- the EVENT privilege, which Cloud SQL's users have.
CREATE EVENT IF NOT EXISTS wecom_daily_fee_reminders
    ON SCHEDULE EVERY 1 MINUTE
    ON COMPLETION PRESERVE
    ENABLE
    COMMENT 'wecom-outbox: the once-a-day fee reminder run (needs event_scheduler=ON)'
    DO CALL wecom_run_daily_reminders('event');
