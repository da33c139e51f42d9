-- What happens when a row is written to the outbox, and how robots get their worker state.
-- A bad row fails here, at INSERT, with a message naming the rule; nothing is stored.

ALTER TABLE wecom_outbox
    ADD COLUMN IF NOT EXISTS title       text NULL,
    ADD COLUMN IF NOT EXISTS description text NULL,
    ADD COLUMN IF NOT EXISTS url         text NULL,
    ADD COLUMN IF NOT EXISTS picurl      text NULL;

COMMENT ON COLUMN wecom_outbox.content IS
    'When payload is null: a text message with this content.';
COMMENT ON COLUMN wecom_outbox.title IS
    'When payload and content are null: a one-article news message (title, description, url, picurl).';

-- The WeCom body a row's plain columns describe, for writers that cannot build JSON (AppSheet).
CREATE OR REPLACE FUNCTION wecom_payload_from_columns(
    p_content text, p_title text, p_description text, p_url text, p_picurl text
) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_content IS NOT NULL THEN
            jsonb_build_object('msgtype', 'text', 'text', jsonb_build_object('content', p_content))
        WHEN p_title IS NOT NULL OR p_url IS NOT NULL THEN
            jsonb_build_object('msgtype', 'news', 'news', jsonb_build_object('articles', jsonb_build_array(
                jsonb_strip_nulls(jsonb_build_object(
                    'title', p_title, 'description', p_description, 'url', p_url, 'picurl', p_picurl)))))
    END
$$;

