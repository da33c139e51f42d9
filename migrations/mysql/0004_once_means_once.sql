-- MySQL 8.0 / MariaDB 10.6+. Once means once (migrations/postgres/0005): a message WeCom
-- accepted is logged whatever the school's log table accepts, and only the worker moves a row
-- through its life; people may cancel or requeue, nothing else.
-- Ran on: MariaDB 10.11 only. Uses REGEXP_REPLACE (MySQL 8.0.4+), GET DIAGNOSTICS and DECLARE ... HANDLER (MySQL 5.6+), and
-- INSERT ... ON DUPLICATE KEY UPDATE c = VALUES(c), which MySQL 8.0.20+ still runs (with a
-- deprecation warning) and MariaDB requires (it has no "AS new" row alias).
--
-- Who is the worker: its connections run SET @wecom_actor = 'worker' when they connect.
-- Triggers run with their definer's rights on both servers (the role that ran migrate), so a
-- writer needs only INSERT (and SELECT) on wecom_outbox, never SELECT on wecom_webhooks.

-- Literals in the routines below take the connection's collation when they are created: the
-- server's default for utf8mb4, as their utf8mb4 variables and parameters have (sqlx would
-- otherwise give utf8mb4_unicode_ci, and comparisons would mix collations).
SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------------------
-- THE LOG ROW, written whatever the school's table accepts. One row per outbox row that
-- reached `sent` or `failed`; a requeued row that ends again updates its row. A reference the
-- log refuses (error 1452: an enrollment deleted since the row was written) is left NULL and
-- said in error_message; if the table refuses even that, the text is stored as ASCII ('?' for
-- what the log's charset cannot hold); if it refuses that too, the outbox row says why in
-- last_error and keeps its status: a sent message is never sent again because bookkeeping
-- failed. CALL wecom_write_log(id) in the transaction that sets the status; afterwards
-- @wecom_log_note is NULL when the full row was written, otherwise what was left out and why.
-- ---------------------------------------------------------------------------------------

-- s with every character outside printable ASCII (and tab, CR, LF) replaced by '?': what any
-- charset can store. (CONVERT(s USING ascii) would be an error in strict mode instead.)
DROP FUNCTION IF EXISTS wecom_ascii;
CREATE FUNCTION wecom_ascii(s LONGTEXT CHARACTER SET utf8mb4) RETURNS LONGTEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN REGEXP_REPLACE(s, '[^ -~\t\r\n]', '?');

-- The INSERT itself, shared by every attempt below. p_ascii: store the body as ASCII.
DROP PROCEDURE IF EXISTS wecom_insert_log;
CREATE PROCEDURE wecom_insert_log(IN p_outbox_id CHAR(36), IN p_enrollment_id BIGINT,
                                  IN p_error TEXT CHARACTER SET utf8mb4, IN p_ascii BOOLEAN)
    MODIFIES SQL DATA
    COMMENT 'Writes (or updates) the log row of one outbox row'
BEGIN
    INSERT INTO wecom_message_log
        (webhook_name, message_type, message_content, enrollment_id, send_status,
         send_timestamp, error_message, outbox_id, robot_name, errcode, attempts)
    SELECT o.webhook_name, o.message_type,
           IF(p_ascii, wecom_ascii(CAST(o.payload AS CHAR)), CAST(o.payload AS CHAR)),
           p_enrollment_id, o.status, o.sent_at,
           IF(p_ascii, wecom_ascii(p_error), p_error),
           o.id, o.robot_name, o.last_errcode, o.attempts
    FROM wecom_outbox o
    WHERE o.id = p_outbox_id
    ON DUPLICATE KEY UPDATE
        send_status = VALUES(send_status), send_timestamp = VALUES(send_timestamp),
        error_message = VALUES(error_message), robot_name = VALUES(robot_name),
        errcode = VALUES(errcode), attempts = VALUES(attempts);
END;

DROP PROCEDURE IF EXISTS wecom_write_log;
CREATE PROCEDURE wecom_write_log(IN p_outbox_id CHAR(36))
    MODIFIES SQL DATA
    COMMENT 'Writes the log row of a sent/failed outbox row with what the log accepts; note in @wecom_log_note'
proc: BEGIN
    DECLARE v_status     VARCHAR(16);
    DECLARE v_enrollment BIGINT;
    DECLARE v_last_error TEXT CHARACTER SET utf8mb4;
    DECLARE err          TEXT CHARACTER SET utf8mb4;
    DECLARE note         TEXT CHARACTER SET utf8mb4 DEFAULT NULL;
    DECLARE written      BOOLEAN DEFAULT FALSE;
    DECLARE old_zone     VARCHAR(64) DEFAULT @@session.time_zone;
    DECLARE old_actor    TEXT DEFAULT @wecom_actor;

    SET @wecom_log_note = NULL;
    SELECT status, enrollment_id, last_error INTO v_status, v_enrollment, v_last_error
    FROM wecom_outbox WHERE id = p_outbox_id;
    IF v_status IS NULL OR v_status NOT IN ('sent', 'failed') THEN
        LEAVE proc;
    END IF;
    -- The Phase-1 log's times are TIMESTAMPs: store the UTC instants as UTC.
    SET time_zone = '+00:00';

    full_row: BEGIN
        DECLARE EXIT HANDLER FOR 1452
        BEGIN
            GET DIAGNOSTICS CONDITION 1 err = MESSAGE_TEXT;
            SET note = CONCAT('enrollment_id ', v_enrollment, ' was refused by wecom_message_log (', err,
                              '): logged without it');
        END;
        DECLARE EXIT HANDLER FOR SQLEXCEPTION
        BEGIN
            GET DIAGNOSTICS CONDITION 1 err = MESSAGE_TEXT;
            SET note = CONCAT('wecom_message_log refused the full row (', err, '): logged without enrollment_id');
        END;
        CALL wecom_insert_log(p_outbox_id, v_enrollment, v_last_error, FALSE);
        SET written = TRUE;
    END full_row;

    IF NOT written THEN
        without_reference: BEGIN
            DECLARE EXIT HANDLER FOR SQLEXCEPTION
            BEGIN
                GET DIAGNOSTICS CONDITION 1 err = MESSAGE_TEXT;
                SET note = CONCAT(note, ', then refused the row without it too (', err, ')');
            END;
            CALL wecom_insert_log(p_outbox_id, NULL, CONCAT_WS('; ', v_last_error, note), FALSE);
            SET written = TRUE;
        END without_reference;
    END IF;

    IF NOT written THEN
        as_ascii: BEGIN
            DECLARE EXIT HANDLER FOR SQLEXCEPTION
            BEGIN
                GET DIAGNOSTICS CONDITION 1 err = MESSAGE_TEXT;
                SET note = CONCAT(note, ', and as ASCII too (', err, ')');
            END;
            CALL wecom_insert_log(p_outbox_id, NULL,
                                  CONCAT_WS('; ', v_last_error, note, 'stored as ASCII: ? marks what the log cannot hold'),
                                  TRUE);
            SET note = CONCAT(note, ', so it was stored as ASCII');
            SET written = TRUE;
        END as_ascii;
    END IF;

    IF NOT written THEN
        SET @wecom_actor = 'worker';
        UPDATE wecom_outbox
        SET last_error = CONCAT_WS('; ', last_error, CONCAT('no wecom_message_log row: ', note))
        WHERE id = p_outbox_id;
        SET @wecom_actor = old_actor;
    END IF;
    SET time_zone = old_zone;
    SET @wecom_log_note = note;
END proc;

-- ---------------------------------------------------------------------------------------
-- Worker-owned columns. Anyone but the worker may cancel a row that has not gone, requeue one
-- that failed, expired or was cancelled, and edit the message and its scheduling. Every other
-- change to the row's life is refused with what to do instead (the messages of PostgreSQL's
-- wecom_outbox_guard). An edited message is checked like a new one. Text is compared as
-- binary strings: under the tables' case-insensitive, PAD SPACE collation 'hi' = 'HI ', and an
-- edit that only changes case or trailing spaces is still an edit.
-- ---------------------------------------------------------------------------------------
DROP TRIGGER IF EXISTS wecom_outbox_before_update;
CREATE TRIGGER wecom_outbox_before_update
    BEFORE UPDATE ON wecom_outbox
    FOR EACH ROW
