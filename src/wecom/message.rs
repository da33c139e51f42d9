//! The WeCom group-robot message rules: the one definition of which bodies WeCom accepts, with
//! the errcode it answers for each one it refuses (DESIGN.md, "WeCom group-robot facts").
//!
//! Three places check a body, and they must never disagree:
//! - [`validate`] here, the reference: `send-test` calls it before it uses a rate slot, and the
//!   stand-in (`crate::standin`) answers with its errcode and rule;
//! - `wecom_payload_problem(jsonb)` in `migrations/postgres/0007_payload_rules.sql`, the INSERT
//!   check: the same rules, in the same order, with the same messages;
//! - the stand-in, which calls [`validate`].
//!
//! `tests/payloads/corpus.json` holds a case for every rule and edge below; `tests/payload_rules.rs`
//! runs each through [`validate`], an INSERT on PostgreSQL and a POST to the stand-in and fails
//! on any disagreement. A new backend runs the same corpus against its own INSERT check.
//! **Change a rule here, in the SQL and in the corpus together.**
//!
//! # The rules
//!
//! **Types.** Each field named below has one JSON type. A *string* is a JSON string (`5` or
//! `true` is not `"5"`), a *list* is an array of strings, an *object* is a JSON object, and
//! `card_action.type` is the JSON integer `1` or `2` (not `"1"`, not `1.0`). A named field of
//! another type is refused with **40035** (invalid args), the message saying what it must be and
//! what it is. An optional field may be absent or `null`; a required field may not, and a
//! required string may not be empty. Fields not named are passed on unchecked (WeCom may still
//! refuse them; the worker then fails the row with WeCom's own errcode).
//!
//! **Lengths** are counted in UTF-8 bytes (陳 is 3 bytes, 🔴 is 4), whatever the database's
//! encoding.
//!
//! Checks run in this order; the first rule broken is the one reported.
//!
//! | what | rule | refused with |
//! |---|---|---|
//! | the message | a JSON object | 40035 |
//! | `msgtype` | a string naming one of [`MSGTYPES`] | 40008 |
//! | `<msgtype>` | an object under the msgtype's name, e.g. `"text": {…}` | 40035 |
//! | `text.content` | required; 1 to [`TEXT_MAX_BYTES`] bytes | missing or empty 44004, longer 45002 |
//! | `text.mentioned_list`, `text.mentioned_mobile_list` | optional lists | 40035 |
//! | `markdown.content`, `markdown_v2.content` | required; 1 to [`MARKDOWN_MAX_BYTES`] bytes | missing or empty 44004, longer 40058 |
//! | `image.base64`, `image.md5` | required strings | 40058 |
//! | `image.base64` | strict base64 (RFC 4648): `A–Z a–z 0–9 + /`, padded with `=` to a multiple of 4, no spaces or line breaks, unused bits zero | 40058 |
//! | the image | at most [`IMAGE_MAX_BYTES`] decoded bytes; a JPG (`FF D8 FF`) or PNG (`89 50 4E 47 0D 0A 1A 0A`) | 40058 |
//! | `image.md5` | the hex md5 of the decoded bytes, either case | 40058 |
//! | `news.articles` | required array of 1 to [`NEWS_MAX_ARTICLES`] objects | missing or none 40058, more 45008 |
//! | each article | `title` and `url` required strings, then `description` and `picurl` optional strings | 40058 / 40035 |
//! | `file.media_id`, `voice.media_id` | required string | 40058 |
//! | `template_card.card_type` | required string: `text_notice` or `news_notice` | 40058 |
//! | `template_card.main_title` | optional object; its `title` and `sub_title_text` optional strings, one of the two non-empty | 40058 |
//! | `template_card.card_action` | required object; `type` required, 1 (then `url` a required string) or 2 (then `appid` a required string, `pagepath` an optional string) | 40058 |
//! | `template_card.card_image` | for `news_notice`: a required object whose `url` is a required string | 40058 |
//!
//! A news title over 128 bytes or a description over 512 is accepted: WeCom cuts it, and the
//! reminder templates cut it first on a character boundary (`wecom_truncate_utf8`). PostgreSQL
//! cannot store the character `\u0000` in `jsonb`, so such a body fails at INSERT with
//! PostgreSQL's own error before these rules are asked.

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{Map, Value};

