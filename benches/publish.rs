//! Durable publishing benchmark: Herald in-process on a private PostgreSQL
//! with fsync on, driven over real HTTP. See BENCHMARKS.md for the method.
//!
//! ```text
//! cargo bench --bench publish -- throughput [--publishers 64] [--users 1000] [--seconds 20]
//! cargo bench --bench publish -- latency [--users 1000] [--rate 2000] [--seconds 20]
//! cargo bench --bench publish -- broadcast [--users N] [--publishers 8]
//! cargo bench --bench publish -- topic [--users 10000]
//! cargo bench --bench publish -- sql [--publishers 32] [--users 1000] [--seconds 20]
//! cargo bench --bench publish -- replay-memory [--users 300] [--per-user 500]
//!     [--read-kib 4] [--read-ms 50] [--time-limit 900] [--max-rss-mib 12288]
//! ```
//!
//! With no scenario the first three run, one after the other (`replay-memory`
//! only when named: it writes gigabytes). Under `cargo test` (no `--bench`
//! argument, no scenario) all of them run with a small load, as a smoke test
//! that keeps this benchmark working.
//!
//! Each scenario prints a summary and one line `RESULT {json}`.

mod common;
mod replay_memory;
mod sql_publish;

use common::args::Words;
use common::server::ensure_open_files;
use common::{Percentiles, ms};
use herald::http::auth::Scope;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use eventsource_stream::Eventsource;
use futures_util::{StreamExt, TryStreamExt};
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::app::startup::{AppHandle, Application};
use herald::http::auth::Signer;
use replay_memory::ReplayOptions;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Throughput,
    Latency,
    Broadcast,
    Topic,
    /// `herald_publish(...)` from SQL clients.
    Sql,
    ReplayMemory,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Throughput => "throughput",
            Self::Latency => "latency",
            Self::Broadcast => "broadcast",
            Self::Topic => "topic",
            Self::Sql => "sql",
            Self::ReplayMemory => "replay-memory",
        }
    }
}

#[derive(Debug, Clone)]
struct Config {
    publishers: usize,
    users: usize,
    seconds: f64,
    rate: f64,
    /// `--users` was given (`topic` has its own default otherwise).
    users_given: bool,
    /// `--publishers` was given (`sql` has its own default otherwise).
    publishers_given: bool,
    replay: ReplayOptions,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            publishers: 64,
            users: 1000,
            seconds: 20.0,
            rate: 2000.0,
            users_given: false,
            publishers_given: false,
            replay: ReplayOptions::full(),
        }
    }
}

impl Config {
    /// The `cargo test` smoke run: seconds, not minutes, even in debug.
    fn smoke() -> Self {
        Self {
            publishers: 8,
            users: 50,
            seconds: 1.0,
            rate: 200.0,
            users_given: false,
            publishers_given: true,
            replay: ReplayOptions::smoke(),
        }
    }
}

enum Plan {
    Run(Vec<Scenario>, Config),
    /// Under `cargo test` with a test-name filter or `--list`: nothing to do.
    Skip,
}

