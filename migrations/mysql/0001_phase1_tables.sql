-- MySQL 8.0 / MariaDB 10.6+. The school's Phase-1 tables (migration 023), and the helpers later
-- migrations use to add columns, indexes and constraints only where they are missing.
-- Ran on: MariaDB 10.11 (tests/mysql_schema.rs). MySQL 8.0 could not be run here: this file
-- uses only syntax both document (CREATE TABLE IF NOT EXISTS, PREPARE in procedures,
-- information_schema).
--
-- On a database that already has the Phase-1 tables (created by the school's migration 023,
-- with its foreign keys to enrollments and session_log), CREATE TABLE IF NOT EXISTS adopts
-- them as they are: their engine, charset, keys and rows are left alone. On a fresh database
-- they are created (without the foreign keys: their tables are the school's, not ours).

-- Literals in the routines below take the connection's collation when they are created: the
-- server's default for utf8mb4, as their utf8mb4 variables and parameters have (sqlx would
-- otherwise give utf8mb4_unicode_ci, and comparisons would mix collations).
SET NAMES utf8mb4;

CREATE TABLE IF NOT EXISTS wecom_webhooks (
    id                  INT AUTO_INCREMENT PRIMARY KEY,
    webhook_name        VARCHAR(100) NOT NULL UNIQUE,
    webhook_url         TEXT NOT NULL,
    target_description  VARCHAR(255),
    is_active           BOOLEAN DEFAULT TRUE,
    last_used_at        TIMESTAMP NULL,
    total_messages_sent INT DEFAULT 0,
    created_at          TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    created_by          VARCHAR(255),
    notes               TEXT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS wecom_message_log (
    id              INT AUTO_INCREMENT PRIMARY KEY,
    webhook_name    VARCHAR(100) NOT NULL,
    message_type    VARCHAR(50),
    message_content TEXT NOT NULL,
    enrollment_id   INT NULL,
    session_id      INT NULL,
    send_status     VARCHAR(20) DEFAULT 'pending',
    send_timestamp  TIMESTAMP NULL,
    error_message   TEXT NULL,
    created_at      TIMESTAMP DEFAULT CURRENT_TIMESTAMP
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- ---------------------------------------------------------------------------------------
-- Idempotent DDL. MySQL 8.0 has no ADD COLUMN IF NOT EXISTS (MariaDB has), so each addition
-- asks information_schema first; a migration interrupted half-way can then simply run again.
-- ---------------------------------------------------------------------------------------

-- Run one DDL statement (procedures may PREPARE; triggers and functions may not).
DROP PROCEDURE IF EXISTS wecom_ddl;
CREATE PROCEDURE wecom_ddl(IN p_sql TEXT)
    MODIFIES SQL DATA
    COMMENT 'Runs one DDL statement for the migrations.'
BEGIN
    SET @wecom_ddl_sql = p_sql;
    PREPARE wecom_ddl_stmt FROM @wecom_ddl_sql;
    EXECUTE wecom_ddl_stmt;
    DEALLOCATE PREPARE wecom_ddl_stmt;
END;

-- ALTER TABLE p_table ADD COLUMN p_column p_definition, unless the column exists.
DROP PROCEDURE IF EXISTS wecom_add_column;
CREATE PROCEDURE wecom_add_column(IN p_table VARCHAR(64), IN p_column VARCHAR(64), IN p_definition TEXT)
    MODIFIES SQL DATA
    COMMENT 'Adds a column unless the table has it (MySQL 8.0 lacks ADD COLUMN IF NOT EXISTS).'
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_schema = DATABASE() AND table_name = p_table
                      AND column_name = p_column) THEN
        CALL wecom_ddl(CONCAT('ALTER TABLE `', p_table, '` ADD COLUMN `', p_column, '` ', p_definition));
    END IF;
END;

-- CREATE [UNIQUE] INDEX p_index ON p_table p_columns, unless the table has an index of that name.
DROP PROCEDURE IF EXISTS wecom_add_index;
CREATE PROCEDURE wecom_add_index(IN p_table VARCHAR(64), IN p_index VARCHAR(64), IN p_unique BOOLEAN,
                                 IN p_columns TEXT)
    MODIFIES SQL DATA
    COMMENT 'Adds an index unless the table has one of that name.'
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.statistics
                    WHERE table_schema = DATABASE() AND table_name = p_table
                      AND index_name = p_index) THEN
        CALL wecom_ddl(CONCAT('CREATE ', IF(p_unique, 'UNIQUE ', ''), 'INDEX `', p_index,
                              '` ON `', p_table, '` ', p_columns));
    END IF;
END;

-- ALTER TABLE p_table ADD CONSTRAINT p_name p_definition, unless a constraint has that name.
DROP PROCEDURE IF EXISTS wecom_add_constraint;
CREATE PROCEDURE wecom_add_constraint(IN p_table VARCHAR(64), IN p_name VARCHAR(64), IN p_definition TEXT)
    MODIFIES SQL DATA
    COMMENT 'Adds a named constraint unless the table has one of that name.'
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.table_constraints
                    WHERE constraint_schema = DATABASE() AND table_name = p_table
                      AND constraint_name = p_name) THEN
        CALL wecom_ddl(CONCAT('ALTER TABLE `', p_table, '` ADD CONSTRAINT `', p_name, '` ', p_definition));
    END IF;
END;
