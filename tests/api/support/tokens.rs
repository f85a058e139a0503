//! Tokens the tests sign: the application's own signer with the test
//! settings' secret.

use herald::http::auth::{Claims, Scope};
use jsonwebtoken::{Algorithm, EncodingKey};

use super::app::TestApp;

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

/// Unpadded base64url.
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with exactly this header and payload text, HS256-signed with
/// `secret` (so claims the typed API cannot express can be tried).
pub fn raw_token(header: &str, payload: &str, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

/// The HS256 secret the test servers run with: the development secret is
/// refused when the tests use an external database (`DATABASE_URL`).
pub const TEST_SECRET: &str = "herald-test-secret-not-for-production";

/// [`TEST_SECRET`] as the key bytes tokens are signed with.
pub const SECRET: &[u8] = TEST_SECRET.as_bytes();
