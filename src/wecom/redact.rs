//! Robot keys are secrets: anyone holding one can post to the parents' group. Every string
//! that may carry a URL passes through here before it reaches a log, an error, `status` or
//! the stand-in's pages; this file is the one place that decides what a secret looks like.
//!
//! A secret is the value of a query parameter named `key` (a robot key) or `password` (a
//! database password in `DATABASE_URL`), in every spelling a server would still read as that
//! name: any letter case (`KEY=`), percent-encoded (`k%65y=`, `%4B%45%59=`), repeated, after
//! `?`, `&` or `;`, and in log fields (`key="…"`).

use std::borrow::Cow;

/// Parameter names whose value is a secret, compared after percent-decoding and lower-casing.
const SECRET_NAMES: [&str; 2] = ["key", "password"];

/// What a hidden value is replaced with.
const HIDDEN: &str = "***";

/// Keys shorter than this are shown as [`HIDDEN`] alone: their first characters would be too
/// large a part of them. A WeCom key is a 36-character UUID.
const MIN_KEY_FOR_HINT: usize = 16;

/// How many leading characters of a long key [`redact_key`] shows.
const HINT_CHARS: usize = 4;

/// `s` with the value of every secret parameter (see the module doc) replaced by `***`.
/// Text without one is returned as it is, without copying.
pub fn redact(s: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = s[from..].find('=') {
        let eq = from + found;
        let value = eq + 1;
        let Some(strict) = secret_name(parameter_name(s, eq)) else {
            from = value;
            continue;
        };
        let (start, end) = value_span(s, value, strict);
        if end > start {
            let out = out.get_or_insert_with(|| String::with_capacity(s.len()));
            out.push_str(&s[copied..start]);
            out.push_str(HIDDEN);
            copied = end;
        }
        from = end.max(value);
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut out) => {
            out.push_str(&s[copied..]);
            Cow::Owned(out)
        }
    }
}

/// A robot key on its own (the stand-in's pages and logs, which list keys): its first 4
/// characters and `…`, enough to tell robots apart and far too little to use; a key too short
/// for that is `***`.
pub fn redact_key(key: &str) -> String {
    if key.chars().count() < MIN_KEY_FOR_HINT {
        return HIDDEN.to_owned();
    }
    let head: String = key.chars().take(HINT_CHARS).collect();
    format!("{head}…")
}

