//! Helpers for the tests of `run --metrics-addr`: start the real binary with its metrics on a
//! free port (read back from its start-up log line), GET its pages, and read one sample out
//! of Prometheus' text format.
#![allow(dead_code)]

use crate::cli_support::{Cli, Running};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the start-up log line says before the address.
const SERVING: &str = "serving /metrics and /healthz on http://";

/// A `wecom-outbox run` serving its metrics, and where.
pub struct MetricsRun {
    pub running: Running,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl MetricsRun {
    /// Starts `cli` (a `run … --metrics-addr 127.0.0.1:0` command) and waits for the line that
    /// says where it serves.
    pub async fn start(cli: Cli) -> MetricsRun {
        let running = cli.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stderr = running.stderr_so_far();
            if let Some(at) = stderr.find(SERVING) {
                let addr: String = stderr[at + SERVING.len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let base = format!("http://{addr}");
                return MetricsRun { running, base };
            }
            running.assert_running();
            assert!(
                Instant::now() < deadline,
                "no {SERVING:?} line within 30 s:\n{stderr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path`: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }

    /// The `/metrics` page (which must answer 200).
    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// Polls `/metrics` until `name{labels}` has the value `want`, or panics showing the page.
    pub async fn wait_for_sample(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let page = self.metrics().await;
            if sample(&page, name, labels) == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} never became {want}:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The value of the sample `name` whose labels are exactly `labels`, from a `/metrics` page.
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, value)| value)
}

/// `name{k="v",…} value` → its parts; `None` for a line of another shape.
fn parse_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), BTreeMap::new(), value));
    };
    Some((
        name.to_owned(),
        parse_labels(rest.strip_suffix('}')?)?,
        value,
    ))
}

/// `k="v",k2="v2"` (values with `\"` and `\\` escapes) → a map.
fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

#[test]
fn samples_are_read_by_name_and_exact_labels() {
    let page = "# TYPE x counter\nx{a=\"1\",b=\"q\\\"uote\"} 3\nx{a=\"1\"} 4\ny 5\n";
    assert_eq!(
        sample(page, "x", &[("a", "1"), ("b", "q\"uote")]),
        Some(3.0)
    );
    assert_eq!(sample(page, "x", &[("a", "1")]), Some(4.0));
    assert_eq!(sample(page, "y", &[]), Some(5.0));
    assert_eq!(sample(page, "x", &[]), None);
}
