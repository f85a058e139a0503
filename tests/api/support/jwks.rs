//! An identity provider for the key-set tests: signing keys made with the
//! openssl command line, and a key-set server on loopback that counts the
//! requests it gets and answers whatever the test last told it to.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herald::http::auth::{Claims, Scope};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::database::scratch_dir;
use super::tokens::now;

/// A private key of the identity provider and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl TestKey {
    /// A new key for `algorithm` (RS256, ES256 or EdDSA) named `kid`.
    pub fn generate(algorithm: Algorithm, kid: &str) -> Self {
        let dir = scratch_dir(&format!("jwks-{kid}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("private.pem");
        let options: &[&str] = match algorithm {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::EdDSA => &["-algorithm", "ED25519"],
            other => panic!("no test keys for {other:?}"),
        };
        let status = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(options)
            .args(["-out", path.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl genpkey {options:?}");
        let pem = std::fs::read(&path).unwrap();
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            algorithm,
            key,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    /// The same key under another `kid` (one the key set does not list).
    pub fn with_kid(&self, kid: &str) -> Self {
        let mut jwk = self.jwk();
        jwk["kid"] = kid.into();
        Self {
            kid: kid.to_owned(),
            algorithm: self.algorithm,
            key: self.key.clone(),
            jwk,
        }
    }

    /// The public JWK, as the key set lists it (with `alg`).
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// The public JWK without `alg`: its type says what it is for.
    pub fn jwk_without_alg(&self) -> Value {
        let mut jwk = self.jwk();
        jwk.as_object_mut().unwrap().remove("alg");
        jwk
    }

    /// `claims` signed with this key, the header naming `kid` and `alg`.
    pub fn sign_with(&self, header: Header, claims: &Claims) -> String {
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        self.sign_with(header, claims)
    }

    /// A token for `sub` with the configured names of `scopes`, valid for
    /// an hour.
    pub fn token(&self, sub: &str, scopes: &[Scope]) -> String {
        self.sign(&claims(sub, scopes))
    }
}

/// An hour's claims for `sub` with the default scope names.
pub fn claims(sub: &str, scopes: &[Scope]) -> Claims {
    let scope = scopes
        .iter()
        .map(|s| match s {
            Scope::Publish => "herald:publish",
            Scope::Admin => "herald:admin",
        })
        .collect::<Vec<_>>()
        .join(" ");
    Claims {
        sub: Some(sub.to_owned()),
        exp: now() + 3600,
        nbf: None,
        iat: Some(now()),
        iss: None,
        aud: None,
        scope: (!scope.is_empty()).then_some(scope),
    }
}

/// `{"keys": [...]}` of these keys' JWKs.
pub fn key_set(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// What the key-set server answers.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub cache_control: Option<String>,
}

impl Answer {
    pub fn keys(keys: &[&TestKey]) -> Self {
        Self::json(&key_set(keys))
    }

    pub fn json(body: &Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            cache_control: None,
        }
    }

    pub fn max_age(mut self, secs: u64) -> Self {
        self.cache_control = Some(format!("public, max-age={secs}"));
        self
    }
}

/// The key-set server: HTTP/1.1 on loopback, one request per connection.
pub struct JwksServer {
    pub port: u16,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(answer: Answer) -> Self {
        Self::start_on(0, answer).await
    }

    /// On `port` (0: any), e.g. one the service was told about while
    /// nothing listened there.
    pub async fn start_on(port: u16, answer: Answer) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (answer, requests) = (answer.clone(), requests.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (answer, requests) = (answer.clone(), requests.clone());
                    tokio::spawn(serve(stream, answer, requests));
                }
            }
        });
        Self {
            port,
            answer,
            requests,
            task,
        }
    }

    /// A loopback port nothing listens on (for now).
    pub async fn unused_port() -> u16 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    pub fn url(&self) -> String {
        url_on(self.port)
    }

    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn url_on(port: u16) -> String {
    format!("http://127.0.0.1:{port}/.well-known/jwks.json")
}

async fn serve(mut stream: TcpStream, answer: Arc<Mutex<Answer>>, requests: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let answer = answer.lock().unwrap().clone();
    let mut response = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    if let Some(cc) = &answer.cache_control {
        response.push_str(&format!("Cache-Control: {cc}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&answer.body);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
