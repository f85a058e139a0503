//! Which key-set tokens are accepted, on every transport and scope.

use herald::http::auth::Scope;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{list_with, spawn, spawn_with_url, status_with};
use crate::support::jwks::{Answer, JwksServer, TestKey, claims};
use crate::support::tokens::raw_token;
use crate::support::{assert_problem, data, ws};

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_are_checked_with_the_key_their_kid_names() {
    let rsa = TestKey::generate(Algorithm::RS256, "rsa-1");
    let ec = TestKey::generate(Algorithm::ES256, "ec-1");
    let ed = TestKey::generate(Algorithm::EdDSA, "ed-1");
    // The EC key without `alg`: its type (P-256) says ES256.
    let set = json!({"keys": [rsa.jwk(), ec.jwk_without_alg(), ed.jwk()]});
    let server = JwksServer::start(Answer::json(&set)).await;
    let app = spawn(&server).await;
    for key in [&rsa, &ec, &ed] {
        let r = list_with(&app, &key.token("kim", &[])).await;
        assert_eq!(r.status(), 200, "{}: {:?}", key.kid, r.text().await);
    }
    // A token signed by one key but naming another's kid.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ed-1".into());
    let forged = ec.sign_with(header, &claims("kim", &[]));
    assert_problem(list_with(&app, &forged).await, 401, "`alg`").await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let other = TestKey::generate(Algorithm::RS256, "rsa-1");
    let wrong_key = other.sign_with(header, &claims("kim", &[]));
    assert_problem(list_with(&app, &wrong_key).await, 401, "signature").await;
    // Every key was known from the first fetch: nothing was refetched.
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_token_whose_alg_is_not_its_keys_is_refused() {
    let rsa = TestKey::generate(Algorithm::RS256, "rsa");
    let ec = TestKey::generate(Algorithm::ES256, "ec");
    // The EC key has no `alg`: the one that follows from its type counts.
    let set = json!({"keys": [rsa.jwk(), ec.jwk_without_alg()]});
    let server = JwksServer::start(Answer::json(&set)).await;
    let app = spawn(&server).await;
    let c = claims("kim", &[]);
    let payload = serde_json::to_string(&c).unwrap();
    // A header that names a key and another algorithm (whatever signs it:
    // the algorithm is refused before any signature is checked).
    for (alg, kid) in [
        ("ES256", "rsa"),
        ("RS256", "ec"),
        ("EdDSA", "rsa"),
        ("PS256", "rsa"),
    ] {
        let token = raw_token(
            &json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string(),
            &payload,
            b"x",
        );
        assert_problem(list_with(&app, &token).await, 401, "`alg`").await;
    }
    // Signed for real by the other key, under its own algorithm.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa".into());
    assert_problem(
        list_with(&app, &ec.sign_with(header, &c)).await,
        401,
        "`alg`",
    )
    .await;
    // The classic confusion: HS256 keyed with the public key's JWK text.
    for kid in ["rsa", "ec"] {
        let token = raw_token(
            &json!({"alg": "HS256", "kid": kid, "typ": "JWT"}).to_string(),
            &payload,
            set.to_string().as_bytes(),
        );
        assert_problem(list_with(&app, &token).await, 401, "`alg`").await;
    }
    let none = raw_token(
        r#"{"alg":"none","kid":"rsa","typ":"JWT"}"#,
        &serde_json::to_string(&c).unwrap(),
        b"",
    );
    assert_eq!(status_with(&app, &none).await, 401);
}

#[tokio::test]
async fn hs256_tokens_and_tokens_without_a_kid_are_refused_with_a_key_set() {
    let rsa = TestKey::generate(Algorithm::RS256, "rsa");
    let server = JwksServer::start(Answer::keys(&[&rsa])).await;
    let app = spawn(&server).await;
    // The shared secret (the tests' own signer) is not accepted any more.
    assert_problem(
        list_with(&app, &app.token("kim", &[])).await,
        401,
        "no `kid`",
    )
    .await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims("kim", &[]),
        &EncodingKey::from_secret(crate::support::TEST_SECRET.as_bytes()),
    )
    .unwrap();
    assert_problem(list_with(&app, &hs).await, 401, "`alg`").await;
    let no_kid = rsa.sign_with(Header::new(Algorithm::RS256), &claims("kim", &[]));
    assert_problem(list_with(&app, &no_kid).await, 401, "no `kid`").await;
    assert_eq!(status_with(&app, &rsa.token("kim", &[])).await, 200);
}

