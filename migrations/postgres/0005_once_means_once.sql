-- Once means once: a message WeCom accepted is recorded `sent` whatever the school's log
-- table accepts, the order of rows is the order they were written, a claim is owned by a
-- token (not by a worker name two replicas might share), and only the worker moves a row
-- through its life; people may cancel or requeue, nothing else.

-- ---------------------------------------------------------------------------------------
-- Send order and claim ownership.
-- ---------------------------------------------------------------------------------------
-- Rows written in one statement share created_at (the transaction's now()); seq keeps the
-- order they were written in.
ALTER TABLE wecom_outbox
    ADD COLUMN IF NOT EXISTS seq bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN IF NOT EXISTS lease_token uuid NULL;

COMMENT ON COLUMN wecom_outbox.seq IS
    'Insertion order: within a priority, rows go out in the order they were written.';
COMMENT ON COLUMN wecom_outbox.lease_token IS
    'The claim that holds this row while it is sending; only that claim may finish it.';

DROP INDEX IF EXISTS wecom_outbox_claim_idx;
CREATE INDEX IF NOT EXISTS wecom_outbox_claim_seq_idx
    ON wecom_outbox (webhook_name, priority DESC, seq)
    WHERE status = 'pending';

-- Rows leased before this migration carry no token: hand them back to the queue.
UPDATE wecom_outbox
SET status = 'pending', attempts = greatest(attempts - 1, 0), locked_by = NULL, locked_until = NULL
WHERE status = 'sending' AND lease_token IS NULL;

-- ---------------------------------------------------------------------------------------
-- What the school's log can take, as `migrate` found it. The INSERT check below refuses a
-- row whose log entry would not fit, so the failure happens to the writer, at once, and not
-- to a parent's message after WeCom accepted it. `migrate` refreshes this on every run.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_log_columns (
    column_name text PRIMARY KEY,
    type_name   text NOT NULL,
    max_chars   int NULL,
    min_value   numeric NULL,
    max_value   numeric NULL
);

COMMENT ON TABLE wecom_log_columns IS
    'Widths and ranges of wecom_message_log columns the outbox copies into it; filled by migrate.';

GRANT SELECT ON wecom_log_columns TO PUBLIC;

CREATE OR REPLACE FUNCTION wecom_refresh_log_columns() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM wecom_log_columns;
    INSERT INTO wecom_log_columns (column_name, type_name, max_chars, min_value, max_value)
    SELECT a.attname,
           format_type(a.atttypid, a.atttypmod),
           CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND a.atttypmod > 4
                THEN a.atttypmod - 4 END,
           CASE a.atttypid WHEN 'int2'::regtype THEN -32768
                           WHEN 'int4'::regtype THEN -2147483648
                           WHEN 'int8'::regtype THEN -9223372036854775808 END,
           CASE a.atttypid WHEN 'int2'::regtype THEN 32767
                           WHEN 'int4'::regtype THEN 2147483647
                           WHEN 'int8'::regtype THEN 9223372036854775807 END
    FROM pg_attribute a
    WHERE a.attrelid = 'wecom_message_log'::regclass
      AND a.attname IN ('webhook_name', 'message_type', 'enrollment_id')
      AND a.attnum > 0 AND NOT a.attisdropped;
$$;

SELECT wecom_refresh_log_columns();

-- Why this row's log entry would not fit the log, or NULL.
CREATE OR REPLACE FUNCTION wecom_log_fit_problem(
    p_webhook_name text, p_message_type text, p_enrollment_id bigint
) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(problem, '; ')
    FROM (
        SELECT format('%s is %s characters but wecom_message_log.%s is %s: shorten it',
                      c.column_name, char_length(v.value), c.column_name, c.type_name) AS problem
        FROM wecom_log_columns c
        JOIN (VALUES ('webhook_name', p_webhook_name), ('message_type', p_message_type)) AS v (name, value)
          ON v.name = c.column_name
        WHERE c.max_chars IS NOT NULL AND char_length(v.value) > c.max_chars
        UNION ALL
        SELECT format('enrollment_id %s does not fit wecom_message_log.enrollment_id (%s, %s to %s)',
                      p_enrollment_id, c.type_name, c.min_value, c.max_value)
        FROM wecom_log_columns c
        WHERE c.column_name = 'enrollment_id'
          AND (p_enrollment_id < c.min_value OR p_enrollment_id > c.max_value)
    ) problems
