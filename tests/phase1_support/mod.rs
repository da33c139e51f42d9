//! The school's own Phase-1 database on PostgreSQL, as its migration 023 made it: the tables
//! the log refers to (`enrollments`, `session_log`, `tutors`), and `wecom_webhooks` and
//! `wecom_message_log` with their foreign keys and narrow columns. Tests adopt these, not a
//! tidy copy.
#![allow(dead_code)]

/// The school's tables before wecom-outbox arrives (no wecom-outbox migration applied).
pub const PHASE1_023: &str = r#"
CREATE TABLE tutors (id serial PRIMARY KEY, tutor_name varchar(100) NOT NULL);
CREATE TABLE enrollments (
    id          serial PRIMARY KEY,
    student_id  int NOT NULL,
    tutor_id    int REFERENCES tutors (id),
    created_at  timestamp DEFAULT now()
);
CREATE TABLE session_log (
    id            serial PRIMARY KEY,
    enrollment_id int REFERENCES enrollments (id) ON DELETE CASCADE,
    session_date  date NOT NULL
);

-- Migration 023.
CREATE TABLE wecom_webhooks (
    id                  serial PRIMARY KEY,
    webhook_name        varchar(100) NOT NULL UNIQUE,
    webhook_url         text NOT NULL,
    target_description  varchar(255),
    is_active           boolean DEFAULT true,
    last_used_at        timestamp NULL,
    total_messages_sent int DEFAULT 0,
    created_at          timestamp DEFAULT CURRENT_TIMESTAMP,
    created_by          varchar(255),
    notes               text
);
CREATE TABLE wecom_message_log (
    id              serial PRIMARY KEY,
    webhook_name    varchar(100) NOT NULL,
    message_type    varchar(50),
    message_content text NOT NULL,
    enrollment_id   int NULL,
    session_id      int NULL,
    send_status     varchar(20) DEFAULT 'pending',
    send_timestamp  timestamp NULL,
    error_message   text NULL,
    created_at      timestamp DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (enrollment_id) REFERENCES enrollments (id) ON DELETE SET NULL,
    FOREIGN KEY (session_id) REFERENCES session_log (id) ON DELETE SET NULL
);
ALTER TABLE tutors ADD COLUMN wecom_userid varchar(100) NULL;

INSERT INTO tutors (tutor_name) VALUES ('Ms. Chan 陳老師');
INSERT INTO enrollments (student_id, tutor_id) SELECT 1000 + i, 1 FROM generate_series(1, 20) i;
INSERT INTO wecom_webhooks (webhook_name, webhook_url, target_description, notes, created_by) VALUES
    ('admin_group', 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT', 'Admin team notifications', 'placeholder', 'dba');
INSERT INTO wecom_message_log (webhook_name, message_type, message_content, enrollment_id, send_status, send_timestamp)
VALUES ('admin_group', 'announcement', 'Staff meeting at 5pm', 3, 'sent', now());
"#;
