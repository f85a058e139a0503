//! Oversized and deeply nested JSON bodies (and other malformed ones) on
//! the routes that take a body. Each must be refused with 400, 413 or 422
//! and store nothing.

use futures_util::{StreamExt, stream};

use crate::Config;
use crate::report::{Outcome, Tally};
use crate::target::Target;

const CONCURRENCY: usize = 16;

fn nested(open: &str, close: &str, depth: usize, closed: bool) -> String {
    let mut body = String::from(r#"{"recipients":["attack-json"],"title":"t","data":{"x":"#);
    body.push_str(&open.repeat(depth));
    if closed {
        body.push_str(&close.repeat(depth));
        body.push_str("}}");
    }
    body
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let big_string = format!(
        r#"{{"recipients":["attack-json"],"title":"{}"}}"#,
        "a".repeat(3 << 20)
    );
    let many_keys = {
        let keys: Vec<String> = (0..150_000).map(|i| format!(r#""k{i}":1"#)).collect();
        format!(
            r#"{{"recipients":["attack-json"],"title":"t","data":{{{}}}}}"#,
            keys.join(",")
        )
    };
    let recipients: Vec<String> = (0..10_001)
        .map(|i| format!(r#""attack-json-{i}""#))
        .collect();
    vec![
        ("3 MiB string (Content-Length)", big_string.into_bytes()),
        ("150,000 keys in data (1.7 MiB)", many_keys.into_bytes()),
        (
            "100,000 nested arrays",
            nested("[", "]", 100_000, true).into_bytes(),
        ),
        (
            "100,000 nested objects",
            nested(r#"{"a":"#, "}", 100_000, true).into_bytes(),
        ),
        (
            "1,000,000 unclosed [",
            nested("[", "]", 1_000_000, false).into_bytes(),
        ),
        (
            "10,001 recipients",
            format!(r#"{{"recipients":[{}],"title":"t"}}"#, recipients.join(",")).into_bytes(),
        ),
        (
            "data of 17 KiB",
            format!(
                r#"{{"recipients":["attack-json"],"title":"t","data":{{"x":"{}"}}}}"#,
                "a".repeat(17 * 1024)
            )
            .into_bytes(),
        ),
        (
            "number 1e999999",
            br#"{"recipients":["attack-json"],"title":"t","data":{"x":1e999999}}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"recipients\":[\"attack-json\"],\"title\":\"\xff\xfe\"}".to_vec(),
        ),
    ]
}

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let stored_before = stored(target).await?;
    let n = config.n(20);
    for (what, body) in bodies() {
        for (path, token, chunked) in [
            ("/v1/notifications", &target.publisher, false),
            ("/v1/notifications", &target.publisher, true),
            ("/v1/broadcasts", &target.admin, false),
        ] {
            let statuses: Vec<String> = stream::iter(0..n)
                .map(|_| {
                    let body = body.clone();
                    let request = http
                        .post(target.url(path))
                        .bearer_auth(token)
                        .header("Content-Type", "application/json");
                    async move {
                        let request = if chunked {
                            // A stream body goes out chunked, without a length.
                            let piece: Result<Vec<u8>, std::io::Error> = Ok(body);
                            request.body(reqwest::Body::wrap_stream(stream::iter([piece])))
                        } else {
                            request.body(body)
                        };
                        match request.send().await {
                            Ok(r) => r.status().as_u16().to_string(),
                            Err(e) if e.is_timeout() => "timeout".into(),
                            Err(_) => "connection closed".into(),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let mut tally = Tally::default();
            for s in statuses {
                tally.add(s);
            }
            let how = if chunked { ", chunked" } else { "" };
            outcome.row(format!("{what} → POST {path}{how} ×{n}"), tally.to_string());
            // A server may close the connection after a 413 before the
            // client finished sending; that is a refusal too.
            let bad = tally.outside(&["400", "413", "422", "connection closed"]);
            if !bad.is_empty() {
                outcome.finding(format!("{what} on {path}{how}: {}", bad.join(" ")));
            }
        }
    }
    let stored_after = stored(target).await?;
    outcome.row(
        "notifications and broadcasts stored by the attack",
        format!("{}", stored_after - stored_before),
    );
    if stored_after != stored_before {
        outcome.finding("refused bodies stored something");
    }
    Ok(outcome)
}

/// Rows the attack could have created: anything not for the good client.
async fn stored(target: &Target) -> anyhow::Result<i64> {
    let (notifications,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM notifications WHERE user_id <> 'attack-good'")
            .fetch_one(&target.db)
            .await?;
    let (broadcasts,): (i64,) = sqlx::query_as("SELECT count(*) FROM broadcasts")
        .fetch_one(&target.db)
        .await?;
    Ok(notifications + broadcasts)
}
