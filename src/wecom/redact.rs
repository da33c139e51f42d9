//! Robot keys are secrets: anyone holding one can post to the parents' group. Every string
//! that may carry a URL passes through here before it reaches a log, an error or `status`.

use std::borrow::Cow;

/// `s` with the value of every `key=` parameter replaced by `***`.
pub fn redact(s: &str) -> Cow<'_, str> {
    if !s.contains("key=") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("key=") {
        let (head, tail) = rest.split_at(pos + 4);
        out.push_str(head);
        let end = tail.find(|c: char| !is_key_char(c)).unwrap_or(tail.len());
        if end > 0 {
            out.push_str("***");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn is_key_char(c: char) -> bool {
    !(c.is_whitespace()
        || matches!(
            c,
            '&' | '#' | '"' | '\'' | ')' | '>' | '<' | ',' | ']' | '}'
        ))
}

/// A robot URL fit for display: scheme, host and path, key hidden.
pub fn redact_url(url: &str) -> String {
    redact(url).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_the_key_and_keeps_the_rest() {
        let s = "error sending request for url (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=NOT-A-REAL-KEY-abcd&x=1)";
        assert_eq!(
            redact(s),
            "error sending request for url (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&x=1)"
        );
    }

    #[test]
    fn hides_every_key_in_a_line() {
        assert_eq!(redact("a key=1 b key=2"), "a key=*** b key=***");
    }

    #[test]
    fn leaves_keyless_text_alone() {
        assert!(matches!(redact("no secrets here"), Cow::Borrowed(_)));
        assert_eq!(redact("key="), "key=");
    }
}
