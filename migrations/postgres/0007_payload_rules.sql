-- The INSERT check asks WeCom's message rules exactly as the worker's validator does.
--
-- The rules are written down once, in src/wecom/message.rs (its module documentation). The
-- functions below implement the same rules, in the same order, with the same messages, and
-- tests/payloads/corpus.json proves it: tests/payload_rules.rs runs every case through the
-- Rust validator, an INSERT here and the WeCom stand-in, and fails on any disagreement.
-- Change a rule in all three places together.
--
-- What changed from 0003: a field the rules name must have its JSON type (5 is not "5", a
-- list is an array of strings), base64 is strict (no line breaks, canonical padding), an image
-- is a JPG or PNG, every card type needs a title, card_action.type is the number 1 or 2, and
-- lengths are UTF-8 bytes whatever the database encoding.
--
-- Replaces wecom_payload_problem(jsonb) (same name, signature and IMMUTABLE); the other
-- functions are its helpers. They read no table. This file is ASCII only, so that it also runs
-- in a database whose encoding is not UTF-8.

-- How a rule names the JSON type of a value: 'a string', 'a number', 'an array', 'null', ...
CREATE OR REPLACE FUNCTION wecom_json_kind(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(v)
               WHEN 'null'   THEN 'null'
               WHEN 'array'  THEN 'an array'
               WHEN 'object' THEN 'an object'
               ELSE 'a ' || jsonb_typeof(v)
           END
$$;

-- A field's value, SQL NULL when it is absent or JSON null (an optional field may be either).
CREATE OR REPLACE FUNCTION wecom_json_field(obj jsonb, name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(obj -> name, 'null'::jsonb)
$$;

-- The length of a text in UTF-8 bytes, as WeCom counts it, whatever the database encoding
-- (in an EUC_CN database a Chinese character is 2 bytes there, but 3 in UTF-8).
CREATE OR REPLACE FUNCTION wecom_utf8_bytes(s text) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT octet_length(convert_to(s, 'UTF8'))
$$;

-- '<path> must be <want>, not <kind>' when v is present and not of JSON type json_type.
CREATE OR REPLACE FUNCTION wecom_payload_type_problem(
    v jsonb, json_type text, path text, want text
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
               WHEN v IS NOT NULL AND jsonb_typeof(v) <> json_type
               THEN format('%s must be %s, not %s', path, want, wecom_json_kind(v))
           END
$$;

-- A required string field: of another JSON type, absent, null or empty is a problem.
CREATE OR REPLACE FUNCTION wecom_payload_required_string(obj jsonb, name text, path text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
               wecom_payload_type_problem(wecom_json_field(obj, name), 'string', path, 'a string'),
               CASE
                   WHEN coalesce(obj ->> name, '') = ''
                   THEN format('%s is required and must not be empty', path)
               END)
$$;

-- An optional string field: absent or null is fine, another JSON type is a problem.
CREATE OR REPLACE FUNCTION wecom_payload_optional_string(obj jsonb, name text, path text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT wecom_payload_type_problem(wecom_json_field(obj, name), 'string', path, 'a string')
$$;

-- An optional list: when present, an array of strings (the first other element is named).
CREATE OR REPLACE FUNCTION wecom_payload_string_list(obj jsonb, name text, path text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
               wecom_payload_type_problem(list, 'array', path, 'an array of strings'),
               (SELECT wecom_payload_type_problem(item, 'string', format('%s[%s]', path, n - 1), 'a string')
                FROM jsonb_array_elements(CASE WHEN jsonb_typeof(list) = 'array' THEN list END)
                         WITH ORDINALITY AS items (item, n)
                WHERE jsonb_typeof(item) <> 'string'
                ORDER BY n
                LIMIT 1))
    FROM (SELECT wecom_json_field(obj, name) AS list) AS field
$$;

-- <owner>.content: a string of 1 to max_bytes UTF-8 bytes.
CREATE OR REPLACE FUNCTION wecom_payload_content_problem(part jsonb, owner text, max_bytes int)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    path    text := owner || '.content';
    needs   text := format('WeCom needs 1 to %s UTF-8 bytes', max_bytes);
    content jsonb := wecom_json_field(part, 'content');
    bytes   int;
BEGIN
    IF content IS NULL THEN
        RETURN format('%s is missing: %s', path, needs);
    END IF;
    IF jsonb_typeof(content) <> 'string' THEN
        RETURN wecom_payload_type_problem(content, 'string', path, 'a string');
    END IF;
    IF part ->> 'content' = '' THEN
        RETURN format('%s is empty: %s', path, needs);
    END IF;
    bytes := wecom_utf8_bytes(part ->> 'content');
    IF bytes > max_bytes THEN
        RETURN format('%s is %s bytes: WeCom allows at most %s UTF-8 bytes', path, bytes, max_bytes);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION wecom_payload_text_problem(part jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
               wecom_payload_content_problem(part, 'text', 2048),
               wecom_payload_string_list(part, 'mentioned_list', 'text.mentioned_list'),
               wecom_payload_string_list(part, 'mentioned_mobile_list', 'text.mentioned_mobile_list'))
$$;

-- base64 and md5 required; strict base64 (RFC 4648 alphabet, '=' padding to a multiple of 4,
-- no whitespace, unused bits zero: PostgreSQL's decode() alone would take all of those); at
-- most 2 MB decoded; a JPG or PNG; md5 of the decoded bytes, either case.
CREATE OR REPLACE FUNCTION wecom_payload_image_problem(part jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    problem text := coalesce(
        wecom_payload_required_string(part, 'base64', 'image.base64'),
        wecom_payload_required_string(part, 'md5', 'image.md5'));
    raw     bytea;
BEGIN
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    IF part ->> 'base64' !~ '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$' THEN
        RETURN 'image.base64 is not valid base64: use A-Z a-z 0-9 + / padded with = to a '
               'multiple of 4, without spaces or line breaks';
    END IF;
    raw := decode(part ->> 'base64', 'base64');
    IF octet_length(raw) > 2097152 THEN
        RETURN format('image is %s bytes: WeCom allows at most 2097152 bytes (2 MB)', octet_length(raw));
    END IF;
    IF substr(raw, 1, 3) <> '\xffd8ff'::bytea AND substr(raw, 1, 8) <> '\x89504e470d0a1a0a'::bytea THEN
        RETURN 'image is not a JPG or PNG picture: WeCom accepts only those';
    END IF;
    IF md5(raw) <> lower(part ->> 'md5') THEN
        RETURN format('image.md5 does not match the md5 of the decoded base64, which is %s', md5(raw));
    END IF;
    RETURN NULL;
END
$$;

-- One news article: an object; title and url required strings; description, picurl optional.
CREATE OR REPLACE FUNCTION wecom_payload_article_problem(article jsonb, path text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
               wecom_payload_type_problem(article, 'object', path, 'an object'),
               wecom_payload_required_string(article, 'title', path || '.title'),
               wecom_payload_required_string(article, 'url', path || '.url'),
               wecom_payload_optional_string(article, 'description', path || '.description'),
               wecom_payload_optional_string(article, 'picurl', path || '.picurl'))
$$;

-- news.articles: a required array of 1 to 8 articles, each checked in order.
CREATE OR REPLACE FUNCTION wecom_payload_news_problem(part jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    articles jsonb := wecom_json_field(part, 'articles');
    n        int;
BEGIN
    IF articles IS NULL THEN
        RETURN 'news.articles is missing: WeCom needs 1 to 8 articles';
    END IF;
    IF jsonb_typeof(articles) <> 'array' THEN
        RETURN wecom_payload_type_problem(articles, 'array', 'news.articles', 'an array');
    END IF;
    n := jsonb_array_length(articles);
    IF n < 1 OR n > 8 THEN
        RETURN format('news has %s articles: WeCom needs 1 to 8', n);
    END IF;
    RETURN (SELECT problem
            FROM jsonb_array_elements(articles) WITH ORDINALITY AS list (article, i),
                 wecom_payload_article_problem(article, format('news.articles[%s]', i - 1)) AS problem
            WHERE problem IS NOT NULL
            ORDER BY i
            LIMIT 1);
END
$$;

-- Every card type needs main_title.title or sub_title_text (optional strings, one non-empty).
CREATE OR REPLACE FUNCTION wecom_payload_card_title_problem(card jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
               wecom_payload_type_problem(wecom_json_field(card, 'main_title'), 'object',
                                          'template_card.main_title', 'an object'),
               wecom_payload_optional_string(card -> 'main_title', 'title', 'template_card.main_title.title'),
               wecom_payload_optional_string(card, 'sub_title_text', 'template_card.sub_title_text'),
               CASE
                   WHEN coalesce(card #>> '{main_title,title}', '') = ''
                    AND coalesce(card ->> 'sub_title_text', '') = ''
                   THEN 'template_card needs main_title.title or sub_title_text (a non-empty string)'
               END)
$$;

-- card_action: a required object; type the number 1 (then a url) or 2 (then an appid).
CREATE OR REPLACE FUNCTION wecom_payload_card_action_problem(card jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    path   text := 'template_card.card_action';
    types  text := '1 (open a url) or 2 (open a mini program)';
    action jsonb := wecom_json_field(card, 'card_action');
    kind   jsonb;
BEGIN
    IF action IS NULL THEN
        RETURN path || ' is required: type 1 with a url, or type 2 with an appid';
    END IF;
    IF jsonb_typeof(action) <> 'object' THEN
        RETURN wecom_payload_type_problem(action, 'object', path, 'an object');
    END IF;
    kind := wecom_json_field(action, 'type');
    IF kind IS NULL THEN
        RETURN format('%s.type is required: %s', path, types);
    END IF;
    IF jsonb_typeof(kind) <> 'number' THEN
        RETURN wecom_payload_type_problem(kind, 'number', path || '.type', 'a number');
    END IF;
    -- The integer 1 or 2 as written: 1.0 is a number, but not the integer 1.
    CASE kind::text
    WHEN '1' THEN
        RETURN wecom_payload_required_string(action, 'url', path || '.url');
    WHEN '2' THEN
        RETURN coalesce(wecom_payload_required_string(action, 'appid', path || '.appid'),
                        wecom_payload_optional_string(action, 'pagepath', path || '.pagepath'));
    ELSE
        RETURN format('%s.type must be %s', path, types);
    END CASE;
END
$$;

-- card_type, then the title, the action and (news_notice) card_image.url.
CREATE OR REPLACE FUNCTION wecom_payload_card_problem(card jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    path      text := 'template_card.card_type';
    card_type jsonb := wecom_json_field(card, 'card_type');
    image     jsonb := wecom_json_field(card, 'card_image');
BEGIN
    IF card_type IS NULL THEN
        RETURN path || ' is required: text_notice or news_notice';
    END IF;
    IF jsonb_typeof(card_type) <> 'string' THEN
        RETURN wecom_payload_type_problem(card_type, 'string', path, 'a string');
    END IF;
    IF card ->> 'card_type' NOT IN ('text_notice', 'news_notice') THEN
        RETURN format('%s must be text_notice or news_notice, not "%s"', path, card ->> 'card_type');
    END IF;
    IF card ->> 'card_type' = 'text_notice' THEN
        RETURN coalesce(wecom_payload_card_title_problem(card),
                        wecom_payload_card_action_problem(card));
    END IF;
    RETURN coalesce(
        wecom_payload_card_title_problem(card),
        wecom_payload_card_action_problem(card),
        CASE WHEN image IS NULL
             THEN 'template_card.card_image is required: a news_notice card needs one with a url'
        END,
        wecom_payload_type_problem(image, 'object', 'template_card.card_image', 'an object'),
        wecom_payload_required_string(image, 'url', 'template_card.card_image.url'));
END
$$;

-- Why WeCom would refuse this body, or NULL when it would accept it (the rules of
-- src/wecom/message.rs). NULL here means the row has no message at all.
CREATE OR REPLACE FUNCTION wecom_payload_problem(p jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    known   text := 'text, markdown, markdown_v2, image, news, file, voice, template_card';
    msgtype text;
    part    jsonb;
BEGIN
    IF p IS NULL THEN
        RETURN 'no message: set payload, content, or title and url';
    END IF;
    IF jsonb_typeof(p) <> 'object' THEN
        RETURN format('the message must be a JSON object like '
                      '{"msgtype":"text","text":{"content":"hello"}}, not %s', wecom_json_kind(p));
    END IF;
    IF wecom_json_field(p, 'msgtype') IS NULL THEN
        RETURN 'msgtype is missing: WeCom accepts ' || known;
    END IF;
    IF jsonb_typeof(p -> 'msgtype') <> 'string' THEN
        RETURN format('msgtype must be a string, not %s: WeCom accepts %s',
                      wecom_json_kind(p -> 'msgtype'), known);
    END IF;
    msgtype := p ->> 'msgtype';
    IF msgtype NOT IN ('text', 'markdown', 'markdown_v2', 'image', 'news', 'file', 'voice', 'template_card') THEN
        RETURN format('unknown msgtype "%s": WeCom accepts %s', msgtype, known);
    END IF;
    part := wecom_json_field(p, msgtype);
    IF part IS NULL THEN
        RETURN format('the message has no "%s" object (msgtype is %s)', msgtype, msgtype);
    END IF;
    IF jsonb_typeof(part) <> 'object' THEN
        RETURN wecom_payload_type_problem(part, 'object', msgtype, 'an object');
    END IF;
    RETURN CASE msgtype
               WHEN 'text'          THEN wecom_payload_text_problem(part)
               WHEN 'markdown'      THEN wecom_payload_content_problem(part, msgtype, 4096)
               WHEN 'markdown_v2'   THEN wecom_payload_content_problem(part, msgtype, 4096)
               WHEN 'image'         THEN wecom_payload_image_problem(part)
               WHEN 'news'          THEN wecom_payload_news_problem(part)
               WHEN 'template_card' THEN wecom_payload_card_problem(part)
               ELSE wecom_payload_required_string(part, 'media_id', msgtype || '.media_id')
           END;
END
$$;
