-- MySQL 8.0 / MariaDB 10.6+ (ran on MariaDB 10.11 only; only statements both accept).
-- `status` reads the latest error of a destination's failed rows: with (status, webhook_name,
-- finished_at) that is one index probe from the newest end, where wecom_outbox_claim_idx
-- (status, webhook_name, priority, seq) would sort every failed row the destination ever had.
-- PostgreSQL has the same index as wecom_outbox_failed_idx (0010), partial on failed rows;
-- `retry`'s listing of failed rows by destination and time reads it too.
SET NAMES utf8mb4;

CALL wecom_add_index('wecom_outbox', 'wecom_outbox_failed_idx', FALSE, '(status, webhook_name, finished_at)');
