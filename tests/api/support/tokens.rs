//! Tokens the tests sign: the application's own signer with the test
//! settings' secret.

use herald::http::auth::Claims;

use super::app::TestApp;

impl TestApp {
    pub fn token(&self, sub: &str, scope: Option<&str>) -> String {
        self.signer.token_for(sub, scope, 3600).unwrap()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.signer.sign(claims).unwrap()
    }

    pub fn publisher(&self) -> String {
        self.token("publisher-service", Some("publish"))
    }

    pub fn admin(&self) -> String {
        self.token("operator", Some("admin"))
    }
}