#[tokio::test]
async fn issuer_and_audience_are_checked_on_key_set_tokens() {
    let ec = TestKey::generate(Algorithm::ES256, "ec");
    let server = JwksServer::start(Answer::keys(&[&ec])).await;
    let app = spawn_with_url(server.url(), |s| {
        s.auth.issuer = "https://id.example/realms/herald".into();
        s.auth.audience = "herald".into();
    })
    .await;
    let mut c = claims("kim", &[]);
    assert_problem(
        list_with(&app, &ec.sign(&c)).await,
        401,
        "lacks a required claim",
    )
    .await;
    c.iss = Some("https://id.example/realms/herald".into());
    c.aud = Some("account".into());
    assert_problem(list_with(&app, &ec.sign(&c)).await, 401, "audience").await;
    c.aud = Some(vec!["account".to_owned(), "herald".to_owned()].into());
    c.iss = Some("https://id.example/realms/other".into());
    assert_problem(list_with(&app, &ec.sign(&c)).await, 401, "issuer").await;
    c.iss = Some("https://id.example/realms/herald".into());
    assert_eq!(status_with(&app, &ec.sign(&c)).await, 200);
}

/// REST, SSE, WebSocket and long-poll share the verifier; scopes mean what
/// they mean with the shared secret.
#[tokio::test]
async fn every_transport_and_scope_works_with_key_set_tokens() {
    let rsa = TestKey::generate(Algorithm::RS256, "rsa");
    let ed = TestKey::generate(Algorithm::EdDSA, "ed");
    let server = JwksServer::start(Answer::keys(&[&rsa, &ed])).await;
    let app = spawn(&server).await;
    let user = ed.token("jo", &[]);
    let mut sse = app.sse_with_token(&user, None, None).await;
    let mut socket = ws::connect(&app, &user, None).await;

    // A user token may not publish or administer; a publisher token may
    // publish, not administer; an admin token may do both.
    let publish = |token: String| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/v1/notifications"))
                .bearer_auth(token)
                .json(&json!({"recipients": ["jo"], "title": "hello"}))
                .send()
                .await
                .unwrap()
        }
    };
    let stats = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/v1/admin/stats"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_problem(publish(user.clone()).await, 403, "`publish` scope").await;
    assert_problem(
        stats(rsa.token("svc", &[Scope::Publish])).await,
        403,
        "`admin` scope",
    )
    .await;
    assert_eq!(stats(rsa.token("ops", &[Scope::Admin])).await.status(), 200);
    assert_eq!(
        publish(rsa.token("svc", &[Scope::Publish])).await.status(),
        201
    );

    let event = sse.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), data(&event)["title"].clone()),
        ("notification", json!("hello"))
    );
    let frame = ws::next_json(&mut socket).await;
    assert_eq!(
        (frame["type"].clone(), frame["data"]["title"].clone()),
        (json!("notification"), json!("hello"))
    );
    let poll = app
        .http
        .get(app.url(&format!("/v1/me/events?after=0&access_token={user}")))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), 200);
    let poll: serde_json::Value = poll.json().await.unwrap();
    assert_eq!(poll["events"][0]["data"]["title"], "hello");

    // A new connection with a fresh token (how a client renews an
    // expiring one) works the same; a bad one is refused before the
    // upgrade.
    drop(socket);
    let mut renewed = ws::connect(&app, &ed.token("jo", &[]), Some("0")).await;
    assert_eq!(ws::next_json(&mut renewed).await["data"]["title"], "hello");
    let refused = tokio_tungstenite::connect_async(format!(
        "{}/v1/me/ws?access_token={}",
        app.address.replacen("http", "ws", 1),
        app.token("jo", &[])
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|(_, r)| r.status())),
    }
}

#[test]
fn herald_token_says_it_cannot_sign_with_a_key_set() {
    let output = crate::settings::herald(
        &["token", "--sub", "kim"],
        &[(
            "HERALD__AUTH__JWKS_URL",
            "https://id.example/realms/acme/protocol/openid-connect/certs",
        )],
    );
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("auth.jwks_url is set") && stderr.contains("identity provider"),
        "{stderr}"
    );
}
