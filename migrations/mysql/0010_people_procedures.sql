-- Ran on MariaDB 10.11 only (MySQL 8.0 cannot run here); only statements both accept.
--
-- What people may do to a message, as procedures. On PostgreSQL a writer may UPDATE status and
-- the guard trigger allows only cancel and requeue; there the worker's "I am the worker"
-- setting counts only for roles that may write the worker's columns. MySQL cannot ask in a
-- trigger what the invoking account may do, and anyone can SET @wecom_actor, so on this
-- backend the writer gets no UPDATE at all (sql/roles_mysql.sql) and cancels and requeues
-- through these, which run the same guard (they clear @wecom_actor for their UPDATE).

DROP PROCEDURE IF EXISTS wecom_cancel_message;
CREATE PROCEDURE wecom_cancel_message(IN p_id CHAR(36), IN p_reason TEXT CHARACTER SET utf8mb4)
    MODIFIES SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'Cancel a message that has not gone; the guard says why when it cannot be'
BEGIN
    DECLARE saved TEXT DEFAULT @wecom_actor;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        SET @wecom_actor = saved;
        RESIGNAL;
    END;
    SET @wecom_actor = NULL;
    IF NOT EXISTS (SELECT 1 FROM wecom_outbox WHERE id = p_id) THEN
        CALL wecom_refuse(CONCAT('wecom_outbox: no message with id ', COALESCE(p_id, 'NULL')));
    END IF;
    UPDATE wecom_outbox
    SET status = 'cancelled',
        last_error = COALESCE(p_reason, CONCAT('cancelled by ', USER()))
    WHERE id = p_id AND status <> 'cancelled';
    SET @wecom_actor = saved;
END;

DROP PROCEDURE IF EXISTS wecom_requeue_message;
CREATE PROCEDURE wecom_requeue_message(IN p_id CHAR(36))
    MODIFIES SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'Send a failed, expired or cancelled message again, with a fresh set of attempts'
BEGIN
    DECLARE saved TEXT DEFAULT @wecom_actor;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        SET @wecom_actor = saved;
        RESIGNAL;
    END;
    SET @wecom_actor = NULL;
    IF NOT EXISTS (SELECT 1 FROM wecom_outbox WHERE id = p_id) THEN
        CALL wecom_refuse(CONCAT('wecom_outbox: no message with id ', COALESCE(p_id, 'NULL')));
    END IF;
    UPDATE wecom_outbox SET status = 'pending' WHERE id = p_id AND status <> 'pending';
    SET @wecom_actor = saved;
END;
