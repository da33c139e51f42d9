-- Definer rights: the functions that users' INSERTs and UPDATEs fire, and the ones users call,
-- run with the rights of the role that ran `wecom-outbox migrate` (their owner), so a role
-- granted only what it needs (the guide's appsheet_writer: INSERT and SELECT on wecom_outbox)
-- still gets the README's triggers: a payment enqueues its message (reading wecom_templates),
-- a renewal cancels the pending reminder (updating wecom_outbox), and the INSERT check reads
-- wecom_webhooks, whose robot URLs that role must never read itself.
--
-- Each such function gets SECURITY DEFINER and a fixed search_path (the schema migrate ran
-- in, then pg_temp), so no caller can slip its own tables or functions in front of ours.
--
-- READ THIS BEFORE REPLACING ONE OF THESE FUNCTIONS IN A LATER MIGRATION:
-- CREATE OR REPLACE FUNCTION resets SECURITY DEFINER and SET search_path (it keeps the owner
-- and the grants). A later migration that replaces a function listed below, or a trigger
-- function on a wecom_ table, must end with the same ALTER FUNCTION … SECURITY DEFINER
-- SET search_path = <schema>, pg_temp (compute the schema as this file does; never write
-- public), or that function silently runs with the caller's rights again.
-- tests/definer_rights.rs checks every function this file covers.
--
-- Who may call them: a definer function lets its caller do what its owner may, so the ones
-- that read the school's data (the reminders' view) or change the outbox, and every trigger
-- function (which could otherwise be attached to a table of the caller's choosing), are no
-- longer executable by PUBLIC. Triggers fire whatever the role inserting (PostgreSQL does not
-- check EXECUTE when a trigger fires); the roles that already could UPDATE wecom_outbox (the
-- workers) get EXECUTE here, and the guide grants it to the roles it creates.
-- The functions that only read settings, templates and robot names stay open to PUBLIC.
-- Pure functions (wecom_payload_problem, wecom_render_template, …) read no table and keep
-- their caller's rights.

DO $definer$
DECLARE
    outbox     oid := to_regclass('wecom_outbox');
    home       oid;
    home_name  text;
    -- Called by users and dashboards' views; read settings, templates, robot names.
    open_to_all text[] := ARRAY[
        'wecom_setting',
        'wecom_render_message',
        'wecom_enqueue_problem',
        'wecom_reminder_destination',
        'wecom_daily_reminders_due'
    ];
    -- Read the school's data or change the outbox: owner and granted roles only.
    restricted text[] := ARRAY[
        'wecom_fee_reminders_due',
        'wecom_enqueue_fee_reminders',
        'wecom_run_daily_reminders',
        'wecom_cancel_reminders',
        'wecom_enqueue_from_row',
        'wecom_cancel_reminders_from_row'
    ];
    missing    text;
    fn         regprocedure;
    limited    boolean;
    grantee    text;
BEGIN
    IF outbox IS NULL THEN
        RAISE EXCEPTION 'migration 0008: table wecom_outbox not found on the search_path';
    END IF;
    SELECT c.relnamespace, n.nspname INTO home, home_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = outbox;

    SELECT string_agg(name, ', ') INTO missing
    FROM unnest(open_to_all || restricted) AS name
    WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = home AND p.proname = name);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'migration 0008: functions % not found in schema %', missing, home_name;
    END IF;

    FOR fn, limited IN
        SELECT p.oid::regprocedure,
               p.proname = ANY (restricted) OR p.prorettype = 'trigger'::regtype
        FROM pg_proc p
        WHERE p.pronamespace = home
          AND p.proname LIKE 'wecom\_%'
          AND (p.proname = ANY (open_to_all || restricted)
               -- every trigger function on the project's tables, whichever migration made it
               OR (p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                   AND p.oid IN (SELECT t.tgfoid
                                 FROM pg_trigger t
                                 JOIN pg_class c ON c.oid = t.tgrelid
                                 WHERE NOT t.tgisinternal
                                   AND c.relnamespace = home
                                   AND c.relname LIKE 'wecom\_%')))
        ORDER BY p.proname
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       fn, home_name);
        CONTINUE WHEN NOT limited;
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
        FOR grantee IN
            SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
            FROM pg_class c
            CROSS JOIN LATERAL aclexplode(c.relacl) AS a
            LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE c.oid = outbox
              AND a.privilege_type = 'UPDATE'
              AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', fn, grantee);
        END LOOP;
    END LOOP;
END
$definer$;
