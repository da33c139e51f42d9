-- Fee-renewal reminders: templates and settings as data, the daily function, the generic
-- "enqueue from a row" trigger, cancellation on renewal, the once-a-day run record and the
-- seed's success metrics. Everything a DBA tunes is a row (UPDATE it), not code.
--
-- Templates use {{column}} placeholders: the value of that column of the row being rendered
-- (a row of active_enrollments_needing_renewal, or the NEW row of a trigger). A placeholder
-- naming no column is an error (a typo must not reach parents); a NULL value renders as ''.

-- ---------------------------------------------------------------------------------------
-- Settings (rows of wecom_settings; the zone is the existing default_timezone).
-- ---------------------------------------------------------------------------------------
INSERT INTO wecom_settings (name, value, description) VALUES
    ('reminder_destination', 'parent_group',
     'Where fee reminders go: a robot or pool name in wecom_webhooks'),
    ('reminder_status', '🔴 Not Yet Renewed',
     'renewal_action_status value of enrollments that get reminders'),
    ('reminder_min_days', '0', 'Remind when days_until_renewal is at least this'),
    ('reminder_max_days', '7', 'Remind when days_until_renewal is at most this'),
    ('reminder_cadence', '',
     'Empty: every day in the range. Or a list such as 7,3,1,0: only on those days_until_renewal'),
    ('reminder_urgent_days', '3',
     'At most this many days left: the fee_reminder_urgent template, else fee_reminder_normal'),
    ('reminder_run_time', '09:00',
     'Local time (default_timezone) the daily run enqueues reminders; off = the worker never runs it'),
    ('reminder_route_column', '',
     'Empty: all reminders go to reminder_destination. Or a column of the view (language, campus, family_group): its value is looked up in wecom_reminder_routes, or used as the destination when it names one'),
    ('reminder_route_fallback', '',
     'With routing: destination for values without a route; empty = reminder_destination; skip = send nothing'),
    ('conversion_window_days', '7',
     'wecom_renewal_conversion counts a reminded enrollment as converted when renewed within this many days')
ON CONFLICT (name) DO NOTHING;

-- A setting's value, or p_fallback when it is missing or blank.
CREATE OR REPLACE FUNCTION wecom_setting(p_name text, p_fallback text DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT nullif(btrim(value), '') FROM wecom_settings WHERE name = p_name), p_fallback)
$$;

-- Routing: a value of reminder_route_column (e.g. 'zh', 'campus_mo') -> a destination.
CREATE TABLE IF NOT EXISTS wecom_reminder_routes (
    route_value text PRIMARY KEY,
    destination text NOT NULL,
    note        text
);

-- ---------------------------------------------------------------------------------------
-- Templates. A rendered url (e.g. a payment link) makes a one-article news message from
-- title/description/url/picurl; otherwise a text message from content.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_templates (
    name        text PRIMARY KEY,
    content     text NULL,
    title       text NULL,
    description text NULL,
    url         text NULL,
    picurl      text NULL,
    note        text NULL
);

INSERT INTO wecom_templates (name, content, title, description, note) VALUES
('fee_reminder_normal',
 E'💰 Fee Renewal Reminder / 学费续费提醒\n\n'
 'Student / 学生: {{student_name}}\n'
 'Tutor / 导师: {{tutor_name}}\n'
 'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}\n\n'
 '⏰ Expires in / 到期: {{days_until_renewal}} days / 天\n'
 '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}\n\n'
 '🟡 Please arrange renewal soon / 请尽快安排续费\n\n'
 'Contact us to renew. Thank you! / 请联系我们续费，谢谢！',
 '💰 Fee Renewal Reminder / 学费续费提醒 - {{student_name}}',
 E'Student / 学生: {{student_name}}\nTutor / 导师: {{tutor_name}}\n'
 'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}\n\n'
 '⏰ Expires in / 到期: {{days_until_renewal}} days / 天\n'
 '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}\n\n'
 '🟡 Please arrange renewal / 请安排续费',
 'Fee reminder, 4-7 days left. Set url (e.g. a payment link with {{student_id}}) to send news.'),
