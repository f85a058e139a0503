//! Typed, layered settings: checked-in defaults, an environment file, then
//! environment variables. The three variables of the contract always win.
//!
//! Loading is parsing: a key no setting has, a number outside its range or
//! an unsafe secret is an error naming the key, so a `Settings` value that
//! exists is one the service can run with.

mod keys;
mod redact;
mod rules;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The defaults are compiled in so the binary runs outside the repository.
const BASE: &str = include_str!("../config/base.toml");

/// The development secret shipped in `config/base.toml`.
pub const DEVELOPMENT_SECRET: &str = "herald-development-secret-change-me";

/// The shortest HS256 secret accepted: RFC 7518 asks for a key at least as
/// long as the hash (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why settings could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl From<config::ConfigError> for SettingsError {
    fn from(e: config::ConfigError) -> Self {
        Self(e.to_string())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[garde(dive)]
    pub server: ServerSettings,
    #[garde(dive)]
    pub database: DatabaseSettings,
    #[garde(dive)]
    pub auth: AuthSettings,
    #[garde(dive)]
    pub stream: StreamSettings,
    #[garde(dive)]
    pub publish: PublishSettings,
    #[garde(dive)]
    pub retention: RetentionSettings,
    #[serde(default)]
    #[garde(dive)]
    pub timers: TimerSettings,
    #[garde(dive)]
    pub log: LogSettings,
    #[serde(default)]
    #[garde(dive)]
    pub cors: CorsSettings,
    #[serde(default)]
    #[garde(dive)]
    pub webhooks: WebhookSettings,
    /// Which `config/<environment>.toml` was layered in (`HERALD_ENV`).
    #[serde(default, skip_serializing)]
    #[garde(skip)]
    pub environment: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    #[garde(custom(rules::host_port))]
    pub listen: String,
    /// The contract promises a heartbeat at least every 30 s.
    #[garde(range(min = 1, max = 30))]
    pub heartbeat_secs: u64,
    #[garde(range(min = 1, max = 600_000))]
    pub retry_ms: u64,
    #[garde(range(min = 1024, max = 1 << 30))]
    pub max_body_bytes: usize,
    /// 0: one per CPU core.
    #[garde(range(min = 0, max = 1024))]
    pub workers: usize,
    /// Connections the kernel queues before they are accepted (capped by
    /// `net.core.somaxconn`).
    #[garde(range(min = 1, max = 1 << 20))]
    pub backlog: u32,
    /// A client must send a connection's first request head within this
    /// time (slow-request protection); it gets 408 and is disconnected.
    #[garde(range(min = 1, max = 3_600_000))]
    pub client_request_timeout_ms: u64,
    /// How long a client gets to acknowledge the closing of its connection.
    #[garde(range(min = 0, max = 3_600_000))]
    pub client_disconnect_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "redact::database_url")]
    #[garde(skip)]
    pub url: SecretString,
    #[garde(range(min = 1, max = 10_000))]
    pub max_connections: u32,
    #[garde(range(min = 1, max = 3_600_000))]
    pub acquire_timeout_ms: u64,
    #[garde(skip)]
    pub embedded_dir: PathBuf,
    /// A statement of the service that runs longer is cancelled.
    #[garde(range(min = 100, max = 86_400_000))]
    pub statement_timeout_ms: u64,
    /// A session of the service idle inside a transaction for longer is
    /// ended, so a stuck task cannot hold a user's row lock.
    #[garde(range(min = 100, max = 86_400_000))]
    pub idle_in_transaction_timeout_ms: u64,
    /// How often the wake-up listener proves it still hears PostgreSQL: it
    /// sends itself a NOTIFY and expects it back within this time, else it
    /// reconnects (a dead TCP path can stay silent for hours).
    #[garde(range(min = 50, max = 3_600_000))]
    pub listener_check_ms: u64,
}

