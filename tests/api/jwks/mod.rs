//! Tokens from an identity provider's key set (`auth.jwks_url`): keys chosen
//! by `kid`, rotation without a restart, a bounded refetch rate, and a
//! service that starts and recovers when the key set is unavailable or bad.

mod accepted;
mod availability;
mod rotation;

use crate::support::jwks::JwksServer;
use crate::support::{TestApp, list_with};

/// An app checking tokens against `url`'s key set.
async fn spawn_with_url(
    url: String,
    tweak: impl FnOnce(&mut herald::settings::Settings),
) -> TestApp {
    TestApp::spawn_with(|s| {
        s.auth.jwks_url = url;
        tweak(s);
    })
    .await
}

async fn spawn(server: &JwksServer) -> TestApp {
    spawn_with_url(server.url(), |_| {}).await
}

async fn status_with(app: &TestApp, token: &str) -> u16 {
    list_with(app, token).await.status().as_u16()
}
