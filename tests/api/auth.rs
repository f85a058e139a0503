//! Every way a token can be wrong, each with a problem+json answer.

use herald::http::auth::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::support::{TestApp, assert_problem, list_with};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(sub: Option<&str>, exp: i64) -> Claims {
    Claims {
        sub: sub.map(str::to_owned),
        exp,
        nbf: None,
        iat: Some(now()),
        iss: None,
        aud: None,
        scope: None,
    }
}

#[tokio::test]
async fn missing_and_malformed_authorization() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/v1/me/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_problem(r, 401, "Authorization: Bearer").await;
    let r = app
        .http
        .get(app.url("/v1/me/notifications"))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "must be `Bearer <token>`").await;
    assert_problem(list_with(&app, "not.a.jwt").await, 401, "malformed").await;
    // The streaming endpoints say the same without a token.
    let r = app.http.get(app.url("/v1/me/stream")).send().await.unwrap();
    assert_problem(r, 401, "Bearer").await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens() {
    let app = TestApp::spawn().await;
    let expired = app.sign(&claims(Some("u"), now() - 3600));
    assert_problem(list_with(&app, &expired).await, 401, "expired").await;
    let mut early = claims(Some("u"), now() + 3600);
    early.nbf = Some(now() + 1800);
    assert_problem(
        list_with(&app, &app.sign(&early)).await,
        401,
        "not valid yet",
    )
    .await;
}

#[tokio::test]
async fn bad_signature_none_and_other_algorithms_are_refused() {
    let app = TestApp::spawn().await;
    let c = claims(Some("u"), now() + 3600);
    let other_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    assert_problem(list_with(&app, &other_key).await, 401, "signature").await;

    // Same secret, but HS384: the algorithm is pinned by configuration.
    let secret = crate::support::TEST_SECRET.as_bytes();
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &c,
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    assert_problem(list_with(&app, &hs384).await, 401, "configured algorithm").await;

    // alg: none, no signature.
    use crate::support::tokens::b64 as url;
    let none = format!(
        "{}.{}.",
        url(br#"{"alg":"none","typ":"JWT"}"#),
        url(serde_json::to_string(&c).unwrap().as_bytes())
    );
    let r = list_with(&app, &none).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_token_without_sub_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.sign(&claims(None, now() + 3600));
    assert_problem(list_with(&app, &token).await, 401, "no `sub`").await;
}

#[tokio::test]
async fn publishing_needs_the_publish_or_admin_scope() {
    let app = TestApp::spawn().await;
    let body = serde_json::json!({"recipients": ["x"], "title": "t"});
    let user = app.token("someone", &[]);
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(&user)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "`publish` scope").await;
    let mut other = claims(Some("someone"), now() + 3600);
    other.scope = Some("read write".into());
    let other_scope = app.sign(&other);
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(&other_scope)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "`publish` scope").await;
    let admin = app.admin();
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        app.row_counts().await.1,
        1,
        "only the admin's publish created anything"
    );
}

