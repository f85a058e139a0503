//! The instruction budget (BENCHMARKS.md, "Instruction budget"): Herald's
//! own instructions per operation, counted by callgrind, which do not drift
//! with the machine's load the way wall-clock rates do.
//!
//! Every measurement starts `herald serve` under `valgrind --tool=callgrind`
//! (default configuration, its own database on a private PostgreSQL that
//! runs natively and is not counted), sets the stage (500 known users, and
//! for the stream scenarios one stream open per user), runs a fixed
//! workload of `--count` operations, stops the server and reads the total
//! instructions of its process. The same run with 0 operations is
//! subtracted, so start-up, the stage and shutdown cancel out:
//! instructions per operation = (total(N) − total(0)) ÷ N. Both runs first
//! send [`WARM_UP`] operations, so the connection pool is full and its
//! statements prepared in both.
//!
//!   scripts/budget.sh                          # every entry, against benches/budget.toml
//!   scripts/budget.sh measure publish --count 8000
//!   scripts/budget.sh memory                   # KiB per idle SSE stream
//!
//! (scripts/budget.sh builds `herald` with the `budget` profile and passes
//! it with `--herald`; without it, the `herald` of this build's profile.)
//!
//! Under `cargo test` it only checks that the budget file parses.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::http::auth::{Scope, Signer};
use serde::Deserialize;
use tokio::time::Instant;

use common::args::Words;
use common::server::{SECRET, config_dir, ensure_open_files, pss_kib};

/// The committed budget.
const BUDGET_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/budget.toml");
/// The servers' configuration directory (the repository's unless `--config`).
static CONFIG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
/// Known users; publishes go to them round-robin.
const USERS: usize = 500;
/// Operations sent before the measured ones, in every run.
const WARM_UP: u64 = 800;
/// Elements per batch request in the `batch_element` workload.
const BATCH: usize = 100;

/// What one entry measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// Single-recipient publishes, no stream open.
    Publish,
    /// Batch requests of [`BATCH`] single-recipient elements.
    Batch,
    /// Single-recipient publishes, each user with one SSE stream open;
    /// done when every stream has every event.
    Sse,
    /// The same with one WebSocket per user.
    Ws,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: &'static str,
    workload: Workload,
    publishers: usize,
}

/// The entries of the budget, in the order they are measured.
const ENTRIES: [Entry; 5] = [
    Entry {
        name: "publish_1",
        workload: Workload::Publish,
        publishers: 1,
    },
    Entry {
        name: "publish",
        workload: Workload::Publish,
        publishers: 8,
    },
    Entry {
        name: "batch_element",
        workload: Workload::Batch,
        publishers: 8,
    },
    Entry {
        name: "stream",
        workload: Workload::Sse,
        publishers: 8,
    },
    Entry {
        name: "ws",
        workload: Workload::Ws,
        publishers: 8,
    },
];

#[derive(Debug, Deserialize)]
struct BudgetFile {
    /// How far over its budget an entry may be (0.05: 5 %).
    tolerance: f64,
    /// Operations per measurement.
    count: u64,
    /// Idle SSE streams opened for the memory figure.
    idle_streams: usize,
    entries: BTreeMap<String, Budget>,
}

#[derive(Debug, Deserialize)]
struct Budget {
    /// Herald's instructions per operation.
    instructions: u64,
    /// `stream` only: KiB of the server's memory (PSS) per idle SSE stream.
    #[serde(default)]
    idle_kib: Option<f64>,
}

