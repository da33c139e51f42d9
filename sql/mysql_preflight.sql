-- MySQL 8.0 / MariaDB: what `wecom-outbox migrate` asks first, before it runs
-- migrations/mysql (the lead wires it in src/; this file is the query and the messages).
--
-- With binary logging on (Cloud SQL turns it on for backups and replicas), a user without
-- SUPER (Cloud SQL has none) may create triggers, functions and procedures only when the
-- server's log_bin_trust_function_creators flag is on; without it the migration fails half-way
-- with "You do not have the SUPER privilege and binary logging is enabled (you *might* want to
-- use the less safe log_bin_trust_function_creators variable)". Ask first and refuse clearly.
-- The event scheduler (Cloud SQL flag event_scheduler, off by default) is only reported: the
-- workers run the daily reminders themselves when it is off.
SELECT @@log_bin                          AS log_bin,
       @@log_bin_trust_function_creators  AS trust_function_creators,
       @@event_scheduler                  AS event_scheduler,
       VERSION()                          AS server_version,
       (SELECT COUNT(*) FROM information_schema.user_privileges
         WHERE grantee = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
                                SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
           AND privilege_type = 'SUPER')  AS has_super;

-- When log_bin = 1 AND trust_function_creators = 0 AND has_super = 0, migrate stops, changes
-- nothing, and prints (exit code 1):
--
--   migrate: this server has binary logging on, and creating wecom-outbox's triggers and
--   procedures then needs the flag log_bin_trust_function_creators = on (the user has no
--   SUPER privilege). On Cloud SQL: gcloud sql instances patch INSTANCE
--   --database-flags=log_bin_trust_function_creators=on (keep the instance's other flags in
--   that list), or Console > the instance > Edit > Flags. Elsewhere:
--   SET GLOBAL log_bin_trust_function_creators = 1 (and in my.cnf). Then run migrate again.
--
-- When event_scheduler is not ON, migrate prints (and carries on):
--
--   migrate: the event scheduler is off, so the daily fee reminders run from the workers'
--   own scheduler (reminder_run_time in wecom_settings). To run them in the database instead,
--   set the flag event_scheduler = on (Cloud SQL: --database-flags=event_scheduler=on).
--
-- After the migrations, on every run, migrate also fills wecom_timezones and
-- wecom_timezone_offsets from chrono-tz and calls wecom_refresh_log_columns().
