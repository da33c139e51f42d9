//! How the stand-in treats the next sends to one key, so tests can reproduce WeCom's failures.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

/// How the stand-in treats the next sends to one key, so tests can reproduce WeCom's failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Validate, rate-limit and accept like WeCom.
    Normal,
    /// Answer HTTP 200 `{"errcode":n,"errmsg":…}` (e.g. 93000 robot removed, -1 busy).
    Errcode(i64),
    /// Answer this HTTP status with a non-JSON body, like a gateway failure (e.g. 502).
    HttpStatus(u16),
    /// Answer HTTP 200 with a body that is not JSON (a proxy's or captive portal's page): the
    /// worker cannot tell whether WeCom got the message, so it must treat it as transient.
    NotJson,
    /// Wait, then handle the request as if it arrived only now (a slow path to WeCom).
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer errcode `n` (second field) for the next `k` (first field) sends, then `Normal`.
    FailTimes(u32, i64),
}

/// What `POST /_behaviour` says when its body is none of the shapes [`Behaviour::from_json`]
/// reads.
pub(super) const EXPECTED_SHAPES: &str = "expected one of {\"normal\":true}, {\"errcode\":N}, \
     {\"http_status\":N}, {\"not_json\":true}, {\"delay_ms\":N}, {\"drop\":true}, {\"fail_times\":K,\"errcode\":N}";

impl Behaviour {
    /// Reads the JSON the `POST /_behaviour` endpoint takes: `{"normal":true}`,
    /// `{"errcode":93000}`, `{"http_status":502}`, `{"not_json":true}`, `{"delay_ms":3000}`,
    /// `{"drop":true}` or
    /// `{"fail_times":3,"errcode":-1}` (errcode defaults to -1). `None` if it is none of these.
    pub fn from_json(v: &Value) -> Option<Behaviour> {
        let o = v.as_object()?;
        let flag = |k: &str| o.get(k) == Some(&Value::Bool(true));
        let errcode = o.get("errcode").and_then(Value::as_i64);
        if flag("normal") {
            Some(Behaviour::Normal)
        } else if flag("drop") {
            Some(Behaviour::Drop)
        } else if flag("not_json") {
            Some(Behaviour::NotJson)
        } else if let Some(k) = o.get("fail_times").and_then(Value::as_u64) {
            Some(Behaviour::FailTimes(
                u32::try_from(k).ok()?,
                errcode.unwrap_or(-1),
            ))
        } else if let Some(n) = errcode {
            Some(Behaviour::Errcode(n))
        } else if let Some(s) = o.get("http_status").and_then(Value::as_u64) {
            Some(Behaviour::HttpStatus(u16::try_from(s).ok()?))
        } else {
            let ms = o.get("delay_ms").and_then(Value::as_u64)?;
            Some(Behaviour::Delay(Duration::from_millis(ms)))
        }
    }
}

/// The behaviour for the next send to `key`, consuming one failure of a `FailTimes`, so a
/// `FailTimes(k, n)` answers `n` exactly `k` times and then turns `Normal`.
pub(super) fn next_behaviour(behaviours: &mut HashMap<String, Behaviour>, key: &str) -> Behaviour {
    let Some(b) = behaviours.get_mut(key) else {
        return Behaviour::Normal;
    };
    let Behaviour::FailTimes(left, code) = *b else {
        return b.clone();
    };
    *b = match left {
        0 | 1 => Behaviour::Normal,
        _ => Behaviour::FailTimes(left - 1, code),
    };
    if left == 0 {
        Behaviour::Normal
    } else {
        Behaviour::Errcode(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fail_times_counts_down_to_normal() {
        let mut behaviours = HashMap::new();
        behaviours.insert("k".into(), Behaviour::FailTimes(2, -1));
        assert_eq!(next_behaviour(&mut behaviours, "k"), Behaviour::Errcode(-1));
        assert_eq!(next_behaviour(&mut behaviours, "k"), Behaviour::Errcode(-1));
        assert_eq!(next_behaviour(&mut behaviours, "k"), Behaviour::Normal);
        behaviours.insert("z".into(), Behaviour::FailTimes(0, -1));
        assert_eq!(next_behaviour(&mut behaviours, "z"), Behaviour::Normal);
        assert_eq!(next_behaviour(&mut behaviours, "unset"), Behaviour::Normal);
    }

    #[test]
    fn behaviour_from_json() {
        let b = |v: Value| Behaviour::from_json(&v);
        assert_eq!(b(json!({"normal": true})), Some(Behaviour::Normal));
        assert_eq!(
            b(json!({"errcode": 93000})),
            Some(Behaviour::Errcode(93000))
        );
        assert_eq!(
            b(json!({"http_status": 502})),
            Some(Behaviour::HttpStatus(502))
        );
        let delay = Behaviour::Delay(Duration::from_millis(3000));
        assert_eq!(b(json!({"delay_ms": 3000})), Some(delay));
        assert_eq!(b(json!({"drop": true})), Some(Behaviour::Drop));
        assert_eq!(b(json!({"not_json": true})), Some(Behaviour::NotJson));
        let fail = Behaviour::FailTimes(3, -1);
        assert_eq!(b(json!({"fail_times": 3, "errcode": -1})), Some(fail));
        assert_eq!(b(json!({"http_status": 70000})), None);
        assert_eq!(b(json!({"other": 1})), None);
    }
}
