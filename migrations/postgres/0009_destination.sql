-- One place says what a robot's destination is: the generated column `destination`
-- (= coalesce(pool_name, webhook_name)), indexed, so the INSERT check and the worker find a
-- destination's robots by index instead of scanning every robot for every row.

ALTER TABLE wecom_webhooks
    ADD COLUMN IF NOT EXISTS destination text
        GENERATED ALWAYS AS (coalesce(pool_name, webhook_name)) STORED;

COMMENT ON COLUMN wecom_webhooks.destination IS
    'What this robot serves: its pool, or its own name. Send messages to this name.';

CREATE INDEX IF NOT EXISTS wecom_webhooks_destination_idx ON wecom_webhooks (destination);

-- 0003's INSERT check, finding the destination by the indexed column.
CREATE OR REPLACE FUNCTION wecom_outbox_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
    pool    text;
BEGIN
    IF NEW.webhook_name IS NULL OR NEW.webhook_name = '' THEN
        RAISE EXCEPTION 'wecom_outbox: webhook_name is required (a robot or pool name from wecom_webhooks)'
            USING ERRCODE = 'not_null_violation';
    END IF;
    -- A pooled robot's own name is not a destination (no worker would ever claim the row).
    IF NOT EXISTS (SELECT 1 FROM wecom_webhooks WHERE destination = NEW.webhook_name) THEN
        SELECT pool_name INTO pool FROM wecom_webhooks WHERE webhook_name = NEW.webhook_name;
        IF pool IS NOT NULL THEN
            RAISE EXCEPTION 'wecom_outbox: robot % belongs to pool %: send to the pool %', NEW.webhook_name, pool, pool
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RAISE EXCEPTION 'wecom_outbox: unknown destination %: no robot or pool of that name in wecom_webhooks', NEW.webhook_name
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    -- An UPDATE of the plain columns of a row whose payload was built from them builds it
    -- again, so the message sent is the one the row shows.
    IF TG_OP = 'UPDATE' AND NEW.payload IS NOT DISTINCT FROM OLD.payload
       AND OLD.payload IS NOT DISTINCT FROM
           wecom_payload_from_columns(OLD.content, OLD.title, OLD.description, OLD.url, OLD.picurl) THEN
        NEW.payload := NULL;
    END IF;
    IF NEW.payload IS NULL THEN
        NEW.payload := wecom_payload_from_columns(NEW.content, NEW.title, NEW.description, NEW.url, NEW.picurl);
    END IF;
    problem := wecom_payload_problem(NEW.payload);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'wecom_outbox: %', problem USING ERRCODE = 'check_violation';
    END IF;

    IF NEW.payload ->> 'msgtype' IN ('markdown', 'markdown_v2') AND EXISTS (
        SELECT 1 FROM wecom_webhooks WHERE destination = NEW.webhook_name AND is_external) THEN
        RAISE EXCEPTION 'wecom_outbox: % does not render in WeChat, and destination % is an external (customer) group: send text or news',
            NEW.payload ->> 'msgtype', NEW.webhook_name
            USING ERRCODE = 'check_violation';
    END IF;

    IF TG_OP = 'INSERT' THEN
        NEW.id := gen_random_uuid();
        NEW.status := 'pending';
        NEW.attempts := 0;
        NEW.last_errcode := NULL;
        NEW.last_error := NULL;
        NEW.robot_name := NULL;
        NEW.locked_by := NULL;
        NEW.locked_until := NULL;
        NEW.lease_token := NULL;
        NEW.created_at := now();
        NEW.sent_at := NULL;
        NEW.priority := coalesce(NEW.priority, 0);
        NEW.not_before := coalesce(NEW.not_before, now());
        NEW.max_attempts := coalesce(NEW.max_attempts, 5);
    END IF;
    RETURN NEW;
END
$$;

-- 0006's destination check, by the indexed column.
CREATE OR REPLACE FUNCTION wecom_destination_problem(p_name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM wecom_webhooks WHERE destination = p_name)
            THEN NULL
        WHEN EXISTS (SELECT 1 FROM wecom_webhooks WHERE webhook_name = p_name) THEN
            format('%s is a robot of pool %s: name the pool %s',
                   p_name, (SELECT pool_name FROM wecom_webhooks WHERE webhook_name = p_name),
                   (SELECT pool_name FROM wecom_webhooks WHERE webhook_name = p_name))
        ELSE format('%s is no robot or pool in wecom_webhooks (destinations: %s): add the robot first',
                    p_name,
                    coalesce((SELECT string_agg(DISTINCT destination, ', ' ORDER BY destination)
                                FROM wecom_webhooks), 'none yet'))
    END
$$;

-- CREATE OR REPLACE reset the INSERT check's definer rights (see 0008): pin them again.
DO $definer$
DECLARE
    home_name text;
BEGIN
    SELECT n.nspname INTO home_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = to_regclass('wecom_outbox');
    EXECUTE format('ALTER FUNCTION wecom_outbox_before_write() SECURITY DEFINER SET search_path = %I, pg_temp',
                   home_name);
END
$definer$;
