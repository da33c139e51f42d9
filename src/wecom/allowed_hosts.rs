//! Where the worker may POST. A robot URL is data a DBA (or an attacker with INSERT rights)
//! can write; only hosts named in `WECOM_ALLOWED_HOSTS` are ever called, and plain `http://`
//! only on loopback, so a key never crosses a network in clear text.

use crate::rules::ConfigError;
use reqwest::Url;

/// The default: WeCom itself.
pub const DEFAULT: &str = "qyapi.weixin.qq.com";

/// The placeholder the school's Phase-1 rows carry before a robot exists.
pub const PLACEHOLDER_URL: &str = "PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT";

/// Parsed `WECOM_ALLOWED_HOSTS`: `host` (any port) or `host:port` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<(String, Option<u16>)>,
}

impl AllowedHosts {
    /// Parse a comma-separated list; an entry that is not `host` or `host:port` is an error.
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let mut entries = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (host, port) = match item.rsplit_once(':') {
                Some((h, p)) => {
                    let port = p.parse::<u16>().map_err(|_| {
                        format!(
                            "WECOM_ALLOWED_HOSTS: {item:?} has a bad port (want host or host:port)"
                        )
                    })?;
                    (h, Some(port))
                }
                None => (item, None),
            };
            if host.is_empty() || host.contains('/') {
                return Err(ConfigError::from(format!(
                    "WECOM_ALLOWED_HOSTS: {item:?} is not a host or host:port"
                )));
            }
            entries.push((host.to_ascii_lowercase(), port));
        }
        if entries.is_empty() {
            return Err(ConfigError::from(
                "WECOM_ALLOWED_HOSTS is empty: name at least one host",
            ));
        }
        Ok(AllowedHosts { entries })
    }

    /// `Ok` if the worker may POST to `url`; otherwise why not (never including the key).
    pub fn check(&self, url: &str) -> Result<(), ConfigError> {
        let parsed = Url::parse(url).map_err(|_| "webhook_url is not a valid URL".to_string())?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = parsed.port_or_known_default();
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(ConfigError::from(format!(
                    "plain http:// to {host} would send the key in clear text; use https://"
                )))
            }
            other => {
                return Err(ConfigError::from(format!(
                    "webhook_url scheme {other:?} is not http(s)"
                )))
            }
        }
        let allowed = self
            .entries
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port));
        if allowed {
            Ok(())
        } else {
            let shown = match parsed.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            Err(ConfigError::from(format!(
                "host {shown} is not in WECOM_ALLOWED_HOSTS"
            )))
        }
    }
}

impl Default for AllowedHosts {
    fn default() -> Self {
        AllowedHosts::parse(DEFAULT).expect("the default host list parses")
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wecom_is_allowed_by_default() {
        let a = AllowedHosts::default();
        assert!(a
            .check("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
            .is_ok());
        let err = a
            .check("https://evil.example/cgi-bin/webhook/send?key=k")
            .unwrap_err();
        assert!(
            err.contains("evil.example") && !err.contains("key=k"),
            "{err}"
        );
    }

    #[test]
    fn host_and_port_entries() {
        let a = AllowedHosts::parse("127.0.0.1:8080, qyapi.weixin.qq.com").unwrap();
        assert!(a
            .check("http://127.0.0.1:8080/cgi-bin/webhook/send?key=k")
            .is_ok());
        assert!(a
            .check("http://127.0.0.1:9090/cgi-bin/webhook/send?key=k")
            .is_err());
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let a = AllowedHosts::parse("example.org").unwrap();
        let err = a.check("http://example.org/x?key=k").unwrap_err();
        assert!(err.contains("clear text"), "{err}");
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(AllowedHosts::parse("").is_err());
        assert!(AllowedHosts::parse("host:notaport").is_err());
        assert!(AllowedHosts::parse("http://host/").is_err());
    }

    #[test]
    fn placeholder_is_not_a_url() {
        assert!(AllowedHosts::default().check(PLACEHOLDER_URL).is_err());
    }
}
