//! The service as a real `herald serve` child process, to be killed and
//! restarted.

use std::time::Duration;

use rand::RngExt;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::app::test_settings;

/// A `herald serve` child process on a fixed port.
pub struct Herald {
    child: tokio::process::Child,
    port: u16,
    db_url: String,
    env: Vec<(String, String)>,
}

impl Herald {
    pub async fn start(db_url: &str) -> Self {
        Self::start_with(db_url, &[]).await
    }

    /// With more environment variables, e.g. `HERALD__CORS__ALLOWED_ORIGINS`.
    pub async fn start_with(db_url: &str, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn_herald(db_url, port, &env).await {
                return Self {
                    child,
                    port,
                    db_url: db_url.to_owned(),
                    env,
                };
            }
        }
        panic!("herald did not start");
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown of any kind.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(!status.success(), "{status:?}");
    }

    /// A new process on the same port and database.
    pub async fn restart(&mut self) {
        for _ in 0..10 {
            if let Some(child) = spawn_herald(&self.db_url, self.port, &self.env).await {
                self.child = child;
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("herald did not restart on port {}", self.port);
    }
}

/// A port that is free now, below the ephemeral range, so no outgoing
/// connection of the test suite takes it while the service is down.
fn free_port() -> u16 {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let mut rng = rand::rng();
    if low > 10_100 {
        for _ in 0..100 {
            let port = rng.random_range(10_000..low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let any = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    any.local_addr().unwrap().port()
}

/// Starts `herald serve` and waits for `/healthz`; `None` if it exits first
/// (e.g. the port is taken).
async fn spawn_herald(
    db_url: &str,
    port: u16,
    env: &[(String, String)],
) -> Option<tokio::process::Child> {
    let settings = test_settings();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env("DATABASE_URL", db_url)
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_JWT_SECRET", settings.auth.secret.expose_secret())
        .env("HERALD__LOG__LEVEL", "warn")
        .env("HERALD__SERVER__WORKERS", "2")
        .env("HERALD__DATABASE__MAX_CONNECTIONS", "8")
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the herald binary runs");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        let health = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if matches!(health, Ok(r) if r.status() == 200) && child.try_wait().unwrap().is_none() {
            return Some(child);
        }
        assert!(
            Instant::now() < deadline,
            "herald did not answer /healthz within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
