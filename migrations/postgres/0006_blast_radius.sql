-- One mistake stops only itself (DESIGN.md, "Blast radius"). A robot row or a setting that can
-- never mean what it says is refused when it is written, with the rule it breaks and what to
-- write instead. Rows already stored are left as they are: nothing here fails on old data.
-- The worker skips such a robot with its reason, and `status` shows it.
--
-- The rules for one value live in one function each, used by every trigger that checks it:
--   wecom_timezone_problem      an IANA zone the worker can read (robots and default_timezone)
--   wecom_send_days_problem     a plain, non-empty list of ISO weekdays
--   wecom_send_window_problem   a window that is not empty, not "the whole day" in disguise
--   wecom_rate_window_problem   a window the rules can plan with
--   wecom_destination_problem   a robot or pool that exists
--   wecom_setting_problem       each known setting, the way its reader needs it

-- ---------------------------------------------------------------------------------------
-- Shared checks. Each returns why the value cannot work, or NULL when it can.
-- ---------------------------------------------------------------------------------------

-- Only IANA zone names, as the worker reads them (chrono-tz): PostgreSQL alone would also
-- take abbreviations ('HKT') and POSIX strings ('UTC+8', which means UTC-8).
CREATE OR REPLACE FUNCTION wecom_timezone_problem(p_zone text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM pg_timezone_names
                      WHERE name = p_zone
                        AND name !~ '^(posix|right)/'
                        AND name NOT IN ('localtime', 'posixrules', 'Factory'))
            THEN NULL
        ELSE format('%s is not an IANA time zone name (such as Asia/Hong_Kong; names are case-sensitive)',
                    p_zone)
    END
$$;

