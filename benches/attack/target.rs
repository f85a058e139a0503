//! Herald under attack: a release `herald` process on its own PostgreSQL
//! (loopback only), the tokens the attacks and the good client use, and the
//! sampling of the process's resources.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::http::auth::Claims;
use jsonwebtoken::{EncodingKey, Header};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::common::server::{Server, proc_sample};
use crate::good::GoodClient;

/// The HS256 secret of the run: random, so no attack can know it.
fn random_secret() -> String {
    (0..48)
        .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
        .collect()
}

pub struct Target {
    server: Server,
    pg: Option<EmbeddedPostgres>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`, for raw sockets.
    pub addr: String,
    key: EncodingKey,
    pub publisher: String,
    pub admin: String,
    /// Herald's own database, to check that failed requests stored nothing.
    pub db: PgPool,
    pub monitor: Monitor,
    stop_monitor: CancellationToken,
}

impl Target {
    pub async fn start(dir: &Path, config: &Config) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        // fsync on, as in production: the good client's latency includes a
        // durable commit.
        let pg = EmbeddedPostgres::start(Options {
            data_dir: dir.join("postgres"),
            fsync: true,
            max_connections: 100,
        })?;
        pg.create_database("herald").await?;
        let url = pg.url("herald");
        let secret = random_secret();
        let mut server = Server::start(
            &url,
            dir.join("herald.log"),
            &[
                ("HERALD_JWT_SECRET", secret.clone()),
                (
                    "HERALD__SERVER__CLIENT_REQUEST_TIMEOUT_MS",
                    config.request_timeout.as_millis().to_string(),
                ),
            ],
        )?;
        let http = reqwest::Client::new();
        server.ready(&http).await?;
        let db = PgPool::connect(&url).await?;
        let base = server.base.clone();
        let addr = base.trim_start_matches("http://").to_owned();
        let key = EncodingKey::from_secret(secret.as_bytes());
        let stop_monitor = CancellationToken::new();
        let monitor = Monitor::start(server.pid, base.clone(), stop_monitor.clone());
        let mut target = Self {
            server,
            pg: Some(pg),
            base,
            addr,
            key,
            publisher: String::new(),
            admin: String::new(),
            db,
            monitor,
            stop_monitor,
        };
        target.publisher = target.token("attack-publisher", Some("publish"));
        target.admin = target.token("attack-admin", Some("admin"));
        Ok(target)
    }

    /// A genuine token, valid for a day.
    pub fn token(&self, sub: &str, scope: Option<&str>) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: Some(sub.to_owned()),
            exp: now + 86_400,
            nbf: None,
            iat: Some(now),
            iss: None,
            aud: None,
            scope: scope.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.key).expect("HS256 signs")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.server.pid
    }

    pub fn log(&self) -> &Path {
        &self.server.log
    }

    pub fn alive(&mut self) -> bool {
        self.server.alive()
    }

    /// The resources once the good client has delivered a few probes: the
    /// largest of four samples a quarter second apart.
    pub async fn baseline(&self, good: &GoodClient) -> anyhow::Result<Sample> {
        good.wait_for_probes(5, Duration::from_secs(60))
            .await
            .context("the good client's probes did not arrive")?;
        let mut baseline = Sample::default();
        for _ in 0..4 {
            baseline = baseline.max(&sample(self.server.pid, &self.base).await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        good.take();
        Ok(baseline)
    }

    /// Polls until the resources are back within `tolerance` of `baseline`
    /// or `within` has passed: (back?, the last sample, time taken).
    pub async fn settle(
        &self,
        baseline: &Sample,
        tolerance: &Tolerance,
        within: Duration,
    ) -> (bool, Sample, Duration) {
        let started = Instant::now();
        loop {
            let now = sample(self.server.pid, &self.base).await;
            if tolerance.holds(baseline, &now) {
                return (true, now, started.elapsed());
            }
            if started.elapsed() >= within {
                return (false, now, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn sample(&self) -> Sample {
        sample(self.server.pid, &self.base).await
    }

    pub fn stop(&mut self) {
        self.stop_monitor.cancel();
        self.server.stop();
        if let Some(pg) = self.pg.take() {
            pg.stop();
        }
    }
}

/// What "back to baseline" allows: the allocator keeps some memory it got,
/// and sockets in their closing handshake still hold descriptors.
pub struct Tolerance {
    pub rss_kib: u64,
    pub fds: u64,
    pub pool_in_use: u64,
    /// The good client's p99 must stay below this during every attack.
    pub p99: Duration,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            rss_kib: 20 * 1024,
            fds: 50,
            pool_in_use: 2,
            p99: Duration::from_millis(100),
        }
    }
}

impl Tolerance {
    pub fn holds(&self, baseline: &Sample, now: &Sample) -> bool {
        now.rss_kib <= baseline.rss_kib + self.rss_kib
            && now.fds <= baseline.fds + self.fds
            && now.pool_in_use() <= baseline.pool_in_use() + self.pool_in_use
    }
}

/// One look at the herald process: `/proc` and its `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    pub rss_kib: u64,
    pub fds: u64,
    pub pool_size: u64,
    pub pool_idle: u64,
    /// Lines of `/metrics` that are series (not comments).
    pub series: u64,
    /// Bytes of `/metrics`.
    pub metrics_bytes: u64,
}

