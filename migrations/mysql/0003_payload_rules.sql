-- MySQL 8.0 / MariaDB 10.6+. The INSERT check: WeCom's message rules exactly as the worker's
-- validator (src/wecom/message.rs) and migrations/postgres/0007 apply them, in the same order,
-- with the same messages. tests/mysql_payload_rules.rs runs tests/payloads/corpus.json through
-- an INSERT here and fails on any disagreement. Change a rule in every place together.
-- Ran on: MariaDB 10.11 only. Written with the JSON functions MySQL 8.0 documents too
-- (JSON_EXTRACT, JSON_UNQUOTE, JSON_TYPE, JSON_LENGTH, JSON_VALID, JSON_OBJECT, JSON_ARRAY),
-- FROM_BASE64 / TO_BASE64 / MD5 / UNHEX, no regular expressions (their engines differ: ICU on
-- MySQL 8, PCRE on MariaDB, and a 2.8 MB base64 must not hit either's limits).
--
-- Empty means zero characters: with PAD SPACE collations ' ' = '' is true, so emptiness is
-- CHAR_LENGTH(...) = 0, and names (msgtype, card_type) are compared as binary strings.
--
-- How a refusal reads: SIGNAL SQLSTATE '45000' with MESSAGE_TEXT 'wecom_outbox: <the rule>'.
-- MySQL 8.0 caps MESSAGE_TEXT at 128 characters (MariaDB at 512); the full text is also left in
-- the session variable @wecom_problem, which a client can read after the error.
--
-- JSON on the two servers: JSON_TYPE gives OBJECT, ARRAY, STRING, INTEGER, DOUBLE, BOOLEAN,
-- NULL (MySQL also UNSIGNED INTEGER and DECIMAL: all numbers). A field is read with
-- JSON_EXTRACT(obj, '$."name"'); absent gives SQL NULL, JSON null gives 'null'.

-- Literals in the routines below take the connection's collation when they are created: the
-- server's default for utf8mb4, as their utf8mb4 variables and parameters have (sqlx would
-- otherwise give utf8mb4_unicode_ci, and comparisons would mix collations).
SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------------------
-- JSON helpers.
-- ---------------------------------------------------------------------------------------

-- How a rule names the JSON type of a value: 'a string', 'a number', 'an array', 'null', ...
DROP FUNCTION IF EXISTS wecom_json_kind;
CREATE FUNCTION wecom_json_kind(v LONGTEXT CHARACTER SET utf8mb4) RETURNS VARCHAR(16)
    DETERMINISTIC NO SQL
    COMMENT 'The JSON type of v as the rules name it'
RETURN CASE JSON_TYPE(v)
           WHEN 'NULL'    THEN 'null'
           WHEN 'ARRAY'   THEN 'an array'
           WHEN 'OBJECT'  THEN 'an object'
           WHEN 'STRING'  THEN 'a string'
           WHEN 'BOOLEAN' THEN 'a boolean'
           ELSE 'a number'
       END;

-- A field's value as JSON text, SQL NULL when it is absent or JSON null.
DROP FUNCTION IF EXISTS wecom_json_field;
CREATE FUNCTION wecom_json_field(obj LONGTEXT CHARACTER SET utf8mb4, name VARCHAR(64))
    RETURNS LONGTEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
    COMMENT 'obj.name as JSON text; NULL when absent or null'
BEGIN
    DECLARE v LONGTEXT CHARACTER SET utf8mb4;
    IF obj IS NULL OR JSON_TYPE(obj) <> 'OBJECT' THEN
        RETURN NULL;
    END IF;
    SET v = JSON_EXTRACT(obj, CONCAT('$."', name, '"'));
    IF v IS NULL OR JSON_TYPE(v) = 'NULL' THEN
        RETURN NULL;
    END IF;
    RETURN v;
END;

-- Whether JSON text v is of kind want ('a string', 'an array', ...).
DROP FUNCTION IF EXISTS wecom_json_is;
CREATE FUNCTION wecom_json_is(v LONGTEXT CHARACTER SET utf8mb4, want VARCHAR(16)) RETURNS BOOLEAN
    DETERMINISTIC NO SQL