-- send_days: NULL (every day) or a plain list of ISO weekdays. The range (1-7) is the CHECK
-- wecom_webhooks_send_days_iso; this adds what the CHECK lets through.
CREATE OR REPLACE FUNCTION wecom_send_days_problem(p_days int[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_days IS NULL THEN NULL
        WHEN array_ndims(p_days) > 1 THEN
            format('send_days %s is an array of %s dimensions: write one list of ISO weekdays, such as {1,2,3,4,5} (1 = Monday … 7 = Sunday)',
                   p_days, array_ndims(p_days))
        WHEN cardinality(p_days) = 0 THEN
            'send_days is empty ({}), so the robot would never send: set it to NULL for every day, or list ISO weekdays such as {1,2,3,4,5}'
        WHEN array_position(p_days, NULL) IS NOT NULL THEN
            format('send_days %s contains NULL: list ISO weekdays only, such as {1,2,3,4,5}', p_days)
    END
$$;

-- send_window_start/end: both NULL (any time), or a window that opens and closes. A window may
-- wrap midnight (22:00-02:00). 24:00 is midnight written the other way: one spelling only,
-- so that 00:00-24:00 cannot pose as a window.
CREATE OR REPLACE FUNCTION wecom_send_window_problem(p_start time, p_end time) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_start = time '24:00' OR p_end = time '24:00' THEN
            format('send window %s-%s uses 24:00: write midnight as 00:00 (a window may wrap midnight, e.g. 22:00-02:00; both NULL = any time)',
                   to_char(p_start, 'HH24:MI'), to_char(p_end, 'HH24:MI'))
        WHEN p_start = p_end THEN
            format('send window %s-%s starts and ends at the same time: set send_window_start and send_window_end to NULL to send at any time, or to the hours it may send, e.g. 09:00 and 20:00',
                   to_char(p_start, 'HH24:MI'), to_char(p_end, 'HH24:MI'))
    END
$$;

-- rate_window: positive (the CHECK wecom_webhooks_rate_window_positive compares intervals
-- with 30-day months; this also holds for the seconds the worker reads) and at most 366 days,
-- the longest window the rules plan with.
CREATE OR REPLACE FUNCTION wecom_rate_window_problem(p_window interval) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_window IS NULL OR NOT p_window > interval '0' THEN NULL   -- the CHECK says so
        WHEN extract(epoch FROM p_window) <= 0 THEN
            format('rate_window %s is %s seconds long: give a positive length such as 60 seconds',
                   p_window, extract(epoch FROM p_window))
        WHEN extract(epoch FROM p_window) > 366 * 86400 THEN
            format('rate_window %s is longer than 366 days: give a window of at most a year (WeCom''s own is 60 seconds)',
                   p_window)
    END
$$;

-- A name a message can be sent to: what robots serve, coalesce(pool_name, webhook_name).
CREATE OR REPLACE FUNCTION wecom_destination_problem(p_name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM wecom_webhooks WHERE coalesce(pool_name, webhook_name) = p_name)
            THEN NULL
        WHEN EXISTS (SELECT 1 FROM wecom_webhooks WHERE webhook_name = p_name) THEN
            format('%s is a robot of pool %s: name the pool %s',
                   p_name, (SELECT pool_name FROM wecom_webhooks WHERE webhook_name = p_name),
                   (SELECT pool_name FROM wecom_webhooks WHERE webhook_name = p_name))
        ELSE format('%s is no robot or pool in wecom_webhooks (destinations: %s): add the robot first',
                    p_name,
                    coalesce((SELECT string_agg(DISTINCT coalesce(pool_name, webhook_name), ', '
                                                    ORDER BY coalesce(pool_name, webhook_name))
                                FROM wecom_webhooks), 'none yet'))
    END
$$;

-- ---------------------------------------------------------------------------------------
-- Robots. The same trigger as 0003 (bad zone refused, a new URL or re-enabling clears the
-- worker's reason), now checking every column that can make a robot useless. Each value is
-- checked when it is written, never on the worker's own UPDATEs of an old row.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION wecom_webhooks_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    fresh   boolean := TG_OP = 'INSERT';
    problem text;
BEGIN
    IF NEW.timezone IS NOT NULL AND (fresh OR NEW.timezone IS DISTINCT FROM OLD.timezone) THEN
        problem := 'timezone ' || wecom_timezone_problem(NEW.timezone);
    END IF;
    IF problem IS NULL AND (fresh OR NEW.send_days IS DISTINCT FROM OLD.send_days) THEN
        problem := wecom_send_days_problem(NEW.send_days);
    END IF;
    IF problem IS NULL AND (fresh OR NEW.send_window_start IS DISTINCT FROM OLD.send_window_start
                                  OR NEW.send_window_end IS DISTINCT FROM OLD.send_window_end) THEN
        problem := wecom_send_window_problem(NEW.send_window_start, NEW.send_window_end);
    END IF;
    IF problem IS NULL AND (fresh OR NEW.rate_window IS DISTINCT FROM OLD.rate_window) THEN
        problem := wecom_rate_window_problem(NEW.rate_window);
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'wecom_webhooks: %', problem USING ERRCODE = 'check_violation';
    END IF;

    IF TG_OP = 'UPDATE' THEN
        IF NEW.webhook_url IS DISTINCT FROM OLD.webhook_url
           AND OLD.disabled_reason IS NOT NULL
           AND NEW.is_active IS NOT DISTINCT FROM OLD.is_active
           AND NEW.disabled_reason IS NOT DISTINCT FROM OLD.disabled_reason THEN
            NEW.is_active := true;
            NEW.disabled_reason := NULL;
        ELSIF coalesce(NEW.is_active, true) AND NOT coalesce(OLD.is_active, true)
           AND NEW.disabled_reason IS NOT DISTINCT FROM OLD.disabled_reason THEN
            NEW.disabled_reason := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Settings.
-- ---------------------------------------------------------------------------------------

-- Every setting there is, and what kind of value its reader needs. A migration that adds a
-- setting replaces this function (and, for a new kind, wecom_setting_problem) first.
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
           ('conversion_window_days',  'days_not_negative')
$$;

-- Settings a database lost before they were checked come back with their defaults (0002,
-- 0004), so the worker and SQL agree on them. Before the trigger: the default destination
-- need not have a robot yet.
INSERT INTO wecom_settings (name, value, description) VALUES
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
    ('conversion_window_days', '7', 'wecom_renewal_conversion counts a reminded enrollment as converted when renewed within this many days')
ON CONFLICT (name) DO NOTHING;

-- Whether p is an integer PostgreSQL's int can hold, written plainly (7, -2, +3).
CREATE OR REPLACE FUNCTION wecom_is_int(p text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p IS NULL OR p !~ '^[+-]?[0-9]{1,10}$' THEN
        RETURN false;
    END IF;
    RETURN p::numeric BETWEEN -2147483648 AND 2147483647;
END
$$;

-- Why p_value cannot work for setting p_name, checked the way its reader uses it
-- (wecom_setting() trims spaces; a blank value means "the default" only where said).
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
    ELSE
        RETURN format('unknown setting %s: the settings are %s', p_name,
                      (SELECT string_agg(k.name, ', ' ORDER BY k.name) FROM wecom_setting_kinds() k));
    END CASE;
    RETURN NULL;
END
$$;

-- Why the settings together cannot work (each may be fine alone), or NULL. Checked at commit,
-- so a DBA can change the range's two ends one statement at a time.
CREATE OR REPLACE FUNCTION wecom_settings_conflict() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    min_days int;
    max_days int;
    cadence  int[];
    outside  int[];
BEGIN
    IF wecom_setting_problem('reminder_min_days', wecom_setting('reminder_min_days', '0')) IS NOT NULL
       OR wecom_setting_problem('reminder_max_days', wecom_setting('reminder_max_days', '7')) IS NOT NULL
       OR wecom_setting_problem('reminder_cadence', wecom_setting('reminder_cadence', '')) IS NOT NULL THEN
        RETURN NULL;                                  -- said about the value itself
    END IF;
    min_days := wecom_setting('reminder_min_days', '0')::int;
    max_days := wecom_setting('reminder_max_days', '7')::int;
    IF min_days > max_days THEN
        RETURN format('reminder_min_days %s is more than reminder_max_days %s: no enrollment would get a reminder',
                      min_days, max_days);
    END IF;
    cadence := string_to_array(replace(wecom_setting('reminder_cadence', ''), ' ', ''), ',')::int[];
    SELECT array_agg(d ORDER BY d) INTO outside FROM unnest(cadence) d WHERE d NOT BETWEEN min_days AND max_days;
    IF outside IS NOT NULL THEN
        RETURN format('reminder_cadence has %s, outside reminder_min_days..reminder_max_days (%s..%s): those days never get a reminder',
                      array_to_string(outside, ','), min_days, max_days);
    END IF;
    RETURN NULL;
END
$$;

-- A setting is checked when it is written; a known one cannot be deleted (the worker and
-- SQL would fall back to different defaults): UPDATE it instead.
CREATE OR REPLACE FUNCTION wecom_settings_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT 1 FROM wecom_setting_kinds() k WHERE k.name = OLD.name) THEN
            RAISE EXCEPTION 'wecom_settings: % cannot be deleted, the worker and reminders read it: UPDATE its value instead', OLD.name
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.name IS DISTINCT FROM OLD.name
       AND EXISTS (SELECT 1 FROM wecom_setting_kinds() k WHERE k.name = OLD.name) THEN
        RAISE EXCEPTION 'wecom_settings: % cannot be renamed, the worker and reminders read it: UPDATE its value instead', OLD.name
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.value IS NULL THEN
        RETURN NEW;                                   -- the NOT NULL constraint says so
    END IF;
    IF TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name OR NEW.value IS DISTINCT FROM OLD.value THEN
        problem := wecom_setting_problem(NEW.name, NEW.value);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'wecom_settings: %', problem USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS wecom_settings_before_write ON wecom_settings;
CREATE TRIGGER wecom_settings_before_write
    BEFORE INSERT OR UPDATE OR DELETE ON wecom_settings
    FOR EACH ROW EXECUTE FUNCTION wecom_settings_before_write();

CREATE OR REPLACE FUNCTION wecom_settings_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wecom_settings cannot be truncated, the worker and reminders read it: UPDATE the values instead'
        USING ERRCODE = 'restrict_violation';
END
$$;

DROP TRIGGER IF EXISTS wecom_settings_refuse_truncate ON wecom_settings;
CREATE TRIGGER wecom_settings_refuse_truncate
    BEFORE TRUNCATE ON wecom_settings
    FOR EACH STATEMENT EXECUTE FUNCTION wecom_settings_refuse_truncate();

CREATE OR REPLACE FUNCTION wecom_settings_check_together() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text := wecom_settings_conflict();
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'wecom_settings: %', problem USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS wecom_settings_check_together ON wecom_settings;
CREATE CONSTRAINT TRIGGER wecom_settings_check_together
    AFTER INSERT OR UPDATE ON wecom_settings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION wecom_settings_check_together();

-- Robots with no zone of their own that an earlier worker disabled because default_timezone
-- was not a zone: the zone is fixed, so they are back in service. Returns how many.
CREATE OR REPLACE FUNCTION wecom_reenable_default_zone_victims() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    IF wecom_timezone_problem(wecom_setting('default_timezone', 'Asia/Hong_Kong')) IS NOT NULL THEN
        RETURN 0;
    END IF;
    UPDATE wecom_webhooks
       SET is_active = true
     WHERE timezone IS NULL
       AND NOT coalesce(is_active, true)
       AND disabled_reason LIKE 'timezone "%" is not an IANA time zone name';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- After a setting changes, every robot is looked at again at once (a fixed zone takes effect
-- now, not at each robot's next check) and the workers are woken.
CREATE OR REPLACE FUNCTION wecom_settings_after_write() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    dest text;
BEGIN
    IF NEW.name = 'default_timezone' THEN
        PERFORM wecom_reenable_default_zone_victims();
    END IF;
    UPDATE wecom_robot_state SET next_check_at = now() WHERE next_check_at > now();
    FOR dest IN SELECT DISTINCT coalesce(pool_name, webhook_name) FROM wecom_webhooks LOOP
        PERFORM pg_notify('wecom_outbox', dest);
    END LOOP;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS wecom_settings_after_insert ON wecom_settings;
CREATE TRIGGER wecom_settings_after_insert
    AFTER INSERT ON wecom_settings
    FOR EACH ROW EXECUTE FUNCTION wecom_settings_after_write();

DROP TRIGGER IF EXISTS wecom_settings_after_update ON wecom_settings;
CREATE TRIGGER wecom_settings_after_update
    AFTER UPDATE OF name, value ON wecom_settings
    FOR EACH ROW
    WHEN ((NEW.name, NEW.value) IS DISTINCT FROM (OLD.name, OLD.value))
    EXECUTE FUNCTION wecom_settings_after_write();

SELECT wecom_reenable_default_zone_victims();