/// The signature algorithms a token may be checked with; which one is
/// chosen by configuration, never by the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[garde(skip)]
    pub algorithm: JwtAlgorithm,
    #[serde(serialize_with = "redact::secret")]
    #[garde(skip)]
    pub secret: SecretString,
    #[garde(skip)]
    pub public_key_file: String,
    #[garde(skip)]
    pub private_key_file: String,
    #[garde(skip)]
    pub issuer: String,
    #[garde(skip)]
    pub audience: String,
    #[garde(range(min = 0, max = 3600))]
    pub leeway_secs: u64,
    /// The `scope` value that grants everything.
    #[garde(custom(rules::scope_name))]
    pub scope_admin: String,
    /// The `scope` value that grants publishing.
    #[garde(custom(rules::scope_name))]
    pub scope_publish: String,
    /// An identity provider's key set (JWKS): when set, tokens are checked
    /// against its keys only, chosen by `kid`.
    #[garde(custom(rules::jwks_url))]
    pub jwks_url: String,
    /// How long the key set is kept when its answer has no `max-age`…
    #[garde(range(min = 1, max = 604_800))]
    pub jwks_cache_secs: u64,
    /// …and the bounds a `max-age` (or `no-cache`) is held to.
    #[garde(range(min = 1, max = 604_800))]
    pub jwks_cache_min_secs: u64,
    #[garde(range(min = 1, max = 604_800))]
    pub jwks_cache_max_secs: u64,
    /// A token naming a `kid` the set lacks refetches it at most this often.
    #[garde(range(min = 1, max = 86_400))]
    pub jwks_refetch_secs: u64,
}

impl AuthSettings {
    pub fn jwks(&self) -> bool {
        !self.jwks_url.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    #[garde(range(min = 1, max = 100_000))]
    pub max_streams_per_user: usize,
    /// Events queued for one connection, at most…
    #[garde(range(min = 1, max = 1_000_000))]
    pub buffer: usize,
    /// …and at most about this many bytes of them (always at least one).
    #[garde(range(min = 1024, max = 1_073_741_824))]
    pub buffer_bytes: usize,
    #[garde(range(min = 1, max = 3_600_000))]
    pub slow_client_timeout_ms: u64,
    /// Events one read of the log returns for one connection, at most…
    #[garde(range(min = 1, max = 100_000))]
    pub replay_page: i64,
    /// …and at most about this many bytes of them (always at least one).
    #[garde(range(min = 1024, max = 1_073_741_824))]
    pub replay_page_bytes: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct PublishSettings {
    /// Publishes per second per publisher token (`sub`); 0: no limit.
    #[serde(default)]
    #[garde(range(min = 0, max = 1_000_000))]
    pub rate_per_sec: u32,
    #[serde(default)]
    #[garde(range(min = 0, max = 1_000_000))]
    pub burst: u32,
    #[garde(range(min = 1, max = 256))]
    pub workers: usize,
    #[garde(range(min = 1, max = 100_000))]
    pub max_batch_requests: usize,
    #[garde(range(min = 1, max = 10_000_000))]
    pub max_batch_rows: usize,
    /// Users per broadcast chunk (one publish transaction each).
    #[serde(default = "default_broadcast_chunk")]
    #[garde(range(min = 1, max = 1_000_000))]
    pub broadcast_chunk: usize,
    /// Extra commit workers started while every worker's commit has waited
    /// a second (for a user's row that another transaction holds, such as
    /// an application's that called `herald_publish`); each ends when idle.
    #[serde(default = "default_spare_workers")]
    #[garde(range(min = 0, max = 256))]
    pub spare_workers: usize,
}

fn default_spare_workers() -> usize {
    4
}

fn default_broadcast_chunk() -> usize {
    1000
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    #[garde(range(min = 1, max = 36_500))]
    pub events_days: i64,
    /// Notifications older than this are purged too; 0 keeps them forever.
    #[serde(default)]
    #[garde(range(min = 0, max = 36_500))]
    pub notifications_days: i64,
    #[garde(range(min = 1, max = 876_000))]
    pub idempotency_hours: i64,
    #[garde(range(min = 1, max = 86_400))]
    pub interval_secs: u64,
    /// Rows per purge statement; the purge loops until a statement removes
    /// fewer, so 0 would never end.
    #[garde(range(min = 1, max = 1_000_000))]
    pub batch: i64,
}

/// The timers of users' centers: snoozes that end, notifications that
/// expire. The contract allows 5 s from the due time to the event.
#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct TimerSettings {
    /// How often each instance looks for what is due.
    #[garde(range(min = 10, max = 4_000))]
    pub poll_ms: u64,
    /// At most this many of each kind per transaction.
    #[garde(range(min = 1, max = 100_000))]
    pub batch: i64,
}

impl Default for TimerSettings {
    fn default() -> Self {
        Self {
            poll_ms: 500,
            batch: 1000,
        }
    }
}

/// Delivery of events to webhook endpoints (Standard Webhooks).
#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// One delivery attempt may take this long, connecting included.
    #[garde(range(min = 100, max = 300_000))]
    pub timeout_ms: u64,
    /// Requests in flight to one endpoint from one instance, across users.
    #[garde(range(min = 1, max = 1_000))]
    pub concurrency_per_endpoint: usize,
    /// How often each instance looks for due deliveries even when no
    /// NOTIFY woke it (retries come due this way).
    #[garde(range(min = 10, max = 60_000))]
    pub poll_ms: u64,
    /// The first retry's delay; each further one doubles, with jitter…
    #[garde(range(min = 10, max = 3_600_000))]
    pub backoff_initial_ms: u64,
    /// …up to this.
    #[garde(range(min = 10, max = 86_400_000))]
    pub backoff_max_ms: u64,
    /// An endpoint whose deliveries fail for this long with no success in
    /// between is disabled.
    #[garde(range(min = 1, max = 31_536_000))]
    pub disable_after_secs: u64,
    /// Lets endpoints be on loopback, private or link-local addresses.
    /// Never in production: it lets an administrator token reach the
    /// service's own network.
    #[garde(skip)]
    pub allow_private_urls: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            concurrency_per_endpoint: 4,
            poll_ms: 1_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 3_600_000,
            disable_after_secs: 86_400,
            allow_private_urls: false,
        }
    }
}

