//! Header and method floods: many and huge headers, invented methods with
//! random names (up to 100 KiB), random paths. Every answer must be a 4xx
//! (never a 5xx, never a hang), and the metric labels must stay a closed
//! set: no text a client chose may become a label value, so the series are
//! bounded by the product of the closed sets (new combinations of them, a
//! first 405 on some route, are fine).

use std::time::Duration;

use futures_util::{StreamExt, stream};
use herald::http::routes::ROUTES;
use rand::RngExt;

use crate::Config;
use crate::raw::exchange;
use crate::report::{Outcome, Tally};
use crate::target::{Target, sample};

const CONCURRENCY: usize = 64;
const WITHIN: Duration = Duration::from_secs(15);
/// The method labels the service may use.
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "other",
];

/// The request-series labels of `/metrics` that are not in the closed sets:
/// a method outside [`METHODS`], or a route that is neither `unmatched` nor
/// a pattern of the route table.
fn labels_outside_the_closed_sets(metrics: &str) -> Vec<String> {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned())
    };
    let mut odd = Vec::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("herald_http_requests_total{"))
    {
        let method = label(line, "method").unwrap_or_default();
        let route = label(line, "route").unwrap_or_default();
        if !METHODS.contains(&method.as_str()) {
            odd.push(format!("method {:.40}", method));
        }
        if route != "unmatched" && !ROUTES.iter().any(|(_, p)| *p == route) {
            odd.push(format!("route {:.40}", route));
        }
    }
    odd
}

fn random_token(rng: &mut impl rand::Rng, len: usize) -> String {
    const TCHAR: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~";
    (0..len)
        .map(|_| TCHAR[rng.random_range(0..TCHAR.len())] as char)
        .collect()
}

fn random_path(rng: &mut impl rand::Rng) -> String {
    if rng.random_bool(0.3) {
        let (_, pattern) = ROUTES[rng.random_range(0..ROUTES.len())];
        return pattern
            .replace("{id}", &random_token(rng, 8))
            .replace("{user_id}", &random_token(rng, 8));
    }
    const PCHAR: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._~%2F:@!$&'()*+,;=";
    let segments = rng.random_range(1..8);
    let mut path = String::new();
    for _ in 0..segments {
        path.push('/');
        let len = rng.random_range(1..300);
        path.extend((0..len).map(|_| PCHAR[rng.random_range(0..PCHAR.len())] as char));
    }
    path
}

/// Sends every request (each on its own connection) and tallies the answers.
async fn send_all(addr: &str, requests: Vec<Vec<u8>>) -> Tally {
    let ended: Vec<_> = stream::iter(requests)
        .map(|r| async move { exchange(addr, &r, WITHIN).await })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut tally = Tally::default();
    for e in ended {
        if e.closed_after.is_none() && !e.connect_failed {
            tally.add(format!("{} (not closed)", e.label()));
        } else {
            tally.add(e.label());
        }
    }
    tally
}

fn request(method: &str, path: &str, headers: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

fn check(outcome: &mut Outcome, what: &str, tally: &Tally, allowed: &[&str]) {
    let bad = tally.outside(allowed);
    if !bad.is_empty() {
        outcome.finding(format!("{what}: unexpected answers {}", bad.join(" ")));
    }
}

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let before = sample(target.pid(), &target.base).await;
    let addr = target.addr.as_str();
    let n = config.n(100);

    // Headers.
    let header = |i: usize, len: usize| format!("X-Flood-{i}: {}\r\n", "a".repeat(len));
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "90 headers of 1 KiB",
            (0..90).map(|i| header(i, 1024)).collect(),
            &["200"],
        ),
        (
            "200 small headers",
            (0..200).map(|i| header(i, 8)).collect(),
            &["431"],
        ),
        ("one 100 KiB header", header(0, 100 * 1024), &["200"]),
        ("one 1 MiB header", header(0, 1024 * 1024), &["431"]),
        (
            "5000 headers (about 130 KiB)",
            (0..5000).map(|i| header(i, 10)).collect(),
            &["431"],
        ),
    ];
    for (what, headers, allowed) in cases {
        let tally = send_all(addr, vec![request("GET", "/healthz", &headers); n]).await;
        outcome.row(format!("{what} ×{n}"), tally.to_string());
        check(&mut outcome, what, &tally, allowed);
    }

    // Invented methods: most short, some up to 100 KiB, on random paths.
    let methods = config.n(3000);
    let requests: Vec<Vec<u8>> = {
        let mut rng = rand::rng();
        (0..methods)
            .map(|_| {
                let len = if rng.random_bool(0.8) {
                    rng.random_range(3..16)
                } else {
                    rng.random_range(1024..100 * 1024)
                };
                request(&random_token(&mut rng, len), &random_path(&mut rng), "")
            })
            .collect()
    };
    let tally = send_all(addr, requests).await;
    outcome.row(
        format!("random methods (80% 3–16 B, 20% 1–100 KiB) ×{methods}"),
        tally.to_string(),
    );
    check(
        &mut outcome,
        "random methods",
        &tally,
        &["400", "404", "405", "431"],
    );

    // Random paths with the real methods.
    let paths = config.n(3000);
    let requests: Vec<Vec<u8>> = {
        let mut rng = rand::rng();
        (0..paths)
            .map(|_| {
                let method = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]
                    [rng.random_range(0..7)];
                request(method, &random_path(&mut rng), "")
            })
            .collect()
    };
    let tally = send_all(addr, requests).await;
    outcome.row(format!("random paths ×{paths}"), tally.to_string());
    check(
        &mut outcome,
        "random paths",
        &tally,
        &["200", "400", "401", "404", "405", "431"],
    );

    let after = sample(target.pid(), &target.base).await;
    outcome.row(
        "metric series before → after",
        format!(
            "{} → {} lines, /metrics {} KiB → {} KiB",
            before.series,
            after.series,
            before.metrics_bytes / 1024,
            after.metrics_bytes / 1024
        ),
    );
    let metrics = reqwest::get(format!("{}/metrics", target.base))
        .await?
        .text()
        .await?;
    let odd = labels_outside_the_closed_sets(&metrics);
    outcome.row(
        "request labels outside the closed sets",
        if odd.is_empty() {
            "none".to_owned()
        } else {
            format!("{} (e.g. {})", odd.len(), odd[0])
        },
    );
    if !odd.is_empty() {
        outcome.finding(format!(
            "requests put their own text into {} metric labels (e.g. {}): labels are not a closed set",
            odd.len(),
            odd[0]
        ));
    }
    Ok(outcome)
}
