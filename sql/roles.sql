-- wecom-outbox: least-privilege roles for PostgreSQL (the MySQL / MariaDB twin is
-- sql/roles_mysql.sql).
--
--   psql "$DATABASE_URL" -f sql/roles.sql
--
-- Run it as the role that ran `wecom-outbox migrate` (it owns the tables and may grant on them;
-- creating a role also needs CREATEROLE), after migrate, and again after each upgrade's migrate
-- (a new release may add a table). It is safe to run any number of times: a role that exists is
-- kept as it is (login, password, memberships), and each role's rights on the wecom_ tables,
-- views, sequences and functions are set to exactly what is listed below, so a broader grant
-- made earlier by hand (the old guide's ON ALL TABLES, say) is taken back. Rights on your own
-- tables are not touched.
--
-- The three roles:
--   writer    AppSheet and DBAs' apps: INSERT messages into wecom_outbox and read their status;
--             cancel a pending row or requeue a failed one (UPDATE of status only: the guard
--             trigger allows exactly those changes). Never reads a robot URL, never changes the
--             worker's columns (no UPDATE right on them), no DELETE.
--   worker    what `wecom-outbox run`, `status`, `send-test` and `enqueue-reminders` need, and
--             no more: it reads robot URLs (it must, to send), moves rows through their life,
--             writes the log. It cannot INSERT or DELETE messages, nor change a message's text.
--             `migrate` does NOT run as the worker: it runs as the owner (a DBA), because it
--             creates and alters tables.
--   dashboard read-only: the outbox, the log, robot state, daily runs and the reminder metrics,
--             and every robot column except webhook_url (the key) and notes (free text a key
--             may have been pasted into). `SELECT * FROM wecom_webhooks` is therefore refused:
--             name the columns.
--
-- The roles are created NOLOGIN: give each a login of its own, either the role itself
--   ALTER ROLE wecom_worker LOGIN PASSWORD 'a long random password';
-- or a login that is a member of it (AppSheet's user, which also has the school's own rights):
--   CREATE ROLE appsheet LOGIN PASSWORD '…' IN ROLE appsheet_writer;
--   GRANT appsheet_writer TO an_existing_login;
--
-- The functions users' INSERTs fire (the INSERT check, the school's triggers) run with the
-- owner's rights (migration 0008), which is why the writer needs nothing on wecom_webhooks.
--
-- Edit only the four names at the top of the block.

DO $roles$
DECLARE
    -- ===================== edit these =====================
    app_schema     text := 'public';           -- the schema `wecom-outbox migrate` ran in
    writer_role    text := 'appsheet_writer';  -- AppSheet and DBAs' apps
    worker_role    text := 'wecom_worker';     -- wecom-outbox run / status / send-test / enqueue-reminders
    dashboard_role text := 'wecom_dashboard';  -- read-only dashboards
    -- ======================================================

    -- Robot columns the writer may read: names only, for a list of destinations in the app.
    writer_robot_columns    text[] := ARRAY['id', 'webhook_name', 'pool_name', 'destination',
                                            'is_external'];
    -- Robot columns a dashboard may read: everything but webhook_url and notes.
    dashboard_robot_columns text[] := ARRAY['id', 'webhook_name', 'target_description',
                                            'is_active', 'last_used_at', 'total_messages_sent',
                                            'created_at', 'created_by', 'pool_name',
                                            'destination', 'is_external', 'rate_limit',
                                            'rate_window', 'send_window_start',
                                            'send_window_end', 'send_days', 'timezone',
                                            'disabled_reason'];
    -- What a dashboard reads whole.
    dashboard_relations     text[] := ARRAY['wecom_outbox', 'wecom_message_log',
                                            'wecom_robot_state', 'wecom_rate_slots',
                                            'wecom_replica_notes', 'wecom_settings',
                                            'wecom_daily_runs', 'wecom_renewals',
                                            'wecom_reminders_per_day',
                                            'wecom_renewal_conversion'];
    -- The worker: table → rights. UPDATE lists columns, so it can never rewrite a message.
    worker_reads            text[] := ARRAY['wecom_outbox', 'wecom_webhooks', 'wecom_robot_state',
                                            'wecom_rate_slots', 'wecom_replica_notes',
                                            'wecom_settings', 'wecom_message_log',
                                            'wecom_log_columns', 'wecom_daily_runs'];
    worker_outbox_columns   text[] := ARRAY['status', 'attempts', 'last_errcode', 'last_error',
                                            'robot_name', 'locked_by', 'locked_until',
                                            'lease_token', 'sent_at', 'not_before'];
    worker_robot_columns    text[] := ARRAY['is_active', 'disabled_reason', 'last_used_at',
                                            'total_messages_sent'];
    worker_log_columns      text[] := ARRAY['send_status', 'send_timestamp', 'error_message',
                                            'robot_name', 'errcode', 'attempts'];
    -- Definer functions PUBLIC may not run (migration 0008) that the worker calls.
    worker_functions        text[] := ARRAY['wecom_fee_reminders_due',
                                            'wecom_enqueue_fee_reminders',
                                            'wecom_run_daily_reminders'];

    home      oid;
    role_name text;
    rel       regclass;
    fn        regprocedure;
    seq       text;
