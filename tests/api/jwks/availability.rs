//! A key set that cannot be had: the service starts anyway, answers 503
//! for what needs a key, and recovers by itself; a bad answer never
//! replaces good keys.

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::{list_with, spawn_with_url, status_with};
use crate::support::jwks::{Answer, JwksServer, TestKey, url_on};
use crate::support::{assert_problem, captured_logs, healthy, wait_for};

/// 503 problem+json with `Retry-After`, no `WWW-Authenticate`.
async fn assert_keys_unavailable(response: reqwest::Response) {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert!(response.headers().get("www-authenticate").is_none());
    let body = assert_problem(response, 503, "signing keys could not be fetched").await;
    assert_eq!(
        body["type"],
        "https://herald.example/problems/keys-unavailable"
    );
}

async fn metric(app: &crate::support::TestApp, outcome: &str) -> f64 {
    let text = app.metrics_text().await;
    let series = format!("herald_jwks_fetches_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn without_the_key_set_at_start_the_service_answers_503_until_it_can_fetch_it() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let port = JwksServer::unused_port().await;
    let app = spawn_with_url(url_on(port), |_| {}).await;
    healthy(&app).await;
    assert_keys_unavailable(list_with(&app, &key.token("kim", &[])).await).await;
    // Every transport says the same.
    let stream = app
        .http
        .get(app.url(&format!(
            "/v1/me/stream?access_token={}",
            key.token("kim", &[])
        )))
        .send()
        .await
        .unwrap();
    assert_keys_unavailable(stream).await;
    // What is refused without any key stays a 401.
    assert_eq!(status_with(&app, &app.token("kim", &[])).await, 401);
    assert!(metric(&app, "unreachable").await >= 1.0);
    let (users, ..) = app.row_counts().await;
    assert_eq!(users, 0);

    // The provider comes up: the retries find it.
    let server = JwksServer::start_on(port, Answer::keys(&[&key])).await;
    wait_for(|| async { status_with(&app, &key.token("kim", &[])).await == 200 }).await;
    assert!(server.requests() >= 1);
    assert!(metric(&app, "ok").await >= 1.0);
}

#[tokio::test]
async fn an_answer_that_is_no_usable_key_set_is_a_failed_fetch() {
    let key = TestKey::generate(Algorithm::RS256, "good");
    let server = JwksServer::start(Answer {
        status: 200,
        body: "<html>sign in</html>".into(),
        cache_control: None,
    })
    .await;
    let app = spawn_with_url(server.url(), |s| s.auth.jwks_cache_min_secs = 1).await;
    assert_keys_unavailable(list_with(&app, &key.token("kim", &[])).await).await;
    let garbage = [
        Answer::json(&json!({"issuer": "https://id.example"})),
        Answer::json(&json!({"keys": "none"})),
        // Keys it cannot use: a shared secret, an encryption key, no kid,
        // another curve.
        Answer::json(&json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": key.jwk()["n"], "e": "AQAB"},
            {"kty": "RSA", "n": key.jwk()["n"], "e": "AQAB"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"}
        ]})),
        Answer {
            status: 500,
            body: "{}".into(),
            cache_control: None,
        },
    ];
    for answer in garbage {
        server.answer(answer);
        let before = server.requests();
        // A retry has seen this answer (and the one after it this one).
        wait_for(|| async { server.requests() >= before + 2 }).await;
        assert_keys_unavailable(list_with(&app, &key.token("kim", &[])).await).await;
    }
    assert!(metric(&app, "invalid").await >= 1.0 && metric(&app, "status").await >= 1.0);

    // Good keys, each kept a second: then garbage again, and the last good
    // keys stay in use through failed refreshes.
    server.answer(Answer::keys(&[&key]).max_age(1));
    wait_for(|| async { status_with(&app, &key.token("kim", &[])).await == 200 }).await;
    server.answer(Answer::json(&json!({"keys": []})));
    let before = server.requests();
    wait_for(|| async { server.requests() >= before + 2 }).await;
    assert_eq!(status_with(&app, &key.token("kim", &[])).await, 200);
    let logs = captured_logs();
    assert!(logs.contains("keeping the last good keys"), "a warning");
    assert!(logs.contains("not a usable key set"), "says why");
    assert!(!logs.contains("sign in"), "the answer itself is not logged");
}