/// `cargo bench` passes `--bench` after the user's arguments; `cargo test`
/// does not, and may pass test filters and libtest flags instead.
fn parse_args(args: &[String]) -> anyhow::Result<Plan> {
    let bench = args.iter().any(|a| a == "--bench");
    let mut scenarios = Vec::new();
    let mut config = Config::default();
    let mut explicit = false;
    let mut filtered = false;
    let mut users = None;
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        let flag = word.as_str();
        let mut value = || words.value(flag);
        match flag {
            "throughput" => scenarios.push(Scenario::Throughput),
            "latency" => scenarios.push(Scenario::Latency),
            "broadcast" => scenarios.push(Scenario::Broadcast),
            "topic" => scenarios.push(Scenario::Topic),
            "sql" => scenarios.push(Scenario::Sql),
            "replay-memory" => scenarios.push(Scenario::ReplayMemory),
            "--bench" => {}
            "--publishers" => {
                config.publishers = value()?.parse()?;
                config.publishers_given = true;
            }
            "--users" => {
                config.users = value()?.parse()?;
                users = Some(config.users);
            }
            "--seconds" => config.seconds = value()?.parse()?,
            "--rate" => config.rate = value()?.parse()?,
            "--per-user" => config.replay.per_user = value()?.parse()?,
            "--read-kib" => config.replay.read_kib = value()?.parse()?,
            "--read-ms" => config.replay.read_ms = value()?.parse()?,
            "--time-limit" => config.replay.time_limit_s = value()?.parse()?,
            "--max-rss-mib" => config.replay.max_rss_mib = value()?.parse()?,
            "--list" if !bench => return Ok(Plan::Skip),
            _ if bench => bail!(
                "unknown argument {word:?}; usage: throughput|latency|broadcast|topic|sql|replay-memory [--publishers N] [--users N] [--seconds S] [--rate R] [--per-user N] [--read-kib K] [--read-ms MS] [--time-limit S] [--max-rss-mib M]"
            ),
            // libtest flags such as --nocapture mean nothing here.
            _ if flag.starts_with("--") => {}
            // A test-name filter: `cargo test sse::` must not run a benchmark.
            _ => filtered = true,
        }
        if ["--publishers", "--users", "--seconds", "--rate"].contains(&flag) {
            explicit = true;
        }
    }
    if !bench && scenarios.is_empty() {
        if filtered {
            return Ok(Plan::Skip);
        }
        if !explicit {
            config = Config::smoke();
        }
        scenarios = vec![
            Scenario::Throughput,
            Scenario::Latency,
            Scenario::Broadcast,
            Scenario::Topic,
            Scenario::Sql,
            Scenario::ReplayMemory,
        ];
    }
    if scenarios.is_empty() {
        scenarios = vec![Scenario::Throughput, Scenario::Latency, Scenario::Broadcast];
    }
    // `replay-memory` has its own default number of users.
    if let Some(users) = users {
        config.replay.users = users;
        config.users_given = true;
    }
    if config.publishers == 0 || config.users == 0 || config.seconds <= 0.0 || config.rate <= 0.0 {
        bail!("--publishers, --users, --seconds and --rate must be positive");
    }
    let r = &config.replay;
    if r.per_user == 0 || r.read_kib <= 0.0 || r.read_ms <= 0.0 || r.time_limit_s <= 0.0 {
        bail!("--per-user, --read-kib, --read-ms and --time-limit must be positive");
    }
    Ok(Plan::Run(scenarios, config))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scenarios, config) = match parse_args(&args)? {
        Plan::Run(s, c) => (s, c),
        Plan::Skip => return Ok(()),
    };
    // Both ends of every connection live in this process, except in
    // `replay-memory` (the service is another process).
    // Only `latency` holds a stream per user.
    let streams = if scenarios.contains(&Scenario::Latency) {
        config.users
    } else {
        0
    };
    let replay_streams = if scenarios.contains(&Scenario::ReplayMemory) {
        config.replay.users
    } else {
        0
    };
    ensure_open_files((2 * (streams + config.publishers)).max(replay_streams) + 1024)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut failed = false;
    for scenario in scenarios {
        let result = if scenario == Scenario::ReplayMemory {
            // Its own database and service process.
            runtime.block_on(replay_memory::run(&config.replay))
        } else {
            // A fresh server and database per scenario: no scenario measures
            // what the previous one left behind.
            let env = Env::start(&runtime)?;
            let result = runtime.block_on(async {
                match scenario {
                    Scenario::Throughput => throughput(&env, &config).await,
                    Scenario::Latency => latency(&env, &config).await,
                    Scenario::Broadcast => broadcast(&env, &config).await,
                    Scenario::Topic => topic(&env, &config).await,
                    Scenario::Sql => sql(&env, &config).await,
                    Scenario::ReplayMemory => unreachable!("run above"),
                }
            });
            env.stop(&runtime);
            result
        };
        match result {
            Ok(ok) => failed |= !ok,
            Err(e) => {
                eprintln!("{}: {e:#}", scenario.name());
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// A private, durable PostgreSQL and Herald on a random port.
struct Env {
    pg: EmbeddedPostgres,
    db_url: String,
    dir: PathBuf,
    handle: AppHandle,
    base: String,
    signer: Signer,
    http: reqwest::Client,
}

impl Env {
    fn start(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pg = EmbeddedPostgres::start(Options {
            data_dir: dir.join("postgres"),
            fsync: true,
            max_connections: 300,
        })?;
        let mut settings = common::server::settings()?;
        settings.server.listen = "127.0.0.1:0".into();
        if std::env::var_os("RUST_LOG").is_some() {
            herald::app::logging::init_stderr_logging(&settings.log);
        }
        let signer = Signer::from_settings(&settings.auth)?;
        let (handle, port) = runtime.block_on(async {
            pg.create_database("herald_bench").await?;
            let app = Application::build(settings, &pg.url("herald_bench")).await?;
            let (handle, port) = (app.handle(), app.port());
            tokio::spawn(app.run_until_stopped());
            anyhow::Ok((handle, port))
        })?;
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            db_url: pg.url("herald_bench"),
            pg,
            dir,
            handle,
            base: format!("http://127.0.0.1:{port}"),
            signer,
            http,
        })
    }

    fn stop(self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(self.handle.stop());
        self.pg.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn publisher_token(&self) -> anyhow::Result<String> {
        self.signer
            .token_for("bench-publisher", &[Scope::Publish], 24 * 3600)
    }

    /// `herald_publish_batch_requests` as (sum, count), to report how many
    /// requests each publish transaction carried.
    async fn batch_stats(&self) -> (f64, f64) {
        let Ok(text) = async {
            self.http
                .get(self.url("/metrics"))
                .send()
                .await?
                .text()
                .await
        }
        .await
        else {
            return (0.0, 0.0);
        };
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("herald_publish_batch_requests_sum "),
            value("herald_publish_batch_requests_count "),
        )
    }

    /// Records every user as known (a row with a seq counter), so the
    /// measured publishes do not also create users.
    async fn seed_users(&self, users: &[String], token: &str) -> anyhow::Result<()> {
        for chunk in users.chunks(10_000) {
            let response = self
                .http
                .post(self.url("/v1/notifications"))
                .bearer_auth(token)
                .json(&json!({"recipients": chunk, "title": "benchmark warm-up"}))
                .send()
                .await?;
            if response.status() != 201 {
                bail!(
                    "seeding users: {} {}",
                    response.status(),
                    response.text().await?
                );
            }
        }
        Ok(())
    }
}

fn user_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-user-{i:05}")).collect()
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}

