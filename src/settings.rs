//! Typed, layered settings: checked-in defaults, an environment file, then
//! environment variables. The three variables of the contract always win.

use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults are compiled in so the binary runs outside the repository.
const BASE: &str = include_str!("../config/base.toml");

/// The development secret shipped in `config/base.toml`.
pub const DEVELOPMENT_SECRET: &str = "herald-development-secret-change-me";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub stream: StreamSettings,
    pub publish: PublishSettings,
    pub retention: RetentionSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub cors: CorsSettings,
    /// Which `config/<environment>.toml` was layered in.
    #[serde(default)]
    pub environment: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: String,
    pub heartbeat_secs: u64,
    pub retry_ms: u64,
    pub max_body_bytes: usize,
    pub workers: usize,
    /// Connections the kernel queues before they are accepted (capped by
    /// `net.core.somaxconn`).
    pub backlog: u32,
    /// A client must send a connection's first request head within this
    /// time (slow-request protection); it gets 408 and is disconnected.
    pub client_request_timeout_ms: u64,
    /// How long a client gets to acknowledge the closing of its connection.
    pub client_disconnect_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub embedded_dir: PathBuf,
    /// A statement of the service that runs longer is cancelled.
    pub statement_timeout_ms: u64,
    /// A session of the service idle inside a transaction for longer is
    /// ended, so a stuck task cannot hold a user's row lock.
    pub idle_in_transaction_timeout_ms: u64,
    /// How often the wake-up listener proves it still hears PostgreSQL: it
    /// sends itself a NOTIFY and expects it back within this time, else it
    /// reconnects (a dead TCP path can stay silent for hours).
    pub listener_check_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub algorithm: String,
    pub secret: SecretString,
    pub public_key_file: String,
    pub private_key_file: String,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamSettings {
    pub max_streams_per_user: usize,
    /// Events queued for one connection, at most…
    pub buffer: usize,
    /// …and at most about this many bytes of them (always at least one).
    pub buffer_bytes: usize,
    pub slow_client_timeout_ms: u64,
    /// Events one read of the log returns for one connection, at most…
    pub replay_page: i64,
    /// …and at most about this many bytes of them (always at least one).
    pub replay_page_bytes: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PublishSettings {
    /// Publishes per second per publisher token (`sub`); 0: no limit.
    #[serde(default)]
    pub rate_per_sec: u32,
    #[serde(default)]
    pub burst: u32,
    pub workers: usize,
    pub max_batch_requests: usize,
    pub max_batch_rows: usize,
    /// Users per broadcast chunk (one publish transaction each).
    #[serde(default = "default_broadcast_chunk")]
    pub broadcast_chunk: usize,
}

fn default_broadcast_chunk() -> usize {
    1000
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    pub events_days: i64,
    /// Notifications older than this are purged too; 0 keeps them forever.
    #[serde(default)]
    pub notifications_days: i64,
    pub idempotency_hours: i64,
    pub interval_secs: u64,
    pub batch: i64,
}

/// Cross-origin access for browser pages served from other origins.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CorsSettings {
    /// Origins (`https://app.example.com`) whose pages may call the API;
    /// `*` allows any. Empty: no cross-origin access. From the environment
    /// as one string, separated by commas or spaces.
    #[serde(default, deserialize_with = "origin_list")]
    pub allowed_origins: Vec<String>,
}

fn origin_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Many(Vec<String>),
        One(String),
    }
    let items = match List::deserialize(d)? {
        List::Many(items) => items,
        List::One(text) => vec![text],
    };
    Ok(items
        .iter()
        .flat_map(|item| item.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|origin| !origin.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `scheme://host[:port]` exactly as a browser sends it in `Origin`:
/// lowercase, http or https, no path, no trailing slash.
fn is_origin(s: &str) -> bool {
    let Some((scheme, host)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '[' | ']')
        })
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: String,
    pub level: String,
}

