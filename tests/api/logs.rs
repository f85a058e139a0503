//! No token, and no `access_token` value, ever reaches a log line.

use crate::support::{TestApp, captured_logs, wait_for};
use herald::http::auth::Scope;

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let app = TestApp::spawn().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let user = format!("log-user-{marker}");
    let header_token = app.token(&user, &[]);
    let query_token = app.token(&user, &[Scope::Publish]);
    let expired = app.signer.token_for(&user, &[], -3600).unwrap();
    let tokens = [&header_token, &query_token, &expired];

    // Header, query (stream and WebSocket), failed auth by header and by
    // query, and a query token where it is not accepted.
    assert_eq!(
        app.http
            .get(app.url("/v1/me/notifications"))
            .bearer_auth(&header_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let stream = app.sse_with_token(&query_token, None, Some("0")).await;
    drop(stream);
    let socket = crate::support::ws::connect(&app, &query_token, None).await;
    drop(socket);
    let r = app
        .http
        .get(app.url("/v1/me/notifications"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url(&format!("/v1/me/stream?access_token={expired}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url(&format!(
            "/v1/me/notifications?access_token={query_token}&x=1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url(&format!("/v1/me/events?access_token={query_token}&after=0")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The requests above are logged before this marker is.
    let marker_path = format!("/marker-{marker}");
    assert_eq!(
        app.http
            .get(app.url(&marker_path))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    wait_for(|| async { captured_logs().contains(&marker_path) }).await;

    let logs = captured_logs();
    assert!(logs.contains("/v1/me/stream"), "requests are logged");
    for token in tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token reached the logs");
    }
    assert!(
        !logs.contains("access_token="),
        "a query string with access_token reached the logs"
    );
}
