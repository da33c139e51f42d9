//! A robot's webhook URL as a type. The URL's `key` is enough to post to a parents' group, so a
//! `String` holding it is one careless `{:?}`, `tracing` field or panic message away from a log.
//! [`RobotUrl`] prints itself redacted everywhere (`Debug`, `Display`, `Serialize`); the only
//! way to the key is [`RobotUrl::expose_secret`], which names what it does at every call site.

use super::allowed_hosts::PLACEHOLDER_URL;
use super::redact::redact;
use std::fmt;

/// A robot's webhook URL, key included, that never shows its key when printed.
#[derive(Clone, Default, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct RobotUrl(String);

impl RobotUrl {
    /// Wrap a URL read from `wecom_webhooks.webhook_url`.
    pub fn new(url: impl Into<String>) -> RobotUrl {
        RobotUrl(url.into())
    }

    /// The URL with its key: only for the request to WeCom and for checking where it points.
    /// Anything that prints, logs or stores the result defeats this type.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Phase-1 rows made before the robot existed hold a placeholder: not a robot yet.
    pub fn is_placeholder(&self) -> bool {
        self.0 == PLACEHOLDER_URL
    }

    /// Scheme, host and path with every spelling of the key hidden (see `redact`).
    pub fn redacted(&self) -> String {
        redact(&self.0).into_owned()
    }
}

impl fmt::Display for RobotUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for RobotUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RobotUrl").field(&redact(&self.0)).finish()
    }
}

impl serde::Serialize for RobotUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";

    fn spellings() -> Vec<String> {
        let base = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send";
        vec![
            format!("{base}?key={KEY}"),
            format!("{base}?KEY={KEY}"),
            format!("{base}?k%65y={KEY}"),
            format!("{base}?%4B%45%59={KEY}"),
            format!("{base}?debug=1&key={KEY}"),
            format!("{base}?debug=1;key={KEY}"),
            format!("{base}?key={KEY}&key={KEY}"),
        ]
    }

    #[test]
    fn no_way_of_printing_a_robot_url_shows_its_key() {
        for url in spellings() {
            let url = RobotUrl::new(url);
            let printed = [
                format!("{url}"),
                format!("{url:?}"),
                format!("{url:#?}"),
                format!("{:?}", Some(&url)),
                url.redacted(),
                serde_json::to_string(&url).unwrap(),
                serde_json::json!({ "robot": url.clone() }).to_string(),
            ];
            for p in printed {
                assert!(!p.contains(KEY), "key shown in {p}");
                assert!(p.contains("qyapi.weixin.qq.com"), "host hidden too in {p}");
            }
            assert!(url.expose_secret().contains(KEY));
        }
    }

    #[test]
    fn a_panic_message_holding_a_robot_url_hides_the_key() {
        let url = RobotUrl::new(spellings().remove(0));
        let panic = std::panic::catch_unwind(|| panic!("could not send to {url:?}")).unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(!text.contains(KEY), "{text}");
    }

    #[test]
    fn the_placeholder_is_not_a_robot() {
        assert!(RobotUrl::new(PLACEHOLDER_URL).is_placeholder());
        assert!(!RobotUrl::new(spellings().remove(0)).is_placeholder());
    }
}
