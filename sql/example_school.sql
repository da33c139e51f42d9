-- A small example school for wecom-outbox: students, tutors, enrollments and payments, the
-- view active_enrollments_needing_renewal the daily fee reminders read, and the two triggers
-- a school attaches (cancel reminders on renewal; "payment received" message).
--
-- Load it into a database that `wecom-outbox migrate` has prepared:
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/example_school.sql
-- Then add the parent_group robot (README, "Daily fee reminders") and try
--     wecom-outbox preview
--
-- The school's tables live in the schema example_school, so loading this by mistake into a
-- real school database cannot touch its tables; only the view public.active_enrollments_needing_renewal
-- is created (and the script stops if a view of that name exists that is not this example's).
-- Running it again adds nothing. Dates are relative to the day it is loaded.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

DO $$
BEGIN
    IF to_regclass('public.wecom_outbox') IS NULL THEN
        RAISE EXCEPTION 'run `wecom-outbox migrate` on this database first';
    END IF;
    IF to_regclass('public.active_enrollments_needing_renewal') IS NOT NULL
       AND pg_get_viewdef(to_regclass('public.active_enrollments_needing_renewal')) NOT LIKE '%example_school%' THEN
        RAISE EXCEPTION 'active_enrollments_needing_renewal already exists and is not the example''s: not replacing your school''s view';
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS example_school;
SET search_path = example_school, public;
-- "Today" is the school's day (as the reminders count it), not the server's UTC day.
DO $$ BEGIN PERFORM set_config('TimeZone', wecom_setting('default_timezone', 'Asia/Hong_Kong'), false); END $$;

-- ---------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS tutors (
    id   int PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE IF NOT EXISTS students (
    id           int PRIMARY KEY,
    student_name text NOT NULL,
    parent_phone text,
    language     text NOT NULL DEFAULT 'en',   -- 'en' or 'zh': which parents' group reads it
    campus       text NOT NULL DEFAULT 'hk',
    family_group text NULL                     -- the family's own customer group, if any
);

CREATE TABLE IF NOT EXISTS enrollments (
    id              int PRIMARY KEY,
    student_id      int NOT NULL REFERENCES students (id),
    tutor_id        int NOT NULL REFERENCES tutors (id),
    assigned_day    text NOT NULL,
    assigned_time   time NOT NULL,
    start_date      date NOT NULL,
    end_date        date NOT NULL,
    total_credits   int NOT NULL,
    credits_used    int NOT NULL DEFAULT 0,
    renewed_from_id int NULL REFERENCES enrollments (id),  -- set on the enrollment that renews another
    status          text NOT NULL DEFAULT 'active'          -- 'active' or 'withdrawn'
);

CREATE TABLE IF NOT EXISTS payments (
    id            serial PRIMARY KEY,
    enrollment_id int NOT NULL REFERENCES enrollments (id),
    amount        numeric(10, 2) NOT NULL,
    method        text NOT NULL DEFAULT 'bank transfer',
    paid_at       timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------
-- Data (only on the first run: rows are keyed by id)
-- ---------------------------------------------------------------------------------------
INSERT INTO tutors (id, name) VALUES
    (1, 'Ms. Chan 陈老师'),
    (2, 'Mr. Wong 黄老师'),
    (3, 'Ms. Li 李老师'),
    (4, 'Mr. Smith')
ON CONFLICT (id) DO NOTHING;

INSERT INTO students (id, student_name, parent_phone, language, campus) VALUES
    ( 1, '陈小明',            '+852 9123 4001', 'zh', 'hk'),
    ( 2, 'Emily Wong',        '+852 9123 4002', 'en', 'hk'),
    ( 3, '李嘉欣',            '+852 9123 4003', 'zh', 'hk'),
    ( 4, 'Lucas Ho',          '+852 9123 4004', 'en', 'mo'),
    ( 5, '张伟',              '+853 6612 4005', 'zh', 'mo'),
    ( 6, 'Sophie Lam',        '+852 9123 4006', 'en', 'hk'),
    ( 7, '王芳',              '+852 9123 4007', 'zh', 'hk'),
    ( 8, 'Ethan Cheung',      '+852 9123 4008', 'en', 'hk'),
    ( 9, '刘洋',              '+853 6612 4009', 'zh', 'mo'),
    (10, 'Chloe Leung',       '+852 9123 4010', 'en', 'hk'),
    (11, '黄子轩',            '+852 9123 4011', 'zh', 'hk'),
    (12, 'Alexandra Konstantinopoulou-Wellington', '+852 9123 4012', 'en', 'hk'),
    (13, '周杰',              '+852 9123 4013', 'zh', 'hk'),
    (14, 'Oliver Tam',        '+852 9123 4014', 'en', 'hk'),
    (15, '吴静怡',            '+853 6612 4015', 'zh', 'mo'),
    (16, 'Mia Chow',          '+852 9123 4016', 'en', 'hk'),
    (17, '林俊杰',            '+852 9123 4017', 'zh', 'hk'),
    (18, 'Noah Yip',          '+852 9123 4018', 'en', 'hk'),
    (19, '郑爽',              '+852 9123 4019', 'zh', 'hk'),
    (20, 'Ava Kwok',          '+853 6612 4020', 'en', 'mo'),
    (21, '孙悦',              '+852 9123 4021', 'zh', 'hk'),
    (22, 'Liam Fung',         '+852 9123 4022', 'en', 'hk'),
    (23, '马丽',              '+852 9123 4023', 'zh', 'hk'),
    (24, 'Isabella Ng',       '+852 9123 4024', 'en', 'hk'),
    (25, '何家俊',            '+853 6612 4025', 'zh', 'mo'),
    (26, 'James Lau',         '+852 9123 4026', 'en', 'hk'),
    (27, '许晴',              '+852 9123 4027', 'zh', 'hk'),
    (28, 'Charlotte Ma',      '+852 9123 4028', 'en', 'hk'),
    (29, '高翔',              '+852 9123 4029', 'zh', 'hk'),
    (30, 'Henry Tse 谢浩然',  '+852 9123 4030', 'en', 'hk')
ON CONFLICT (id) DO NOTHING;

-- One current term per student; days = end_date - today. Comments say what the reminders do.
INSERT INTO enrollments (id, student_id, tutor_id, assigned_day, assigned_time,
                         start_date, end_date, total_credits, credits_used, status)
SELECT e.id, e.student_id, e.tutor_id, e.day, e.at::time,
       CURRENT_DATE + e.days - 84, CURRENT_DATE + e.days, 12, e.used, e.status
FROM (VALUES
    -- due in 0..7 days, not renewed: reminded (urgent at <= 3 days)
    ( 1,  1, 1, 'Monday',    '16:00', 0, 12, 'active'),
    ( 2,  2, 2, 'Tuesday',   '17:30', 1, 11, 'active'),
    ( 3,  3, 1, 'Wednesday', '16:00', 2, 11, 'active'),
    ( 4,  4, 4, 'Thursday',  '18:00', 3, 10, 'active'),
    ( 5,  5, 3, 'Saturday',  '10:00', 3, 10, 'active'),
    ( 6,  6, 2, 'Friday',    '17:00', 4, 10, 'active'),
    ( 7,  7, 1, 'Saturday',  '11:30', 5,  9, 'active'),
    ( 8,  8, 4, 'Sunday',    '14:00', 6,  9, 'active'),
    ( 9,  9, 3, 'Monday',    '18:30', 7,  8, 'active'),
    (10, 10, 2, 'Tuesday',   '16:30', 7,  8, 'active'),
    (11, 11, 1, 'Thursday',  '17:00', 2, 11, 'active'),
    (12, 12, 4, 'Friday',    '18:00', 5,  9, 'active'),
    -- due soon but already renewed (renewal enrollments 31-34 below): not reminded
    (13, 13, 3, 'Wednesday', '15:30', 2, 11, 'active'),
    (14, 14, 2, 'Saturday',  '09:30', 6,  9, 'active'),
    (15, 15, 1, 'Sunday',    '10:30', 1, 11, 'active'),
    (16, 16, 4, 'Monday',    '17:00', 4, 10, 'active'),
    -- out of range (more than 7 days left, or already lapsed): not reminded
    (17, 17, 1, 'Tuesday',   '18:00',   8,  8, 'active'),
    (18, 18, 2, 'Wednesday', '16:00',  10,  7, 'active'),
    (19, 19, 3, 'Thursday',  '15:00',  14,  6, 'active'),
    (20, 20, 4, 'Friday',    '16:30',  21,  5, 'active'),
    (21, 21, 1, 'Saturday',  '13:00',  30,  4, 'active'),
    (22, 22, 2, 'Sunday',    '11:00',  45,  2, 'active'),
    (23, 23, 3, 'Monday',    '17:30',  60,  1, 'active'),
    (24, 24, 4, 'Tuesday',   '16:00',  -1, 12, 'active'),
    (25, 25, 1, 'Wednesday', '18:30',  -3, 12, 'active'),
    (26, 26, 2, 'Thursday',  '16:00',   9,  8, 'active'),
    (27, 27, 3, 'Friday',    '17:30',  12,  7, 'active'),
    (28, 28, 4, 'Saturday',  '15:00',  90,  0, 'active'),
    -- due in 3 days but withdrawn: not in the view
    (29, 29, 1, 'Sunday',    '09:00',   3, 10, 'withdrawn'),
    -- due in 0 days, not renewed: reminded (a mixed-language name)
    (30, 30, 2, 'Monday',    '19:00',   0, 12, 'active')
) AS e(id, student_id, tutor_id, day, at, days, used, status)
ON CONFLICT (id) DO NOTHING;

-- Renewals: the next term of enrollments 13-18.
INSERT INTO enrollments (id, student_id, tutor_id, assigned_day, assigned_time,
                         start_date, end_date, total_credits, credits_used, renewed_from_id)
SELECT n.id, o.student_id, o.tutor_id, o.assigned_day, o.assigned_time,
       o.end_date + 1, o.end_date + 85, 12, 0, o.id
FROM (VALUES (31, 13), (32, 14), (33, 15), (34, 16), (35, 17), (36, 18)) AS n(id, renews)
JOIN enrollments o ON o.id = n.renews
ON CONFLICT (id) DO NOTHING;

-- Paid renewals: 33 and 34 (and 35); 31, 32 and 36 await payment.
INSERT INTO payments (enrollment_id, amount, method, paid_at)
SELECT p.enrollment_id, p.amount, p.method, now() - make_interval(days => p.days_ago)
FROM (VALUES (33, 3600.00, 'FPS', 1), (34, 3600.00, 'bank transfer', 2), (35, 4200.00, 'cash', 3))
     AS p(enrollment_id, amount, method, days_ago)
WHERE NOT EXISTS (SELECT 1 FROM payments);

-- ---------------------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------------------

-- One row per enrollment with who, when and with whom: used by the payment trigger's lookup.
CREATE OR REPLACE VIEW example_school.enrollment_details AS
SELECT e.id AS enrollment_id,
       s.id AS student_id,
       s.student_name,
       s.parent_phone AS phone,
       t.name AS tutor_name,
       e.assigned_day,
       to_char(e.assigned_time, 'HH24:MI') AS assigned_time,
       s.language,
       s.campus,
       s.family_group
FROM example_school.enrollments e
JOIN example_school.students s ON s.id = e.student_id
JOIN example_school.tutors t ON t.id = e.tutor_id;

-- What the daily reminders read: the columns the school's real view has (DESIGN.md), plus a
-- few more templates and routing may use (language, campus, family_group, end_date).
CREATE OR REPLACE VIEW public.active_enrollments_needing_renewal AS
SELECT e.id AS enrollment_id,
       s.id AS student_id,
       s.student_name,
       s.parent_phone AS phone,
       t.name AS tutor_name,
       e.assigned_day,
       to_char(e.assigned_time, 'HH24:MI') AS assigned_time,
       e.end_date,
       e.end_date - CURRENT_DATE AS days_until_renewal,
       e.total_credits - e.credits_used AS total_credits_remaining,
       CASE
           WHEN r.id IS NULL THEN '🔴 Not Yet Renewed'
           WHEN EXISTS (SELECT 1 FROM example_school.payments p WHERE p.enrollment_id = r.id)
               THEN '✅ Renewal Paid - Ready for Sessions'
           ELSE '⏳ Renewal Created - Awaiting Payment'
       END AS renewal_action_status,
       s.language,
       s.campus,
       s.family_group
FROM example_school.enrollments e
JOIN example_school.students s ON s.id = e.student_id
JOIN example_school.tutors t ON t.id = e.tutor_id
LEFT JOIN LATERAL (
    SELECT n.id FROM example_school.enrollments n
    WHERE n.renewed_from_id = e.id AND n.status = 'active'
    ORDER BY n.id LIMIT 1
) r ON true
WHERE e.status = 'active';

-- ---------------------------------------------------------------------------------------
-- Triggers (created after the data, so loading it enqueues nothing)
-- ---------------------------------------------------------------------------------------

-- A renewal enrollment cancels the pending reminders of the enrollment it renews.
DROP TRIGGER IF EXISTS cancel_reminders_on_renewal ON example_school.enrollments;
CREATE TRIGGER cancel_reminders_on_renewal
    AFTER INSERT ON example_school.enrollments
    FOR EACH ROW
    WHEN (NEW.renewed_from_id IS NOT NULL)
    EXECUTE FUNCTION wecom_cancel_reminders_from_row('renewed_from_id');

-- A payment tells the parents' group it was received (template payment_received), with the
-- student's name looked up in enrollment_details by enrollment_id.
DROP TRIGGER IF EXISTS payment_received_message ON example_school.payments;
CREATE TRIGGER payment_received_message
    AFTER INSERT ON example_school.payments
    FOR EACH ROW
    EXECUTE FUNCTION wecom_enqueue_from_row('payment_received', 'parent_group',
                                            'example_school.enrollment_details', 'enrollment_id');

RESET search_path;
RESET TimeZone;