/// Most UTF-8 bytes WeCom documents for `text.content` (the server has been seen to allow more;
/// the documented limit is the safe one).
pub const TEXT_MAX_BYTES: usize = 2048;
/// Most UTF-8 bytes WeCom allows for `markdown.content` and `markdown_v2.content`.
pub const MARKDOWN_MAX_BYTES: usize = 4096;
/// Most articles WeCom allows in one `news` message.
pub const NEWS_MAX_ARTICLES: usize = 8;
/// Most bytes WeCom allows for a decoded `image` (2 MB, as 2 MiB).
pub const IMAGE_MAX_BYTES: usize = 2 * 1024 * 1024;
/// The msgtypes a group robot accepts; anything else is errcode 40008.
pub const MSGTYPES: [&str; 8] = [
    "text",
    "markdown",
    "markdown_v2",
    "image",
    "news",
    "file",
    "voice",
    "template_card",
];

/// The first bytes of the picture formats WeCom takes: JPG, then PNG.
const PICTURE_SIGNATURES: [&[u8]; 2] = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"];

/// The errcodes WeCom gives for a body it refuses. Each is permanent: resending the same body
/// can never succeed, so a caller fails the message at once.
pub mod errcode {
    /// The body is not a JSON object, or a field has the wrong JSON type.
    pub const INVALID_ARGS: i64 = 40035;
    /// `msgtype` is missing or unknown.
    pub const INVALID_MSGTYPE: i64 = 40008;
    /// A parameter is missing, malformed or over its length.
    pub const INVALID_PARAMETER: i64 = 40058;
    /// The content is missing or empty.
    pub const EMPTY_CONTENT: i64 = 44004;
    /// `text.content` is over [`super::TEXT_MAX_BYTES`].
    pub const CONTENT_TOO_LARGE: i64 = 45002;
    /// `news.articles` has more than [`super::NEWS_MAX_ARTICLES`].
    pub const TOO_MANY_ARTICLES: i64 = 45008;
}

use errcode::*;

/// Why WeCom would refuse a body: the errcode it would answer and the rule, in words that name
/// the field and the limit, so the person who wrote the row can fix it. The INSERT check
/// reports the same words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}")]
pub struct Invalid {
    /// The errcode WeCom answers for this fault.
    pub errcode: i64,
    /// The rule broken, e.g. "text.content is 2049 bytes: WeCom allows at most 2048 UTF-8 bytes".
    pub rule: String,
}

impl Invalid {
    fn new(errcode: i64, rule: impl Into<String>) -> Self {
        Invalid {
            errcode,
            rule: rule.into(),
        }
    }
}

type Check = Result<(), Invalid>;

/// Checks a complete WeCom body (`{"msgtype":…, "<msgtype>":{…}}`) against WeCom's rules (see
/// the module documentation), reporting the first rule it breaks.
pub fn validate(body: &Value) -> Check {
    let obj = body.as_object().ok_or_else(|| {
        Invalid::new(
            INVALID_ARGS,
            format!(
                r#"the message must be a JSON object like {{"msgtype":"text","text":{{"content":"hello"}}}}, not {}"#,
                kind(body)
            ),
        )
    })?;
    let msgtype = msgtype(obj)?;
    let part = match field(obj, msgtype) {
        None => {
            return Err(Invalid::new(
                INVALID_ARGS,
                format!("the message has no \"{msgtype}\" object (msgtype is {msgtype})"),
            ))
        }
        Some(v) => v
            .as_object()
            .ok_or_else(|| wrong_type(msgtype, "an object", v))?,
    };
    match msgtype {
        "text" => text(part),
        "markdown" | "markdown_v2" => content(part, msgtype, MARKDOWN_MAX_BYTES, INVALID_PARAMETER),
        "image" => image(part),
        "news" => news(part),
        "file" | "voice" => {
            required_str(part, "media_id", &format!("{msgtype}.media_id")).map(drop)
        }
        _ => template_card(part),
    }
}

