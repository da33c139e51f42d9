-- MySQL 8.0 / MariaDB 10.6+. The outbox and the state the worker keeps; the twin of
-- migrations/postgres/0002, 0003 (columns), 0005 (seq, lease_token, log columns, replica notes).
-- Ran on: MariaDB 10.11 only. Written to MySQL 8.0's documented syntax too (generated STORED
-- columns, CHECK constraints (enforced from 8.0.16), expression defaults are not used).
--
-- Every statement is safe on a database whose Phase-1 tables were adopted by 0001: columns are
-- added, never redefined, no row is lost, and the school's tables keep their charset (our own
-- text columns on them are utf8mb4 so that 陳小明 and 🔴 survive).
-- Times are DATETIME(6) in UTC: the worker and these triggers use UTC_TIMESTAMP(6), never the
-- session's time zone, and never CONVERT_TZ (Cloud SQL's time zone tables may be empty).

-- Literals in the routines below take the connection's collation when they are created: the
-- server's default for utf8mb4, as their utf8mb4 variables and parameters have (sqlx would
-- otherwise give utf8mb4_unicode_ci, and comparisons would mix collations).
SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------------------
-- Robots: the Phase-1 table plus scheduling columns.
-- ---------------------------------------------------------------------------------------
CALL wecom_add_column('wecom_webhooks', 'pool_name',         'VARCHAR(100) CHARACTER SET utf8mb4 NULL COMMENT ''Robots with the same pool serve one destination''');
CALL wecom_add_column('wecom_webhooks', 'rate_limit',        'INT NOT NULL DEFAULT 20');
CALL wecom_add_column('wecom_webhooks', 'rate_window',       'INT NOT NULL DEFAULT 60 COMMENT ''seconds''');
CALL wecom_add_column('wecom_webhooks', 'send_window_start', 'TIME NULL');
CALL wecom_add_column('wecom_webhooks', 'send_window_end',   'TIME NULL');
CALL wecom_add_column('wecom_webhooks', 'send_days',         'JSON NULL COMMENT ''ISO weekdays, e.g. [1,2,3,4,5]; NULL = every day''');
CALL wecom_add_column('wecom_webhooks', 'timezone',          'VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL COMMENT ''IANA zone; NULL = default_timezone''');
CALL wecom_add_column('wecom_webhooks', 'disabled_reason',   'TEXT CHARACTER SET utf8mb4 NULL');
CALL wecom_add_column('wecom_webhooks', 'is_external',       'BOOLEAN NOT NULL DEFAULT FALSE COMMENT ''Audience reads in WeChat: markdown is refused''');
-- What a robot serves: coalesce(pool_name, webhook_name). Stored and indexed, so the INSERT
-- check and the claim find a destination's robots by index.
CALL wecom_add_column('wecom_webhooks', 'destination',
    'VARCHAR(100) CHARACTER SET utf8mb4 GENERATED ALWAYS AS (COALESCE(pool_name, webhook_name)) STORED');
CALL wecom_add_index('wecom_webhooks', 'wecom_webhooks_destination_idx', FALSE, '(destination)');

CALL wecom_add_constraint('wecom_webhooks', 'wecom_webhooks_rate_limit_positive', 'CHECK (rate_limit > 0)');
CALL wecom_add_constraint('wecom_webhooks', 'wecom_webhooks_rate_window_positive', 'CHECK (rate_window > 0)');
CALL wecom_add_constraint('wecom_webhooks', 'wecom_webhooks_window_both_or_neither',
    'CHECK ((send_window_start IS NULL) = (send_window_end IS NULL))');