impl WebhookSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

/// Cross-origin access for browser pages served from other origins.
#[derive(Debug, Clone, Default, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins (`https://app.example.com`) whose pages may call the API;
    /// `*` allows any. Empty: no cross-origin access. From the environment
    /// as one string, separated by commas or spaces.
    #[serde(default, deserialize_with = "origin_list")]
    #[garde(inner(custom(rules::origin)))]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[garde(skip)]
    pub format: LogFormat,
    #[garde(skip)]
    pub level: String,
    /// One access-log line per this many answered requests below 400
    /// (1: every one; 0: none); answers of 400 and above are always logged.
    #[serde(default = "default_access_sample")]
    #[garde(range(min = 0, max = 1_000_000))]
    pub access_sample: u32,
}

fn default_access_sample() -> u32 {
    1
}

impl Settings {
    /// Loads settings from `HERALD_CONFIG_DIR` (default `./config`) and the
    /// process environment.
    pub fn load() -> Result<Self, SettingsError> {
        let dir = std::env::var_os("HERALD_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir)
    }

    /// Loads settings from `dir` and the process environment.
    pub fn load_from(dir: &Path) -> Result<Self, SettingsError> {
        Self::load_with(dir, std::env::vars())
    }

    /// Loads settings from `dir` and the environment `vars` (the process's
    /// own, or a test's).
    pub fn load_with(
        dir: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let environment = vars
            .get("HERALD_ENV")
            .cloned()
            .unwrap_or_else(|| "local".into());
        let files = [
            dir.join("base.toml"),
            dir.join(format!("{environment}.toml")),
        ];
        let known = keys::known()?;
        for file in &files {
            keys::check_file(file, &known)?;
        }
        keys::check_environment(&vars, &known)?;
        let overrides: HashMap<String, String> = vars
            .iter()
            .filter(|(name, _)| name.starts_with(keys::ENV_PREFIX))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let [base_file, environment_file] = files;
        let settings: Settings = Config::builder()
            .add_source(File::from_str(BASE, FileFormat::Toml))
            .add_source(File::from(base_file).required(false))
            .add_source(File::from(environment_file).required(false))
            .add_source(
                Environment::with_prefix("HERALD")
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(overrides)),
            )
            .set_override_option("database.url", vars.get("DATABASE_URL").cloned())?
            .set_override_option("server.listen", vars.get("HERALD_LISTEN").cloned())?
            .set_override_option("auth.secret", vars.get("HERALD_JWT_SECRET").cloned())?
            .set_override("environment", environment)?
            .build()?
            .try_deserialize()?;
        settings
            .validate()
            .map_err(|report| SettingsError(format!("invalid settings:\n{report}")))?;
        rules::across(&settings).map_err(SettingsError)?;
        Ok(settings)
    }