fn body_for(user: &str, sent_at_micros: i64) -> Value {
    json!({
        "recipients": [user],
        "title": "Benchmark notification",
        "body": "A durable single-recipient notification.",
        "data": {"t": sent_at_micros},
    })
}

fn common_fields(scenario: Scenario, config: &Config) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("scenario".into(), scenario.name().into());
    m.insert(
        "build".into(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .into(),
    );
    m.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .into(),
    );
    m.insert("fsync".into(), true.into());
    m.insert("users".into(), config.users.into());
    m.insert("seconds".into(), config.seconds.into());
    m
}

/// Closed loop: `publishers` tasks publish back to back for `seconds`.
async fn throughput(env: &Env, config: &Config) -> anyhow::Result<bool> {
    let users = Arc::new(user_ids(config.users));
    let token = Arc::new(env.publisher_token()?);
    env.seed_users(&users, &token).await?;
    let (batch_sum0, batch_count0) = env.batch_stats().await;

    println!(
        "throughput: {} publishers, {} users, {} s, fsync on ({} build)",
        config.publishers,
        config.users,
        config.seconds,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(config.seconds);
    let mut tasks = Vec::with_capacity(config.publishers);
    for _ in 0..config.publishers {
        // Parsed once: the load generator shares the CPUs with what it
        // measures, so it should not parse the same URL 10,000 times a second.
        let (http, url) = (
            env.http.clone(),
            reqwest::Url::parse(&env.url("/v1/notifications"))?,
        );
        let (users, token, next, errors) = (
            Arc::clone(&users),
            Arc::clone(&token),
            Arc::clone(&next),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let body = body_for(&users[i % users.len()], unix_micros());
                let sent = Instant::now();
                let ok = match http
                    .post(url.clone())
                    .bearer_auth(&*token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) => r.status() == 201 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (batch_sum1, batch_count1) = env.batch_stats().await;

    let published = latencies.len() as u64;
    let errors = errors.load(Ordering::Relaxed);
    let per_sec = published as f64 / elapsed;
    let latency = Percentiles::of(&mut latencies);
    let batch = (batch_sum1 - batch_sum0) / (batch_count1 - batch_count0).max(1.0);
    println!("  published      {published} in {elapsed:.1} s, {errors} errors");
    println!("  throughput     {per_sec:.0} publishes/s");
    println!("  publish        {}", latency.human());
    println!("  batch          {batch:.1} requests per transaction (mean)");

    let mut result = common_fields(Scenario::Throughput, config);
    result.insert("publishers".into(), config.publishers.into());
    result.insert("elapsed_s".into(), json!(elapsed));
    result.insert("published".into(), published.into());
    result.insert("errors".into(), errors.into());
    result.insert("publishes_per_sec".into(), json!(per_sec.round()));
    result.insert("publish_latency_us".into(), latency.json());
    result.insert("mean_batch_requests".into(), json!(batch));
    println!("RESULT {}", Value::Object(result));
    Ok(errors == 0 && published > 0)
}

/// What the SSE readers observed.
#[derive(Default)]
struct Deliveries {
    received: AtomicU64,
    /// A seq not above the previous one on the same stream.
    out_of_order: AtomicU64,
    resets: AtomicU64,
    /// Streams that ended or broke while the benchmark was running.
    ended: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

async fn read_stream(
    response: reqwest::Response,
    deliveries: Arc<Deliveries>,
    done: Arc<AtomicBool>,
) {
    let mut events = response.bytes_stream().eventsource();
    let mut last_seq = 0i64;
    while let Some(Ok(event)) = events.next().await {
        let now = unix_micros();
        match event.event.as_str() {
            "notification" => {}
            "reset" => {
                deliveries.resets.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            _ => continue,
        }
        let seq: i64 = event.id.parse().unwrap_or(0);
        if seq <= last_seq {
            deliveries.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        last_seq = seq;
        let sent_at = serde_json::from_str::<Value>(&event.data)
            .ok()
            .and_then(|v| v["data"]["t"].as_i64());
        if let Some(t) = sent_at {
            deliveries
                .latencies
                .lock()
                .unwrap()
                .push((now - t).max(0) as u64);
            deliveries.received.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !done.load(Ordering::Relaxed) {
        deliveries.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// Open loop: one live SSE stream per user, then publishes at a fixed rate
/// whatever the response times; each carries its scheduled send time, and
/// the readers measure publish→deliver latency from it.
async fn latency(env: &Env, config: &Config) -> anyhow::Result<bool> {
    let users = user_ids(config.users);
    let token = Arc::new(env.publisher_token()?);
    println!(
        "latency: {} live SSE streams, {}/s for {} s, fsync on ({} build)",
        config.users,
        config.rate,
        config.seconds,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    // 1. Open every stream. The response headers arrive only after the
    //    stream's subscription is registered, so once all are open, every
    //    later publish is delivered live.
    let sse_http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let opening = Instant::now();
    let responses: Vec<reqwest::Response> = futures_util::stream::iter(users.iter())
        .map(|user| {
            let request = sse_http
                .get(env.url("/v1/me/stream"))
                .bearer_auth(env.signer.token_for(user, &[], 24 * 3600).expect("signs"));
            async move {
                let response = request.send().await?;
                if response.status() != 200 {
                    bail!("opening a stream: {}", response.status());
                }
                anyhow::Ok(response)
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let open = env.handle.state().hub.stream_count();
    if open != users.len() {
        bail!("{open} streams registered, expected {}", users.len());
    }
    println!(
        "  opened         {} streams in {:.1} s",
        responses.len(),
        opening.elapsed().as_secs_f64()
    );
    let deliveries = Arc::new(Deliveries::default());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = responses
        .into_iter()
        .map(|r| tokio::spawn(read_stream(r, Arc::clone(&deliveries), Arc::clone(&done))))
        .collect();
    let (batch_sum0, batch_count0) = env.batch_stats().await;

    // 2. Publish on a fixed schedule: request i is due at start + i/rate and
    //    is sent then even if earlier ones have not been answered.
    let total = (config.rate * config.seconds).round() as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let start_unix = unix_micros() + 100_000;
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let publish_latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let mut max_lag = Duration::ZERO;
    let mut requests = Vec::with_capacity(total as usize);
    for i in 0..total {
        let offset = Duration::from_secs_f64(i as f64 / config.rate);
        let due = start + offset;
        tokio::time::sleep_until(due).await;
        max_lag = max_lag.max(tokio::time::Instant::now() - due);
        let body = body_for(
            &users[i as usize % users.len()],
            start_unix + offset.as_micros() as i64,
        );
        let request = env
            .http
            .post(env.url("/v1/notifications"))
            .bearer_auth(&*token)
            .json(&body);
        let (accepted, errors, publish_latencies) = (
            Arc::clone(&accepted),
            Arc::clone(&errors),
            Arc::clone(&publish_latencies),
        );
        requests.push(tokio::spawn(async move {
            let ok = match request.send().await {
                Ok(r) => r.status() == 201 && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                let took = (tokio::time::Instant::now() - due).as_micros() as u64;
                publish_latencies.lock().unwrap().push(took);
                accepted.fetch_add(1, Ordering::Relaxed);
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for request in requests {
        request.await?;
    }
    let sending = (tokio::time::Instant::now() - start).as_secs_f64();

    // 3. Wait for the last deliveries.
    let accepted = accepted.load(Ordering::Relaxed);
    let drain = Instant::now() + Duration::from_secs(15);
    while deliveries.received.load(Ordering::Relaxed) < accepted && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, Ordering::Relaxed);
    for reader in &readers {
        reader.abort();
    }
    let (batch_sum1, batch_count1) = env.batch_stats().await;

    let received = deliveries.received.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    let out_of_order = deliveries.out_of_order.load(Ordering::Relaxed);
    let resets = deliveries.resets.load(Ordering::Relaxed);
    let ended = deliveries.ended.load(Ordering::Relaxed);
    let completeness = if accepted == 0 {
        0.0
    } else {
        received as f64 / accepted as f64
    };
    let delivery = Percentiles::of(&mut deliveries.latencies.lock().unwrap());
    let publish = Percentiles::of(&mut publish_latencies.lock().unwrap());
    let batch = (batch_sum1 - batch_sum0) / (batch_count1 - batch_count0).max(1.0);
    let offered = total as f64 / config.seconds;
    println!(
        "  sent           {total} at {offered:.0}/s ({accepted} accepted, {errors} errors) in {sending:.1} s; schedule lag max {}",
        ms(max_lag.as_micros() as u64)
    );
    println!(
        "  delivered      {received}/{accepted} ({:.3}%), {out_of_order} out of order, {resets} resets, {ended} streams ended early",
        completeness * 100.0
    );
    println!("  publish→deliver {}", delivery.human());
    println!("  publish        {}", publish.human());
    println!("  batch          {batch:.1} requests per transaction (mean)");

    let mut result = common_fields(Scenario::Latency, config);
    result.insert("rate".into(), json!(config.rate));
    result.insert("sent".into(), total.into());
    result.insert("accepted".into(), accepted.into());
    result.insert("errors".into(), errors.into());
    result.insert("received".into(), received.into());
    result.insert("completeness".into(), json!(completeness));
    result.insert("out_of_order".into(), out_of_order.into());
    result.insert("resets".into(), resets.into());
    result.insert("streams_ended".into(), ended.into());
    result.insert(
        "schedule_lag_max_us".into(),
        (max_lag.as_micros() as u64).into(),
    );
    result.insert("delivery_latency_us".into(), delivery.json());
    result.insert("publish_latency_us".into(), publish.json());
    result.insert("mean_batch_requests".into(), json!(batch));
    println!("RESULT {}", Value::Object(result));
    Ok(errors == 0
        && accepted == total
        && received == accepted
        && out_of_order == 0
        && resets == 0
        && ended == 0)
}

/// Single publishes from `publishers` tasks until `stop` is set; returns
/// their latencies (µs) and the number of errors.
async fn publish_until(
    env: &Env,
    publishers: usize,
    users: Arc<Vec<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let token = Arc::new(env.publisher_token()?);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let (http, url) = (env.http.clone(), env.url("/v1/notifications"));
        let (users, token, next, stop) = (users.clone(), token.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let body = json!({"recipients": [users[i % users.len()]], "title": "single"});
                match http
                    .post(&url)
                    .bearer_auth(&*token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => latencies.push(sent.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    Ok((latencies, errors))
}

/// A broadcast to `users` known users while single publishes keep going:
/// how long until every user has it, and what it does to the singles.
/// `herald_publish(...)` from 32 SQL clients (unless `--publishers` says
/// otherwise), each call its own transaction.
async fn sql(env: &Env, config: &Config) -> anyhow::Result<bool> {
    let clients = if config.publishers_given {
        config.publishers
    } else {
        32
    };
    let users = Arc::new(user_ids(config.users));
    env.seed_users(&users, &env.publisher_token()?).await?;
    println!(
        "sql: herald_publish from {clients} SQL clients, {} users, {} s, fsync on",
        config.users, config.seconds
    );
    let outcome = sql_publish::run(&env.db_url, users, clients, config.seconds).await?;
    let per_sec = outcome.published as f64 / outcome.elapsed_s;
    println!(
        "  published      {} in {:.1} s, {} errors",
        outcome.published, outcome.elapsed_s, outcome.errors
    );
    println!("  throughput     {per_sec:.0} publishes/s");
    println!("  publish        {}", outcome.latency.human());
    let mut result = common_fields(Scenario::Sql, config);
    result.insert("clients".into(), clients.into());
    result.insert("elapsed_s".into(), json!(outcome.elapsed_s));
    result.insert("published".into(), outcome.published.into());
    result.insert("errors".into(), outcome.errors.into());
    result.insert("publishes_per_sec".into(), json!(per_sec.round()));
    result.insert("publish_latency_us".into(), outcome.latency.json());
    println!("RESULT {}", Value::Object(result));
    Ok(outcome.errors == 0 && outcome.published > 0)
}

/// A publish to a topic of `--users` subscribers (10,000 unless given: the
/// largest that is still one transaction) next to the same publish naming
/// them all as recipients: what expanding the topic inside the publish
/// transaction costs. Sequential publishes, each to every user.
async fn topic(env: &Env, config: &Config) -> anyhow::Result<bool> {
    let smoke = config.users < 1000 && !config.users_given;
    let n = match (config.users_given, smoke) {
        (true, _) | (false, true) => config.users,
        (false, false) => 10_000,
    };
    let rounds = if smoke { 3 } else { 20 };
    let token = env.publisher_token()?;
    let members: Vec<String> = (0..n).map(|i| format!("bench-user-{i:06}")).collect();
    for chunk in members.chunks(10_000) {
        let r = env
            .http
            .put(env.url("/v1/topics/bench-topic/subscribers"))
            .bearer_auth(&token)
            .json(&json!({ "users": chunk }))
            .send()
            .await?;
        if r.status() != 200 {
            bail!("subscribe: {} {}", r.status(), r.text().await?);
        }
    }
    println!(
        "topic: {n} subscribers, {rounds} publishes to the topic, then {rounds} naming them all, fsync on ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut results = serde_json::Map::new();
    for (label, body) in [
        (
            "topic",
            json!({"topics": ["bench-topic"], "title": "to the topic"}),
        ),
        (
            "recipients",
            json!({"recipients": members, "title": "to each"}),
        ),
    ] {
        let mut latencies = Vec::with_capacity(rounds);
        let started = Instant::now();
        for _ in 0..rounds {
            let sent = Instant::now();
            let r = env
                .http
                .post(env.url("/v1/notifications"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await?;
            if r.status() != 201 {
                bail!("{label} publish: {} {}", r.status(), r.text().await?);
            }
            let answer: Value = r.json().await?;
            let created = answer["notifications"].as_array().map_or(0, Vec::len);
            if created != n {
                bail!("{label} publish created {created} notifications, not {n}");
            }
            latencies.push(sent.elapsed().as_micros() as u64);
        }
        let rate = (rounds * n) as f64 / started.elapsed().as_secs_f64();
        let p = Percentiles::of(&mut latencies);
        println!(
            "  {label}: publish to {n} p50 {} / p99 {}; {rate:.0} notifications/s",
            ms(p.p50),
            ms(p.p99)
        );
        results.insert(
            label.to_owned(),
            json!({"p50_us": p.p50, "p99_us": p.p99, "notifications_per_s": rate}),
        );
    }
    println!(
        "RESULT {}",
        json!({"scenario": "topic", "subscribers": n, "rounds": rounds, "results": results})
    );
    Ok(true)
}

async fn broadcast(env: &Env, config: &Config) -> anyhow::Result<bool> {
    use std::sync::atomic::AtomicBool;
    let pool = sqlx::PgPool::connect(&env.db_url).await?;
    sqlx::query("INSERT INTO users (user_id) SELECT 'bench-user-' || lpad(g::text, 6, '0') FROM generate_series(0, $1 - 1) AS g")
        .bind(config.users as i64)
        .execute(&pool)
        .await?;
    let publishers = config.publishers.min(8);
    let singles: Arc<Vec<String>> = Arc::new(
        (0..config.users.min(1000))
            .map(|i| format!("bench-user-{i:06}"))
            .collect(),
    );
    println!(
        "broadcast: {} known users while {publishers} publishers send single notifications, fsync on ({} build)",
        config.users,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    // Baseline: singles alone.
    let base_stop = Arc::new(AtomicBool::new(false));
    let stop_later = async {
        tokio::time::sleep(Duration::from_secs_f64(config.seconds.min(5.0))).await;
        base_stop.store(true, Ordering::Relaxed);
        anyhow::Ok(())
    };
    let ((mut base_lat, base_err), ()) = tokio::try_join!(
        publish_until(env, publishers, singles.clone(), base_stop.clone()),
        stop_later
    )?;

    // The broadcast, with singles going on.
    let stop = Arc::new(AtomicBool::new(false));
    let admin = env
        .signer
        .token_for("bench-admin", &[Scope::Admin], 24 * 3600)?;
    let during = publish_until(env, publishers, singles.clone(), stop.clone());
    let measure = async {
        let started = Instant::now();
        let r = env
            .http
            .post(env.url("/v1/broadcasts"))
            .bearer_auth(&admin)
            .json(&json!({"title": "benchmark broadcast", "body": "to everyone"}))
            .send()
            .await?;
        if r.status() != 202 {
            stop.store(true, Ordering::Relaxed);
            bail!("broadcast: {} {}", r.status(), r.text().await?);
        }
        let id = r.json::<Value>().await?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let deadline = started + Duration::from_secs(600);
        let done = loop {
            let status: Value = env
                .http
                .get(env.url(&format!("/v1/admin/broadcasts/{id}")))
                .bearer_auth(&admin)
                .send()
                .await?
                .json()
                .await?;
            if status["status"] == "done" {
                break status;
            }
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                bail!("the broadcast did not finish in 10 minutes: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        anyhow::Ok((elapsed, done))
    };
    let ((mut during_lat, during_err), (elapsed, done)) = tokio::try_join!(during, measure)?;

    let delivered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE title = 'benchmark broadcast'",
    )
    .fetch_one(&pool)
    .await?;
    let secs = elapsed.as_secs_f64();
    let (base, dur) = (
        Percentiles::of(&mut base_lat),
        Percentiles::of(&mut during_lat),
    );
    println!(
        "  broadcast      {} users in {secs:.2} s ({:.0} users/s), recipients {}",
        config.users,
        config.users as f64 / secs,
        done["recipients"]
    );
    println!("  stored         {delivered} broadcast notifications (one per known user)");
    println!("  singles before {} ({} errors)", base.human(), base_err);
    println!(
        "  singles during {} ({} errors, {} sent)",
        dur.human(),
        during_err,
        during_lat.len()
    );
    let mut result = common_fields(Scenario::Broadcast, config);
    result.insert("publishers".into(), publishers.into());
    result.insert("broadcast_seconds".into(), json!(secs));
    result.insert(
        "broadcast_users_per_sec".into(),
        json!((config.users as f64 / secs).round()),
    );
    result.insert("stored".into(), delivered.into());
    result.insert("single_latency_before_us".into(), base.json());
    result.insert("single_latency_during_us".into(), dur.json());
    result.insert("single_errors".into(), (base_err + during_err).into());
    println!("RESULT {}", Value::Object(result));
    Ok(delivered == config.users as i64
        && base_err + during_err == 0
        && done["recipients"] == json!(config.users))
}