impl Settings {
    /// Loads settings from `HERALD_CONFIG_DIR` (default `./config`) and the
    /// process environment.
    pub fn load() -> Result<Self, config::ConfigError> {
        let dir = std::env::var_os("HERALD_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir)
    }

    pub fn load_from(dir: &Path) -> Result<Self, config::ConfigError> {
        let environment = std::env::var("HERALD_ENV").unwrap_or_else(|_| "local".into());
        let settings: Settings = Config::builder()
            .add_source(File::from_str(BASE, FileFormat::Toml))
            .add_source(File::from(dir.join("base.toml")).required(false))
            .add_source(File::from(dir.join(format!("{environment}.toml"))).required(false))
            .add_source(
                Environment::with_prefix("HERALD")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .set_override_option("database.url", std::env::var("DATABASE_URL").ok())?
            .set_override_option("server.listen", std::env::var("HERALD_LISTEN").ok())?
            .set_override_option("auth.secret", std::env::var("HERALD_JWT_SECRET").ok())?
            .set_override("environment", environment.clone())?
            .build()?
            .try_deserialize()?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), config::ConfigError> {
        let bad = |m: &str| Err(config::ConfigError::Message(m.to_owned()));
        if self.environment == "production"
            && self.auth.algorithm == "HS256"
            && self.auth.secret.expose_secret() == DEVELOPMENT_SECRET
        {
            return bad("HERALD_JWT_SECRET must be set in production");
        }
        if self.server.heartbeat_secs == 0 || self.server.heartbeat_secs > 30 {
            return bad("server.heartbeat_secs must be between 1 and 30");
        }
        if self.stream.buffer == 0 || self.stream.replay_page < 1 {
            return bad("stream.buffer and stream.replay_page must be positive");
        }
        if self.publish.workers == 0 || self.publish.max_batch_requests == 0 {
            return bad("publish.workers and publish.max_batch_requests must be positive");
        }
        if self.publish.broadcast_chunk == 0 {
            return bad("publish.broadcast_chunk must be positive");
        }
        if self.server.client_request_timeout_ms == 0 {
            return bad("server.client_request_timeout_ms must be positive");
        }
        if let Some(o) = self
            .cors
            .allowed_origins
            .iter()
            .find(|o| *o != "*" && !is_origin(o))
        {
            return Err(config::ConfigError::Message(format!(
                "cors.allowed_origins: {o:?} is not an origin like \"https://app.example.com\" (lowercase scheme://host[:port], no path) or \"*\""
            )));
        }
        Ok(())
    }

    pub fn database_url(&self) -> Option<&str> {
        let url = self.database.url.expose_secret();
        (!url.is_empty()).then_some(url)
    }
}

impl ServerSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    pub fn client_request_timeout(&self) -> Duration {
        Duration::from_millis(self.client_request_timeout_ms)
    }

    pub fn client_disconnect_timeout(&self) -> Duration {
        Duration::from_millis(self.client_disconnect_timeout_ms)
    }
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn listener_check(&self) -> Duration {
        Duration::from_millis(self.listener_check_ms)
    }
}

impl StreamSettings {
    pub fn slow_client_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_client_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `HERALD__CORS__ALLOWED_ORIGINS` arrives as one string, as it does in
    /// `Settings::load_from`.
    #[test]
    fn allowed_origins_from_a_list_or_one_environment_string() {
        let from_env = |value: &str| {
            let env = [("HERALD__CORS__ALLOWED_ORIGINS".to_owned(), value.to_owned())];
            Config::builder()
                .add_source(File::from_str(BASE, FileFormat::Toml))
                .add_source(
                    Environment::with_prefix("HERALD")
                        .prefix_separator("__")
                        .separator("__")
                        .source(Some(env.into_iter().collect())),
                )
                .build()
                .unwrap()
                .get::<CorsSettings>("cors")
                .unwrap()
                .allowed_origins
        };
        assert_eq!(
            from_env("https://a.example, http://localhost:3000 https://b.example:8443"),
            [
                "https://a.example",
                "http://localhost:3000",
                "https://b.example:8443"
            ]
        );
        assert_eq!(from_env("*"), ["*"]);
        assert!(from_env(" ").is_empty());
        let default: CorsSettings = Config::builder()
            .add_source(File::from_str(BASE, FileFormat::Toml))
            .build()
            .unwrap()
            .get("cors")
            .unwrap();
        assert!(default.allowed_origins.is_empty());
        let toml = r#"[cors]
allowed_origins = ["https://a.example", "*"]"#;
        let listed: CorsSettings = Config::builder()
            .add_source(File::from_str(toml, FileFormat::Toml))
            .build()
            .unwrap()
            .get("cors")
            .unwrap();
        assert_eq!(listed.allowed_origins, ["https://a.example", "*"]);
    }

    #[test]
    fn only_exact_browser_origins_are_accepted() {
        for ok in [
            "https://app.example.com",
            "http://localhost:8080",
            "http://[::1]:3000",
        ] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://App.example.com",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://user@app.example.com",
            "https://",
            "null",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