    pub fn database_url(&self) -> Option<&str> {
        let url = self.database.url.expose_secret();
        (!url.is_empty()).then_some(url)
    }

    /// `HERALD_ENV` unset or `local`: the development defaults apply (the
    /// short scope names, `aud` optional with public keys).
    pub fn is_local(&self) -> bool {
        self.environment == "local"
    }

    /// The no-setup demo: local environment, the private PostgreSQL, and
    /// reachable only from this machine. Only here are tokens printed.
    pub fn is_local_demo(&self) -> bool {
        self.is_local() && self.database_url().is_none() && self.server.listens_on_loopback_only()
    }

    /// The effective settings as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(self).expect("settings serialize to TOML")
    }
}

impl ServerSettings {
    /// Whether `listen` names a loopback address (or `localhost`).
    pub fn listens_on_loopback_only(&self) -> bool {
        rules::is_loopback(&self.listen)
    }

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

    /// The valid keys are read from `config/base.toml`: it must set every
    /// setting there is, and nothing else.
    #[test]
    fn the_shipped_defaults_name_every_setting() {
        let settings = Settings::load_with(Path::new("/nonexistent"), []).unwrap();
        let serialized: config::Map<String, config::Value> = Config::builder()
            .add_source(File::from_str(
                &settings.to_redacted_toml(),
                FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        let mut every = std::collections::BTreeSet::new();
        fn walk(
            prefix: &str,
            t: &config::Map<String, config::Value>,
            out: &mut std::collections::BTreeSet<String>,
        ) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match &v.kind {
                    config::ValueKind::Table(inner) => walk(&key, inner, out),
                    _ => {
                        out.insert(key);
                    }
                }
            }
        }
        walk("", &serialized, &mut every);
        assert_eq!(keys::known().unwrap(), every);
    }

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load_with(
            Path::new("/nonexistent"),
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn environment_variables_are_checked_like_files() {
        let e = load(&[("HERALD__SERVER__RETRYMS", "5")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("HERALD__SERVER__RETRYMS"), "{e}");
        assert!(e.contains("did you mean server.retry_ms?"), "{e}");
        let e = load(&[("HERALD__SERVER_LISTEN", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean server.listen?"), "{e}");
        let e = load(&[("HERALD__RETENTION__BATCH", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention.batch"), "{e}");
        assert_eq!(
            load(&[("HERALD__SERVER__RETRY_MS", "5")])
                .unwrap()
                .server
                .retry_ms,
            5
        );
        // The contract's plain variables, and other HERALD_ ones, are not settings keys.
        let s = load(&[
            ("HERALD_LISTEN", "127.0.0.1:9"),
            (
                "HERALD_JWT_SECRET",
                "a-secret-that-is-at-least-32-bytes-long",
            ),
            ("HERALD_CHROMIUM", "/usr/bin/chromium"),
        ])
        .unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:9");
        assert!(s.is_local_demo());
    }

    #[test]
    fn a_key_set_url_is_checked_and_needs_an_audience_outside_local() {
        let url = (
            "HERALD__AUTH__JWKS_URL",
            "https://id.example/.well-known/jwks.json",
        );
        // The secret is not used with a key set, so the development one
        // is no error even in production; the audience is required there.
        let e = load(&[("HERALD_ENV", "production"), url])
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.audience") && e.contains("jwks_url"), "{e}");
        let s = load(&[
            ("HERALD_ENV", "production"),
            url,
            ("HERALD__AUTH__AUDIENCE", "herald"),
        ])
        .unwrap();
        assert!(s.auth.jwks());
        for (value, says) in [
            ("ftp://id.example/keys", "not an http(s) URL"),
            ("https://user:pw@id.example/keys", "without credentials"),
            ("http://id.example/keys", "must be https"),
        ] {
            let e = load(&[
                ("HERALD_ENV", "production"),
                ("HERALD__AUTH__AUDIENCE", "herald"),
                ("HERALD__AUTH__JWKS_URL", value),
            ])
            .unwrap_err()
            .to_string();
            assert!(e.contains(says), "{value}: {e}");
        }
        // Plain http: only to this machine, or in the local environment.
        for value in [
            "http://127.0.0.1:8081/keys",
            "http://localhost/keys",
            "http://[::1]/keys",
        ] {
            load(&[
                ("HERALD_ENV", "production"),
                ("HERALD__AUTH__AUDIENCE", "herald"),
                ("HERALD__AUTH__JWKS_URL", value),
            ])
            .unwrap();
        }
        load(&[("HERALD__AUTH__JWKS_URL", "http://keycloak:8080/certs")]).unwrap();
        let e = load(&[
            url,
            ("HERALD__AUTH__PUBLIC_KEY_FILE", "/etc/herald/key.pem"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("both set"), "{e}");
        let e = load(&[
            url,
            ("HERALD__AUTH__JWKS_CACHE_MIN_SECS", "600"),
            ("HERALD__AUTH__JWKS_CACHE_MAX_SECS", "60"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("jwks_cache_min_secs"), "{e}");
    }

    #[test]
    fn the_development_secret_is_only_for_the_local_demo() {
        const GOOD: &str = "a-secret-that-is-at-least-32-bytes-long";
        let demo = load(&[]).unwrap();
        assert!(demo.is_local_demo());
        for (vars, why) in [
            (
                vec![("DATABASE_URL", "postgres://u@db/herald")],
                "DATABASE_URL",
            ),
            (
                vec![("HERALD_LISTEN", "0.0.0.0:8080")],
                "beyond this machine",
            ),
            (vec![("HERALD_LISTEN", "[::]:8080")], "beyond this machine"),
            (
                vec![("HERALD_LISTEN", "herald.internal:8080")],
                "beyond this machine",
            ),
            (
                vec![
                    ("HERALD_ENV", "production"),
                    ("HERALD_LISTEN", "127.0.0.1:8080"),
                ],
                "HERALD_ENV",
            ),
            (vec![("HERALD_ENV", "staging")], "HERALD_ENV"),
        ] {
            let e = load(&vars).unwrap_err().to_string();
            assert!(
                e.contains("development secret") && e.contains(why),
                "{vars:?}: {e}"
            );
            let mut with_secret = vars.clone();
            with_secret.push(("HERALD_JWT_SECRET", GOOD));
            let s = load(&with_secret).unwrap();
            assert!(!s.is_local_demo(), "{vars:?}");
        }
        for listen in ["127.0.0.1:0", "localhost:8080", "[::1]:8080"] {
            assert!(
                load(&[("HERALD_LISTEN", listen)]).unwrap().is_local_demo(),
                "{listen}"
            );
        }
        // Any HS256 secret needs 32 bytes, even in the demo.
        let e = load(&[("HERALD_JWT_SECRET", &"x".repeat(31))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at least 32 bytes") && e.contains("has 31"),
            "{e}"
        );
        load(&[("HERALD_JWT_SECRET", &"x".repeat(32))]).unwrap();
        // Public keys need no secret.
        let s = load(&[
            ("DATABASE_URL", "postgres://u@db/herald"),
            ("HERALD__AUTH__ALGORITHM", "RS256"),
        ])
        .unwrap();
        assert_eq!(s.auth.algorithm, JwtAlgorithm::RS256);
        // ...but outside the local environment they need an audience.
        let e = load(&[
            ("HERALD_ENV", "production"),
            ("HERALD__AUTH__ALGORITHM", "ES256"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("auth.audience"), "{e}");
        load(&[
            ("HERALD_ENV", "production"),
            ("HERALD__AUTH__ALGORITHM", "ES256"),
            ("HERALD__AUTH__AUDIENCE", "herald"),
        ])
        .unwrap();
    }

    #[test]
    fn the_effective_configuration_hides_secrets() {
        let s = load(&[
            ("DATABASE_URL", "postgres://herald:db-password@db/herald"),
            ("HERALD_JWT_SECRET", "jwt-secret-jwt-secret-jwt-secret-jwt"),
        ])
        .unwrap();
        let text = s.to_redacted_toml();
        assert!(
            !text.contains("db-password") && !text.contains("jwt-secret"),
            "{text}"
        );
        assert!(
            text.contains("postgres://herald:REDACTED@db/herald"),
            "{text}"
        );
        assert!(text.contains("REDACTED, 36 bytes"), "{text}");
    }

    #[test]
    fn only_exact_browser_origins_are_accepted() {
        for ok in [
            "https://app.example.com",
            "http://localhost:8080",
            "http://[::1]:3000",
        ] {
            assert!(rules::is_origin(ok), "{ok}");
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
            assert!(!rules::is_origin(bad), "{bad}");
        }
    }
}
