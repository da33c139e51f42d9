//! Validation of WeCom group-robot message bodies with the rules and errcodes the real WeCom
//! applies (DESIGN.md, "WeCom group-robot facts"). A body WeCom would refuse is refused here
//! first — before it is stored or sent — and the stand-in answers exactly as WeCom would.

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
/// Most bytes WeCom allows for a decoded `image` (2 MiB).
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

/// The errcodes WeCom gives for a body it refuses. Each is permanent: resending the same body
/// can never succeed, so a caller fails the message at once.
pub mod errcode {
    /// The body is not a JSON object, or a part of it has the wrong JSON type.
    pub const INVALID_ARGS: i64 = 40035;
    /// `msgtype` is missing or unknown.
    pub const INVALID_MSGTYPE: i64 = 40008;
    /// A parameter is missing, malformed or over its length.
    pub const INVALID_PARAMETER: i64 = 40058;
    /// The content is empty.
    pub const EMPTY_CONTENT: i64 = 44004;
    /// `text.content` is over [`super::TEXT_MAX_BYTES`].
    pub const CONTENT_TOO_LARGE: i64 = 45002;
    /// `news.articles` has more than [`super::NEWS_MAX_ARTICLES`].
    pub const TOO_MANY_ARTICLES: i64 = 45008;
}

use errcode::*;

/// Why WeCom would refuse a body: the errcode it would answer and the rule, in words that name
/// the field and the limit, so the person who wrote the row can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}")]
pub struct Invalid {
    /// The errcode WeCom answers for this fault.
    pub errcode: i64,
    /// The rule broken, e.g. "text.content is 2049 bytes; WeCom allows at most 2048 UTF-8 bytes".
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

/// Checks a complete WeCom body (`{"msgtype":…, "<msgtype>":{…}}`) against WeCom's rules.
pub fn validate(body: &Value) -> Result<(), Invalid> {
    let obj = body
        .as_object()
        .ok_or_else(|| Invalid::new(INVALID_ARGS, "the message body must be a JSON object"))?;
    let msgtype = msgtype(obj)?;
    let part = obj.get(msgtype).and_then(Value::as_object).ok_or_else(|| {
        Invalid::new(
            INVALID_ARGS,
            format!("msgtype is \"{msgtype}\" but the body has no \"{msgtype}\" object"),
        )
    })?;
    match msgtype {
        "text" => text(part),
        "markdown" | "markdown_v2" => content(part, msgtype, MARKDOWN_MAX_BYTES, INVALID_PARAMETER),
        "image" => image(part),
        "news" => news(part),
        "file" | "voice" => required_str(part, "media_id", msgtype).map(drop),
        _ => template_card(part),
    }
}

fn msgtype(obj: &Map<String, Value>) -> Result<&str, Invalid> {
    let known = MSGTYPES.join(", ");
    match obj.get("msgtype") {
        Some(Value::String(t)) if MSGTYPES.contains(&t.as_str()) => Ok(t),
        Some(Value::String(t)) => Err(Invalid::new(
            INVALID_MSGTYPE,
            format!("msgtype \"{t}\" is not one WeCom knows ({known})"),
        )),
        _ => Err(Invalid::new(
            INVALID_MSGTYPE,
            format!("msgtype is missing or not a string; it must be one of {known}"),
        )),
    }
}

fn text(part: &Map<String, Value>) -> Check {
    content(part, "text", TEXT_MAX_BYTES, CONTENT_TOO_LARGE)?;
    string_list(part, "text", "mentioned_list")?;
    string_list(part, "text", "mentioned_mobile_list")
}

/// `<owner>.content`: a non-empty string of at most `max` UTF-8 bytes (`over` when longer).
fn content(part: &Map<String, Value>, owner: &str, max: usize, over: i64) -> Check {
    let path = format!("{owner}.content");
    let s = match part.get("content") {
        None | Some(Value::Null) => {
            return Err(Invalid::new(
                EMPTY_CONTENT,
                format!("{path} is missing; it must be non-empty text"),
            ))
        }
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(Invalid::new(
                INVALID_ARGS,
                format!("{path} must be a string"),
            ))
        }
    };
    if s.is_empty() {
        return Err(Invalid::new(EMPTY_CONTENT, format!("{path} is empty")));
    }
    if s.len() > max {
        return Err(Invalid::new(
            over,
            format!(
                "{path} is {} bytes; WeCom allows at most {max} UTF-8 bytes",
                s.len()
            ),
        ));
    }
    Ok(())
}