-- ---------------------------------------------------------------------------------------
-- IANA zone names the worker can read. `migrate` fills it from chrono-tz (the same list the
-- worker uses); this migration seeds the zones the defaults and the guide name. The server's
-- own time zone tables are not used: on Cloud SQL they may be empty.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_timezones (
    name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
  COMMENT = 'IANA zone names (case-sensitive), filled by migrate from chrono-tz';

INSERT IGNORE INTO wecom_timezones (name) VALUES
    ('Asia/Hong_Kong'), ('Asia/Macau'), ('Asia/Shanghai'), ('Asia/Taipei'), ('Asia/Singapore'),
    ('Asia/Tokyo'), ('Europe/London'), ('America/New_York'), ('UTC'), ('Etc/UTC');

-- ---------------------------------------------------------------------------------------
-- Deployment settings a DBA edits with UPDATE.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_settings (
    name        VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
    value       TEXT NOT NULL,
    description TEXT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

INSERT IGNORE INTO wecom_settings (name, value, description) VALUES
    ('default_timezone', 'Asia/Hong_Kong',
     'IANA zone for send windows of robots whose timezone is null');

-- ---------------------------------------------------------------------------------------
-- The outbox: one row per message. The BEFORE INSERT trigger (0003) sets id, the worker-owned
-- columns and the times (NOT NULL is checked after BEFORE triggers, on MySQL 5.7+ and MariaDB).
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_outbox (
    id            CHAR(36) CHARACTER SET ascii NOT NULL DEFAULT '' PRIMARY KEY,
    seq           BIGINT NOT NULL AUTO_INCREMENT UNIQUE
                  COMMENT 'Insertion order: within a priority, rows go out in the order they were written',
    webhook_name  VARCHAR(100) NOT NULL,
    payload       JSON NULL,
    content       TEXT NULL COMMENT 'When payload is null: a text message with this content',
    title         TEXT NULL COMMENT 'When payload and content are null: a one-article news message',
    description   TEXT NULL,
    url           TEXT NULL,
    picurl        TEXT NULL,
    message_type  VARCHAR(100) NULL,
    enrollment_id BIGINT NULL,
    dedupe_key    VARCHAR(255) NULL UNIQUE,
    priority      SMALLINT NOT NULL DEFAULT 0 COMMENT 'Higher goes first within a destination; then seq',
    not_before    DATETIME(6) NOT NULL COMMENT 'UTC; the INSERT trigger sets it to now when omitted',
    expires_at    DATETIME(6) NULL,
    max_attempts  INT NOT NULL DEFAULT 5,
    status        VARCHAR(16) NOT NULL DEFAULT 'pending',
    attempts      INT NOT NULL DEFAULT 0,
    last_errcode  INT NULL,
    last_error    TEXT NULL,
    robot_name    VARCHAR(100) NULL,
    locked_by     VARCHAR(255) NULL,
    locked_until  DATETIME(6) NULL,
    lease_token   CHAR(36) CHARACTER SET ascii NULL
                  COMMENT 'The claim that holds this row while it is sending; only that claim may finish it',
    created_at    DATETIME(6) NOT NULL COMMENT 'UTC; set by the INSERT trigger',
    sent_at       DATETIME(6) NULL,
    CONSTRAINT wecom_outbox_max_attempts_positive CHECK (max_attempts > 0),
    CONSTRAINT wecom_outbox_status_known
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled', 'expired')),
    -- The claim: pending rows of one destination, best first (MySQL has no partial indexes:
    -- status leads, so sent history is skipped by the index).
    INDEX wecom_outbox_claim_idx (status, webhook_name, priority DESC, seq),
    INDEX wecom_outbox_lease_idx (status, locked_until),
    INDEX wecom_outbox_not_before_idx (status, not_before),
    INDEX wecom_outbox_expires_idx (status, expires_at),
    INDEX wecom_outbox_enrollment_idx (enrollment_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- ---------------------------------------------------------------------------------------
-- The log: Phase-1 columns plus the outcome's details. One row per sent/failed outbox row.
-- ---------------------------------------------------------------------------------------
CALL wecom_add_column('wecom_message_log', 'outbox_id',  'CHAR(36) CHARACTER SET ascii NULL');
CALL wecom_add_column('wecom_message_log', 'robot_name', 'VARCHAR(100) CHARACTER SET utf8mb4 NULL');
CALL wecom_add_column('wecom_message_log', 'errcode',    'INT NULL');
CALL wecom_add_column('wecom_message_log', 'attempts',   'INT NULL');
CALL wecom_add_index('wecom_message_log', 'wecom_message_log_outbox_id_key', TRUE, '(outbox_id)');
CALL wecom_add_index('wecom_message_log', 'wecom_message_log_dest_time_idx', FALSE, '(webhook_name, send_timestamp)');

-- ---------------------------------------------------------------------------------------
-- Per-robot worker state. The rate limit lives here, so every replica sees the same budget.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_robot_state (
    robot_id          INT PRIMARY KEY,
    next_check_at     DATETIME(6) NOT NULL DEFAULT '1970-01-01 00:00:00',
    paused_until      DATETIME(6) NULL,
    consecutive_45009 INT NOT NULL DEFAULT 0,
    last_errcode      INT NULL,
    last_error        TEXT NULL,
    last_error_at     DATETIME(6) NULL,
    INDEX wecom_robot_state_next_check_idx (next_check_at),
    CONSTRAINT wecom_robot_state_robot_fk FOREIGN KEY (robot_id)
        REFERENCES wecom_webhooks (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per send reserved against a robot's limit; `at` moves to when WeCom answered.
CREATE TABLE IF NOT EXISTS wecom_rate_slots (
    id       BIGINT AUTO_INCREMENT PRIMARY KEY,
    robot_id INT NOT NULL,
    at       DATETIME(6) NOT NULL,
    INDEX wecom_rate_slots_robot_at_idx (robot_id, at),
    CONSTRAINT wecom_rate_slots_robot_fk FOREIGN KEY (robot_id)
        REFERENCES wecom_webhooks (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

INSERT IGNORE INTO wecom_robot_state (robot_id, next_check_at)
SELECT id, UTC_TIMESTAMP(6) FROM wecom_webhooks;

-- What one replica will not do, and why (its own configuration never changes a robot for the
-- others, but `status` should say it).
CREATE TABLE IF NOT EXISTS wecom_replica_notes (
    worker_id VARCHAR(255) NOT NULL,
    robot_id  INT NOT NULL,
    note      TEXT NOT NULL,
    noted_at  DATETIME(6) NOT NULL COMMENT 'UTC',
    PRIMARY KEY (worker_id, robot_id),
    CONSTRAINT wecom_replica_notes_robot_fk FOREIGN KEY (robot_id)
        REFERENCES wecom_webhooks (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
  COMMENT = 'Robots a replica skips because of its own configuration, with why; refreshed while it runs';

-- ---------------------------------------------------------------------------------------
-- What the school's log can take, as `migrate` found it (CALL wecom_refresh_log_columns() on
-- every migrate). The INSERT check refuses a row whose log entry would not fit, so the failure
-- happens to the writer, at once, not to a parent's message after WeCom accepted it.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_log_columns (
    column_name VARCHAR(64) PRIMARY KEY,
    type_name   VARCHAR(255) NOT NULL,
    max_chars   BIGINT NULL,
    min_value   DECIMAL(20, 0) NULL,
    max_value   DECIMAL(20, 0) NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
  COMMENT = 'Widths and ranges of wecom_message_log columns the outbox copies into it; filled by migrate';

DROP PROCEDURE IF EXISTS wecom_refresh_log_columns;
CREATE PROCEDURE wecom_refresh_log_columns()
    MODIFIES SQL DATA
    COMMENT 'Reads the widths and ranges of the adopted log into wecom_log_columns.'
BEGIN
    DELETE FROM wecom_log_columns;
    INSERT INTO wecom_log_columns (column_name, type_name, max_chars, min_value, max_value)
    SELECT c.column_name,
           c.column_type,
           CASE WHEN c.data_type IN ('varchar', 'char') THEN c.character_maximum_length END,
           CASE WHEN c.column_type LIKE '%unsigned%' THEN 0
                ELSE CASE c.data_type WHEN 'tinyint'   THEN -128
                                      WHEN 'smallint'  THEN -32768
                                      WHEN 'mediumint' THEN -8388608
                                      WHEN 'int'       THEN -2147483648
                                      WHEN 'bigint'    THEN -9223372036854775808 END
           END,
           CASE c.data_type WHEN 'tinyint'   THEN IF(c.column_type LIKE '%unsigned%', 255, 127)
                            WHEN 'smallint'  THEN IF(c.column_type LIKE '%unsigned%', 65535, 32767)
                            WHEN 'mediumint' THEN IF(c.column_type LIKE '%unsigned%', 16777215, 8388607)
                            WHEN 'int'       THEN IF(c.column_type LIKE '%unsigned%', 4294967295, 2147483647)
                            WHEN 'bigint'    THEN IF(c.column_type LIKE '%unsigned%', 18446744073709551615,
                                                     9223372036854775807) END
    FROM information_schema.columns c
    WHERE c.table_schema = DATABASE() AND c.table_name = 'wecom_message_log'
      AND c.column_name IN ('webhook_name', 'message_type', 'enrollment_id');
END;

CALL wecom_refresh_log_columns();