BEGIN
    DECLARE changed TEXT;
    IF NOT (COALESCE(@wecom_actor, '') = 'worker') THEN
        IF NOT (NEW.status <=> OLD.status) THEN
            IF OLD.status = 'sending' THEN
                CALL wecom_refuse(CONCAT('wecom_outbox: row ', OLD.id, ' is being sent right now (WeCom may already have it): its status cannot be changed to ', COALESCE(NEW.status, 'NULL'), '; wait until it is sent or failed'));
            ELSEIF NEW.status = 'cancelled' AND OLD.status IN ('pending', 'failed', 'expired') THEN
                IF CAST(NEW.last_error AS BINARY) <=> CAST(OLD.last_error AS BINARY) THEN
                    SET NEW.last_error = CONCAT('cancelled by ', USER());
                END IF;
            ELSEIF NEW.status = 'pending' AND OLD.status IN ('failed', 'expired', 'cancelled') THEN
                -- A requeue: a fresh set of attempts, from now (or the not_before the writer set).
                SET NEW.attempts = 0,
                    NEW.not_before = GREATEST(NEW.not_before, UTC_TIMESTAMP(6)),
                    NEW.locked_by = NULL,
                    NEW.locked_until = NULL,
                    NEW.lease_token = NULL;
            ELSEIF OLD.status = 'sent' THEN
                CALL wecom_refuse(CONCAT('wecom_outbox: row ', OLD.id, ' was already sent (WeCom accepted it): status ', COALESCE(NEW.status, 'NULL'), ' is not allowed; to send the message again, INSERT a new row'));
            ELSE
                CALL wecom_refuse(CONCAT('wecom_outbox: status ', OLD.status, ' -> ', COALESCE(NEW.status, 'NULL'), ' is the worker''s to set; you may cancel a pending row (status = ''cancelled'') or requeue a failed, expired or cancelled one (status = ''pending'')'));
            END IF;
        ELSE
            SET changed = CONCAT_WS(', ',
                IF(NEW.id <=> OLD.id, NULL, 'id'),
                IF(NEW.seq <=> OLD.seq, NULL, 'seq'),
                IF(NEW.attempts <=> OLD.attempts, NULL, 'attempts'),
                IF(NEW.last_errcode <=> OLD.last_errcode, NULL, 'last_errcode'),
                IF(CAST(NEW.last_error AS BINARY) <=> CAST(OLD.last_error AS BINARY), NULL, 'last_error'),
                IF(CAST(NEW.robot_name AS BINARY) <=> CAST(OLD.robot_name AS BINARY), NULL, 'robot_name'),
                IF(CAST(NEW.locked_by AS BINARY) <=> CAST(OLD.locked_by AS BINARY), NULL, 'locked_by'),
                IF(NEW.locked_until <=> OLD.locked_until, NULL, 'locked_until'),
                IF(NEW.lease_token <=> OLD.lease_token, NULL, 'lease_token'),
                IF(NEW.created_at <=> OLD.created_at, NULL, 'created_at'),
                IF(NEW.sent_at <=> OLD.sent_at, NULL, 'sent_at'));
            IF changed <> '' THEN
                CALL wecom_refuse(CONCAT('wecom_outbox: ', changed, ' of row ', OLD.id, ' belong to the worker and cannot be changed; you may cancel a pending row or requeue a failed one with status'));
            END IF;
            -- (An UPDATE that changes nothing, such as ON DUPLICATE KEY UPDATE id = id for a
            -- repeated dedupe_key, is no change to a row being sent.)
            IF OLD.status = 'sending' AND NOT (
                   CAST(NEW.webhook_name AS BINARY) <=> CAST(OLD.webhook_name AS BINARY) AND NEW.payload <=> OLD.payload
                   AND CAST(NEW.content AS BINARY) <=> CAST(OLD.content AS BINARY) AND CAST(NEW.title AS BINARY) <=> CAST(OLD.title AS BINARY)
                   AND CAST(NEW.description AS BINARY) <=> CAST(OLD.description AS BINARY) AND CAST(NEW.url AS BINARY) <=> CAST(OLD.url AS BINARY)
                   AND CAST(NEW.picurl AS BINARY) <=> CAST(OLD.picurl AS BINARY) AND CAST(NEW.message_type AS BINARY) <=> CAST(OLD.message_type AS BINARY)
                   AND NEW.enrollment_id <=> OLD.enrollment_id AND CAST(NEW.dedupe_key AS BINARY) <=> CAST(OLD.dedupe_key AS BINARY)
                   AND NEW.priority <=> OLD.priority AND NEW.not_before <=> OLD.not_before
                   AND NEW.expires_at <=> OLD.expires_at AND NEW.max_attempts <=> OLD.max_attempts) THEN
                CALL wecom_refuse(CONCAT('wecom_outbox: row ', OLD.id, ' is being sent right now: change it after it is sent or failed'));
            END IF;
        END IF;
    END IF;

    -- The message: an UPDATE of the plain columns of a row whose payload was built from them
    -- builds it again, so the message sent is the one the row shows; any edit is checked.
    IF NOT (CAST(NEW.webhook_name AS BINARY) <=> CAST(OLD.webhook_name AS BINARY) AND NEW.payload <=> OLD.payload
            AND CAST(NEW.content AS BINARY) <=> CAST(OLD.content AS BINARY) AND CAST(NEW.title AS BINARY) <=> CAST(OLD.title AS BINARY)
            AND CAST(NEW.description AS BINARY) <=> CAST(OLD.description AS BINARY) AND CAST(NEW.url AS BINARY) <=> CAST(OLD.url AS BINARY)
            AND CAST(NEW.picurl AS BINARY) <=> CAST(OLD.picurl AS BINARY) AND CAST(NEW.message_type AS BINARY) <=> CAST(OLD.message_type AS BINARY)
            AND NEW.enrollment_id <=> OLD.enrollment_id) THEN
        -- JSON_EXTRACT(x, '$') on both sides: MySQL 8 then compares JSON with JSON (a JSON
        -- column against text would compare it with a JSON string); MariaDB compares the texts.
        IF NEW.payload <=> OLD.payload AND JSON_EXTRACT(OLD.payload, '$') <=> JSON_EXTRACT(
               wecom_payload_from_columns(OLD.content, OLD.title, OLD.description, OLD.url, OLD.picurl), '$') THEN
            SET NEW.payload = NULL;
        END IF;
        IF NEW.payload IS NULL THEN
            SET NEW.payload = wecom_payload_from_columns(NEW.content, NEW.title, NEW.description, NEW.url, NEW.picurl);
        END IF;
        CALL wecom_outbox_check_message(NEW.webhook_name, NEW.payload, NEW.message_type, NEW.enrollment_id);
    END IF;
END;

DROP TRIGGER IF EXISTS wecom_outbox_before_delete;
CREATE TRIGGER wecom_outbox_before_delete
    BEFORE DELETE ON wecom_outbox
    FOR EACH ROW
BEGIN
    IF NOT (COALESCE(@wecom_actor, '') = 'worker') AND OLD.status = 'sending' THEN
        CALL wecom_refuse(CONCAT('wecom_outbox: row ', OLD.id, ' is being sent right now (WeCom may already have it): it cannot be deleted; wait until it is sent or failed'));
    END IF;
END;