impl Sample {
    pub fn pool_in_use(&self) -> u64 {
        self.pool_size.saturating_sub(self.pool_idle)
    }

    /// Field by field maximum; the pool as its largest size with its
    /// largest use.
    pub fn max(&self, other: &Sample) -> Sample {
        let pool_size = self.pool_size.max(other.pool_size);
        let in_use = self.pool_in_use().max(other.pool_in_use());
        Sample {
            rss_kib: self.rss_kib.max(other.rss_kib),
            fds: self.fds.max(other.fds),
            pool_size,
            pool_idle: pool_size.saturating_sub(in_use),
            series: self.series.max(other.series),
            metrics_bytes: self.metrics_bytes.max(other.metrics_bytes),
        }
    }
}

/// A client of its own for `/metrics`, so attacks never share its pool.
fn metrics_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a client")
    })
}

pub async fn sample(pid: u32, base: &str) -> Sample {
    let (rss_kib, _threads, fds) = proc_sample(pid);
    let mut sample = Sample {
        rss_kib,
        fds,
        ..Sample::default()
    };
    let Ok(response) = metrics_client().get(format!("{base}/metrics")).send().await else {
        return sample;
    };
    let Ok(text) = response.text().await else {
        return sample;
    };
    sample.metrics_bytes = text.len() as u64;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        sample.series += 1;
        let value = || line.rsplit(' ').next()?.parse::<f64>().ok();
        if line.starts_with("herald_db_pool_connections ") {
            sample.pool_size = value().unwrap_or(0.0) as u64;
        } else if line.starts_with("herald_db_pool_idle ") {
            sample.pool_idle = value().unwrap_or(0.0) as u64;
        }
    }
    sample
}

/// Samples the process every half second (a scrape of a bloated `/metrics`
/// is load of its own) and keeps the peak since the last `reset_peak`.
#[derive(Clone)]
pub struct Monitor {
    peak: Arc<Mutex<Sample>>,
}

impl Monitor {
    fn start(pid: u32, base: String, stop: CancellationToken) -> Self {
        let peak = Arc::new(Mutex::new(Sample::default()));
        let shared = peak.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = sample(pid, &base).await;
                let mut peak = shared.lock().unwrap();
                *peak = peak.max(&now);
            }
        });
        Self { peak }
    }

    pub fn reset_peak(&self) {
        *self.peak.lock().unwrap() = Sample::default();
    }

    pub fn peak(&self) -> Sample {
        *self.peak.lock().unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}
