-- wecom-outbox: least-privilege logins for MySQL 8.0 / MariaDB 10.6+ (the PostgreSQL twin is
-- sql/roles.sql; docs/guide.md, "Roles and rights", says what each may do).
--
--   mysql -u dba school < sql/roles_mysql.sql
--
-- Run it as the user that ran `wecom-outbox migrate` (or another with GRANT OPTION and
-- CREATE USER), in the database migrate ran in, after migrate and again after each upgrade's.
-- It is safe to run any number of times.
--
-- PLAIN USERS, NOT ROLES. Both servers have roles, but activating one differs: MySQL needs
-- SET DEFAULT ROLE r TO u (or activate_all_roles_on_login), MariaDB SET DEFAULT ROLE r FOR u,
-- and neither accepts the other's spelling; a role that is granted but not active gives a login
-- nothing. So this file creates three users and grants to them directly, in SQL both servers
-- accept (CREATE USER IF NOT EXISTS … ACCOUNT LOCK, column-level GRANT, GRANT EXECUTE ON
-- PROCEDURE/FUNCTION, REVOKE ALL PRIVILEGES, GRANT OPTION, PREPARE/EXECUTE).
--
-- The users are created LOCKED, without a password: give each one when you are ready, e.g.
--   ALTER USER 'wecom_worker'@'%' IDENTIFIED BY 'a long random password' ACCOUNT UNLOCK;
-- A user that exists already keeps its password and lock state.
--
--   writer    AppSheet's login: INSERT into wecom_outbox and read it; cancel and requeue with
--             CALL wecom_cancel_message(id, reason) / wecom_requeue_message(id) (no UPDATE: on
--             MySQL anyone can claim to be the worker with @wecom_actor, so rights decide)
--             (the guard trigger allows exactly cancel and requeue); robot names, never
--             webhook_url. Its rights on your own tables (payments …) are yours to grant, and
--             this file touches only its rights on wecom_outbox, wecom_webhooks and
--             wecom_message_log.
--   worker    wecom-outbox run / status / send-test / enqueue-reminders. A login of its own:
--             each run first takes back ALL its rights (REVOKE ALL PRIVILEGES), then grants
--             these. `migrate` does not run as the worker: it runs as the owner.
--   dashboard read-only, a login of its own (reset the same way): the outbox, the log, robot
--             state, daily runs, and robot columns but webhook_url and notes (so name the
--             columns: SELECT * FROM wecom_webhooks is refused).
--
-- Triggers and routines run with their definer's rights on both servers, which is why the
-- writer needs nothing on wecom_webhooks for its INSERTs to be checked.
--
-- Edit only these five lines:
SET @wecom_db        = DATABASE();        -- the database migrate ran in, e.g. 'school'
SET @wecom_host      = '%';               -- where the logins connect from
SET @wecom_writer    = 'appsheet_writer';
SET @wecom_worker    = 'wecom_worker';
SET @wecom_dashboard = 'wecom_dashboard';

-- ---------------------------------------------------------------------------------------
SET @wecom_q      = CONCAT('`', REPLACE(@wecom_db, '`', '``'), '`');
SET @wecom_w      = CONCAT(QUOTE(@wecom_writer), '@', QUOTE(@wecom_host));
SET @wecom_k      = CONCAT(QUOTE(@wecom_worker), '@', QUOTE(@wecom_host));
SET @wecom_d      = CONCAT(QUOTE(@wecom_dashboard), '@', QUOTE(@wecom_host));
-- A missing database or schema stops here, with a message that says what to do.
SET @wecom_s = IF((SELECT COUNT(*) FROM information_schema.tables
                   WHERE table_schema = @wecom_db AND table_name = 'wecom_outbox') = 1,
                  'DO 0',
                  CONCAT('SIGNAL SQLSTATE ''45000'' SET MESSAGE_TEXT = ',
                         QUOTE(CONCAT('sql/roles_mysql.sql: no table wecom_outbox in database ',
                                      COALESCE(@wecom_db, '(none selected)'),
                                      ': run wecom-outbox migrate first, or set @wecom_db at the top of the file'))));
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;

-- The users, if missing.
SET @wecom_s = CONCAT('CREATE USER IF NOT EXISTS ', @wecom_w, ' ACCOUNT LOCK');
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('CREATE USER IF NOT EXISTS ', @wecom_k, ' ACCOUNT LOCK');
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('CREATE USER IF NOT EXISTS ', @wecom_d, ' ACCOUNT LOCK');
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;

