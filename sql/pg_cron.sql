-- Schedule the daily fee reminders with pg_cron (for databases that have it; Debian/Ubuntu:
-- apt-get install postgresql-15-cron, then in postgresql.conf
--     shared_preload_libraries = 'pg_cron'
--     cron.database_name = 'postgres'
-- and restart PostgreSQL).
--
-- Run this file in pg_cron's own database (cron.database_name, usually postgres), naming the
-- database wecom-outbox was migrated into:
--     psql -d postgres -v wecom_db=school -f sql/pg_cron.sql
-- Without -v wecom_db it schedules in the database it runs in. Running it again replaces
-- the job. To remove it:
--     SELECT cron.unschedule('wecom-fee-reminders:school');
--
-- pg_cron's clock is UTC (1.4 has no time-zone setting), and a fixed UTC time would drift by an
-- hour at every daylight-saving change. So the job does not try to translate 09:00 local into
-- UTC: it wakes every 5 minutes and calls wecom_run_daily_reminders(), which decides in
-- wecom_settings.default_timezone whether today's run (reminder_run_time) is due and not yet
-- done. The decision, the advisory lock and the record in wecom_daily_runs are the ones the
-- worker uses: with pg_cron and workers both running, each day still runs exactly once, and
-- whichever is up first after the run time does it.

\set ON_ERROR_STOP on
\if :{?wecom_db}
\else
    \set wecom_db :DBNAME
\endif

CREATE EXTENSION IF NOT EXISTS pg_cron;

-- Replace an earlier schedule of this job.
SELECT cron.unschedule(jobid)
FROM cron.job
WHERE jobname = 'wecom-fee-reminders:' || :'wecom_db';

SELECT cron.schedule_in_database(
    'wecom-fee-reminders:' || :'wecom_db',           -- job name
    '*/5 * * * *',                                    -- every 5 minutes (UTC; see above)
    $$SELECT wecom_run_daily_reminders('pg_cron')$$,  -- does the day once, at the local time
    :'wecom_db'                                       -- in the wecom-outbox database
) AS jobid;

-- What ran, and how it went:
--     SELECT * FROM cron.job_run_details ORDER BY start_time DESC LIMIT 10;   -- (here)
--     SELECT * FROM wecom_daily_runs ORDER BY local_date DESC LIMIT 10;       -- (in wecom_db)