/// An optional field that, when present, must be an array of strings.
fn string_list(part: &Map<String, Value>, owner: &str, field: &str) -> Check {
    match part.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(Invalid::new(
            INVALID_ARGS,
            format!("{owner}.{field} must be an array of strings"),
        )),
    }
}

/// A required non-empty string field; its absence is a 40058.
fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    owner: &str,
) -> Result<&'a str, Invalid> {
    match obj.get(field).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Invalid::new(
            INVALID_PARAMETER,
            format!("{owner}.{field} is required and must be a non-empty string"),
        )),
    }
}

fn image(part: &Map<String, Value>) -> Check {
    let encoded = required_str(part, "base64", "image")?;
    let md5 = required_str(part, "md5", "image")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| {
            Invalid::new(
                INVALID_PARAMETER,
                format!("image.base64 is not valid base64 ({e})"),
            )
        })?;
    if bytes.len() > IMAGE_MAX_BYTES {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            format!(
                "image is {} bytes; WeCom allows at most {IMAGE_MAX_BYTES} bytes (2 MiB)",
                bytes.len()
            ),
        ));
    }
    let actual = format!("{:x}", Md5::digest(&bytes));
    if !actual.eq_ignore_ascii_case(md5) {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            format!("image.md5 is {md5} but the decoded image's md5 is {actual}"),
        ));
    }
    Ok(())
}

fn news(part: &Map<String, Value>) -> Check {
    let articles = part
        .get("articles")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Invalid::new(
                INVALID_PARAMETER,
                format!("news.articles must be an array of 1 to {NEWS_MAX_ARTICLES} articles"),
            )
        })?;
    if articles.is_empty() {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            format!("news.articles is empty; WeCom needs 1 to {NEWS_MAX_ARTICLES} articles"),
        ));
    }
    if articles.len() > NEWS_MAX_ARTICLES {
        return Err(Invalid::new(
            TOO_MANY_ARTICLES,
            format!(
                "news.articles has {} articles; WeCom allows at most {NEWS_MAX_ARTICLES}",
                articles.len()
            ),
        ));
    }
    articles
        .iter()
        .enumerate()
        .try_for_each(|(i, a)| article(i, a))
}

fn article(i: usize, article: &Value) -> Check {
    let owner = format!("news.articles[{i}]");
    let obj = article
        .as_object()
        .ok_or_else(|| Invalid::new(INVALID_PARAMETER, format!("{owner} must be an object")))?;
    required_str(obj, "title", &owner)?;
    required_str(obj, "url", &owner).map(drop)
}

fn template_card(card: &Map<String, Value>) -> Check {
    match card.get("card_type").and_then(Value::as_str) {
        Some("text_notice") => notice(card),
        Some("news_notice") => {
            notice(card)?;
            card_image(card)
        }
        Some(other) => Err(Invalid::new(
            INVALID_PARAMETER,
            format!("template_card.card_type \"{other}\" is not text_notice or news_notice"),
        )),
        None => Err(Invalid::new(
            INVALID_PARAMETER,
            "template_card.card_type is required: text_notice or news_notice",
        )),
    }
}

/// What both card types need: a title and a card action.
fn notice(card: &Map<String, Value>) -> Check {
    let main_title = card
        .get("main_title")
        .and_then(Value::as_object)
        .and_then(|m| required_str(m, "title", "").ok());
    let sub_title = required_str(card, "sub_title_text", "").ok();
    if main_title.is_none() && sub_title.is_none() {
        return Err(Invalid::new(
            INVALID_PARAMETER,
            "template_card needs main_title.title or sub_title_text",
        ));
    }
    card_action(card)
}

fn card_action(card: &Map<String, Value>) -> Check {
    const OWNER: &str = "template_card.card_action";
    let action = card
        .get("card_action")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Invalid::new(
                INVALID_PARAMETER,
                format!("{OWNER} is required (type 1 with url, or type 2 with appid)"),
            )
        })?;
    match action.get("type").and_then(Value::as_i64) {
        Some(1) => required_str(action, "url", OWNER).map(drop),
        Some(2) => {
            required_str(action, "appid", OWNER)?;
            match action.get("pagepath") {
                None | Some(Value::Null | Value::String(_)) => Ok(()),
                Some(_) => Err(Invalid::new(
                    INVALID_PARAMETER,
                    format!("{OWNER}.pagepath must be a string"),
                )),
            }
        }
        _ => Err(Invalid::new(
            INVALID_PARAMETER,
            format!("{OWNER}.type must be 1 (open url) or 2 (open mini program)"),
        )),
    }
}