RETURN wecom_json_kind(v) = want;

-- A JSON string's text ('' for anything that is not a string).
DROP FUNCTION IF EXISTS wecom_json_text;
CREATE FUNCTION wecom_json_text(v LONGTEXT CHARACTER SET utf8mb4) RETURNS LONGTEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN IF(v IS NOT NULL AND JSON_TYPE(v) = 'STRING', JSON_UNQUOTE(v), '');

-- The length of a text in UTF-8 bytes, as WeCom counts it.
DROP FUNCTION IF EXISTS wecom_utf8_bytes;
CREATE FUNCTION wecom_utf8_bytes(s LONGTEXT CHARACTER SET utf8mb4) RETURNS BIGINT
    DETERMINISTIC NO SQL
RETURN LENGTH(CONVERT(s USING utf8mb4));

-- ---------------------------------------------------------------------------------------
-- The rules. Each returns why WeCom would refuse, or NULL.
-- ---------------------------------------------------------------------------------------

-- '<path> must be <want>, not <kind>' when v is present and not of kind want_kind.
DROP FUNCTION IF EXISTS wecom_payload_type_problem;
CREATE FUNCTION wecom_payload_type_problem(v LONGTEXT CHARACTER SET utf8mb4, want_kind VARCHAR(16),
                                           path VARCHAR(255), want VARCHAR(64))
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN IF(v IS NOT NULL AND NOT wecom_json_is(v, want_kind),
          CONCAT(path, ' must be ', want, ', not ', wecom_json_kind(v)), NULL);

-- A required string field: of another JSON type, absent, null or empty is a problem.
DROP FUNCTION IF EXISTS wecom_payload_required_string;
CREATE FUNCTION wecom_payload_required_string(obj LONGTEXT CHARACTER SET utf8mb4, name VARCHAR(64),
                                              path VARCHAR(255))
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN COALESCE(
    wecom_payload_type_problem(wecom_json_field(obj, name), 'a string', path, 'a string'),
    IF(CHAR_LENGTH(wecom_json_text(wecom_json_field(obj, name))) = 0,
       CONCAT(path, ' is required and must not be empty'), NULL));

-- An optional string field: absent or null is fine, another JSON type is a problem.
DROP FUNCTION IF EXISTS wecom_payload_optional_string;
CREATE FUNCTION wecom_payload_optional_string(obj LONGTEXT CHARACTER SET utf8mb4, name VARCHAR(64),
                                              path VARCHAR(255))
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN wecom_payload_type_problem(wecom_json_field(obj, name), 'a string', path, 'a string');

-- An optional list: when present, an array of strings (the first other element is named).
DROP FUNCTION IF EXISTS wecom_payload_string_list;
CREATE FUNCTION wecom_payload_string_list(obj LONGTEXT CHARACTER SET utf8mb4, name VARCHAR(64),
                                          path VARCHAR(255))
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE list LONGTEXT CHARACTER SET utf8mb4 DEFAULT wecom_json_field(obj, name);
    DECLARE i INT DEFAULT 0;
    DECLARE n INT;
    IF list IS NULL THEN
        RETURN NULL;
    END IF;
    IF NOT wecom_json_is(list, 'an array') THEN
        RETURN wecom_payload_type_problem(list, 'an array', path, 'an array of strings');
    END IF;
    SET n = JSON_LENGTH(list);
    WHILE i < n DO
        IF NOT wecom_json_is(JSON_EXTRACT(list, CONCAT('$[', i, ']')), 'a string') THEN
            RETURN wecom_payload_type_problem(JSON_EXTRACT(list, CONCAT('$[', i, ']')), 'a string',
                                              CONCAT(path, '[', i, ']'), 'a string');
        END IF;
        SET i = i + 1;
    END WHILE;
    RETURN NULL;
END;