$$;

CREATE OR REPLACE FUNCTION wecom_outbox_fits_log() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text := wecom_log_fit_problem(NEW.webhook_name, NEW.message_type, NEW.enrollment_id);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'wecom_outbox: %', problem USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS wecom_outbox_fits_log ON wecom_outbox;
CREATE TRIGGER wecom_outbox_fits_log
    BEFORE INSERT OR UPDATE OF webhook_name, message_type, enrollment_id ON wecom_outbox
    FOR EACH ROW EXECUTE FUNCTION wecom_outbox_fits_log();

-- ---------------------------------------------------------------------------------------
-- THE LOG ROW, written whatever the school's table accepts. One row per outbox row that
-- reached `sent` or `failed`; a requeued row that ends again updates its row. A reference the
-- log refuses (an enrollment deleted since the row was written) is left null and said in
-- error_message; if the table refuses even that, the outbox row says why in last_error and
-- keeps its status: a sent message is never sent again because bookkeeping failed.
-- Returns NULL when the full row was written, otherwise what was left out and why.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION wecom_write_log(p_outbox_id uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    o    wecom_outbox;
    note text;
BEGIN
    SELECT * INTO o FROM wecom_outbox WHERE id = p_outbox_id;
    IF NOT FOUND OR o.status NOT IN ('sent', 'failed') THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM wecom_insert_log(o, o.enrollment_id, o.last_error);
        RETURN NULL;
    EXCEPTION WHEN foreign_key_violation THEN
        note := format('enrollment_id %s was refused by wecom_message_log (%s): logged without it',
                       o.enrollment_id, SQLERRM);
    WHEN OTHERS THEN
        note := format('wecom_message_log refused the full row (%s): logged without enrollment_id', SQLERRM);
    END;
    BEGIN
        PERFORM wecom_insert_log(o, NULL, concat_ws('; ', o.last_error, note));
        RETURN note;
    EXCEPTION WHEN OTHERS THEN
        note := format('%s, then refused the row without it too (%s)', note, SQLERRM);
    END;
    UPDATE wecom_outbox
    SET last_error = concat_ws('; ', last_error, 'no wecom_message_log row: ' || note)
    WHERE id = p_outbox_id;
    RETURN note;
END
$$;

-- The INSERT itself, shared by every path above.
CREATE OR REPLACE FUNCTION wecom_insert_log(o wecom_outbox, p_enrollment_id bigint, p_error text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO wecom_message_log
        (webhook_name, message_type, message_content, enrollment_id, send_status,
         send_timestamp, error_message, outbox_id, robot_name, errcode, attempts)
    VALUES (o.webhook_name, o.message_type, o.payload::text, p_enrollment_id, o.status,
            o.sent_at, p_error, o.id, o.robot_name, o.last_errcode, o.attempts)
    ON CONFLICT (outbox_id) DO UPDATE
    SET send_status = EXCLUDED.send_status, send_timestamp = EXCLUDED.send_timestamp,
        error_message = EXCLUDED.error_message, robot_name = EXCLUDED.robot_name,
        errcode = EXCLUDED.errcode, attempts = EXCLUDED.attempts;
$$;

-- ---------------------------------------------------------------------------------------
-- Worker-owned columns. The worker's connections say who they are (wecom.actor = worker, set
-- when they connect; honoured only for roles that may write those columns); anyone else may cancel a row that has not gone, requeue one that
-- failed, expired or was cancelled, and edit the message and its scheduling. Every other
-- change to the row's life is refused with what to do instead.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION wecom_outbox_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status = 'sending' THEN
            RAISE EXCEPTION 'wecom_outbox: row % is being sent right now (WeCom may already have it): it cannot be deleted; wait until it is sent or failed', OLD.id
                USING ERRCODE = 'object_in_use';
        END IF;
        RETURN OLD;
    END IF;

    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF OLD.status = 'sending' THEN
            RAISE EXCEPTION 'wecom_outbox: row % is being sent right now (WeCom may already have it): its status cannot be changed to %; wait until it is sent or failed', OLD.id, NEW.status
                USING ERRCODE = 'object_in_use';
        ELSIF NEW.status = 'cancelled' AND OLD.status IN ('pending', 'failed', 'expired') THEN
            NEW.last_error := coalesce(NULLIF(NEW.last_error, OLD.last_error), 'cancelled by ' || session_user);
            RETURN NEW;
        ELSIF NEW.status = 'pending' AND OLD.status IN ('failed', 'expired', 'cancelled') THEN
            -- A requeue: a fresh set of attempts, from now (or the not_before the writer set).
            NEW.attempts := 0;
            NEW.not_before := greatest(NEW.not_before, now());
            NEW.locked_by := NULL;
            NEW.locked_until := NULL;
            NEW.lease_token := NULL;
            RETURN NEW;
        ELSIF OLD.status = 'sent' THEN
            RAISE EXCEPTION 'wecom_outbox: row % was already sent (WeCom accepted it): status % is not allowed; to send the message again, INSERT a new row', OLD.id, NEW.status
                USING ERRCODE = 'check_violation';
        ELSE
            RAISE EXCEPTION 'wecom_outbox: status % -> % is the worker''s to set; you may cancel a pending row (status = ''cancelled'') or requeue a failed, expired or cancelled one (status = ''pending'')', OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;

    SELECT string_agg(col, ', ') INTO changed
    FROM (VALUES
        ('id', NEW.id IS DISTINCT FROM OLD.id),
        ('attempts', NEW.attempts IS DISTINCT FROM OLD.attempts),
        ('last_errcode', NEW.last_errcode IS DISTINCT FROM OLD.last_errcode),
        ('last_error', NEW.last_error IS DISTINCT FROM OLD.last_error),
        ('robot_name', NEW.robot_name IS DISTINCT FROM OLD.robot_name),
        ('locked_by', NEW.locked_by IS DISTINCT FROM OLD.locked_by),
        ('locked_until', NEW.locked_until IS DISTINCT FROM OLD.locked_until),
        ('lease_token', NEW.lease_token IS DISTINCT FROM OLD.lease_token),
        ('created_at', NEW.created_at IS DISTINCT FROM OLD.created_at),
        ('sent_at', NEW.sent_at IS DISTINCT FROM OLD.sent_at)
    ) AS c (col, differs)
    WHERE differs;
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'wecom_outbox: % of row % belong to the worker and cannot be changed; you may cancel a pending row or requeue a failed one with status', changed, OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status = 'sending' THEN
        RAISE EXCEPTION 'wecom_outbox: row % is being sent right now: change it after it is sent or failed', OLD.id
            USING ERRCODE = 'object_in_use';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS wecom_outbox_guard ON wecom_outbox;
CREATE TRIGGER wecom_outbox_guard
    BEFORE UPDATE OR DELETE ON wecom_outbox
    FOR EACH ROW
    -- Anyone can SET wecom.actor: it counts only for a role that may write the worker's
    -- columns anyway (the worker, the owner), never for a writer granted UPDATE (status).
    WHEN (current_setting('wecom.actor', true) IS DISTINCT FROM 'worker'
          OR NOT has_column_privilege('wecom_outbox', 'attempts', 'UPDATE'))
    EXECUTE FUNCTION wecom_outbox_guard();

-- ---------------------------------------------------------------------------------------
-- What one replica will not do, and why: its own configuration (allowed hosts) is its own
-- business and never changes a robot for the others, but `status` should say it.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_replica_notes (
    worker_id text NOT NULL,
    robot_id  int NOT NULL REFERENCES wecom_webhooks (id) ON DELETE CASCADE,
    note      text NOT NULL,
    noted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, robot_id)
);

COMMENT ON TABLE wecom_replica_notes IS
    'Robots a replica skips because of its own configuration (e.g. WECOM_ALLOWED_HOSTS), with why; refreshed while it runs.';