fn card_image(card: &Map<String, Value>) -> Check {
    let image = card.get("card_image").and_then(Value::as_object);
    match image.and_then(|i| required_str(i, "url", "").ok()) {
        Some(_) => Ok(()),
        None => Err(Invalid::new(
            INVALID_PARAMETER,
            "template_card.card_image.url is required for a news_notice card",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(body: Value) -> i64 {
        validate(&body).expect_err("should be invalid").errcode
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

    fn article_n(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"title": format!("t{i}"), "url": "https://example.com"}))
            .collect()
    }

    fn card(card: Value) -> Value {
        json!({"msgtype": "template_card", "template_card": card})
    }

    #[test]
    fn body_must_be_an_object() {
        assert_eq!(code(json!([1, 2])), INVALID_ARGS);
    }

    #[test]
    fn unknown_or_missing_msgtype_is_40008() {
        assert_eq!(
            code(json!({"msgtype": "video", "video": {}})),
            INVALID_MSGTYPE
        );
        assert_eq!(code(json!({"text": {"content": "hi"}})), INVALID_MSGTYPE);
        assert_eq!(code(json!({"msgtype": 3})), INVALID_MSGTYPE);
        let err = validate(&json!({"msgtype": "video"})).unwrap_err();
        assert!(err.rule.contains("\"video\""), "{err}");
    }

    #[test]
    fn the_part_named_by_msgtype_must_be_an_object() {
        assert_eq!(code(json!({"msgtype": "text"})), INVALID_ARGS);
        assert_eq!(code(json!({"msgtype": "text", "text": "hi"})), INVALID_ARGS);
        let err = validate(&json!({"msgtype": "news", "text": {}})).unwrap_err();
        assert!(err.rule.contains("\"news\""), "{err}");
    }

    #[test]
    fn text_ok() {
        assert_eq!(validate(&text_of("hello")), Ok(()));
        let mentions = json!({"msgtype": "text", "text": {"content": "hi",
            "mentioned_list": ["@all"], "mentioned_mobile_list": ["13800001111"]}});
        assert_eq!(validate(&mentions), Ok(()));
    }

    #[test]
    fn text_content_empty_or_missing_is_44004() {
        assert_eq!(code(text_of("")), EMPTY_CONTENT);
        assert_eq!(code(json!({"msgtype": "text", "text": {}})), EMPTY_CONTENT);
        assert_eq!(
            code(json!({"msgtype": "text", "text": {"content": 5}})),
            INVALID_ARGS
        );
    }

    #[test]
    fn text_boundary_at_2048_bytes_with_chinese() {
        // "续" is 3 bytes in UTF-8: 682 of them are 2046 bytes.
        let base = "续".repeat(682);
        assert_eq!(base.len(), 2046);
        assert_eq!(validate(&text_of(&format!("{base}ab"))), Ok(()));
        let over = format!("{base}abc");
        let err = validate(&text_of(&over)).unwrap_err();
        assert_eq!(err.errcode, CONTENT_TOO_LARGE);
        assert_eq!(
            err.to_string(),
            "text.content is 2049 bytes; WeCom allows at most 2048 UTF-8 bytes"
        );
        // 683 characters but 2049 bytes: the limit is in bytes, not characters.
        assert_eq!(code(text_of(&format!("{base}续"))), CONTENT_TOO_LARGE);
    }

    #[test]
    fn text_mentions_must_be_string_arrays() {
        let body = json!({"msgtype": "text", "text": {"content": "hi", "mentioned_list": "@all"}});
        assert_eq!(code(body), INVALID_ARGS);
    }

    #[test]
    fn markdown_rules() {
        for t in ["markdown", "markdown_v2"] {
            let ok = json!({"msgtype": t, t: {"content": "x".repeat(MARKDOWN_MAX_BYTES)}});
            assert_eq!(validate(&ok), Ok(()));
            let over = json!({"msgtype": t, t: {"content": "x".repeat(MARKDOWN_MAX_BYTES + 1)}});
            let err = validate(&over).unwrap_err();
            assert_eq!(err.errcode, INVALID_PARAMETER);
            assert!(
                err.rule.contains(&format!("{t}.content is 4097 bytes")),
                "{err}"
            );
            assert_eq!(
                code(json!({"msgtype": t, t: {"content": ""}})),
                EMPTY_CONTENT
            );
        }
    }

    #[test]
    fn news_article_count() {
        let news = |n| json!({"msgtype": "news", "news": {"articles": article_n(n)}});
        assert_eq!(validate(&news(1)), Ok(()));
        assert_eq!(validate(&news(NEWS_MAX_ARTICLES)), Ok(()));
        assert_eq!(code(news(0)), INVALID_PARAMETER);
        assert_eq!(code(news(9)), TOO_MANY_ARTICLES);
        assert_eq!(
            code(json!({"msgtype": "news", "news": {}})),
            INVALID_PARAMETER
        );
    }

    #[test]
    fn news_articles_need_title_and_url() {
        let no_url = json!({"msgtype": "news", "news": {"articles": [{"title": "t"}]}});
        let err = validate(&no_url).unwrap_err();
        assert_eq!(err.errcode, INVALID_PARAMETER);
        assert!(err.rule.contains("news.articles[0].url"), "{err}");
        let empty_title = json!({"msgtype": "news", "news": {"articles": [
            {"title": "a", "url": "u"}, {"title": "", "url": "u"}]}});
        assert!(validate(&empty_title)
            .unwrap_err()
            .rule
            .contains("articles[1].title"));
        let not_object = json!({"msgtype": "news", "news": {"articles": ["x"]}});
        assert_eq!(code(not_object), INVALID_PARAMETER);
    }

    #[test]
    fn image_ok_and_md5_case_insensitive() {
        let bytes = png_bytes();
        let md5 = format!("{:x}", Md5::digest(&bytes));
        assert_eq!(validate(&image_of(&bytes, &md5)), Ok(()));
        assert_eq!(validate(&image_of(&bytes, &md5.to_uppercase())), Ok(()));
    }

    #[test]
    fn image_md5_mismatch_bad_base64_and_missing_fields() {
        let bytes = png_bytes();
        assert_eq!(
            code(image_of(&bytes, "00112233445566778899aabbccddeeff")),
            INVALID_PARAMETER
        );
        let bad = json!({"msgtype": "image", "image": {"base64": "!!!not base64", "md5": "x"}});
        assert!(validate(&bad)
            .unwrap_err()
            .rule
            .contains("not valid base64"));
        assert_eq!(
            code(json!({"msgtype": "image", "image": {"md5": "x"}})),
            INVALID_PARAMETER
        );
    }

    #[test]
    fn image_over_2_mib_is_refused() {
        let bytes = vec![0u8; IMAGE_MAX_BYTES + 1];
        let md5 = format!("{:x}", Md5::digest(&bytes));
        let err = validate(&image_of(&bytes, &md5)).unwrap_err();
        assert_eq!(err.errcode, INVALID_PARAMETER);
        assert!(err.rule.contains("2097153 bytes"), "{err}");
    }

    #[test]
    fn file_and_voice_need_media_id() {
        for t in ["file", "voice"] {
            assert_eq!(
                validate(&json!({"msgtype": t, t: {"media_id": "m1"}})),
                Ok(())
            );
            let err = validate(&json!({"msgtype": t, t: {}})).unwrap_err();
            assert_eq!(err.errcode, INVALID_PARAMETER);
            assert!(err.rule.contains(&format!("{t}.media_id")), "{err}");
        }
    }

    #[test]
    fn template_card_text_notice() {
        let url_action = json!({"type": 1, "url": "https://example.com"});
        let ok = card(json!({"card_type": "text_notice",
            "main_title": {"title": "Renewal"}, "card_action": url_action}));
        assert_eq!(validate(&ok), Ok(()));
        let sub_only = card(json!({"card_type": "text_notice",
            "sub_title_text": "Renewal", "card_action": url_action}));
        assert_eq!(validate(&sub_only), Ok(()));
        let no_title = card(json!({"card_type": "text_notice", "card_action": url_action}));
        assert!(validate(&no_title)
            .unwrap_err()
            .rule
            .contains("main_title.title"));
    }

    #[test]
    fn template_card_actions() {
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
            INVALID_PARAMETER
        );
        assert_eq!(
            code(with(json!({"type": 3, "url": "u"}))),
            INVALID_PARAMETER
        );
        let no_action = card(json!({"card_type": "text_notice", "sub_title_text": "s"}));
        assert_eq!(code(no_action), INVALID_PARAMETER);
    }

    #[test]
    fn template_card_type_and_news_notice_image() {
        let action = json!({"type": 1, "url": "u"});
        let news = |extra: Value| {
            let mut c = json!({"card_type": "news_notice", "main_title": {"title": "t"},
                "card_action": action});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            card(c)
        };
        assert_eq!(
            validate(&news(json!({"card_image": {"url": "https://x/p.png"}}))),
            Ok(())
        );
        let err = validate(&news(json!({}))).unwrap_err();
        assert!(err.rule.contains("card_image.url"), "{err}");
        assert_eq!(
            code(card(json!({"card_type": "vote_interaction"}))),
            INVALID_PARAMETER
        );
        assert_eq!(code(card(json!({}))), INVALID_PARAMETER);
    }
}
