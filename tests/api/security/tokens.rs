//! Token headers and claims: no header chooses the key, no claim smuggles
//! a scope or an odd user.
//! SECURITY.md says what each test shows.

use herald::http::auth::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::tokens::{SECRET, now, raw_token};
use crate::support::{TestApp, assert_problem, list_with};

#[tokio::test]
async fn key_naming_headers_never_choose_the_key() {
    let app = TestApp::spawn().await;
    let claims = Claims {
        sub: Some("kim".into()),
        exp: now() + 3600,
        nbf: None,
        iat: Some(now()),
        iss: None,
        aud: None,
        scope: Some("admin".into()),
    };
    let attacker = EncodingKey::from_secret(b"attacker's own secret");
    let mut headers = Vec::new();
    for kid in [
        "herald",
        "0",
        "default",
        "../../../../dev/null",
        "' OR 1=1 --",
        "",
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.into());
        headers.push(h);
    }
    let mut h = Header::new(Algorithm::HS256);
    h.jku = Some("http://127.0.0.1:9/keys.json".into());
    h.kid = Some("attacker".into());
    headers.push(h);
    let mut h = Header::new(Algorithm::HS256);
    h.x5u = Some("http://127.0.0.1:9/cert.pem".into());
    headers.push(h);
    for header in &headers {
        let forged = jsonwebtoken::encode(header, &claims, &attacker).unwrap();
        assert_problem(list_with(&app, &forged).await, 401, "signature").await;
    }
    // An embedded "key" in the header (an HMAC secret posing as a JWK)
    // is not used either.
    let forged = raw_token(
        r#"{"alg":"HS256","typ":"JWT","jwk":{"kty":"oct","k":"YXR0YWNrZXI"}}"#,
        &serde_json::to_string(&claims).unwrap(),
        b"attacker",
    );
    assert_eq!(list_with(&app, &forged).await.status(), 401);

    // With the configured key, a `kid` changes nothing: it is ignored.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("some-other-key".into());
    let genuine = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(list_with(&app, &genuine).await.status(), 200);

    // `crit` names extensions that must be understood; none are.
    let crit = raw_token(
        r#"{"alg":"HS256","typ":"JWT","crit":["b64"],"b64":false}"#,
        &serde_json::to_string(&claims).unwrap(),
        SECRET,
    );
    assert_problem(list_with(&app, &crit).await, 401, "`crit`").await;
}

#[tokio::test]
async fn claims_cannot_smuggle_scopes_or_odd_users() {
    let app = TestApp::spawn().await;
    let exp = now() + 3600;
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
    // Scope spelled otherwise, or in another claim: no admin.
    for payload in [
        json!({"sub": "u", "exp": exp, "scope": "Admin"}),
        json!({"sub": "u", "exp": exp, "scope": "publish,admin"}),
        json!({"sub": "u", "exp": exp, "scope": "administrator"}),
        json!({"sub": "u", "exp": exp, "scp": "admin"}),
        json!({"sub": "u", "exp": exp, "scopes": ["admin"], "roles": ["admin"]}),
    ] {
        let token = raw_token(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &payload.to_string(),
            SECRET,
        );
        assert_problem(stats(token).await, 403, "`admin` scope").await;
    }
    // Wrong types, duplicate claims, odd subjects: refused outright.
    let too_long = "x".repeat(129);
    for payload in [
        json!({"sub": "u", "exp": exp, "scope": ["admin"]}).to_string(),
        json!({"sub": 42, "exp": exp}).to_string(),
        json!({"sub": "u", "exp": exp.to_string()}).to_string(),
        format!(r#"{{"sub":"u","sub":"operator","exp":{exp},"scope":"admin"}}"#),
        format!(r#"{{"sub":"u","exp":{exp},"scope":"user","scope":"admin"}}"#),
        json!({"sub": "", "exp": exp}).to_string(),
        json!({"sub": too_long, "exp": exp}).to_string(),
        json!({"sub": "a\nb", "exp": exp}).to_string(),
        json!({"sub": "a\u{0}b", "exp": exp}).to_string(),
        json!({"sub": "a\u{1b}[31mb", "exp": exp}).to_string(),
        json!({"sub": "a\u{85}b", "exp": exp}).to_string(),
    ] {
        let token = raw_token(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, SECRET);
        let r = stats(token).await;
        assert_eq!(r.status(), 401, "{payload}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}
