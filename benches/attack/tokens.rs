//! Token fuzzing: `alg` confusion (`none`, asymmetric algorithms with a
//! made-up signature, other HMACs, HS256 keyed with guessable secrets),
//! `kid`/`jku`/`jwk` tricks, huge claims, garbage base64, and random
//! mutations of a genuine token, on a REST route (header), a streaming route
//! (`access_token`) and the publish route (with a body). None may get
//! anything but 401 (or 431 when the header is too large to read).

use futures_util::{StreamExt, stream};
use rand::RngExt;

use crate::Config;
use crate::common::jwt::{b64, raw_token};
use crate::report::{Outcome, Tally};
use crate::target::Target;

const CONCURRENCY: usize = 32;

fn claims(extra: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    format!(
        r#"{{"sub":"attack-victim","exp":{},"iat":{now},"scope":"admin"{extra}}}"#,
        now + 3600
    )
}

fn unsigned(header: &str, payload: &str, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.as_bytes()),
        b64(payload.as_bytes())
    )
}

/// Forged and malformed tokens, each with what it tries.
fn forged() -> Vec<(String, String)> {
    let c = claims("");
    let random_sig = b64(&rand::random::<[u8; 64]>());
    let mut tokens: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        tokens.push((format!("alg {alg}"), unsigned(&header, &c, "")));
    }
    for alg in [
        "RS256", "ES256", "PS256", "EdDSA", "HS384", "HS512", "hs256", "HS256 ", "",
    ] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        tokens.push((
            format!("alg {alg:?}, random signature"),
            unsigned(&header, &c, &random_sig),
        ));
    }
    let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
    for (what, secret) in [
        ("empty secret", &b""[..]),
        ("secret \"secret\"", b"secret"),
        ("the development secret", b"herald-development-secret-change-me"),
        (
            "a PEM public key as HMAC secret",
            b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n",
        ),
    ] {
        tokens.push((format!("HS256 with {what}"), raw_token(hs, &c, secret)));
    }
    for (what, header, secret) in [
        (
            "kid pointing at /dev/null, empty key",
            r#"{"alg":"HS256","kid":"../../../../../../dev/null"}"#.to_owned(),
            &b""[..],
        ),
        (
            "kid with SQL, key 'key'",
            r#"{"alg":"HS256","kid":"x' UNION SELECT 'key' -- "}"#.to_owned(),
            b"key",
        ),
        (
            "10 KiB kid",
            format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(10 * 1024)),
            b"key",
        ),
        (
            "jku to loopback",
            r#"{"alg":"HS256","jku":"http://127.0.0.1:1/jwks.json"}"#.to_owned(),
            b"key",
        ),
        (
            "embedded jwk (oct key 'key')",
            r#"{"alg":"HS256","jwk":{"kty":"oct","k":"a2V5"}}"#.to_owned(),
            b"key",
        ),
        (
            "crit extension",
            r#"{"alg":"HS256","crit":["exp"]}"#.to_owned(),
            b"key",
        ),
    ] {
        tokens.push((what.to_owned(), raw_token(&header, &c, secret)));
    }
    for (what, extra) in [
        ("6 KiB sub", format!(r#","x":"{}""#, "s".repeat(6 * 1024))),
        (
            "7.5 KiB of scopes",
            format!(r#","scopes":"{}""#, "admin ".repeat(1200)),
        ),
        (
            "100 KiB claim",
            format!(r#","x":"{}""#, "s".repeat(100 * 1024)),
        ),
    ] {
        tokens.push((
            format!("{what}, random signature"),
            unsigned(hs, &claims(&extra), &random_sig),
        ));
    }
    for (what, token) in [
        ("a.b.c", "a.b.c".to_owned()),
        ("dots only", "....".to_owned()),
        ("percent signs", "%%%.%%%.%%%".to_owned()),
        (
            "two segments",
            format!("{}.{}", b64(hs.as_bytes()), b64(c.as_bytes())),
        ),
        (
            "four segments",
            format!(
                "{}.{}.{random_sig}.x",
                b64(hs.as_bytes()),
                b64(c.as_bytes())
            ),
        ),
        (
            "padded base64",
            format!(
                "{}==.{}==.{random_sig}==",
                b64(hs.as_bytes()),
                b64(c.as_bytes())
            ),
        ),
        ("header not JSON", unsigned("not json", &c, &random_sig)),
        ("payload a JSON array", unsigned(hs, "[1,2,3]", &random_sig)),
        ("random bytes", b64(&rand::random::<[u8; 32]>())),
        ("empty", String::new()),
        ("unicode", "ü.名前.🦀".to_owned()),
        ("7.9 KiB of garbage", "x".repeat(7_900)),
        ("9 KiB of garbage", "x".repeat(9 * 1024)),
        ("64 KiB of garbage", "x".repeat(64 * 1024)),
    ] {
        tokens.push((format!("garbage: {what}"), token));
    }
    tokens
}

/// A genuine token with one character of its header or payload changed:
/// the signature covers that text, so every such change must fail.
fn mutated(genuine: &str) -> String {
    let signed_len = genuine.rfind('.').expect("three segments");
    let mut bytes = genuine.as_bytes().to_vec();
    let mut rng = rand::rng();
    loop {
        let at = rng.random_range(0..signed_len);
        if bytes[at] == b'.' {
            continue;
        }
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let new = A[rng.random_range(0..A.len())];
        if new != bytes[at] {
            bytes[at] = new;
            return String::from_utf8(bytes).expect("ascii");
        }
    }
}

/// Percent-encodes everything but unreserved characters, for a query value.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Via {
    Header,
    Query,
    Publish,
}

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let genuine = target.token("attack-victim", Some("admin"));
    let mut cases: Vec<(String, String)> = forged();
    let mutations = config.n(2_000);
    cases.extend((0..mutations).map(|_| ("mutated genuine token".to_owned(), mutated(&genuine))));
    let repeat = config.n(2);
    let mut requests = Vec::new();
    for (what, token) in &cases {
        for via in [Via::Header, Via::Query, Via::Publish] {
            for _ in 0..repeat {
                requests.push((what.clone(), token.clone(), via));
            }
        }
    }
    let total = requests.len();
    let answers: Vec<(String, String)> = stream::iter(requests)
        .map(|(what, token, via)| {
            let request = match via {
                Via::Header => http
                    .get(target.url("/v1/me/notifications"))
                    .header("Authorization", format!("Bearer {token}")),
                Via::Query => http.get(target.url(&format!(
                    "/v1/me/events?after=0&access_token={}",
                    percent_encode(&token)
                ))),
                Via::Publish => http
                    .post(target.url("/v1/notifications"))
                    .header("Authorization", format!("Bearer {token}"))
                    .json(&serde_json::json!({"recipients": ["attack-victim"], "title": "forged"})),
            };
            async move {
                let status = match request.send().await {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(e) if e.is_builder() => "not sendable".into(),
                    Err(_) => "connection error".into(),
                };
                (what, status)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut all = Tally::default();
    let mut wrong: std::collections::BTreeMap<String, Tally> = Default::default();
    for (what, status) in answers {
        all.add(status.clone());
        // 400: a header value reqwest sent but the server could not read.
        if !["401", "431", "400", "not sendable"].contains(&status.as_str()) {
            wrong.entry(what).or_default().add(status);
        }
    }
    outcome.row(
        format!(
            "{} forged kinds + {mutations} mutations, header/query/publish ×{repeat}: {total} requests",
            cases.len() - mutations
        ),
        all.to_string(),
    );
    for (what, tally) in &wrong {
        outcome.finding(format!("{what}: {tally}"));
    }
    let (stored,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM notifications WHERE user_id = 'attack-victim' OR title = 'forged'",
    )
    .fetch_one(&target.db)
    .await?;
    outcome.row("notifications stored by forged tokens", stored.to_string());
    if stored != 0 {
        outcome.finding(format!("forged tokens stored {stored} notifications"));
    }
    Ok(outcome)
}
