-- Retention and requeue (`prune`, `retry`, the daily prune): when each row finished, kept by
-- the database; indexes that let `status`, `prune` and `retry` read only what they need (never
-- all history); and the setting prune_after_days.

-- ---------------------------------------------------------------------------------------
-- finished_at: when the row became sent, failed, cancelled or expired (NULL while pending or
-- sending). Set by a trigger on every status change, whoever makes it (the worker, a person
-- cancelling, the expiry), so no path can forget it and nobody can set it by hand.
-- ---------------------------------------------------------------------------------------
ALTER TABLE wecom_outbox ADD COLUMN IF NOT EXISTS finished_at timestamptz NULL;

COMMENT ON COLUMN wecom_outbox.finished_at IS
    'When the row became sent, failed, cancelled or expired; NULL while pending or sending. prune and retry select by it.';

-- Rows finished before this migration: the latest time the row records (sent_at for sent rows;
-- otherwise its last scheduled attempt or its expiry), a lower bound of when it finished.
-- Before the trigger below exists, which would keep the column as it was.
UPDATE wecom_outbox
SET finished_at = coalesce(sent_at, greatest(created_at, not_before, expires_at))
WHERE status IN ('sent', 'failed', 'cancelled', 'expired') AND finished_at IS NULL;

CREATE OR REPLACE FUNCTION wecom_outbox_finished_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        NEW.finished_at := OLD.finished_at;
    ELSIF NEW.status IN ('sent', 'failed', 'cancelled', 'expired') THEN
        NEW.finished_at := clock_timestamp();
    ELSE
        NEW.finished_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS wecom_outbox_finished_at ON wecom_outbox;
CREATE TRIGGER wecom_outbox_finished_at
    BEFORE INSERT OR UPDATE ON wecom_outbox
    FOR EACH ROW EXECUTE FUNCTION wecom_outbox_finished_at();

-- prune (oldest finished first) and the recent counts `status` shows: finished rows only.
CREATE INDEX IF NOT EXISTS wecom_outbox_finished_idx
    ON wecom_outbox (finished_at, webhook_name, status)
    WHERE finished_at IS NOT NULL;
-- status counts failed rows exactly, and retry selects them.
CREATE INDEX IF NOT EXISTS wecom_outbox_failed_idx
    ON wecom_outbox (webhook_name, finished_at)
    WHERE status = 'failed';
-- status counts rows being sent per destination without reading the table.
CREATE INDEX IF NOT EXISTS wecom_outbox_sending_idx
    ON wecom_outbox (webhook_name)
    WHERE status = 'sending';

-- ---------------------------------------------------------------------------------------
-- prune_after_days: empty = the workers never prune; N = once a day, one replica deletes
-- finished rows (and their log rows) that finished more than N days ago.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION wecom_setting_kinds() RETURNS TABLE (name text, kind text)
LANGUAGE sql IMMUTABLE AS $$
    VALUES ('default_timezone',        'zone'),
           ('reminder_destination',    'destination'),
           ('reminder_status',         'text'),
           ('reminder_min_days',       'days'),
           ('reminder_max_days',       'days'),
           ('reminder_cadence',        'day_list'),
           ('reminder_urgent_days',    'days'),
           ('reminder_run_time',       'run_time'),
           ('reminder_route_column',   'route_column'),
           ('reminder_route_fallback', 'route_fallback'),
           ('conversion_window_days',  'days_not_negative'),
           ('prune_after_days',        'prune_days')
$$;