('fee_reminder_urgent',
 E'🔴 URGENT FEE RENEWAL / 紧急续费提醒\n\n'
 'Student / 学生: {{student_name}}\n'
 'Tutor / 导师: {{tutor_name}}\n'
 'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}\n\n'
 '⏰ Expires in / 到期: {{days_until_renewal}} days / 天\n'
 '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}\n\n'
 '🔴 URGENT - Please renew immediately to avoid class interruption! / 请立即续费，以免影响上课！\n\n'
 'Contact us to renew. Thank you! / 请联系我们续费，谢谢！',
 '🔴 URGENT Fee Renewal / 紧急续费提醒 - {{student_name}}',
 E'Student / 学生: {{student_name}}\nTutor / 导师: {{tutor_name}}\n'
 'Schedule / 上课时间: {{assigned_day}} {{assigned_time}}\n\n'
 '⏰ Expires in / 到期: {{days_until_renewal}} days / 天\n'
 '📊 Credits remaining / 剩余课时: {{total_credits_remaining}}\n\n'
 '🔴 URGENT - Please renew soon! / 请尽快续费！',
 'Fee reminder, 0-3 days left (reminder_urgent_days).'),
('payment_received',
 E'✅ Payment received / 已收到学费\n\n'
 'Student / 学生: {{student_name}}\n\n'
 'Thank you! / 谢谢！',
 NULL, NULL,
 'Phase-3 template for a trigger on payments: wecom_enqueue_from_row(''payment_received'', ...).')
ON CONFLICT (name) DO NOTHING;

-- ---------------------------------------------------------------------------------------
-- Rendering.
-- ---------------------------------------------------------------------------------------

-- p cut to at most p_max_bytes UTF-8 bytes on a character boundary, ending in '…' when cut.
CREATE OR REPLACE FUNCTION wecom_truncate_utf8(p text, p_max_bytes int) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    raw  bytea;
    keep int;
BEGIN
    IF octet_length(p) <= p_max_bytes THEN
        RETURN p;
    END IF;
    IF p_max_bytes < 3 THEN
        RETURN '';
    END IF;
    raw := convert_to(p, 'UTF8');
    keep := p_max_bytes - 3;                      -- room for the 3-byte '…'
    WHILE keep > 0 AND (get_byte(raw, keep) & 192) = 128 LOOP
        keep := keep - 1;                         -- the first dropped byte continues a character
    END LOOP;
    RETURN convert_from(substring(raw FROM 1 FOR keep), 'UTF8') || '…';
END
$$;

-- p_template with every {{column}} replaced by p_row's value (each value at most
-- p_value_max_bytes, so one very long name cannot push the rest of the message out).
-- One pass: a value containing {{...}} is not expanded again.
CREATE OR REPLACE FUNCTION wecom_render_template(p_template text, p_row jsonb, p_value_max_bytes int DEFAULT 200)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result text := '';
    rest   text := p_template;
    open   int;
    close  int;
    col    text;
BEGIN
    IF p_template IS NULL THEN
        RETURN NULL;
    END IF;
    LOOP
        open := strpos(rest, '{{');
        EXIT WHEN open = 0;
        close := strpos(substr(rest, open + 2), '}}');
        EXIT WHEN close = 0;
        result := result || left(rest, open - 1);
        col := btrim(substr(rest, open + 2, close - 1));
        IF NOT coalesce(p_row ? col, false) THEN
            RAISE EXCEPTION 'template placeholder {{%}} names no column; available: %', col,
                (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(coalesce(p_row, '{}')) k)
                USING ERRCODE = 'undefined_column';
        END IF;
        result := result || wecom_truncate_utf8(coalesce(p_row ->> col, ''), p_value_max_bytes);
        rest := substr(rest, open + 2 + close + 1);
    END LOOP;
    RETURN result || rest;