-- Why WeCom would refuse this body, or NULL when it would accept it.
-- The same rules as WeCom's documentation (limits in UTF-8 bytes).
CREATE OR REPLACE FUNCTION wecom_payload_problem(p jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    msgtype text;
    body    jsonb;
    n       int;
    art     jsonb;
    raw     bytea;
BEGIN
    IF p IS NULL THEN
        RETURN 'no message: set payload, content, or title and url';
    END IF;
    IF jsonb_typeof(p) <> 'object' THEN
        RETURN 'payload must be a JSON object like {"msgtype":"text","text":{"content":"..."}}';
    END IF;
    msgtype := p ->> 'msgtype';
    IF msgtype IS NULL THEN
        RETURN 'payload.msgtype is missing';
    END IF;
    IF msgtype NOT IN ('text', 'markdown', 'markdown_v2', 'image', 'news', 'file', 'voice', 'template_card') THEN
        RETURN format('unknown msgtype %L: WeCom accepts text, markdown, markdown_v2, image, news, file, voice, template_card', msgtype);
    END IF;
    body := p -> msgtype;
    IF body IS NULL OR jsonb_typeof(body) <> 'object' THEN
        RETURN format('payload.%s must be an object for msgtype %s', msgtype, msgtype);
    END IF;

    CASE msgtype
    WHEN 'text' THEN
        IF jsonb_typeof(body -> 'content') IS DISTINCT FROM 'string' OR body ->> 'content' = '' THEN
            RETURN 'text.content is empty: WeCom needs 1 to 2048 UTF-8 bytes';
        END IF;
        n := octet_length(body ->> 'content');
        IF n > 2048 THEN
            RETURN format('text.content is %s bytes: WeCom allows at most 2048 UTF-8 bytes', n);
        END IF;
    WHEN 'markdown', 'markdown_v2' THEN
        IF jsonb_typeof(body -> 'content') IS DISTINCT FROM 'string' OR body ->> 'content' = '' THEN
            RETURN format('%s.content is empty: WeCom needs 1 to 4096 UTF-8 bytes', msgtype);
        END IF;
        n := octet_length(body ->> 'content');
        IF n > 4096 THEN
            RETURN format('%s.content is %s bytes: WeCom allows at most 4096 UTF-8 bytes', msgtype, n);
        END IF;
    WHEN 'news' THEN
        IF jsonb_typeof(body -> 'articles') IS DISTINCT FROM 'array' THEN
            RETURN 'news.articles must be an array of 1 to 8 articles';
        END IF;
        n := jsonb_array_length(body -> 'articles');
        IF n < 1 OR n > 8 THEN
            RETURN format('news has %s articles: WeCom needs 1 to 8', n);
        END IF;
        FOR art IN SELECT value FROM jsonb_array_elements(body -> 'articles') LOOP
            IF coalesce(art ->> 'title', '') = '' THEN
                RETURN 'every news article needs a title';
            END IF;
            IF coalesce(art ->> 'url', '') = '' THEN
                RETURN 'every news article needs a url';
            END IF;
        END LOOP;
    WHEN 'image' THEN
        IF coalesce(body ->> 'base64', '') = '' OR coalesce(body ->> 'md5', '') = '' THEN
            RETURN 'image needs base64 (the picture) and md5 (of the raw bytes)';
        END IF;
        BEGIN
            raw := decode(body ->> 'base64', 'base64');
        EXCEPTION WHEN OTHERS THEN
            RETURN 'image.base64 is not valid base64';
        END;
        IF octet_length(raw) > 2 * 1024 * 1024 THEN
            RETURN format('image is %s bytes: WeCom allows at most 2 MB', octet_length(raw));
        END IF;
        IF md5(raw) <> lower(body ->> 'md5') THEN
            RETURN 'image.md5 does not match the md5 of the decoded base64';
        END IF;
    WHEN 'file', 'voice' THEN
        IF coalesce(body ->> 'media_id', '') = '' THEN
            RETURN format('%s needs a media_id from upload_media', msgtype);
        END IF;
    WHEN 'template_card' THEN
        IF body ->> 'card_type' NOT IN ('text_notice', 'news_notice') OR body ->> 'card_type' IS NULL THEN
            RETURN 'template_card.card_type must be text_notice or news_notice';
        END IF;
        IF body ->> 'card_type' = 'text_notice'
           AND coalesce(body #>> '{main_title,title}', '') = ''
           AND coalesce(body ->> 'sub_title_text', '') = '' THEN
            RETURN 'template_card text_notice needs main_title.title or sub_title_text';
        END IF;
        IF body ->> 'card_type' = 'news_notice' AND coalesce(body #>> '{card_image,url}', '') = '' THEN
            RETURN 'template_card news_notice needs card_image.url';
        END IF;
        IF NOT ((body #>> '{card_action,type}' = '1' AND coalesce(body #>> '{card_action,url}', '') <> '')
             OR (body #>> '{card_action,type}' = '2' AND coalesce(body #>> '{card_action,appid}', '') <> '')) THEN
            RETURN 'template_card needs card_action with type 1 and a url, or type 2 and an appid';
        END IF;
    END CASE;
    RETURN NULL;
END
$$;

-- BEFORE INSERT (and UPDATE of the message): build, check, and reset worker-owned columns.
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
    -- A destination is what robots serve: coalesce(pool_name, webhook_name). A pooled robot's
    -- own name is not one (no worker would ever claim the row).
    IF NOT EXISTS (SELECT 1 FROM wecom_webhooks
                   WHERE coalesce(pool_name, webhook_name) = NEW.webhook_name) THEN
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
        SELECT 1 FROM wecom_webhooks
        WHERE coalesce(pool_name, webhook_name) = NEW.webhook_name AND is_external) THEN
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
        NEW.created_at := now();
        NEW.sent_at := NULL;
        NEW.priority := coalesce(NEW.priority, 0);
        NEW.not_before := coalesce(NEW.not_before, now());
        NEW.max_attempts := coalesce(NEW.max_attempts, 5);
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS wecom_outbox_before_insert ON wecom_outbox;
CREATE TRIGGER wecom_outbox_before_insert
    BEFORE INSERT ON wecom_outbox
    FOR EACH ROW EXECUTE FUNCTION wecom_outbox_before_write();

DROP TRIGGER IF EXISTS wecom_outbox_before_update_message ON wecom_outbox;
CREATE TRIGGER wecom_outbox_before_update_message
    BEFORE UPDATE OF webhook_name, payload, content, title, description, url, picurl ON wecom_outbox
    FOR EACH ROW
    WHEN ((NEW.webhook_name, NEW.payload, NEW.content, NEW.title, NEW.description, NEW.url, NEW.picurl)
          IS DISTINCT FROM
          (OLD.webhook_name, OLD.payload, OLD.content, OLD.title, OLD.description, OLD.url, OLD.picurl))
    EXECUTE FUNCTION wecom_outbox_before_write();

-- Wake the workers once per destination per statement (a 100 000-row INSERT sends a handful).
CREATE OR REPLACE FUNCTION wecom_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    dest text;
BEGIN
    FOR dest IN SELECT DISTINCT webhook_name FROM new_rows LOOP
        PERFORM pg_notify('wecom_outbox', dest);
    END LOOP;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS wecom_outbox_after_insert ON wecom_outbox;
CREATE TRIGGER wecom_outbox_after_insert
    AFTER INSERT ON wecom_outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wecom_outbox_notify();

-- Robots: every robot has a state row, and any change by a DBA (new URL, window, limit,
-- re-enabling) makes the workers look at it again at once.
CREATE OR REPLACE FUNCTION wecom_webhooks_after_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO wecom_robot_state (robot_id) VALUES (NEW.id)
    ON CONFLICT (robot_id) DO UPDATE SET next_check_at = now(), paused_until = NULL;
    PERFORM pg_notify('wecom_outbox', coalesce(NEW.pool_name, NEW.webhook_name));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS wecom_webhooks_after_write ON wecom_webhooks;
CREATE TRIGGER wecom_webhooks_after_write
    AFTER INSERT OR UPDATE OF webhook_url, is_active, pool_name, rate_limit, rate_window,
        send_window_start, send_window_end, send_days, timezone
    ON wecom_webhooks
    FOR EACH ROW EXECUTE FUNCTION wecom_webhooks_after_write();

-- Robots: a bad time zone fails at write time; a new URL for a robot the worker disabled
-- (gone, host not allowed) puts it back in service; re-enabling clears the old reason.
CREATE OR REPLACE FUNCTION wecom_webhooks_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only IANA zone names (as the worker reads them): PostgreSQL alone would also take
    -- abbreviations ('HKT') and POSIX strings ('UTC+8', which means UTC-8). Checked when the
    -- zone is written, not on every UPDATE the worker makes.
    IF NEW.timezone IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone)
       AND NOT EXISTS (SELECT 1 FROM pg_timezone_names
                       WHERE name = NEW.timezone
                         AND name !~ '^(posix|right)/'
                         AND name NOT IN ('localtime', 'posixrules', 'Factory')) THEN
        RAISE EXCEPTION 'wecom_webhooks: timezone % is not an IANA time zone name (such as Asia/Hong_Kong; names are case-sensitive)', NEW.timezone
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.webhook_url IS DISTINCT FROM OLD.webhook_url
           AND OLD.disabled_reason IS NOT NULL
           AND NEW.is_active IS NOT DISTINCT FROM OLD.is_active
           AND NEW.disabled_reason IS NOT DISTINCT FROM OLD.disabled_reason THEN
            NEW.is_active := true;
            NEW.disabled_reason := NULL;
        ELSIF coalesce(NEW.is_active, true) AND NOT coalesce(OLD.is_active, true)
           AND NEW.disabled_reason IS NOT DISTINCT FROM OLD.disabled_reason THEN
            NEW.disabled_reason := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS wecom_webhooks_before_write ON wecom_webhooks;
CREATE TRIGGER wecom_webhooks_before_write
    BEFORE INSERT OR UPDATE ON wecom_webhooks
    FOR EACH ROW EXECUTE FUNCTION wecom_webhooks_before_write();