/// How a rule names the JSON type of a value (as PostgreSQL's `jsonb_typeof`, with an article).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field's value; absent and `null` are both `None` (an optional field may be either).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// A field of the wrong JSON type: 40035, saying what it must be and what it is.
fn wrong_type(path: &str, want: &str, found: &Value) -> Invalid {
    Invalid::new(
        INVALID_ARGS,
        format!("{path} must be {want}, not {}", kind(found)),
    )
}

fn msgtype(obj: &Map<String, Value>) -> Result<&str, Invalid> {
    let known = MSGTYPES.join(", ");
    match field(obj, "msgtype") {
        Some(Value::String(t)) if MSGTYPES.contains(&t.as_str()) => Ok(t),
        Some(Value::String(t)) => Err(Invalid::new(
            INVALID_MSGTYPE,
            format!("unknown msgtype \"{t}\": WeCom accepts {known}"),
        )),
        Some(other) => Err(Invalid::new(
            INVALID_MSGTYPE,
            format!(
                "msgtype must be a string, not {}: WeCom accepts {known}",
                kind(other)
            ),
        )),
        None => Err(Invalid::new(
            INVALID_MSGTYPE,
            format!("msgtype is missing: WeCom accepts {known}"),
        )),
    }
}

fn text(part: &Map<String, Value>) -> Check {
    content(part, "text", TEXT_MAX_BYTES, CONTENT_TOO_LARGE)?;
    string_list(part, "mentioned_list", "text.mentioned_list")?;
    string_list(part, "mentioned_mobile_list", "text.mentioned_mobile_list")
}

/// `<owner>.content`: a string of 1 to `max` UTF-8 bytes (errcode `over` when longer).
fn content(part: &Map<String, Value>, owner: &str, max: usize, over: i64) -> Check {
    let path = format!("{owner}.content");
    let needs = format!("WeCom needs 1 to {max} UTF-8 bytes");
    let s = match field(part, "content") {
        None => {
            return Err(Invalid::new(
                EMPTY_CONTENT,
                format!("{path} is missing: {needs}"),
            ))
        }
        Some(Value::String(s)) => s,
        Some(other) => return Err(wrong_type(&path, "a string", other)),
    };
    if s.is_empty() {
        return Err(Invalid::new(
            EMPTY_CONTENT,
            format!("{path} is empty: {needs}"),
        ));
    }
    if s.len() > max {
        return Err(Invalid::new(
            over,
            format!(
                "{path} is {} bytes: WeCom allows at most {max} UTF-8 bytes",
                s.len()
            ),
        ));
    }
    Ok(())
}

/// An optional list: when present, an array of strings.
fn string_list(part: &Map<String, Value>, name: &str, path: &str) -> Check {
    let items = match field(part, name) {
        None => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type(path, "an array of strings", other)),
    };
    match items.iter().enumerate().find(|(_, item)| !item.is_string()) {
        Some((i, item)) => Err(wrong_type(&format!("{path}[{i}]"), "a string", item)),
        None => Ok(()),
    }
}

/// A required string: absent, `null` or empty is a 40058, another JSON type a 40035.
fn required_str<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<&'a str, Invalid> {
    match optional_str(obj, name, path)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Invalid::new(
            INVALID_PARAMETER,
            format!("{path} is required and must not be empty"),
        )),
    }
}

/// An optional string: absent or `null` is `None`, another JSON type a 40035.
fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a str>, Invalid> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(path, "a string", other)),
    }
}

/// An optional object: absent or `null` is `None`, another JSON type a 40035.
fn optional_object<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, Invalid> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(wrong_type(path, "an object", other)),
    }
}

/// A required object: absent or `null` is a 40058 saying `missing`, another JSON type a 40035.
fn required_object<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
    missing: &str,
) -> Result<&'a Map<String, Value>, Invalid> {
    optional_object(obj, name, path)?
        .ok_or_else(|| Invalid::new(INVALID_PARAMETER, format!("{path} is required: {missing}")))
}