-- <owner>.content: a string of 1 to max_bytes UTF-8 bytes.
DROP FUNCTION IF EXISTS wecom_payload_content_problem;
CREATE FUNCTION wecom_payload_content_problem(part LONGTEXT CHARACTER SET utf8mb4, owner VARCHAR(32),
                                              max_bytes INT)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE path    VARCHAR(64) DEFAULT CONCAT(owner, '.content');
    DECLARE needs   VARCHAR(64) DEFAULT CONCAT('WeCom needs 1 to ', max_bytes, ' UTF-8 bytes');
    DECLARE content LONGTEXT CHARACTER SET utf8mb4 DEFAULT wecom_json_field(part, 'content');
    DECLARE bytes   BIGINT;
    IF content IS NULL THEN
        RETURN CONCAT(path, ' is missing: ', needs);
    END IF;
    IF NOT wecom_json_is(content, 'a string') THEN
        RETURN wecom_payload_type_problem(content, 'a string', path, 'a string');
    END IF;
    IF CHAR_LENGTH(wecom_json_text(content)) = 0 THEN
        RETURN CONCAT(path, ' is empty: ', needs);
    END IF;
    SET bytes = wecom_utf8_bytes(wecom_json_text(content));
    IF bytes > max_bytes THEN
        RETURN CONCAT(path, ' is ', bytes, ' bytes: WeCom allows at most ', max_bytes, ' UTF-8 bytes');
    END IF;
    RETURN NULL;
END;