/// The parameter name written just before the `=` at byte `eq`: back to the nearest
/// character that cannot be part of a name as written in a URL or a log line.
fn parameter_name(s: &str, eq: usize) -> &str {
    let start = s[..eq]
        .char_indices()
        .rev()
        .find(|&(_, c)| ends_name(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    &s[start..eq]
}

fn ends_name(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '?' | '&'
                | ';'
                | '='
                | '/'
                | ':'
                | '"'
                | '\''
                | '`'
                | '\\'
                | '('
                | ')'
                | '<'
                | '>'
                | '['
                | ']'
                | '{'
                | '}'
                | ','
                | '|'
        )
}

/// `Some(strict)` when `name` names a secret; `strict` is true for a password, whose value
/// may contain characters (`)`, `,`, `>` …) that end a key's value.
fn secret_name(name: &str) -> Option<bool> {
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    let decoded = decode_fully(name);
    let decoded = decoded.trim().to_ascii_lowercase();
    let index = SECRET_NAMES.iter().position(|n| *n == decoded)?;
    Some(SECRET_NAMES[index] == "password")
}

/// Percent-decodes until nothing changes (a name encoded twice is still hidden: hiding too
/// much costs nothing).
fn decode_fully(name: &str) -> String {
    let mut current = name.to_owned();
    for _ in 0..4 {
        let next = percent_decode(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// `%XX` sequences decoded (once); anything else, including a lone `%`, kept as it is.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte range of the value starting at `at` that must be hidden. A quoted value
/// (`key="…"`, as log fields write it) is hidden up to its closing quote.
fn value_span(s: &str, at: usize, strict: bool) -> (usize, usize) {
    let rest = &s[at..];
    if let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '\'')) {
        let inner = at + 1;
        let end = closing_quote(&s[inner..], quote).map_or(s.len(), |i| inner + i);
        return (inner, end);
    }
    let mut end = rest
        .find(|c: char| ends_value(c, strict))
        .unwrap_or(rest.len());
    // "…?key=K: cause" (an error and its cause): a URL cannot hold a raw space, so a ':' just
    // before one ends the value rather than belonging to it.
    if let Some(colon) = rest[..end].strip_suffix(':') {
        if rest[end..].starts_with(char::is_whitespace) {
            end = colon.len();
        }
    }
    (at, at + end)
}

/// The offset of the first `quote` in `s` not escaped by a backslash.
fn closing_quote(s: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether `c` ends an unquoted value. A key never contains punctuation, so the value stops at
/// what usually follows a URL in text; a password may, so it stops only where a query
/// parameter must.
fn ends_value(c: char, strict: bool) -> bool {
    if c.is_whitespace() || c.is_control() || matches!(c, '&' | '#' | '"' | '\'' | '\\') {
        return true;
    }
    !strict && matches!(c, ')' | '>' | '<' | ',' | ']' | '}' | ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "NOT-A-REAL-KEY-abcd";

    #[test]
    fn hides_the_key_and_keeps_the_rest() {
        let s = "error sending request for url (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=NOT-A-REAL-KEY-abcd&x=1)";
        assert_eq!(
            redact(s),
            "error sending request for url (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&x=1)"
        );
        assert_eq!(
            redact("(https://h/send?key=abc)"),
            "(https://h/send?key=***)"
        );
    }

    #[test]
    fn hides_every_key_in_a_line() {
        assert_eq!(redact("a key=1 b key=2"), "a key=*** b key=***");
        assert_eq!(redact("?key=1&key=2"), "?key=***&key=***");
    }

    #[test]
    fn hides_every_spelling_of_the_name_a_server_accepts() {
        for name in [
            "key",
            "KEY",
            "Key",
            "kEy",
            "k%65y",
            "%6B%65%79",
            "%6b%45%79",
            "k%2565y",
        ] {
            for sep in ["?", "&", ";"] {
                let url = format!("https://h/send?a=1{sep}{name}={KEY}&b=2");
                let shown = redact(&url);
                assert!(!shown.contains(KEY), "{url} -> {shown}");
                assert!(shown.ends_with("=***&b=2"), "{url} -> {shown}");
            }
        }
    }

    #[test]
    fn hides_a_percent_encoded_value_whole() {
        let shown = redact("https://h/send?key=%4E%4F%54-A-REAL%2DKEY");
        assert_eq!(shown, "https://h/send?key=***");
    }

    #[test]
    fn hides_quoted_log_fields() {
        assert_eq!(redact(r#"url key="abc def" x=1"#), r#"url key="***" x=1"#);
        assert_eq!(
            redact(r#"key="a\"b" next=1"#),
            r#"key="***" next=1"#,
            "an escaped quote does not end the value"
        );
        assert_eq!(redact("key='abc'"), "key='***'");
    }

    #[test]
    fn hides_passwords_including_their_punctuation() {
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&PASSWORD=p)a,s>s;w]d&x=1"),
            "postgres://u@h/db?sslmode=disable&PASSWORD=***&x=1"
        );
        assert_eq!(redact("pass%77ord=pw"), "pass%77ord=***");
    }

    #[test]
    fn keeps_the_colon_that_joins_an_error_to_its_cause() {
        assert_eq!(
            redact("cannot connect to postgres://h/db?password=pw: refused"),
            "cannot connect to postgres://h/db?password=***: refused"
        );
        assert_eq!(redact("url ?key=abc: timed out"), "url ?key=***: timed out");
        assert_eq!(
            redact("?key=abc:def"),
            "?key=***",
            "a colon inside stays hidden"
        );
        let once = redact("?password=pw: x").into_owned();
        assert_eq!(redact(&once), once, "redacting twice changes nothing");
    }

    #[test]
    fn leaves_other_parameters_alone() {
        let s = "dedupe_key=fee:1 monkey=banana keys=3 a=b=c";
        assert!(matches!(redact(s), Cow::Borrowed(_)));
        assert!(matches!(redact("no secrets here"), Cow::Borrowed(_)));
        assert_eq!(redact("key="), "key=");
        assert_eq!(redact("key=&x=1"), "key=&x=1");
    }

    #[test]
    fn keeps_unicode_around_a_key_intact() {
        assert_eq!(redact("续费 key=密钥 提醒"), "续费 key=*** 提醒");
    }

    #[test]
    fn a_key_alone_shows_four_characters_or_nothing() {
        assert_eq!(redact_key("693a91f6-7xxx-4bc4-97a0"), "693a…");
        assert_eq!(
            redact_key("续费提醒机器人续费提醒机器人续费提醒"),
            "续费提醒…"
        );
        assert_eq!(redact_key("demo-key-123"), "***");
    }
}