fn image(part: &Map<String, Value>) -> Check {
    let encoded = required_str(part, "base64", "image.base64")?;
    let md5 = required_str(part, "md5", "image.md5")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            Invalid::new(
                INVALID_PARAMETER,
                "image.base64 is not valid base64: use A-Z a-z 0-9 + / padded with = to a \
                 multiple of 4, without spaces or line breaks",
            )
        })?;
    if bytes.len() > IMAGE_MAX_BYTES {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            format!(
                "image is {} bytes: WeCom allows at most {IMAGE_MAX_BYTES} bytes (2 MB)",
                bytes.len()
            ),
        ));
    }
    if !PICTURE_SIGNATURES.iter().any(|s| bytes.starts_with(s)) {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            "image is not a JPG or PNG picture: WeCom accepts only those",
        ));
    }
    let actual = format!("{:x}", Md5::digest(&bytes));
    if !actual.eq_ignore_ascii_case(md5) {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            format!("image.md5 does not match the md5 of the decoded base64, which is {actual}"),
        ));
    }
    Ok(())
}

fn news(part: &Map<String, Value>) -> Check {
    let articles = match field(part, "articles") {
        None => {
            return Err(Invalid::new(
                INVALID_PARAMETER,
                format!("news.articles is missing: WeCom needs 1 to {NEWS_MAX_ARTICLES} articles"),
            ))
        }
        Some(Value::Array(articles)) => articles,
        Some(other) => return Err(wrong_type("news.articles", "an array", other)),
    };
    if articles.is_empty() || articles.len() > NEWS_MAX_ARTICLES {
        let code = if articles.is_empty() {
            INVALID_PARAMETER
        } else {
            TOO_MANY_ARTICLES
        };
        return Err(Invalid::new(
            code,
            format!(
                "news has {} articles: WeCom needs 1 to {NEWS_MAX_ARTICLES}",
                articles.len()
            ),
        ));
    }
    articles
        .iter()
        .enumerate()
        .try_for_each(|(i, a)| article(&format!("news.articles[{i}]"), a))
}

fn article(path: &str, article: &Value) -> Check {
    let obj = article
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", article))?;
    required_str(obj, "title", &format!("{path}.title"))?;
    required_str(obj, "url", &format!("{path}.url"))?;
    optional_str(obj, "description", &format!("{path}.description"))?;
    optional_str(obj, "picurl", &format!("{path}.picurl")).map(drop)
}

fn template_card(card: &Map<String, Value>) -> Check {
    const PATH: &str = "template_card.card_type";
    let news_notice = match optional_str(card, "card_type", PATH)? {
        Some("text_notice") => false,
        Some("news_notice") => true,
        Some(other) => {
            return Err(Invalid::new(
                INVALID_PARAMETER,
                format!("{PATH} must be text_notice or news_notice, not \"{other}\""),
            ))
        }
        None => {
            return Err(Invalid::new(
                INVALID_PARAMETER,
                format!("{PATH} is required: text_notice or news_notice"),
            ))
        }
    };
    card_title(card)?;
    card_action(card)?;
    if news_notice {
        card_image(card)?;
    }
    Ok(())
}

/// Both card types need a title: `main_title.title` or `sub_title_text`.
fn card_title(card: &Map<String, Value>) -> Check {
    let main_title = match optional_object(card, "main_title", "template_card.main_title")? {
        Some(m) => optional_str(m, "title", "template_card.main_title.title")?,
        None => None,
    };
    let sub_title = optional_str(card, "sub_title_text", "template_card.sub_title_text")?;
    if [main_title, sub_title]
        .iter()
        .flatten()
        .all(|s| s.is_empty())
    {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            "template_card needs main_title.title or sub_title_text (a non-empty string)",
        ));
    }
    Ok(())
}