-- Start from nothing. The worker and the dashboard: everything. The writer: its rights on the
-- three wecom tables only (a GRANT first, so the REVOKE always has something to take back).
SET @wecom_s = CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_outbox TO ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('REVOKE ALL PRIVILEGES ON ', @wecom_q, '.wecom_outbox FROM ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_webhooks TO ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('REVOKE ALL PRIVILEGES ON ', @wecom_q, '.wecom_webhooks FROM ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_message_log TO ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('REVOKE ALL PRIVILEGES ON ', @wecom_q, '.wecom_message_log FROM ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;

-- ---------------------------------------------------------------------------------------
-- The writer. It dedupes with INSERT IGNORE: INSERT … ON DUPLICATE KEY UPDATE id = id would
-- need UPDATE rights on every column the outbox's update trigger sets (MariaDB checks those for
-- the inserting user), and those are the worker's.
-- ---------------------------------------------------------------------------------------
SET @wecom_s = CONCAT('GRANT SELECT, INSERT ON ', @wecom_q, '.wecom_outbox TO ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT EXECUTE ON PROCEDURE ', @wecom_q, '.wecom_cancel_message TO ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT EXECUTE ON PROCEDURE ', @wecom_q, '.wecom_requeue_message TO ', @wecom_w);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = (SELECT CONCAT('GRANT SELECT (', GROUP_CONCAT(CONCAT('`', column_name, '`')), ') ON ',
                              @wecom_q, '.wecom_webhooks TO ', @wecom_w)
                FROM information_schema.columns
                WHERE table_schema = @wecom_db AND table_name = 'wecom_webhooks'
                  AND column_name IN ('id', 'webhook_name', 'pool_name', 'destination', 'is_external'));
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;

-- ---------------------------------------------------------------------------------------
-- The worker. UPDATE lists columns: it never rewrites a message or a robot's URL.
-- ---------------------------------------------------------------------------------------
SET @wecom_s = CONCAT('GRANT SELECT, UPDATE (status, attempts, last_errcode, last_error, robot_name, ',
                      'locked_by, locked_until, lease_token, sent_at, not_before) ON ',
                      @wecom_q, '.wecom_outbox TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT, UPDATE (is_active, disabled_reason, last_used_at, total_messages_sent) ON ',
                      @wecom_q, '.wecom_webhooks TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT, INSERT, UPDATE (send_status, send_timestamp, error_message, robot_name, ',
                      'errcode, attempts) ON ', @wecom_q, '.wecom_message_log TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT, UPDATE ON ', @wecom_q, '.wecom_robot_state TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE ON ', @wecom_q, '.wecom_rate_slots TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE ON ', @wecom_q, '.wecom_replica_notes TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_settings TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_log_columns TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_daily_runs TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
-- The routines it calls (they run as their definer). Never wecom_ddl or the other migration
-- helpers: those run any statement they are given.
SET @wecom_s = CONCAT('GRANT EXECUTE ON PROCEDURE ', @wecom_q, '.wecom_write_log TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT EXECUTE ON PROCEDURE ', @wecom_q, '.wecom_enqueue_fee_reminders TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT EXECUTE ON PROCEDURE ', @wecom_q, '.wecom_run_daily_reminders TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT EXECUTE ON FUNCTION ', @wecom_q, '.wecom_daily_reminders_due TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT EXECUTE ON FUNCTION ', @wecom_q, '.wecom_setting TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT EXECUTE ON FUNCTION ', @wecom_q, '.wecom_setting_problem TO ', @wecom_k);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;

-- ---------------------------------------------------------------------------------------
-- The dashboard.
-- ---------------------------------------------------------------------------------------
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_outbox TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_message_log TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_robot_state TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_rate_slots TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_replica_notes TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_settings TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_daily_runs TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = CONCAT('GRANT SELECT ON ', @wecom_q, '.wecom_renewals TO ', @wecom_d);
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;
SET @wecom_s = (SELECT CONCAT('GRANT SELECT (', GROUP_CONCAT(CONCAT('`', column_name, '`')), ') ON ',
                              @wecom_q, '.wecom_webhooks TO ', @wecom_d)
                FROM information_schema.columns
                WHERE table_schema = @wecom_db AND table_name = 'wecom_webhooks'
                  AND column_name IN ('id', 'webhook_name', 'target_description', 'is_active',
                                      'last_used_at', 'total_messages_sent', 'created_at',
                                      'created_by', 'pool_name', 'destination', 'is_external',
                                      'rate_limit', 'rate_window', 'send_window_start',
                                      'send_window_end', 'send_days', 'timezone',
                                      'disabled_reason'));
PREPARE wecom_stmt FROM @wecom_s; EXECUTE wecom_stmt;

DEALLOCATE PREPARE wecom_stmt;
