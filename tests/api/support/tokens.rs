//! Tokens the tests sign: the application's own signer with the test
//! settings' secret.

use herald::http::auth::{Claims, Scope};

use super::app::TestApp;

#[allow(dead_code)]
#[path = "../../../benches/common/jwt.rs"]
mod jwt;

pub use jwt::{b64, raw_token};

impl TestApp {
    pub fn token(&self, sub: &str, scopes: &[Scope]) -> String {
        self.signer.token_for(sub, scopes, 3600).unwrap()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.signer.sign(claims).unwrap()
    }

    pub fn publisher(&self) -> String {
        self.token("publisher-service", &[Scope::Publish])
    }

    pub fn admin(&self) -> String {
        self.token("operator", &[Scope::Admin])
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The HS256 secret the test servers run with: the development secret is
/// refused when the tests use an external database (`DATABASE_URL`).
pub const TEST_SECRET: &str = "herald-test-secret-not-for-production";

/// [`TEST_SECRET`] as the key bytes tokens are signed with.
pub const SECRET: &[u8] = TEST_SECRET.as_bytes();