fn card_action(card: &Map<String, Value>) -> Check {
    const PATH: &str = "template_card.card_action";
    const TYPES: &str = "1 (open a url) or 2 (open a mini program)";
    let action = required_object(
        card,
        "card_action",
        PATH,
        "type 1 with a url, or type 2 with an appid",
    )?;
    let kind = match field(action, "type") {
        None => {
            return Err(Invalid::new(
                INVALID_PARAMETER,
                format!("{PATH}.type is required: {TYPES}"),
            ))
        }
        Some(Value::Number(n)) => n.as_i64(),
        Some(other) => return Err(wrong_type(&format!("{PATH}.type"), "a number", other)),
    };
    match kind {
        Some(1) => required_str(action, "url", &format!("{PATH}.url")).map(drop),
        Some(2) => {
            required_str(action, "appid", &format!("{PATH}.appid"))?;
            optional_str(action, "pagepath", &format!("{PATH}.pagepath")).map(drop)
        }
        _ => Err(Invalid::new(
            INVALID_PARAMETER,
            format!("{PATH}.type must be {TYPES}"),
        )),
    }
}

fn card_image(card: &Map<String, Value>) -> Check {
    const PATH: &str = "template_card.card_image";
    let image = required_object(
        card,
        "card_image",
        PATH,
        "a news_notice card needs one with a url",
    )?;
    required_str(image, "url", &format!("{PATH}.url")).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(body: Value) -> Invalid {
        validate(&body).expect_err("should be invalid")
    }

    fn code(body: Value) -> i64 {
        refused(body).errcode
    }

    fn text_of(content: &str) -> Value {
        json!({"msgtype": "text", "text": {"content": content}})
    }

    fn png_bytes() -> Vec<u8> {
        b"\x89PNG\r\n\x1a\nnot really an image".to_vec()
    }

    fn image_of(bytes: &[u8], md5: &str) -> Value {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        json!({"msgtype": "image", "image": {"base64": encoded, "md5": md5}})
    }

    fn md5_of(bytes: &[u8]) -> String {
        format!("{:x}", Md5::digest(bytes))
    }

    fn article_n(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"title": format!("t{i}"), "url": "https://example.com"}))
            .collect()
    }

    fn card(card: Value) -> Value {
        json!({"msgtype": "template_card", "template_card": card})
    }

    #[test]
    fn a_body_that_is_not_an_object_is_40035_and_says_what_it_is() {
        let err = refused(json!([1, 2]));
        assert_eq!(err.errcode, INVALID_ARGS);
        assert!(err.rule.ends_with("not an array"), "{err}");
    }

    #[test]
    fn an_unknown_missing_or_non_string_msgtype_is_40008() {
        let err = refused(json!({"msgtype": "video", "video": {}}));
        assert_eq!(err.errcode, INVALID_MSGTYPE);
        assert!(err
            .rule
            .starts_with("unknown msgtype \"video\": WeCom accepts text, markdown"));
        assert_eq!(code(json!({"text": {"content": "hi"}})), INVALID_MSGTYPE);
        assert_eq!(code(json!({"msgtype": null})), INVALID_MSGTYPE);
        let err = refused(json!({"msgtype": 3}));
        assert_eq!(err.errcode, INVALID_MSGTYPE);
        assert!(
            err.rule
                .starts_with("msgtype must be a string, not a number"),
            "{err}"
        );
    }

    #[test]
    fn the_part_named_by_msgtype_must_be_an_object() {
        let err = refused(json!({"msgtype": "news", "text": {}}));
        assert_eq!(err.errcode, INVALID_ARGS);
        assert_eq!(
            err.rule,
            "the message has no \"news\" object (msgtype is news)"
        );
        let err = refused(json!({"msgtype": "text", "text": "hi"}));
        assert_eq!(
            (err.errcode, err.rule.as_str()),
            (INVALID_ARGS, "text must be an object, not a string")
        );
    }

    #[test]
    fn text_with_mentions_is_accepted() {
        assert_eq!(validate(&text_of("hello")), Ok(()));
        let mentions = json!({"msgtype": "text", "text": {"content": "hi",
            "mentioned_list": ["@all"], "mentioned_mobile_list": ["13800001111"]}});
        assert_eq!(validate(&mentions), Ok(()));
        let nulls = json!({"msgtype": "text", "text": {"content": "hi",
            "mentioned_list": null, "mentioned_mobile_list": []}});
        assert_eq!(
            validate(&nulls),
            Ok(()),
            "optional fields may be null or empty"
        );
    }

    #[test]
    fn text_content_missing_or_empty_is_44004_and_of_another_type_40035() {
        assert_eq!(code(text_of("")), EMPTY_CONTENT);
        assert_eq!(code(json!({"msgtype": "text", "text": {}})), EMPTY_CONTENT);
        assert_eq!(
            code(json!({"msgtype": "text", "text": {"content": null}})),
            EMPTY_CONTENT
        );
        let err = refused(json!({"msgtype": "text", "text": {"content": 5}}));
        assert_eq!(
            (err.errcode, err.rule.as_str()),
            (INVALID_ARGS, "text.content must be a string, not a number")
        );
    }

    #[test]
    fn text_is_limited_to_2048_utf8_bytes_not_characters() {
        // "续" is 3 bytes in UTF-8: 682 of them are 2046 bytes.
        let base = "续".repeat(682);
        assert_eq!(validate(&text_of(&format!("{base}ab"))), Ok(()));
        let err = refused(text_of(&format!("{base}abc")));
        assert_eq!(err.errcode, CONTENT_TOO_LARGE);
        assert_eq!(
            err.rule,
            "text.content is 2049 bytes: WeCom allows at most 2048 UTF-8 bytes"
        );
        // 683 characters but 2049 bytes.
        assert_eq!(code(text_of(&format!("{base}续"))), CONTENT_TOO_LARGE);
    }

    #[test]
    fn mention_lists_must_be_arrays_of_strings() {
        let with =
            |field: &str, v: Value| json!({"msgtype": "text", "text": {"content": "hi", field: v}});
        let err = refused(with("mentioned_list", json!("@all")));
        assert_eq!(err.errcode, INVALID_ARGS);
        assert_eq!(
            err.rule,
            "text.mentioned_list must be an array of strings, not a string"
        );
        let err = refused(with("mentioned_list", json!(["a", null])));
        assert_eq!(
            err.rule,
            "text.mentioned_list[1] must be a string, not null"
        );
        let err = refused(with("mentioned_mobile_list", json!(12345678901u64)));
        assert!(
            err.rule.starts_with("text.mentioned_mobile_list must be"),
            "{err}"
        );
    }

    #[test]
    fn markdown_is_limited_to_4096_bytes_with_40058() {
        for t in ["markdown", "markdown_v2"] {
            let ok = json!({"msgtype": t, t: {"content": "x".repeat(MARKDOWN_MAX_BYTES)}});
            assert_eq!(validate(&ok), Ok(()));
            let over = json!({"msgtype": t, t: {"content": "x".repeat(MARKDOWN_MAX_BYTES + 1)}});
            let err = refused(over);
            assert_eq!(err.errcode, INVALID_PARAMETER);
            assert!(
                err.rule.starts_with(&format!("{t}.content is 4097 bytes")),
                "{err}"
            );
            assert_eq!(
                code(json!({"msgtype": t, t: {"content": ""}})),
                EMPTY_CONTENT
            );
        }
    }

    #[test]
    fn news_needs_1_to_8_articles() {
        let news = |n| json!({"msgtype": "news", "news": {"articles": article_n(n)}});
        assert_eq!(validate(&news(1)), Ok(()));
        assert_eq!(validate(&news(NEWS_MAX_ARTICLES)), Ok(()));
        assert_eq!(code(news(0)), INVALID_PARAMETER);
        let err = refused(news(9));
        assert_eq!(
            (err.errcode, err.rule.as_str()),
            (TOO_MANY_ARTICLES, "news has 9 articles: WeCom needs 1 to 8")
        );
        assert_eq!(
            code(json!({"msgtype": "news", "news": {}})),
            INVALID_PARAMETER
        );
        assert_eq!(
            code(json!({"msgtype": "news", "news": {"articles": {}}})),
            INVALID_ARGS
        );
    }

    #[test]
    fn news_articles_need_a_title_and_url_of_type_string() {
        let one = |a: Value| {
            json!({"msgtype": "news", "news": {"articles": [
            {"title": "a", "url": "u"}, a]}})
        };
        let err = refused(one(json!({"title": "t"})));
        assert_eq!(
            (err.errcode, err.rule.as_str()),
            (
                INVALID_PARAMETER,
                "news.articles[1].url is required and must not be empty"
            )
        );
        assert!(refused(one(json!({"title": "", "url": "u"})))
            .rule
            .contains("articles[1].title"));
        let err = refused(one(json!({"title": 5, "url": true})));
        assert_eq!(
            (err.errcode, err.rule.as_str()),
            (
                INVALID_ARGS,
                "news.articles[1].title must be a string, not a number"
            )
        );
        let err = refused(one(json!({"title": "t", "url": "u", "description": 3})));
        assert_eq!(
            err.rule,
            "news.articles[1].description must be a string, not a number"
        );
        assert_eq!(code(one(json!("x"))), INVALID_ARGS);
        assert_eq!(
            validate(&one(json!({"title": "t", "url": "u", "picurl": null}))),
            Ok(())
        );
    }

    #[test]
    fn an_image_png_with_its_md5_in_either_case_is_accepted() {
        let bytes = png_bytes();
        assert_eq!(validate(&image_of(&bytes, &md5_of(&bytes))), Ok(()));
        assert_eq!(
            validate(&image_of(&bytes, &md5_of(&bytes).to_uppercase())),
            Ok(())
        );
        let jpg = b"\xff\xd8\xff\xe0 a jpeg".to_vec();
        assert_eq!(validate(&image_of(&jpg, &md5_of(&jpg))), Ok(()));
    }

    #[test]
    fn an_image_with_a_wrong_md5_or_not_a_picture_is_refused() {
        let bytes = png_bytes();
        let err = refused(image_of(&bytes, "00112233445566778899aabbccddeeff"));
        assert_eq!(err.errcode, INVALID_PARAMETER);
        assert!(err.rule.ends_with(&md5_of(&bytes)), "{err}");
        let gif = b"GIF89a".to_vec();
        let err = refused(image_of(&gif, &md5_of(&gif)));
        assert_eq!(
            err.rule,
            "image is not a JPG or PNG picture: WeCom accepts only those"
        );
        assert_eq!(
            code(json!({"msgtype": "image", "image": {"md5": "x"}})),
            INVALID_PARAMETER
        );
    }

    #[test]
    fn image_base64_must_be_strict() {
        let mut bytes = png_bytes();
        bytes.push(b'!'); // 28 bytes: the encoding ends in "=="
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let md5 = md5_of(&bytes);
        let with = |b: String| json!({"msgtype": "image", "image": {"base64": b, "md5": md5}});
        let (head, tail) = encoded.split_at(8);
        for bad in [
            format!("{head}\n{tail}"),
            format!("{head} {tail}"),
            encoded.trim_end_matches('=').to_owned(),
            format!("{encoded}="),
            "!!!!".to_owned(),
        ] {
            let err = refused(with(bad.clone()));
            assert!(
                err.rule.starts_with("image.base64 is not valid base64"),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(validate(&with(encoded)), Ok(()));
    }

    #[test]
    fn an_image_over_2_mib_is_refused() {
        let mut bytes = png_bytes();
        bytes.resize(IMAGE_MAX_BYTES + 1, 0);
        let err = refused(image_of(&bytes, &md5_of(&bytes)));
        assert_eq!(err.errcode, INVALID_PARAMETER);
        assert!(err.rule.starts_with("image is 2097153 bytes"), "{err}");
        bytes.truncate(IMAGE_MAX_BYTES);
        assert_eq!(validate(&image_of(&bytes, &md5_of(&bytes))), Ok(()));
    }

    #[test]
    fn file_and_voice_need_a_media_id_string() {
        for t in ["file", "voice"] {
            assert_eq!(
                validate(&json!({"msgtype": t, t: {"media_id": "m1"}})),
                Ok(())
            );
            let err = refused(json!({"msgtype": t, t: {}}));
            assert_eq!(err.errcode, INVALID_PARAMETER);
            assert_eq!(
                err.rule,
                format!("{t}.media_id is required and must not be empty")
            );
            assert_eq!(
                code(json!({"msgtype": t, t: {"media_id": 12345}})),
                INVALID_ARGS
            );
            assert_eq!(
                code(json!({"msgtype": t, t: {"media_id": ["a"]}})),
                INVALID_ARGS
            );
        }
    }

    #[test]
    fn a_text_notice_needs_a_title() {
        let url_action = json!({"type": 1, "url": "https://example.com"});
        let ok = card(json!({"card_type": "text_notice",
            "main_title": {"title": "Renewal"}, "card_action": url_action}));
        assert_eq!(validate(&ok), Ok(()));
        let sub_only = card(json!({"card_type": "text_notice",
            "sub_title_text": "Renewal", "card_action": url_action}));
        assert_eq!(validate(&sub_only), Ok(()));
        let no_title = card(
            json!({"card_type": "text_notice", "main_title": {"title": ""},
            "card_action": url_action}),
        );
        assert!(refused(no_title)
            .rule
            .starts_with("template_card needs main_title.title"));
        let number_title = card(
            json!({"card_type": "text_notice", "main_title": {"title": 7},
            "card_action": url_action}),
        );
        let err = refused(number_title);
        assert_eq!(
            (err.errcode, err.rule.as_str()),
            (
                INVALID_ARGS,
                "template_card.main_title.title must be a string, not a number"
            )
        );
    }

    #[test]
    fn a_card_action_is_type_1_with_a_url_or_2_with_an_appid() {
        let with = |action: Value| {
            card(json!({"card_type": "text_notice", "sub_title_text": "s", "card_action": action}))
        };
        assert_eq!(
            validate(&with(json!({"type": 2, "appid": "wx1", "pagepath": "p"}))),
            Ok(())
        );
        assert_eq!(validate(&with(json!({"type": 2, "appid": "wx1"}))), Ok(()));
        assert_eq!(code(with(json!({"type": 1}))), INVALID_PARAMETER);
        assert_eq!(
            code(with(json!({"type": 2, "url": "u"}))),
            INVALID_PARAMETER
        );
        assert_eq!(
            code(with(json!({"type": 2, "appid": "a", "pagepath": 1}))),
            INVALID_ARGS
        );
        assert_eq!(
            code(with(json!({"type": 3, "url": "u"}))),
            INVALID_PARAMETER
        );
        assert_eq!(
            code(with(json!({"type": 1.0, "url": "u"}))),
            INVALID_PARAMETER
        );
        let err = refused(with(json!({"type": "1", "url": "u"})));
        assert_eq!(
            (err.errcode, err.rule.as_str()),
            (
                INVALID_ARGS,
                "template_card.card_action.type must be a number, not a string"
            )
        );
        let no_action = card(json!({"card_type": "text_notice", "sub_title_text": "s"}));
        assert_eq!(code(no_action), INVALID_PARAMETER);
    }

    #[test]
    fn a_news_notice_needs_a_title_and_a_card_image_url() {
        let action = json!({"type": 1, "url": "u"});
        let news = |extra: Value| {
            let mut c = json!({"card_type": "news_notice", "card_action": action});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            card(c)
        };
        let image = json!({"url": "https://x/p.png"});
        assert_eq!(
            validate(&news(
                json!({"main_title": {"title": "t"}, "card_image": image})
            )),
            Ok(())
        );
        let err = refused(news(json!({"card_image": image})));
        assert!(
            err.rule.starts_with("template_card needs main_title.title"),
            "{err}"
        );
        let err = refused(news(json!({"main_title": {"title": "t"}})));
        assert!(
            err.rule.starts_with("template_card.card_image is required"),
            "{err}"
        );
        assert_eq!(
            code(card(json!({"card_type": "vote_interaction"}))),
            INVALID_PARAMETER
        );
        assert_eq!(code(card(json!({}))), INVALID_PARAMETER);
    }
}