-- 0006's function with one more kind, prune_days.
CREATE OR REPLACE FUNCTION wecom_setting_problem(p_name text, p_value text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    kind text := (SELECT k.kind FROM wecom_setting_kinds() k WHERE k.name = p_name);
    v    text := btrim(p_value);
    item text;
BEGIN
    CASE kind
    WHEN 'zone' THEN
        -- The worker reads this value untrimmed.
        IF wecom_timezone_problem(p_value) IS NOT NULL THEN
            RETURN p_name || ' ' || wecom_timezone_problem(p_value);
        END IF;
    WHEN 'destination' THEN
        IF v = '' THEN
            RETURN format('%s is empty: name the robot or pool reminders go to (default parent_group)', p_name);
        END IF;
        IF wecom_destination_problem(v) IS NOT NULL THEN
            RETURN p_name || ' ' || wecom_destination_problem(v);
        END IF;
    WHEN 'text' THEN
        IF v = '' THEN
            RETURN format('%s is empty: give the renewal_action_status that gets reminders (default 🔴 Not Yet Renewed)', p_name);
        END IF;
    WHEN 'days', 'days_not_negative' THEN
        IF NOT wecom_is_int(v) THEN
            RETURN format('%s %L is not a whole number of days, such as 7', p_name, p_value);
        END IF;
        IF kind = 'days_not_negative' AND v::int < 0 THEN
            RETURN format('%s %s is negative: give 0 or more days', p_name, v);
        END IF;
    WHEN 'day_list' THEN
        FOREACH item IN ARRAY string_to_array(replace(v, ' ', ''), ',') LOOP
            IF NOT wecom_is_int(item) THEN
                RETURN format('%s %L is not a list of whole numbers of days such as 7,3,1,0 (empty = every day in range): %L is not one',
                              p_name, p_value, item);
            END IF;
        END LOOP;
    WHEN 'run_time' THEN
        -- As the worker parses it (src/reminders/schedule.rs): H:MM or HH:MM[:SS], or off.
        IF lower(v) <> 'off' AND v !~ '^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$' THEN
            RETURN format('%s %L is not a local time like 09:00 (00:00 to 23:59), or off', p_name, p_value);
        END IF;
    WHEN 'route_column' THEN
        IF v <> '' AND to_regclass('active_enrollments_needing_renewal') IS NOT NULL
           AND v NOT IN ('enrollment_id', 'id', 'days_until_renewal', 'reminder_date')
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = to_regclass('active_enrollments_needing_renewal')
                              AND a.attname = v AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RETURN format('%s %s is not a column of active_enrollments_needing_renewal (empty = no routing)', p_name, v);
        END IF;
    WHEN 'route_fallback' THEN
        IF v NOT IN ('', 'skip') AND wecom_destination_problem(v) IS NOT NULL THEN
            RETURN format('%s %s (or write skip to send nothing, empty for reminder_destination)',
                          p_name, wecom_destination_problem(v));
        END IF;
    WHEN 'prune_days' THEN
        -- Read by the worker's daily prune (src/worker/prune.rs): empty = off.
        IF v <> '' AND (NOT wecom_is_int(v) OR v::numeric < 1) THEN
            RETURN format('%s %L is not a whole number of days of at least 1, such as 90 (empty = never prune)', p_name, p_value);
        END IF;
    ELSE
        RETURN format('unknown setting %s: the settings are %s', p_name,
                      (SELECT string_agg(k.name, ', ' ORDER BY k.name) FROM wecom_setting_kinds() k));
    END CASE;
    RETURN NULL;
END
$$;


INSERT INTO wecom_settings (name, value, description) VALUES
    ('prune_after_days', '',
     'Empty: the workers never prune. N: once a day, delete sent/failed/cancelled/expired rows (and their log rows) finished more than N days ago')
ON CONFLICT (name) DO NOTHING;

-- The new trigger function gets the definer rights 0008 gives every trigger function on the
-- project's tables, and is no longer executable by PUBLIC (triggers fire regardless).
DO $definer$
DECLARE
    home_name text;
BEGIN
    SELECT n.nspname INTO home_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = to_regclass('wecom_outbox');
    EXECUTE format('ALTER FUNCTION wecom_outbox_finished_at() SECURITY DEFINER SET search_path = %I, pg_temp',
                   home_name);
    REVOKE EXECUTE ON FUNCTION wecom_outbox_finished_at() FROM PUBLIC;
END
$definer$;