#[tokio::test]
async fn access_token_is_refused_outside_the_streaming_endpoints() {
    let app = TestApp::spawn().await;
    let token = app.token("u", &[]);
    let r = app
        .http
        .get(app.url(&format!("/v1/me/notifications?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "only on the streaming endpoints").await;
    let r = app
        .http
        .post(app.url(&format!(
            "/v1/notifications?access_token={}",
            app.publisher()
        )))
        .json(&serde_json::json!({"recipients": ["x"], "title": "t"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "only on the streaming endpoints").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
    // ...and accepted on the stream.
    let r = app
        .http
        .get(app.url(&format!("/v1/me/stream?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let app = TestApp::spawn().await;
    let mut c = claims(Some("u"), now() + 3600);
    c.scope = Some("x".repeat(9000));
    assert_problem(list_with(&app, &app.sign(&c)).await, 401, "larger than").await;
}

/// Generates a key pair with the openssl command line; returns (private
/// PKCS#8 PEM path, public PEM path).
fn key_pair(kind: &str) -> (String, String) {
    let dir =
        crate::support::scratch_dir(&format!("keys-{kind}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let (p, q) = (private.to_str().unwrap(), public.to_str().unwrap());
    match kind {
        "rsa" => {
            run(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                p,
            ]);
            run(&["pkey", "-in", p, "-pubout", "-out", q]);
        }
        _ => {
            run(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                p,
            ]);
            run(&["pkey", "-in", p, "-pubout", "-out", q]);
        }
    }
    (p.to_owned(), q.to_owned())
}

#[tokio::test]
async fn es256_with_a_public_key_and_no_algorithm_confusion() {
    let (private, public) = key_pair("ec");
    let public_pem = std::fs::read(&public).unwrap();
    let app = TestApp::spawn_with(|s| {
        s.auth.algorithm = herald::settings::JwtAlgorithm::ES256;
        s.auth.public_key_file = public.clone();
        s.auth.private_key_file = private.clone();
    })
    .await;
    assert_eq!(
        list_with(&app, &app.token("ec-user", &[])).await.status(),
        200
    );
    let c = claims(Some("ec-user"), now() + 3600);
    // An HS256 token keyed with the public key (the classic confusion attack).
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    assert_problem(
        list_with(&app, &confused).await,
        401,
        "configured algorithm",
    )
    .await;
    let dev_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(b"herald-development-secret-change-me"),
    )
    .unwrap();
    assert_problem(
        list_with(&app, &dev_secret).await,
        401,
        "configured algorithm",
    )
    .await;
}

#[tokio::test]
async fn rs256_with_issuer_and_audience_checks() {
    let (private, public) = key_pair("rsa");
    let public_pem = std::fs::read(&public).unwrap();
    let app = TestApp::spawn_with(|s| {
        s.auth.algorithm = herald::settings::JwtAlgorithm::RS256;
        s.auth.public_key_file = public.clone();
        s.auth.private_key_file = private.clone();
        s.auth.issuer = "https://id.example".into();
        s.auth.audience = "herald".into();
    })
    .await;
    let mut c = claims(Some("rsa-user"), now() + 3600);
    assert_problem(
        list_with(&app, &app.sign(&c)).await,
        401,
        "lacks a required claim",
    )
    .await;
    c.iss = Some("https://id.example".into());
    c.aud = Some("someone-else".into());
    assert_problem(list_with(&app, &app.sign(&c)).await, 401, "audience").await;
    c.aud = Some("herald".into());
    c.iss = Some("https://evil.example".into());
    assert_problem(list_with(&app, &app.sign(&c)).await, 401, "issuer").await;
    c.iss = Some("https://id.example".into());
    assert_eq!(list_with(&app, &app.sign(&c)).await.status(), 200);
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    assert_problem(
        list_with(&app, &confused).await,
        401,
        "configured algorithm",
    )
    .await;
}

/// The configured scope names (default `herald:publish`/`herald:admin`)
/// always work; the short v1 names only in the local environment.
#[tokio::test]
async fn configured_scope_names_and_short_names_only_in_the_local_environment() {
    let publish_with = |scope: &str| {
        let mut c = claims(Some("scoped-publisher"), now() + 3600);
        c.scope = Some(scope.to_owned());
        c
    };
    let body = serde_json::json!({"recipients": ["scoped"], "title": "t"});
    let local = TestApp::spawn().await;
    assert_eq!(local.settings.auth.scope_publish, "herald:publish");
    assert_eq!(local.settings.auth.scope_admin, "herald:admin");
    for scope in ["herald:publish", "publish", "herald:admin", "admin"] {
        let r = local
            .http
            .post(local.url("/v1/notifications"))
            .bearer_auth(local.sign(&publish_with(scope)))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{scope} in the local environment");
    }

    let production = TestApp::spawn_with(|s| {
        s.environment = "production".into();
        s.auth.scope_publish = "notify:send".into();
        s.auth.scope_admin = "notify:operate".into();
    })
    .await;
    for scope in ["publish", "admin", "herald:publish", "herald:admin"] {
        let r = production
            .http
            .post(production.url("/v1/notifications"))
            .bearer_auth(production.sign(&publish_with(scope)))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(r, 403, "`notify:send`").await;
    }
    assert_eq!(production.row_counts().await, (0, 0, 0, 0));
    for scope in ["notify:send", "notify:operate"] {
        let r = production
            .http
            .post(production.url("/v1/notifications"))
            .bearer_auth(production.sign(&publish_with(scope)))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{scope}");
    }
    // The signer (`herald token`, the tests) writes the configured names.
    let r = production
        .http
        .get(production.url("/v1/admin/stats"))
        .bearer_auth(production.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let app = TestApp::spawn().await;
    let leeway = app.settings.auth.leeway_secs as i64;
    let mut c = claims(Some("u"), now() + 7200);
    c.iat = Some(now() + leeway + 600);
    assert_problem(
        list_with(&app, &app.sign(&c)).await,
        401,
        "issued in the future",
    )
    .await;
    // Within the leeway (clock skew) it is fine.
    c.iat = Some(now() + leeway / 2);
    assert_eq!(list_with(&app, &app.sign(&c)).await.status(), 200);
}

#[tokio::test]
async fn an_audience_array_is_accepted_when_it_holds_the_configured_audience() {
    let app = TestApp::spawn_with(|s| s.auth.audience = "herald".into()).await;
    let mut c = claims(Some("aud-user"), now() + 3600);
    c.aud = Some(vec!["billing".to_owned(), "herald".to_owned()].into());
    assert_eq!(list_with(&app, &app.sign(&c)).await.status(), 200);
    c.aud = Some(vec!["billing".to_owned(), "other".to_owned()].into());
    assert_problem(list_with(&app, &app.sign(&c)).await, 401, "audience").await;
    c.aud = Some("herald".into());
    assert_eq!(list_with(&app, &app.sign(&c)).await.status(), 200);
    c.aud = None;
    assert_problem(list_with(&app, &app.sign(&c)).await, 401, "required claim").await;
}

#[tokio::test]
async fn public_keys_need_a_configured_audience_outside_the_local_environment() {
    let (private, public) = key_pair("ec");
    let mut settings = crate::support::test_settings();
    settings.auth.algorithm = herald::settings::JwtAlgorithm::ES256;
    settings.auth.public_key_file = public.clone();
    settings.auth.private_key_file = private.clone();
    settings.environment = "production".into();
    let error = herald::http::auth::Verifier::from_settings(&settings)
        .err()
        .expect("no audience outside the local environment is refused")
        .to_string();
    assert!(error.contains("auth.audience"), "{error}");
    // With one, tokens without `aud` are refused.
    let app = TestApp::spawn_with(|s| {
        *s = settings.clone();
        s.auth.audience = "herald".into();
    })
    .await;
    let mut c = claims(Some("ec-user"), now() + 3600);
    assert_problem(list_with(&app, &app.sign(&c)).await, 401, "required claim").await;
    c.aud = Some("herald".into());
    assert_eq!(list_with(&app, &app.sign(&c)).await.status(), 200);
}
