//! `/healthz`: can this replica reach its database? One `SELECT 1` through the store, at most
//! every [`MAX_AGE`], the answer cached in between, so a load balancer or a scrape storm
//! never turns into load on the database.

use crate::store::Store;
use crate::wecom::redact::redact;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long one answer is reused.
pub const MAX_AGE: Duration = Duration::from_secs(2);
/// A check that takes longer than this counts as "unreachable" (a pool waiting for a
/// connection would otherwise hold `/healthz` for its whole acquire timeout).
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The cached database check of one replica.
pub struct Health {
    store: Store,
    /// Texts a reason must never contain (the database password), replaced by `***`.
    secrets: Vec<String>,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// A check on `store`, whose reasons never show the password of `database_url`.
    pub fn new(store: Store, database_url: &str) -> Health {
        Health {
            store,
            secrets: password_forms(database_url),
            last: Mutex::new(None),
        }
    }

    /// `Ok` while the database answers; otherwise one line saying why, redacted. Concurrent
    /// callers share one check.
    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref() {
            if at.elapsed() < MAX_AGE {
                return answer.clone();
            }
        }
        let answer = self.ping().await;
        *last = Some((Instant::now(), answer.clone()));
        answer
    }

    async fn ping(&self) -> Result<(), String> {
        let reason = match tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => format!("the database check (SELECT 1) failed: {e}"),
            Err(_) => format!(
                "the database check (SELECT 1) got no answer within {}",
                humantime::format_duration(PING_TIMEOUT)
            ),
        };
        Err(self.scrub(&reason))
    }

    /// `reason` on one line, without robot keys or the database password.
    fn scrub(&self, reason: &str) -> String {
        let mut text = redact(reason).replace(['\n', '\r'], " ");
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

/// The password of `url` as written and as decoded (a reason may quote either); none when
/// the URL has no password, or one too short to hide without hiding ordinary words.
fn password_forms(url: &str) -> Vec<String> {
    let Some(written) = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    else {
        return Vec::new();
    };
    let decoded = percent_encoding::percent_decode_str(&written)
        .decode_utf8_lossy()
        .into_owned();
    let mut forms = vec![written, decoded];
    forms.retain(|p| p.len() >= 3);
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::password_forms;

    #[test]
    fn password_forms_are_the_written_and_decoded_password() {
        let forms = password_forms("postgres://u:p%40ss%2Fw0rd@db:5432/school");
        assert_eq!(forms, ["p%40ss%2Fw0rd", "p@ss/w0rd"]);
        assert!(password_forms("postgres://u@db/school").is_empty());
        assert!(password_forms("mysql://u:ab@db/school").is_empty());
    }
}
