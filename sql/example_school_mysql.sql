-- The example school of sql/example_school.sql for MySQL 8.0 / MariaDB 10.6+: students, tutors,
-- enrollments and payments, the view active_enrollments_needing_renewal the daily fee reminders
-- read, and a payments trigger that cancels the reminders of an enrollment once its renewal is
-- paid. Ran on: MariaDB 10.11 (`wecom-outbox demo` with a mysql:// DATABASE_URL,
-- tests/mysql_demo.rs). MySQL 8.0 was not run; only SQL both document is used (no LATERAL, no
-- table value constructors, no CONVERT_TZ).
--
-- Load it into a database of its own that `wecom-outbox migrate` has prepared (MySQL has no
-- schemas inside a database, so the school's tables sit beside wecom-outbox's; do NOT load it
-- into a real school's database, whose tables have these names):
--     mysql demo_school < sql/example_school_mysql.sql
-- Running it again adds nothing. Dates are relative to the day it is loaded, in the school's
-- time zone (default_timezone; its offset comes from wecom_timezone_offsets, not CONVERT_TZ).

SET NAMES utf8mb4;

-- "Today" is the school's day (as the reminders count it), not the server's UTC day.
SET @example_saved_zone = @@session.time_zone;
SET time_zone = wecom_offset_text(wecom_utc_offset(wecom_setting('default_timezone', 'Asia/Hong_Kong'),
                                                   UTC_TIMESTAMP(6)));

-- ---------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS tutors (
    id   INT PRIMARY KEY,
    name VARCHAR(100) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS students (
    id           INT PRIMARY KEY,
    student_name VARCHAR(255) NOT NULL,
    parent_phone VARCHAR(32) NULL,
    language     VARCHAR(8) NOT NULL DEFAULT 'en' COMMENT '''en'' or ''zh'': which parents'' group reads it',
    campus       VARCHAR(8) NOT NULL DEFAULT 'hk',
    family_group VARCHAR(100) NULL COMMENT 'the family''s own customer group, if any'
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS enrollments (
    id              INT PRIMARY KEY,
    student_id      INT NOT NULL,
    tutor_id        INT NOT NULL,
    assigned_day    VARCHAR(16) NOT NULL,
    assigned_time   TIME NOT NULL,
    start_date      DATE NOT NULL,
    end_date        DATE NOT NULL,
    total_credits   INT NOT NULL,
    credits_used    INT NOT NULL DEFAULT 0,
    renewed_from_id INT NULL COMMENT 'set on the enrollment that renews another',
    status          VARCHAR(16) NOT NULL DEFAULT 'active' COMMENT '''active'' or ''withdrawn''',
    CONSTRAINT enrollments_student_fk FOREIGN KEY (student_id) REFERENCES students (id),
    CONSTRAINT enrollments_tutor_fk FOREIGN KEY (tutor_id) REFERENCES tutors (id),
    CONSTRAINT enrollments_renewed_from_fk FOREIGN KEY (renewed_from_id) REFERENCES enrollments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS payments (
    id            INT AUTO_INCREMENT PRIMARY KEY,
    enrollment_id INT NOT NULL,
    amount        DECIMAL(10, 2) NOT NULL,
    method        VARCHAR(32) NOT NULL DEFAULT 'bank transfer',
    paid_at       DATETIME NOT NULL,
    CONSTRAINT payments_enrollment_fk FOREIGN KEY (enrollment_id) REFERENCES enrollments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- ---------------------------------------------------------------------------------------
-- Data (only on the first run: rows are keyed by id)
-- ---------------------------------------------------------------------------------------
INSERT IGNORE INTO tutors (id, name) VALUES
    (1, 'Ms. Chan 陈老师'),
    (2, 'Mr. Wong 黄老师'),
    (3, 'Ms. Li 李老师'),
    (4, 'Mr. Smith');

INSERT IGNORE INTO students (id, student_name, parent_phone, language, campus) VALUES
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
    (30, 'Henry Tse 谢浩然',  '+852 9123 4030', 'en', 'hk');

-- One current term per student; days = end_date - today. Comments say what the reminders do.
-- (A temporary table instead of a VALUES list in FROM: MySQL and MariaDB spell those apart.)
CREATE TEMPORARY TABLE example_terms (
    id INT, student_id INT, tutor_id INT, weekday VARCHAR(16), starts_at TIME, days INT, used INT, status VARCHAR(16)
);
INSERT INTO example_terms VALUES
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
    (30, 30, 2, 'Monday',    '19:00',   0, 12, 'active');

INSERT IGNORE INTO enrollments (id, student_id, tutor_id, assigned_day, assigned_time,
                                start_date, end_date, total_credits, credits_used, status)
SELECT t.id, t.student_id, t.tutor_id, t.weekday, t.starts_at,
       CURDATE() + INTERVAL (t.days - 84) DAY, CURDATE() + INTERVAL t.days DAY, 12, t.used, t.status
FROM example_terms t;

DROP TEMPORARY TABLE example_terms;

-- Renewals: the next term of enrollments 13-18 (ids 31-36 renew 13-18).
INSERT IGNORE INTO enrollments (id, student_id, tutor_id, assigned_day, assigned_time,
                                start_date, end_date, total_credits, credits_used, renewed_from_id)
SELECT o.id + 18, o.student_id, o.tutor_id, o.assigned_day, o.assigned_time,
       o.end_date + INTERVAL 1 DAY, o.end_date + INTERVAL 85 DAY, 12, 0, o.id
FROM enrollments o
WHERE o.id BETWEEN 13 AND 18 AND o.renewed_from_id IS NULL;

-- Paid renewals: 33 and 34 (and 35); 31, 32 and 36 await payment.
INSERT INTO payments (enrollment_id, amount, method, paid_at)
SELECT p.enrollment_id, p.amount, p.method, NOW() - INTERVAL p.days_ago DAY
FROM (SELECT 33 AS enrollment_id, 3600.00 AS amount, 'FPS' AS method, 1 AS days_ago
      UNION ALL SELECT 34, 3600.00, 'bank transfer', 2
      UNION ALL SELECT 35, 4200.00, 'cash', 3) AS p
WHERE NOT EXISTS (SELECT 1 FROM payments);

-- ---------------------------------------------------------------------------------------
-- The view the daily reminders read: the columns the school's real view has (DESIGN.md), plus
-- a few more templates and routing may use (language, campus, family_group, end_date).
-- CURDATE() is the session's day: wecom_enqueue_fee_reminders sets the session to the
-- school's offset before reading it.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW active_enrollments_needing_renewal AS
SELECT e.id AS enrollment_id,
       s.id AS student_id,
       s.student_name,
       s.parent_phone AS phone,
       t.name AS tutor_name,
       e.assigned_day,
       TIME_FORMAT(e.assigned_time, '%H:%i') AS assigned_time,
       e.end_date,
       DATEDIFF(e.end_date, CURDATE()) AS days_until_renewal,
       e.total_credits - e.credits_used AS total_credits_remaining,
       CASE
           WHEN r.renewal_id IS NULL THEN '🔴 Not Yet Renewed'
           WHEN EXISTS (SELECT 1 FROM payments p WHERE p.enrollment_id = r.renewal_id)
               THEN '✅ Renewal Paid - Ready for Sessions'
           ELSE '⏳ Renewal Created - Awaiting Payment'
       END AS renewal_action_status,
       s.language,
       s.campus,
       s.family_group
FROM enrollments e
JOIN students s ON s.id = e.student_id
JOIN tutors t ON t.id = e.tutor_id
LEFT JOIN (
    SELECT n.renewed_from_id, MIN(n.id) AS renewal_id
    FROM enrollments n
    WHERE n.renewed_from_id IS NOT NULL AND n.status = 'active'
    GROUP BY n.renewed_from_id
) r ON r.renewed_from_id = e.id
WHERE e.status = 'active';

-- ---------------------------------------------------------------------------------------
-- Trigger (created after the data, so loading it cancels nothing): a payment for a renewal
-- enrollment cancels the pending fee reminders of the enrollment it renews, so parents are
-- not chased after paying. One CALL (its argument a scalar subquery, an expression to both
-- servers), no BEGIN … END: the file needs no DELIMITER for the mysql client.
-- ---------------------------------------------------------------------------------------
DROP TRIGGER IF EXISTS payments_cancel_reminders;
CREATE TRIGGER payments_cancel_reminders
    AFTER INSERT ON payments
    FOR EACH ROW
    CALL wecom_cancel_reminders((SELECT e.renewed_from_id FROM enrollments e WHERE e.id = NEW.enrollment_id),
                                'renewal paid');

SET time_zone = @example_saved_zone;
