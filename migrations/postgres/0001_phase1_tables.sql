-- The school's Phase-1 tables. On a database that already has them (created from the
-- school's own migration 023), nothing here touches their rows: CREATE ... IF NOT EXISTS
-- adopts them, and 0002 only adds the columns the worker needs.

CREATE TABLE IF NOT EXISTS wecom_webhooks (
    id                  serial PRIMARY KEY,
    webhook_name        varchar(100) NOT NULL UNIQUE,
    webhook_url         text NOT NULL,
    target_description  varchar(255),
    is_active           boolean DEFAULT true,
    last_used_at        timestamptz NULL,
    total_messages_sent int DEFAULT 0,
    created_at          timestamptz DEFAULT now(),
    created_by          varchar(255),
    notes               text
);

CREATE TABLE IF NOT EXISTS wecom_message_log (
    id              serial PRIMARY KEY,
    webhook_name    varchar(100) NOT NULL,
    message_type    varchar(50),
    message_content text NOT NULL,
    enrollment_id   bigint NULL,
    session_id      int NULL,
    send_status     varchar(20) DEFAULT 'pending',
    send_timestamp  timestamptz NULL,
    error_message   text NULL,
    created_at      timestamptz DEFAULT now()
);