BEGIN
    home := to_regnamespace(quote_ident(app_schema));
    IF home IS NULL OR to_regclass(format('%I.wecom_outbox', app_schema)) IS NULL THEN
        RAISE EXCEPTION 'sql/roles.sql: no table wecom_outbox in schema %', app_schema
            USING HINT = 'run `wecom-outbox migrate` first, or set app_schema at the top of the file to the schema it ran in';
    END IF;

    -- The roles, if missing. An existing role keeps its attributes and password.
    FOREACH role_name IN ARRAY ARRAY[writer_role, worker_role, dashboard_role] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            RAISE NOTICE 'created role % (NOLOGIN: give it a login, see the top of sql/roles.sql)', role_name;
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', app_schema, role_name);

        -- Start from nothing on the project's objects (column rights go with the table's).
        FOR rel IN
            SELECT c.oid::regclass FROM pg_class c
            WHERE c.relnamespace = home AND c.relname LIKE 'wecom\_%'
              AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        LOOP
            EXECUTE format('REVOKE ALL ON %s FROM %I', rel, role_name);
        END LOOP;
        FOR seq IN
            SELECT pg_get_serial_sequence(format('%I.wecom_message_log', app_schema), 'id')
            WHERE pg_get_serial_sequence(format('%I.wecom_message_log', app_schema), 'id') IS NOT NULL
        LOOP
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', seq, role_name);
        END LOOP;
        FOR fn IN
            SELECT p.oid::regprocedure FROM pg_proc p
            WHERE p.pronamespace = home AND p.proname LIKE 'wecom\_%'
        LOOP
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %I', fn, role_name);
        END LOOP;
    END LOOP;

    -- The writer.
    EXECUTE format('GRANT SELECT, INSERT ON %I.wecom_outbox TO %I', app_schema, writer_role);
    EXECUTE format('GRANT UPDATE (status) ON %I.wecom_outbox TO %I', app_schema, writer_role);
    EXECUTE (SELECT format('GRANT SELECT (%s) ON %I.wecom_webhooks TO %I',
                           string_agg(quote_ident(a.attname), ', '), app_schema, writer_role)
             FROM pg_attribute a
             WHERE a.attrelid = format('%I.wecom_webhooks', app_schema)::regclass
               AND a.attname = ANY (writer_robot_columns) AND a.attnum > 0 AND NOT a.attisdropped);

    -- The worker.
    FOR rel IN
        SELECT to_regclass(format('%I.%I', app_schema, t)) FROM unnest(worker_reads) t
        WHERE to_regclass(format('%I.%I', app_schema, t)) IS NOT NULL
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %I', rel, worker_role);
    END LOOP;
    EXECUTE format('GRANT UPDATE (%s) ON %I.wecom_outbox TO %I',
                   array_to_string(worker_outbox_columns, ', '), app_schema, worker_role);
    EXECUTE format('GRANT UPDATE (%s) ON %I.wecom_webhooks TO %I',
                   array_to_string(worker_robot_columns, ', '), app_schema, worker_role);
    EXECUTE format('GRANT INSERT, UPDATE (%s) ON %I.wecom_message_log TO %I',
                   array_to_string(worker_log_columns, ', '), app_schema, worker_role);
    EXECUTE format('GRANT UPDATE ON %I.wecom_robot_state TO %I', app_schema, worker_role);
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %I.wecom_rate_slots, %I.wecom_replica_notes TO %I',
                   app_schema, app_schema, worker_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I',
                   pg_get_serial_sequence(format('%I.wecom_rate_slots', app_schema), 'id'), worker_role);
    -- The log's id: a serial on a fresh database; on an adopted one whatever the school made.
    FOR seq IN
        SELECT pg_get_serial_sequence(format('%I.wecom_message_log', app_schema), 'id')
        WHERE pg_get_serial_sequence(format('%I.wecom_message_log', app_schema), 'id') IS NOT NULL
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', seq, worker_role);
    END LOOP;
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = home AND p.proname = ANY (worker_functions)
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, worker_role);
    END LOOP;

    -- The dashboard.
    FOR rel IN
        SELECT to_regclass(format('%I.%I', app_schema, t)) FROM unnest(dashboard_relations) t
        WHERE to_regclass(format('%I.%I', app_schema, t)) IS NOT NULL
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %I', rel, dashboard_role);
    END LOOP;
    EXECUTE (SELECT format('GRANT SELECT (%s) ON %I.wecom_webhooks TO %I',
                           string_agg(quote_ident(a.attname), ', '), app_schema, dashboard_role)
             FROM pg_attribute a
             WHERE a.attrelid = format('%I.wecom_webhooks', app_schema)::regclass
               AND a.attname = ANY (dashboard_robot_columns) AND a.attnum > 0 AND NOT a.attisdropped);
END
$roles$;