DROP FUNCTION IF EXISTS wecom_payload_text_problem;
CREATE FUNCTION wecom_payload_text_problem(part LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN COALESCE(
    wecom_payload_content_problem(part, 'text', 2048),
    wecom_payload_string_list(part, 'mentioned_list', 'text.mentioned_list'),
    wecom_payload_string_list(part, 'mentioned_mobile_list', 'text.mentioned_mobile_list'));

-- base64 and md5 required; strict base64 (RFC 4648 alphabet, '=' padding to a multiple of 4,
-- no whitespace, unused bits zero: it must be exactly what TO_BASE64 writes for the decoded
-- bytes, line breaks aside); at most 2 MB decoded; a JPG or PNG; md5 of the decoded bytes.
DROP FUNCTION IF EXISTS wecom_payload_image_problem;
CREATE FUNCTION wecom_payload_image_problem(part LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE problem TEXT CHARACTER SET utf8mb4 DEFAULT COALESCE(
        wecom_payload_required_string(part, 'base64', 'image.base64'),
        wecom_payload_required_string(part, 'md5', 'image.md5'));
    DECLARE b64 LONGTEXT CHARACTER SET utf8mb4;
    DECLARE raw LONGBLOB;
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    SET b64 = wecom_json_text(wecom_json_field(part, 'base64'));
    decode: BEGIN
        -- Bad base64 is a warning, made an error by strict mode in an INSERT: either way, not valid.
        DECLARE EXIT HANDLER FOR SQLEXCEPTION, SQLWARNING SET raw = NULL;
        SET raw = FROM_BASE64(b64);
    END decode;
    IF raw IS NULL OR LENGTH(b64) % 4 <> 0
       OR CAST(REPLACE(REPLACE(TO_BASE64(raw), CHAR(13), ''), CHAR(10), '') AS BINARY) <> CAST(b64 AS BINARY) THEN
        RETURN 'image.base64 is not valid base64: use A-Z a-z 0-9 + / padded with = to a multiple of 4, without spaces or line breaks';
    END IF;
    IF LENGTH(raw) > 2097152 THEN
        RETURN CONCAT('image is ', LENGTH(raw), ' bytes: WeCom allows at most 2097152 bytes (2 MB)');
    END IF;
    IF NOT (LEFT(raw, 3) = UNHEX('FFD8FF') OR LEFT(raw, 8) = UNHEX('89504E470D0A1A0A')) THEN
        RETURN 'image is not a JPG or PNG picture: WeCom accepts only those';
    END IF;
    IF MD5(raw) <> LOWER(wecom_json_text(wecom_json_field(part, 'md5'))) THEN
        RETURN CONCAT('image.md5 does not match the md5 of the decoded base64, which is ', MD5(raw));
    END IF;
    RETURN NULL;
END;

-- One news article: an object; title and url required strings; description, picurl optional.
DROP FUNCTION IF EXISTS wecom_payload_article_problem;
CREATE FUNCTION wecom_payload_article_problem(article LONGTEXT CHARACTER SET utf8mb4, path VARCHAR(64))
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN COALESCE(
    wecom_payload_type_problem(article, 'an object', path, 'an object'),
    wecom_payload_required_string(article, 'title', CONCAT(path, '.title')),
    wecom_payload_required_string(article, 'url', CONCAT(path, '.url')),
    wecom_payload_optional_string(article, 'description', CONCAT(path, '.description')),
    wecom_payload_optional_string(article, 'picurl', CONCAT(path, '.picurl')));

-- news.articles: a required array of 1 to 8 articles, each checked in order.
DROP FUNCTION IF EXISTS wecom_payload_news_problem;
CREATE FUNCTION wecom_payload_news_problem(part LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE articles LONGTEXT CHARACTER SET utf8mb4 DEFAULT wecom_json_field(part, 'articles');
    DECLARE n INT;
    DECLARE i INT DEFAULT 0;
    DECLARE problem TEXT CHARACTER SET utf8mb4;
    IF articles IS NULL THEN
        RETURN 'news.articles is missing: WeCom needs 1 to 8 articles';
    END IF;
    IF NOT wecom_json_is(articles, 'an array') THEN
        RETURN wecom_payload_type_problem(articles, 'an array', 'news.articles', 'an array');
    END IF;
    SET n = JSON_LENGTH(articles);
    IF n < 1 OR n > 8 THEN
        RETURN CONCAT('news has ', n, ' articles: WeCom needs 1 to 8');
    END IF;
    WHILE i < n DO
        SET problem = wecom_payload_article_problem(JSON_EXTRACT(articles, CONCAT('$[', i, ']')),
                                                    CONCAT('news.articles[', i, ']'));
        IF problem IS NOT NULL THEN
            RETURN problem;
        END IF;
        SET i = i + 1;
    END WHILE;
    RETURN NULL;
END;

-- Every card type needs main_title.title or sub_title_text (optional strings, one non-empty).
DROP FUNCTION IF EXISTS wecom_payload_card_title_problem;
CREATE FUNCTION wecom_payload_card_title_problem(card LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
RETURN COALESCE(
    wecom_payload_type_problem(wecom_json_field(card, 'main_title'), 'an object',
                               'template_card.main_title', 'an object'),
    wecom_payload_optional_string(wecom_json_field(card, 'main_title'), 'title',
                                  'template_card.main_title.title'),
    wecom_payload_optional_string(card, 'sub_title_text', 'template_card.sub_title_text'),
    IF(CHAR_LENGTH(wecom_json_text(wecom_json_field(wecom_json_field(card, 'main_title'), 'title'))) = 0
       AND CHAR_LENGTH(wecom_json_text(wecom_json_field(card, 'sub_title_text'))) = 0,
       'template_card needs main_title.title or sub_title_text (a non-empty string)', NULL));

-- card_action: a required object; type the number 1 (then a url) or 2 (then an appid).
DROP FUNCTION IF EXISTS wecom_payload_card_action_problem;
CREATE FUNCTION wecom_payload_card_action_problem(card LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE path   VARCHAR(32) DEFAULT 'template_card.card_action';
    DECLARE types  VARCHAR(64) DEFAULT '1 (open a url) or 2 (open a mini program)';
    DECLARE action LONGTEXT CHARACTER SET utf8mb4 DEFAULT wecom_json_field(card, 'card_action');
    DECLARE kind   LONGTEXT CHARACTER SET utf8mb4;
    IF action IS NULL THEN
        RETURN CONCAT(path, ' is required: type 1 with a url, or type 2 with an appid');
    END IF;
    IF NOT wecom_json_is(action, 'an object') THEN
        RETURN wecom_payload_type_problem(action, 'an object', path, 'an object');
    END IF;
    SET kind = wecom_json_field(action, 'type');
    IF kind IS NULL THEN
        RETURN CONCAT(path, '.type is required: ', types);
    END IF;
    IF NOT wecom_json_is(kind, 'a number') THEN
        RETURN wecom_payload_type_problem(kind, 'a number', CONCAT(path, '.type'), 'a number');
    END IF;
    -- The integer 1 or 2 as written: 1.0 is a number, but not the integer 1.
    IF JSON_TYPE(kind) IN ('INTEGER', 'UNSIGNED INTEGER') AND CAST(kind AS CHAR) = '1' THEN
        RETURN wecom_payload_required_string(action, 'url', CONCAT(path, '.url'));
    END IF;
    IF JSON_TYPE(kind) IN ('INTEGER', 'UNSIGNED INTEGER') AND CAST(kind AS CHAR) = '2' THEN
        RETURN COALESCE(wecom_payload_required_string(action, 'appid', CONCAT(path, '.appid')),
                        wecom_payload_optional_string(action, 'pagepath', CONCAT(path, '.pagepath')));
    END IF;
    RETURN CONCAT(path, '.type must be ', types);
END;

-- card_type, then the title, the action and (news_notice) card_image.url.
DROP FUNCTION IF EXISTS wecom_payload_card_problem;
CREATE FUNCTION wecom_payload_card_problem(card LONGTEXT CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
BEGIN
    DECLARE path      VARCHAR(32) DEFAULT 'template_card.card_type';
    DECLARE card_type LONGTEXT CHARACTER SET utf8mb4 DEFAULT wecom_json_field(card, 'card_type');
    DECLARE image     LONGTEXT CHARACTER SET utf8mb4 DEFAULT wecom_json_field(card, 'card_image');
    IF card_type IS NULL THEN
        RETURN CONCAT(path, ' is required: text_notice or news_notice');
    END IF;
    IF NOT wecom_json_is(card_type, 'a string') THEN
        RETURN wecom_payload_type_problem(card_type, 'a string', path, 'a string');
    END IF;
    IF CAST(wecom_json_text(card_type) AS BINARY) NOT IN (CAST('text_notice' AS BINARY), CAST('news_notice' AS BINARY)) THEN
        RETURN CONCAT(path, ' must be text_notice or news_notice, not "', wecom_json_text(card_type), '"');
    END IF;
    IF wecom_json_text(card_type) = 'text_notice' THEN
        RETURN COALESCE(wecom_payload_card_title_problem(card), wecom_payload_card_action_problem(card));
    END IF;
    RETURN COALESCE(
        wecom_payload_card_title_problem(card),
        wecom_payload_card_action_problem(card),
        IF(image IS NULL, 'template_card.card_image is required: a news_notice card needs one with a url', NULL),
        wecom_payload_type_problem(image, 'an object', 'template_card.card_image', 'an object'),
        wecom_payload_required_string(image, 'url', 'template_card.card_image.url'));
END;

-- Why WeCom would refuse this body, or NULL when it would accept it (the rules of
-- src/wecom/message.rs). p is JSON text; SQL NULL means the row has no message at all.
DROP FUNCTION IF EXISTS wecom_payload_problem;
CREATE FUNCTION wecom_payload_problem(p LONGTEXT CHARACTER SET utf8mb4) RETURNS TEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
    COMMENT 'Why WeCom would refuse this body, or NULL'
BEGIN
    DECLARE known   VARCHAR(100) DEFAULT 'text, markdown, markdown_v2, image, news, file, voice, template_card';
    DECLARE mt      LONGTEXT CHARACTER SET utf8mb4;
    DECLARE msgtype VARCHAR(32);
    DECLARE part    LONGTEXT CHARACTER SET utf8mb4;
    IF p IS NULL THEN
        RETURN 'no message: set payload, content, or title and url';
    END IF;
    IF NOT JSON_VALID(p) THEN
        RETURN 'the message is not valid JSON: write a JSON object like {"msgtype":"text","text":{"content":"hello"}}';
    END IF;
    IF JSON_TYPE(p) <> 'OBJECT' THEN
        RETURN CONCAT('the message must be a JSON object like ',
                      '{"msgtype":"text","text":{"content":"hello"}}, not ', wecom_json_kind(p));
    END IF;
    SET mt = wecom_json_field(p, 'msgtype');
    IF mt IS NULL THEN
        RETURN CONCAT('msgtype is missing: WeCom accepts ', known);
    END IF;
    IF NOT wecom_json_is(mt, 'a string') THEN
        RETURN CONCAT('msgtype must be a string, not ', wecom_json_kind(mt), ': WeCom accepts ', known);
    END IF;
    IF CAST(wecom_json_text(mt) AS BINARY) NOT IN (
           CAST('text' AS BINARY), CAST('markdown' AS BINARY), CAST('markdown_v2' AS BINARY),
           CAST('image' AS BINARY), CAST('news' AS BINARY), CAST('file' AS BINARY),
           CAST('voice' AS BINARY), CAST('template_card' AS BINARY)) THEN
        RETURN CONCAT('unknown msgtype "', wecom_json_text(mt), '": WeCom accepts ', known);
    END IF;
    SET msgtype = wecom_json_text(mt);
    SET part = wecom_json_field(p, msgtype);
    IF part IS NULL THEN
        RETURN CONCAT('the message has no "', msgtype, '" object (msgtype is ', msgtype, ')');
    END IF;
    IF NOT wecom_json_is(part, 'an object') THEN
        RETURN wecom_payload_type_problem(part, 'an object', msgtype, 'an object');
    END IF;
    RETURN CASE msgtype
               WHEN 'text'          THEN wecom_payload_text_problem(part)
               WHEN 'markdown'      THEN wecom_payload_content_problem(part, msgtype, 4096)
               WHEN 'markdown_v2'   THEN wecom_payload_content_problem(part, msgtype, 4096)
               WHEN 'image'         THEN wecom_payload_image_problem(part)
               WHEN 'news'          THEN wecom_payload_news_problem(part)
               WHEN 'template_card' THEN wecom_payload_card_problem(part)
               ELSE wecom_payload_required_string(part, 'media_id', CONCAT(msgtype, '.media_id'))
           END;
END;

-- ---------------------------------------------------------------------------------------
-- The outbox row: its body from plain columns, where it goes, whether its log row will fit.
-- ---------------------------------------------------------------------------------------

-- The WeCom body a row's plain columns describe, for writers that cannot build JSON (AppSheet).
DROP FUNCTION IF EXISTS wecom_payload_from_columns;
CREATE FUNCTION wecom_payload_from_columns(p_content TEXT CHARACTER SET utf8mb4, p_title TEXT CHARACTER SET utf8mb4,
                                           p_description TEXT CHARACTER SET utf8mb4, p_url TEXT CHARACTER SET utf8mb4,
                                           p_picurl TEXT CHARACTER SET utf8mb4)
    RETURNS LONGTEXT CHARACTER SET utf8mb4
    DETERMINISTIC NO SQL
    COMMENT 'text from content, or a one-article news from title/description/url/picurl'
BEGIN
    DECLARE article LONGTEXT CHARACTER SET utf8mb4;
    IF p_content IS NOT NULL THEN
        RETURN JSON_OBJECT('msgtype', 'text', 'text', JSON_OBJECT('content', p_content));
    END IF;
    IF p_title IS NULL AND p_url IS NULL THEN
        RETURN NULL;
    END IF;
    SET article = '{}';
    IF p_title IS NOT NULL THEN SET article = JSON_SET(article, '$.title', p_title); END IF;
    IF p_description IS NOT NULL THEN SET article = JSON_SET(article, '$.description', p_description); END IF;
    IF p_url IS NOT NULL THEN SET article = JSON_SET(article, '$.url', p_url); END IF;
    IF p_picurl IS NOT NULL THEN SET article = JSON_SET(article, '$.picurl', p_picurl); END IF;
    RETURN JSON_OBJECT('msgtype', 'news', 'news',
                       JSON_OBJECT('articles', JSON_ARRAY(JSON_EXTRACT(article, '$'))));
END;

-- Why a message cannot go to p_name: no robot or pool serves it, or it names a pooled robot.
DROP FUNCTION IF EXISTS wecom_destination_problem;
CREATE FUNCTION wecom_destination_problem(p_name VARCHAR(255) CHARACTER SET utf8mb4)
    RETURNS TEXT CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
    COMMENT 'Why p_name is not a destination (robot or pool), or NULL'
BEGIN
    DECLARE pool VARCHAR(100) CHARACTER SET utf8mb4;
    IF EXISTS (SELECT 1 FROM wecom_webhooks WHERE destination = p_name) THEN
        RETURN NULL;
    END IF;
    SELECT pool_name INTO pool FROM wecom_webhooks WHERE webhook_name = p_name LIMIT 1;
    IF pool IS NOT NULL THEN
        RETURN CONCAT('robot ', p_name, ' belongs to pool ', pool, ': send to the pool ', pool);
    END IF;
    RETURN CONCAT('unknown destination ', p_name, ': no robot or pool of that name in wecom_webhooks');
END;

-- Why this row's log entry would not fit the school's log (as migrate found it), or NULL.
DROP FUNCTION IF EXISTS wecom_log_fit_problem;
CREATE FUNCTION wecom_log_fit_problem(p_webhook_name TEXT CHARACTER SET utf8mb4,
                                      p_message_type TEXT CHARACTER SET utf8mb4,
                                      p_enrollment_id BIGINT)
    RETURNS TEXT CHARACTER SET utf8mb4
    NOT DETERMINISTIC READS SQL DATA
    COMMENT 'Why the log row of this outbox row would not fit wecom_message_log, or NULL'
BEGIN
    DECLARE problems TEXT CHARACTER SET utf8mb4;
    SELECT GROUP_CONCAT(problem ORDER BY ord SEPARATOR '; ') INTO problems
    FROM (
        SELECT 1 AS ord, CONCAT('webhook_name is ', CHAR_LENGTH(p_webhook_name),
                                ' characters but wecom_message_log.webhook_name is ', c.type_name, ': shorten it') AS problem
        FROM wecom_log_columns c
        WHERE c.column_name = 'webhook_name' AND CHAR_LENGTH(p_webhook_name) > c.max_chars
        UNION ALL
        SELECT 2, CONCAT('message_type is ', CHAR_LENGTH(p_message_type),
                         ' characters but wecom_message_log.message_type is ', c.type_name, ': shorten it')
        FROM wecom_log_columns c
        WHERE c.column_name = 'message_type' AND CHAR_LENGTH(p_message_type) > c.max_chars
        UNION ALL
        SELECT 3, CONCAT('enrollment_id ', p_enrollment_id, ' does not fit wecom_message_log.enrollment_id (',
                         c.type_name, ', ', c.min_value, ' to ', c.max_value, ')')
        FROM wecom_log_columns c
        WHERE c.column_name = 'enrollment_id'
          AND (p_enrollment_id < c.min_value OR p_enrollment_id > c.max_value)
    ) found;
    RETURN problems;
END;

-- Refuse a row: 'wecom_outbox: <problem>' as SQLSTATE 45000. MySQL 8.0 caps MESSAGE_TEXT at
-- 128 characters (MariaDB at 512): the whole text is in @wecom_problem too. Error messages
-- travel as utf8mb3 on both servers: Chinese survives, an emoji in a value arrives as '?'
-- (@wecom_problem keeps it).
DROP PROCEDURE IF EXISTS wecom_refuse;
CREATE PROCEDURE wecom_refuse(IN p_problem TEXT CHARACTER SET utf8mb4)
    NO SQL
    COMMENT 'SIGNAL 45000 with the problem (whole text in @wecom_problem)'
BEGIN
    DECLARE msg TEXT CHARACTER SET utf8mb4 DEFAULT
        LEFT(p_problem, IF(VERSION() LIKE '%MariaDB%', 512, 128));
    SET @wecom_problem = p_problem;
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
END;

-- The BEFORE INSERT check of an outbox row: build, check, reset worker-owned columns.
DROP PROCEDURE IF EXISTS wecom_outbox_check_message;
CREATE PROCEDURE wecom_outbox_check_message(IN p_webhook_name VARCHAR(255) CHARACTER SET utf8mb4,
                                            IN p_payload LONGTEXT CHARACTER SET utf8mb4,
                                            IN p_message_type TEXT CHARACTER SET utf8mb4,
                                            IN p_enrollment_id BIGINT)
    READS SQL DATA
    COMMENT 'Refuses (SIGNAL 45000) a message WeCom or the log would refuse'
BEGIN
    DECLARE problem TEXT CHARACTER SET utf8mb4;
    DECLARE msgtype TEXT CHARACTER SET utf8mb4;
    IF p_webhook_name IS NULL OR p_webhook_name = '' THEN
        CALL wecom_refuse('wecom_outbox: webhook_name is required (a robot or pool name from wecom_webhooks)');
    END IF;
    SET problem = wecom_destination_problem(p_webhook_name);
    IF problem IS NULL THEN
        SET problem = wecom_payload_problem(p_payload);
    END IF;
    IF problem IS NULL THEN
        SET msgtype = JSON_UNQUOTE(JSON_EXTRACT(p_payload, '$.msgtype'));
        IF msgtype IN ('markdown', 'markdown_v2') AND EXISTS (
               SELECT 1 FROM wecom_webhooks WHERE destination = p_webhook_name AND is_external) THEN
            SET problem = CONCAT(msgtype, ' does not render in WeChat, and destination ', p_webhook_name,
                                 ' is an external (customer) group: send text or news');
        END IF;
    END IF;
    IF problem IS NULL THEN
        SET problem = wecom_log_fit_problem(p_webhook_name, p_message_type, p_enrollment_id);
    END IF;
    IF problem IS NOT NULL THEN
        CALL wecom_refuse(CONCAT('wecom_outbox: ', problem));
    END IF;
END;

DROP TRIGGER IF EXISTS wecom_outbox_before_insert;
CREATE TRIGGER wecom_outbox_before_insert
    BEFORE INSERT ON wecom_outbox
    FOR EACH ROW
BEGIN
    IF NEW.payload IS NULL THEN
        SET NEW.payload = wecom_payload_from_columns(NEW.content, NEW.title, NEW.description, NEW.url, NEW.picurl);
    END IF;
    CALL wecom_outbox_check_message(NEW.webhook_name, NEW.payload, NEW.message_type, NEW.enrollment_id);
    -- Worker-owned columns: an INSERT cannot preset them. MySQL has no RETURNING: the id given
    -- to the last row this session wrote is in @wecom_last_outbox_id (a row that was not stored,
    -- a repeated dedupe_key, has an id no row carries).
    SET NEW.id = UUID();
    SET @wecom_last_outbox_id = NEW.id;
    SET NEW.seq = 0,
        NEW.status = 'pending',
        NEW.attempts = 0,
        NEW.last_errcode = NULL,
        NEW.last_error = NULL,
        NEW.robot_name = NULL,
        NEW.locked_by = NULL,
        NEW.locked_until = NULL,
        NEW.lease_token = NULL,
        NEW.created_at = UTC_TIMESTAMP(6),
        NEW.sent_at = NULL,
        NEW.priority = COALESCE(NEW.priority, 0),
        NEW.not_before = COALESCE(NEW.not_before, UTC_TIMESTAMP(6)),
        NEW.max_attempts = COALESCE(NEW.max_attempts, 5);
END;