fn load_budget() -> anyhow::Result<BudgetFile> {
    let text = std::fs::read_to_string(BUDGET_FILE)?;
    let budget: BudgetFile = toml::from_str(&text).context("benches/budget.toml")?;
    for entry in ENTRIES {
        if !budget.entries.contains_key(entry.name) {
            bail!("benches/budget.toml has no entry {:?}", entry.name);
        }
    }
    Ok(budget)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let budget = load_budget()?;
    // `cargo bench` passes `--bench`; `cargo test` does not.
    if !args.iter().any(|a| a == "--bench") {
        println!("budget: {} entries parse", budget.entries.len());
        return Ok(());
    }
    let mut words = Words::new(&args);
    let mut command = None;
    let mut only = Vec::new();
    let mut count = budget.count;
    let mut streams = budget.idle_streams;
    let mut herald = PathBuf::from(env!("CARGO_BIN_EXE_herald"));
    let mut config = None;
    while let Some(word) = words.next_word() {
        match word.as_str() {
            "--bench" => {}
            "--count" => count = words.value("--count")?.parse()?,
            "--streams" => streams = words.value("--streams")?.parse()?,
            "--herald" => herald = words.value("--herald")?.into(),
            // Another build's configuration (with `--herald`).
            "--config" => {
                config = Some(PathBuf::from(words.value("--config")?));
            }
            "check" | "measure" | "memory" if command.is_none() => command = Some(word),
            name if ENTRIES.iter().any(|e| e.name == name) => only.push(name.to_owned()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let entries: Vec<Entry> = ENTRIES
        .into_iter()
        .filter(|e| only.is_empty() || only.iter().any(|o| o == e.name))
        .collect();
    let _ = CONFIG.set(config.unwrap_or_else(config_dir));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match command.as_deref() {
            Some("memory") => {
                let kib = idle_memory(&herald, streams).await?;
                println!("stream: {kib:.2} KiB per idle SSE stream ({streams} streams)");
                Ok(())
            }
            Some("measure") => measure(&herald, &entries, count, None).await.map(|_| ()),
            _ => {
                let figures = measure(&herald, &entries, count, Some(streams)).await?;
                compare(&budget, &figures)
            }
        }
    })
}

#[derive(Debug, Default)]
struct Figures {
    instructions: BTreeMap<&'static str, f64>,
    idle_kib: Option<f64>,
}

async fn measure(
    herald: &Path,
    entries: &[Entry],
    count: u64,
    idle_streams: Option<usize>,
) -> anyhow::Result<Figures> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/budget-run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    ensure_open_files(4 * USERS + 100)?;
    let pg = EmbeddedPostgres::start(Options {
        data_dir: dir.join("postgres"),
        fsync: true,
        max_connections: 100,
    })?;
    let bench = Bench::new(&pg, herald, &dir)?;
    let mut figures = Figures::default();
    for entry in entries {
        // The same run with no measured operations (its warm-up is the
        // entry's own).
        let zero = bench.run(entry, 0).await?;
        // Batch elements are cheap and come 100 to a request: four times as
        // many keep the run-to-run spread as small as the others'.
        let count = if entry.workload == Workload::Batch {
            4 * count
        } else {
            count
        };
        let total = bench.run(entry, count).await?;
        let per_op = (total as f64 - zero as f64) / count as f64;
        println!(
            "RESULT {}",
            serde_json::json!({
                "entry": entry.name,
                "count": count,
                "publishers": entry.publishers,
                "instructions": total,
                "zero_run": zero,
                "per_op": per_op.round(),
            })
        );
        figures.instructions.insert(entry.name, per_op);
    }
    if let Some(streams) = idle_streams {
        figures.idle_kib = Some(idle_memory(herald, streams).await?);
    }
    drop(pg);
    Ok(figures)
}

fn compare(budget: &BudgetFile, figures: &Figures) -> anyhow::Result<()> {
    let mut over = Vec::new();
    println!();
    println!(
        "{:<14} {:>14} {:>14} {:>8}",
        "entry", "measured", "budget", "ratio"
    );
    for (name, measured) in &figures.instructions {
        let allowed = budget.entries[*name].instructions as f64;
        let ratio = measured / allowed;
        println!("{name:<14} {measured:>14.0} {allowed:>14.0} {ratio:>8.3}");
        if ratio > 1.0 + budget.tolerance {
            over.push(format!("{name}: {measured:.0} instructions per operation"));
        }
    }
    if let (Some(kib), Some(allowed)) = (figures.idle_kib, budget.entries["stream"].idle_kib) {
        let ratio = kib / allowed;
        println!(
            "{:<14} {:>11.2} KiB {:>10.2} KiB {ratio:>8.3}",
            "stream (idle)", kib, allowed
        );
        if ratio > 1.0 + budget.tolerance {
            over.push(format!("stream: {kib:.2} KiB per idle SSE stream"));
        }
    }
    if !over.is_empty() {
        bail!(
            "over budget by more than {:.0} %: {}",
            budget.tolerance * 100.0,
            over.join("; ")
        );
    }
    println!("within budget");
    Ok(())
}

/// One PostgreSQL for every run; each run gets a database of its own.
struct Bench<'a> {
    pg: &'a EmbeddedPostgres,
    herald: &'a Path,
    dir: &'a Path,
    runs: AtomicU64,
    signer: Signer,
    users: Vec<String>,
}