END
$$;

-- The WeCom body for template p_name rendered from p_row, within WeCom's byte limits:
-- news (title <= 128, description <= 512 bytes) when the template's url renders non-empty,
-- else text (content <= 2048 bytes). NULL when the template renders nothing to send.
CREATE OR REPLACE FUNCTION wecom_render_message(p_name text, p_row jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t   wecom_templates%ROWTYPE;
    url text;
BEGIN
    SELECT * INTO t FROM wecom_templates WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no template % in wecom_templates', p_name USING ERRCODE = 'undefined_object';
    END IF;
    url := nullif(btrim(wecom_render_template(t.url, p_row)), '');
    IF url IS NOT NULL THEN
        RETURN wecom_payload_from_columns(NULL,
            wecom_truncate_utf8(coalesce(wecom_render_template(coalesce(t.title, t.content), p_row), ''), 128),
            wecom_truncate_utf8(wecom_render_template(t.description, p_row), 512),
            url,
            nullif(btrim(wecom_render_template(t.picurl, p_row)), ''));
    END IF;
    RETURN wecom_payload_from_columns(
        nullif(wecom_truncate_utf8(wecom_render_template(t.content, p_row), 2048), ''),
        NULL, NULL, NULL, NULL);
END
$$;

-- Why a message to p_destination could not be enqueued, or NULL: the INSERT trigger's own
-- rules, checked first so a bad row is skipped with a warning instead of failing the batch.
CREATE OR REPLACE FUNCTION wecom_enqueue_problem(p_destination text, p_payload jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_destination IS NULL THEN 'no destination'
        WHEN NOT EXISTS (SELECT 1 FROM wecom_webhooks WHERE coalesce(pool_name, webhook_name) = p_destination)
            THEN format('destination %s has no robot in wecom_webhooks (add one: README, "Daily fee reminders")', p_destination)
        ELSE wecom_payload_problem(p_payload)
    END
$$;

-- ---------------------------------------------------------------------------------------
-- The daily reminders.
-- ---------------------------------------------------------------------------------------

-- Where a reminder for view row p_row goes, by the routing settings; NULL = do not send.
CREATE OR REPLACE FUNCTION wecom_reminder_destination(p_row jsonb) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    default_dest text := wecom_setting('reminder_destination', 'parent_group');
    route_col    text := wecom_setting('reminder_route_column');
    fallback     text := wecom_setting('reminder_route_fallback', default_dest);
    val          text;
    dest         text;
BEGIN
    IF route_col IS NULL THEN
        RETURN default_dest;
    END IF;
    IF NOT p_row ? route_col THEN
        RAISE EXCEPTION 'reminder_route_column is %, which is not a column of active_enrollments_needing_renewal', route_col
            USING ERRCODE = 'undefined_column';
    END IF;
    val := p_row ->> route_col;
    SELECT r.destination INTO dest FROM wecom_reminder_routes r WHERE r.route_value = val;
    IF dest IS NULL AND EXISTS (SELECT 1 FROM wecom_webhooks WHERE coalesce(pool_name, webhook_name) = val) THEN
        dest := val;                              -- the value names a destination (per-family groups)
    END IF;
    IF dest IS NULL AND fallback <> 'skip' THEN
        dest := fallback;
    END IF;
    RETURN dest;
END
$$;

-- Every reminder the day p_today (default: today in default_timezone) calls for, rendered,
-- with where it goes and why it cannot go (problem), without enqueuing anything. `preview`
-- shows this; wecom_enqueue_fee_reminders inserts the rows without a problem.
-- The view's days_until_renewal counts from CURRENT_DATE, evaluated here in default_timezone;
-- for another p_today it is shifted by the difference.
CREATE OR REPLACE FUNCTION wecom_fee_reminders_due(p_today date DEFAULT NULL)
RETURNS TABLE (
    enrollment_key     text,
    enrollment_id      bigint,
    student_name       text,
    days_until_renewal int,
    urgent             boolean,
    destination        text,
    payload            jsonb,
    dedupe_key         text,
    not_before         timestamptz,
    expires_at         timestamptz,
    already_enqueued   boolean,
    problem            text
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    zone        text := wecom_setting('default_timezone', 'Asia/Hong_Kong');
    old_zone    text := current_setting('TimeZone');
    run_time    time;
    status_lit  text := wecom_setting('reminder_status', '🔴 Not Yet Renewed');
    min_days    int := wecom_setting('reminder_min_days', '0')::int;
    max_days    int := wecom_setting('reminder_max_days', '7')::int;
    urgent_days int := wecom_setting('reminder_urgent_days', '3')::int;
    cadence     int[] := string_to_array(replace(wecom_setting('reminder_cadence', ''), ' ', ''), ',')::int[];
    local_today date;
    d           date;
    shift       int;
    r           jsonb;
BEGIN
    IF to_regclass('active_enrollments_needing_renewal') IS NULL THEN
        RAISE EXCEPTION 'view active_enrollments_needing_renewal does not exist: create it over your enrollments (see sql/example_school.sql)'
            USING ERRCODE = 'undefined_table';
    END IF;
    run_time := CASE WHEN wecom_setting('reminder_run_time', '09:00') ~ '^\d' THEN wecom_setting('reminder_run_time', '09:00')::time
                     ELSE time '09:00' END;
    PERFORM set_config('TimeZone', zone, true);   -- so the view's CURRENT_DATE is the local day
    local_today := current_date;
    d := coalesce(p_today, local_today);
    shift := d - local_today;

    FOR r IN EXECUTE
        'SELECT to_jsonb(v) FROM active_enrollments_needing_renewal v
          WHERE v.renewal_action_status::text = $1
            AND v.days_until_renewal::numeric - $2 BETWEEN $3 AND $4'
        USING status_lit, shift, min_days, max_days
    LOOP
        enrollment_key := coalesce(r ->> 'enrollment_id', r ->> 'id');
        IF enrollment_key IS NULL THEN
            RAISE EXCEPTION 'active_enrollments_needing_renewal needs an enrollment_id (or id) column with a value'
                USING ERRCODE = 'undefined_column';
        END IF;
        days_until_renewal := floor((r ->> 'days_until_renewal')::numeric)::int - shift;
        CONTINUE WHEN cadence IS NOT NULL AND cardinality(cadence) > 0 AND NOT days_until_renewal = ANY (cadence);

        r := jsonb_build_object('enrollment_id', enrollment_key, 'id', enrollment_key) || r
             || jsonb_build_object('days_until_renewal', days_until_renewal, 'reminder_date', d);
        enrollment_id := CASE WHEN enrollment_key ~ '^\d{1,18}$' THEN enrollment_key::bigint END;
        student_name := r ->> 'student_name';
        urgent := days_until_renewal <= urgent_days;
        payload := wecom_render_message(CASE WHEN urgent THEN 'fee_reminder_urgent' ELSE 'fee_reminder_normal' END, r);
        destination := wecom_reminder_destination(r);
        problem := CASE WHEN destination IS NULL
                        THEN format('no route for %s = %s and reminder_route_fallback is skip',
                                    wecom_setting('reminder_route_column'), r ->> wecom_setting('reminder_route_column'))
                        ELSE wecom_enqueue_problem(destination, payload) END;
        dedupe_key := format('fee_reminder:%s:%s', enrollment_key, d);
        already_enqueued := EXISTS (SELECT 1 FROM wecom_outbox o WHERE o.dedupe_key = format('fee_reminder:%s:%s', enrollment_key, d));
        expires_at := (d + 1)::timestamp AT TIME ZONE zone;                 -- end of that local day
        not_before := CASE WHEN d > local_today THEN (d + run_time) AT TIME ZONE zone ELSE now() END;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('TimeZone', old_zone, true);
END
$$;

-- Enqueue the day's fee reminders; returns how many were enqueued. A second call the same
-- local day enqueues nothing (dedupe_key). Rows that cannot be sent are skipped with a WARNING.
CREATE OR REPLACE FUNCTION wecom_enqueue_fee_reminders(p_today date DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n        int;
    problems text[];
    p        text;
BEGIN
    WITH due AS MATERIALIZED (
        SELECT * FROM wecom_fee_reminders_due(p_today)
    ), inserted AS (
        INSERT INTO wecom_outbox (webhook_name, payload, message_type, enrollment_id, dedupe_key,
                                  priority, not_before, expires_at)
        SELECT due.destination, due.payload, 'fee_reminder', due.enrollment_id, due.dedupe_key,
               CASE WHEN due.urgent THEN 1 ELSE 0 END, due.not_before, due.expires_at
        FROM due
        WHERE due.problem IS NULL
        ORDER BY due.days_until_renewal, due.enrollment_key
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted),
           (SELECT array_agg(format('enrollment %s (%s): %s', enrollment_key, student_name, problem))
              FROM due WHERE problem IS NOT NULL)
    INTO n, problems;
    FOREACH p IN ARRAY coalesce(problems, '{}') LOOP
        RAISE WARNING 'fee reminder not enqueued: %', p;
    END LOOP;
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Triggers a DBA attaches to the school's own tables.
-- ---------------------------------------------------------------------------------------

-- CREATE TRIGGER ... FOR EACH ROW EXECUTE FUNCTION
--     wecom_enqueue_from_row('template' [, 'destination' [, 'lookup_relation' [, 'lookup_key']]])
-- Renders the template from the NEW row's columns and enqueues it. destination may itself
-- use {{column}} (per-family groups); default reminder_destination. With a lookup relation,
-- the columns of its row whose lookup_key (default enrollment_id) equals NEW's are usable
-- too (NEW's own columns win). A problem (bad template, unknown destination) is a WARNING,
-- never an error: a message must not stop the school's own INSERT (a payment, say).
CREATE OR REPLACE FUNCTION wecom_enqueue_from_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tpl     text := TG_ARGV[0];
    row_j   jsonb := to_jsonb(NEW);
    rel     regclass;
    key_col text := coalesce(TG_ARGV[3], 'enrollment_id');
    extra   jsonb;
    dest    text;
    payload jsonb;
    problem text;
BEGIN
    BEGIN
        IF TG_NARGS >= 3 THEN
            rel := to_regclass(TG_ARGV[2]);
            IF rel IS NULL THEN
                RAISE EXCEPTION 'lookup relation % does not exist', TG_ARGV[2];
            END IF;
            EXECUTE format('SELECT to_jsonb(l) FROM %s l WHERE l.%I::text = $1 LIMIT 1', rel, key_col)
                INTO extra USING row_j ->> key_col;
            row_j := coalesce(extra, '{}') || row_j;
        END IF;
        dest := wecom_render_template(coalesce(TG_ARGV[1], wecom_setting('reminder_destination', 'parent_group')), row_j);
        payload := wecom_render_message(tpl, row_j);
        problem := wecom_enqueue_problem(dest, payload);
        IF problem IS NULL THEN
            INSERT INTO wecom_outbox (webhook_name, payload, message_type, enrollment_id)
            VALUES (dest, payload, tpl,
                    CASE WHEN row_j ->> 'enrollment_id' ~ '^\d{1,18}$' THEN (row_j ->> 'enrollment_id')::bigint END);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        problem := SQLERRM;
    END;
    IF problem IS NOT NULL THEN
        RAISE WARNING 'wecom_enqueue_from_row(%) on %: nothing enqueued: %', tpl, TG_TABLE_NAME, problem;
    END IF;
    IF TG_WHEN = 'BEFORE' THEN
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$$;

-- Renewals seen by the cancellation trigger, for wecom_renewal_conversion (a school may also
-- INSERT its own renewal history here).
CREATE TABLE IF NOT EXISTS wecom_renewals (
    enrollment_id bigint NOT NULL,
    renewed_at    timestamptz NOT NULL DEFAULT now(),
    reason        text NULL
);
CREATE INDEX IF NOT EXISTS wecom_renewals_enrollment_idx ON wecom_renewals (enrollment_id);

-- Cancel the pending fee reminders of an enrollment (it was renewed: parents must not be
-- chased after paying), record the renewal, and return how many were cancelled. Rows being
-- sent at this instant cannot be recalled.
CREATE OR REPLACE FUNCTION wecom_cancel_reminders(p_enrollment_id bigint, p_reason text DEFAULT 'enrollment renewed')
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    UPDATE wecom_outbox
       SET status = 'cancelled', last_error = 'cancelled: ' || p_reason
     WHERE enrollment_id = p_enrollment_id AND status = 'pending' AND message_type = 'fee_reminder';
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO wecom_renewals (enrollment_id, reason) VALUES (p_enrollment_id, p_reason);
    RETURN n;
END
$$;

-- CREATE TRIGGER ... FOR EACH ROW [WHEN (...)] EXECUTE FUNCTION
--     wecom_cancel_reminders_from_row(['column holding the renewed enrollment id'])
-- e.g. on INSERT of a renewal enrollment (renewed_from_id) or of a payment (enrollment_id).
CREATE OR REPLACE FUNCTION wecom_cancel_reminders_from_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    col text := coalesce(TG_ARGV[0], 'enrollment_id');
    val text := to_jsonb(NEW) ->> coalesce(TG_ARGV[0], 'enrollment_id');
BEGIN
    IF val ~ '^\d{1,18}$' THEN
        PERFORM wecom_cancel_reminders(val::bigint, format('%s on %s.%s', lower(TG_OP), TG_TABLE_NAME, col));
    END IF;
    IF TG_WHEN = 'BEFORE' THEN
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------------------
-- The once-a-day run: one record per job and local day, shared by the workers and pg_cron.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS wecom_daily_runs (
    job         text NOT NULL,
    local_date  date NOT NULL,
    status      text NOT NULL CHECK (status IN ('done', 'failed')),
    runner      text NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz NULL,
    enqueued    int NULL,
    error       text NULL,
    attempts    int NOT NULL DEFAULT 1,
    PRIMARY KEY (job, local_date)
);

-- The local day whose fee-reminder run is due at p_now, or NULL: the run time has passed in
-- default_timezone, the view exists, and the day has no done run (nor a failure in the last
-- 5 minutes). The same rule as src/reminders/daily.rs, for runners that are only SQL (pg_cron).
CREATE OR REPLACE FUNCTION wecom_daily_reminders_due(p_now timestamptz DEFAULT now()) RETURNS date
LANGUAGE plpgsql STABLE AS $$
DECLARE
    zone     text := wecom_setting('default_timezone', 'Asia/Hong_Kong');
    at_text  text := wecom_setting('reminder_run_time', '09:00');
    local_ts timestamp;
BEGIN
    IF lower(at_text) = 'off' OR to_regclass('active_enrollments_needing_renewal') IS NULL THEN
        RETURN NULL;
    END IF;
    local_ts := p_now AT TIME ZONE zone;
    IF local_ts::time < at_text::time THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM wecom_daily_runs
                WHERE job = 'fee_reminders' AND local_date = local_ts::date
                  AND (status = 'done' OR finished_at > p_now - interval '5 minutes')) THEN
        RETURN NULL;
    END IF;
    RETURN local_ts::date;
END
$$;

-- Run today's fee reminders if due and nobody else has: returns how many were enqueued, or
-- NULL when there was nothing to do (not due, done, or another runner holds the lock).
-- The record and the reminders commit together; a failure is recorded and retried later.
CREATE OR REPLACE FUNCTION wecom_run_daily_reminders(p_runner text DEFAULT 'pg_cron') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    n int;
BEGIN
    IF wecom_daily_reminders_due() IS NULL
       OR NOT pg_try_advisory_xact_lock(hashtext('wecom_daily_runs:fee_reminders')) THEN
        RETURN NULL;
    END IF;
    d := wecom_daily_reminders_due();           -- again, now that no one else is running it
    IF d IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        n := wecom_enqueue_fee_reminders(d);
        INSERT INTO wecom_daily_runs (job, local_date, status, runner, finished_at, enqueued)
        VALUES ('fee_reminders', d, 'done', p_runner, clock_timestamp(), n)
        ON CONFLICT (job, local_date) DO UPDATE
            SET status = 'done', runner = EXCLUDED.runner, started_at = EXCLUDED.started_at,
                finished_at = EXCLUDED.finished_at, enqueued = EXCLUDED.enqueued, error = NULL,
                attempts = wecom_daily_runs.attempts + 1;
        RETURN n;
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO wecom_daily_runs (job, local_date, status, runner, finished_at, error)
        VALUES ('fee_reminders', d, 'failed', p_runner, clock_timestamp(), SQLERRM)
        ON CONFLICT (job, local_date) DO UPDATE
            SET status = 'failed', runner = EXCLUDED.runner, finished_at = EXCLUDED.finished_at,
                error = EXCLUDED.error, attempts = wecom_daily_runs.attempts + 1;
        RAISE WARNING 'daily fee reminders for % failed (retried in 5 minutes): %', d, SQLERRM;
        RETURN NULL;
    END;
END
$$;

-- ---------------------------------------------------------------------------------------
-- The seed's success metrics.
-- ---------------------------------------------------------------------------------------

-- Reminders sent per local day and how many enrollments ("unique students") they reached.
CREATE OR REPLACE VIEW wecom_reminders_per_day AS
SELECT (l.send_timestamp AT TIME ZONE wecom_setting('default_timezone', 'Asia/Hong_Kong'))::date AS date,
       count(*)                        AS reminders_sent,
       count(DISTINCT l.enrollment_id) AS unique_students,
       array_agg(DISTINCT l.webhook_name) AS destinations
FROM wecom_message_log l
WHERE l.message_type = 'fee_reminder' AND l.send_status = 'sent'
GROUP BY 1;

-- Renewal conversion: enrollments first reminded on a day, how many were renewed within
-- conversion_window_days of that first reminder, and the average time to renew. Renewals come
-- from wecom_renewals (filled by the cancellation trigger, or by the school's own INSERTs).
CREATE OR REPLACE VIEW wecom_renewal_conversion AS
WITH reminded AS (
    SELECT l.enrollment_id, min(l.send_timestamp) AS first_reminded_at, count(*) AS reminders
    FROM wecom_message_log l
    WHERE l.message_type = 'fee_reminder' AND l.send_status = 'sent' AND l.enrollment_id IS NOT NULL
    GROUP BY l.enrollment_id
), outcome AS (
    SELECT m.*,
           (SELECT min(r.renewed_at) FROM wecom_renewals r
             WHERE r.enrollment_id = m.enrollment_id AND r.renewed_at >= m.first_reminded_at) AS renewed_at
    FROM reminded m
)
SELECT (first_reminded_at AT TIME ZONE wecom_setting('default_timezone', 'Asia/Hong_Kong'))::date AS first_reminded_on,
       count(*) AS enrollments_reminded,
       sum(reminders) AS reminders_sent,
       count(*) FILTER (WHERE renewed_at <= first_reminded_at
                              + make_interval(days => wecom_setting('conversion_window_days', '7')::int)) AS renewed_within_window,
       round(100.0 * count(*) FILTER (WHERE renewed_at <= first_reminded_at
                              + make_interval(days => wecom_setting('conversion_window_days', '7')::int)) / count(*), 1)
           AS conversion_percent,
       avg(renewed_at - first_reminded_at) AS avg_time_to_renew
FROM outcome
GROUP BY 1;
