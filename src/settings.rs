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
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub embedded_dir: PathBuf,
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
    pub buffer: usize,
    pub slow_client_timeout_ms: u64,
    pub replay_page: i64,
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
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

impl StreamSettings {
    pub fn slow_client_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_client_timeout_ms)
    }
}