impl<'a> Bench<'a> {
    fn new(pg: &'a EmbeddedPostgres, herald: &'a Path, dir: &'a Path) -> anyhow::Result<Self> {
        let settings = common::server::settings()?;
        Ok(Self {
            pg,
            herald,
            dir,
            runs: AtomicU64::new(0),
            signer: Signer::from_settings(&settings.auth)?,
            users: (0..USERS).map(|i| format!("u{i:06}")).collect(),
        })
    }

    /// One measurement: total instructions of Herald's process.
    async fn run(&self, entry: &Entry, count: u64) -> anyhow::Result<u64> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let database = format!("budget{run}");
        self.pg.create_database(&database).await?;
        let name = format!("{}-{count}", entry.name);
        let out = self.dir.join(format!("callgrind.{name}.out"));
        let mut server = Spawned::start(
            self.herald,
            &self.pg.url(&database),
            &self.dir.join(format!("{name}.log")),
            Some(&out),
        )?;
        let started = std::time::Instant::now();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        server.ready(&http, Duration::from_secs(300)).await?;
        let publisher = self
            .signer
            .token_for("budget-publisher", &[Scope::Publish], 86_400)?;
        // The users become known: one notification each.
        publish(
            &http,
            &server.url("/v1/notifications"),
            &publisher,
            serde_json::json!({"recipients": self.users, "title": "Welcome"}),
        )
        .await?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let mut readers = Vec::new();
        if matches!(entry.workload, Workload::Sse | Workload::Ws) {
            for user in &self.users {
                let token = self.signer.token_for(user, &[], 86_400)?;
                let reader = match entry.workload {
                    Workload::Sse => open_sse(&server, &token, received.clone(), stop.clone())
                        .await
                        .map(tokio::spawn)?,
                    _ => open_ws(&server, &token, received.clone(), stop.clone())
                        .await
                        .map(tokio::spawn)?,
                };
                readers.push(reader);
            }
        }
        // Both runs warm up alike: the pool opens its connections and
        // prepares its statements before the measured operations.
        let mut expected = self
            .workload(entry, WARM_UP, &http, &server, &publisher)
            .await?;
        expected += self
            .workload(entry, count, &http, &server, &publisher)
            .await?;
        if !readers.is_empty() {
            let deadline = Instant::now() + Duration::from_secs(600);
            while received.load(Ordering::Relaxed) < expected {
                if Instant::now() > deadline {
                    bail!(
                        "{name}: {} of {expected} events delivered",
                        received.load(Ordering::Relaxed)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        stop.cancel();
        for reader in readers {
            let _ = reader.await;
        }
        drop(http);
        server.stop(Duration::from_secs(300))?;
        let total = callgrind_total(&out)?;
        eprintln!(
            "{name}: {total} instructions, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(total)
    }

    /// Sends `count` operations from `entry.publishers` keep-alive
    /// publishers, recipients round-robin; returns the events the streams
    /// should then have received.
    async fn workload(
        &self,
        entry: &Entry,
        count: u64,
        http: &reqwest::Client,
        server: &Spawned,
        token: &str,
    ) -> anyhow::Result<u64> {
        let publishers = entry.publishers as u64;
        let per_request = if entry.workload == Workload::Batch {
            BATCH as u64
        } else {
            1
        };
        let requests = count / per_request;
        let mut tasks = Vec::new();
        for p in 0..publishers {
            let http = http.clone();
            let token = token.to_owned();
            let users = self.users.clone();
            let batch = entry.workload == Workload::Batch;
            let url = server.url(if batch {
                "/v1/notifications/batch"
            } else {
                "/v1/notifications"
            });
            tasks.push(tokio::spawn(async move {
                let mut r = p;
                while r < requests {
                    let element = |i: u64| {
                        serde_json::json!({
                            "recipients": [users[(i % USERS as u64) as usize]],
                            "title": "Benchmark notification",
                            "data": {"i": i},
                        })
                    };
                    let body = if batch {
                        let first = r * per_request;
                        serde_json::json!({
                            "notifications": (first..first + per_request).map(element).collect::<Vec<_>>()
                        })
                    } else {
                        element(r)
                    };
                    publish(&http, &url, &token, body).await?;
                    r += publishers;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(requests * per_request)
    }
}

async fn publish(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let response = http.post(url).bearer_auth(token).json(&body).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if status != 201 {
        bail!("publish: {status} {text}");
    }
    Ok(())
}

/// Opens one SSE stream (its headers come once it is registered) and
/// returns the task that counts its notifications.
async fn open_sse(
    server: &Spawned,
    token: &str,
    received: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()> + use<>> {
    use eventsource_stream::Eventsource;
    // A client of its own: the stream holds its connection.
    let response = reqwest::Client::new()
        .get(server.url("/v1/me/stream"))
        .bearer_auth(token)
        .header("Accept", "text/event-stream")
        .send()
        .await?;
    if response.status() != 200 {
        bail!("stream: {}", response.status());
    }
    Ok(async move {
        let mut events = response.bytes_stream().eventsource();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(e)) if e.event == "notification" => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    })
}

/// Opens one WebSocket and returns the task that counts its notifications.
async fn open_ws(
    server: &Spawned,
    token: &str,
    received: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()> + use<>> {
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "{}/v1/me/ws?access_token={token}",
        server.base.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    Ok(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = socket.close(None).await;
                    return;
                }
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) if text.contains("\"type\":\"notification\"") => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    })
}

/// KiB of the server's memory (PSS) per idle SSE stream: `streams` streams
/// (spread over the users, at most 16 each) opened on a native server,
/// memory after minus memory before, divided by the streams.
async fn idle_memory(herald: &Path, streams: usize) -> anyhow::Result<f64> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/budget-memory");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    ensure_open_files(2 * streams + 200)?;
    let pg = EmbeddedPostgres::start(Options {
        data_dir: dir.join("postgres"),
        fsync: false,
        max_connections: 100,
    })?;
    pg.create_database("herald").await?;
    let mut server = Spawned::start(herald, &pg.url("herald"), &dir.join("herald.log"), None)?;
    let http = reqwest::Client::new();
    server.ready(&http, Duration::from_secs(60)).await?;
    let settings = common::server::settings()?;
    let signer = Signer::from_settings(&settings.auth)?;
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i:06}")).collect();
    let publisher = signer.token_for("budget-publisher", &[Scope::Publish], 86_400)?;
    publish(
        &http,
        &server.url("/v1/notifications"),
        &publisher,
        serde_json::json!({"recipients": users, "title": "Welcome"}),
    )
    .await?;
    let tokens: Vec<String> = users
        .iter()
        .map(|u| signer.token_for(u, &[], 86_400))
        .collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pss_kib(server.pid);
    let received = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut readers = Vec::with_capacity(streams);
    for i in 0..streams {
        let reader = open_sse(
            &server,
            &tokens[i % tokens.len()],
            received.clone(),
            stop.clone(),
        )
        .await?;
        readers.push(tokio::spawn(reader));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pss_kib(server.pid);
    stop.cancel();
    for reader in readers {
        let _ = reader.await;
    }
    server.stop(Duration::from_secs(30))?;
    drop(pg);
    Ok(after.saturating_sub(before) as f64 / streams as f64)
}

/// `herald serve` as its own process, under callgrind when `callgrind` names
/// its output file.
struct Spawned {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Spawned {
    fn start(
        herald: &Path,
        db_url: &str,
        log: &Path,
        callgrind: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let out = std::fs::File::create(log)?;
        let mut command = match callgrind {
            Some(file) => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", file.display()))
                    .arg(herald);
                c
            }
            None => Command::new(herald),
        };
        // The default configuration, logs included: only what a server
        // needs to run beside others (its database, port and secret).
        command
            .arg("serve")
            .env("DATABASE_URL", db_url)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "HERALD_CONFIG_DIR",
                CONFIG.get().cloned().unwrap_or_else(config_dir),
            )
            .env("HERALD_JWT_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = command.spawn().context("starting herald")?;
        Ok(Self {
            pid: child.id(),
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn ready(&mut self, http: &reqwest::Client, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("herald exited ({status}); see {}", self.log.display());
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("herald was not ready in time; see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, and wait for the process (and callgrind's output) to end.
    fn stop(&mut self, within: Duration) -> anyhow::Result<()> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("herald exited with {status}; see {}", self.log.display());
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        bail!("herald did not stop in time; see {}", self.log.display())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The instructions of the whole process, from callgrind's `totals:` (or
/// older `summary:`) line, less those spent opening database connections:
/// SCRAM's 4,096 HMAC rounds per connection, and the pool opens as many (up
/// to 16) as the timing of a run asks for; one more or less would move a
/// figure by 10 %.
fn callgrind_total(file: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let total: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no totals in {}", file.display()))?;
    let annotated = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(file)
        .output()
        .context("running callgrind_annotate")?;
    let connecting: u64 = String::from_utf8_lossy(&annotated.stdout)
        .lines()
        .filter(|l| l.contains("PgConnection>::establish::{{closure}}"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .replace(',', "")
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    Ok(total - connecting)
}
