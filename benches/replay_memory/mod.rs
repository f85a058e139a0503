//! `replay-memory`: how much memory the service needs when every user's
//! client resumes from 0 at once over a log of maximal notifications, and
//! reads slowly. See RELIABILITY.md ("Replay memory") for the method.
//!
//! Unlike the other scenarios, the service runs as its own process (the
//! `herald` binary), so its memory is its own and can be read from `/proc`.

mod content;
mod reader;
mod sampler;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::http::auth::{Scope, Signer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::server::{Server, memory, server_warnings};
use reader::{Readers, Tally};

const DATABASE: &str = "herald_replay";

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub users: usize,
    pub per_user: usize,
    /// Each reader takes `read_kib` KiB every `read_ms` ms on average.
    pub read_kib: f64,
    pub read_ms: f64,
    /// Give up on readers that are not done after this long.
    pub time_limit_s: f64,
    /// Kill the service if its RSS passes this.
    pub max_rss_mib: u64,
}

impl ReplayOptions {
    pub fn full() -> Self {
        Self {
            users: 300,
            per_user: 500,
            read_kib: 4.0,
            read_ms: 50.0,
            time_limit_s: 900.0,
            max_rss_mib: 12 * 1024,
        }
    }

    /// The `cargo test` smoke run: seconds, even in debug.
    pub fn smoke() -> Self {
        Self {
            users: 3,
            per_user: 20,
            read_kib: 64.0,
            read_ms: 50.0,
            time_limit_s: 120.0,
            max_rss_mib: 4 * 1024,
        }
    }

    fn bytes_per_sec(&self) -> f64 {
        self.read_kib * 1024.0 * 1000.0 / self.read_ms
    }
}

fn user_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("replay-user-{i:05}")).collect()
}

/// Runs the scenario on its own private PostgreSQL; `Ok(false)` when a
/// reader did not get everything exactly once, in order.
pub async fn run(options: &ReplayOptions) -> anyhow::Result<bool> {
    let dir = std::env::temp_dir().join(format!("herald-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // fsync off: the fill writes gigabytes, and durability is not what this
    // scenario measures (the replay only reads).
    let pg = EmbeddedPostgres::start(Options {
        data_dir: dir.join("postgres"),
        fsync: false,
        max_connections: 100,
    })?;
    let outcome = async {
        pg.create_database(DATABASE).await?;
        measure(options, &pg.url(DATABASE), &dir).await
    }
    .await;
    pg.stop();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn measure(options: &ReplayOptions, db_url: &str, dir: &Path) -> anyhow::Result<bool> {
    let settings = crate::common::server::settings()?;
    let signer = Signer::from_settings(&settings.auth)?;
    let users = user_ids(options.users);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "replay-memory: {} users x {} maximal notifications, readers at {} KiB per {} ms, {build} build, {cores} cores, fsync off",
        options.users, options.per_user, options.read_kib, options.read_ms
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;

    // 1. Fill through one service process.
    let mut filler = Server::start(db_url, dir.join("fill.log"), &[])?;
    filler.ready(&http).await?;
    let publisher = signer.token_for("replay-publisher", &[Scope::Publish], 24 * 3600)?;
    let fill_started = Instant::now();
    let mut rows = 0usize;
    // One request at a time, so the n-th request is every user's n-th event
    // (the readers check that order); each is a multi-recipient publish of
    // up to 10,000 users, one transaction.
    for n in 0..options.per_user {
        for chunk in users.chunks(10_000) {
            let response = http
                .post(filler.url("/v1/notifications"))
                .bearer_auth(&publisher)
                .json(&content::publish_body(n, chunk))
                .send()
                .await?;
            if response.status() != 201 {
                bail!(
                    "fill: publish {n} answered {}: {}",
                    response.status(),
                    response.text().await?
                );
            }
            response.bytes().await?;
            rows += chunk.len();
        }
        if (n + 1) % 50 == 0 {
            println!(
                "  fill {}/{} requests, {:.0} s",
                n + 1,
                options.per_user,
                fill_started.elapsed().as_secs_f64()
            );
        }
    }
    let fill_s = fill_started.elapsed().as_secs_f64();
    let fill_warnings = server_warnings(&filler.log).len();
    if filler.stop().is_none_or(|s| !s.success()) {
        bail!("the filling service did not stop cleanly");
    }
    println!("  filled         {rows} notifications in {fill_s:.1} s");

    // 2. A fresh process, so the replay starts from a clean memory state.
    let mut server = Server::start(db_url, dir.join("replay.log"), &[])?;
    server.ready(&http).await?;
    let baseline = memory(server.pid);
    println!(
        "  baseline       RSS {:.1} MiB (pid {})",
        baseline.rss_kib as f64 / 1024.0,
        server.pid
    );

    // 3. Every reader resumes from 0 at the same moment.
    let tokens = users
        .iter()
        .map(|u| signer.token_for(u, &[], 24 * 3600))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let readers = Arc::new(Readers {
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?,
        stream_url: server.url("/v1/me/stream"),
        per_user: options.per_user,
        bytes_per_sec: options.bytes_per_sec(),
        stop: CancellationToken::new(),
        tally: Tally::default(),
    });
    let sampler = tokio::spawn(sampler::sample(
        server.pid,
        Arc::clone(&readers),
        options.max_rss_mib * 1024,
        options.users,
    ));
    let replay_started = Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| tokio::spawn(reader::read_all(Arc::clone(&readers), token)))
        .collect();
    let limit = Duration::from_secs_f64(options.time_limit_s);
    let stopper = {
        let stop = readers.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            stop.cancel();
        })
    };
    let mut problems = Vec::new();
    for (user, task) in users.iter().zip(tasks) {
        if let Some(problem) = task.await.context("a reader panicked")? {
            problems.push(format!("{user}: {problem}"));
        }
    }
    let replay_s = replay_started.elapsed().as_secs_f64();
    stopper.abort();
    // The last sample: every reader is done (or the limit passed).
    let end = memory(server.pid);
    readers.stop.cancel();
    // Why streams ended early, and how many events the log reader read
    // (more than delivered when resumed streams read pages again).
    let metrics = scrape(&http, &server).await;
    let slow_disconnects = metrics.sum("herald_slow_client_disconnects_total");
    let replayed = metrics.sum("herald_replayed_events_total");
    let samples = sampler.await?;
    let alive = server.alive();
    let stopped_cleanly = alive && server.stop().is_some_and(|s| s.success());
    let warnings = server_warnings(&server.log);

    let tally = &readers.tally;
    let expected = (options.users * options.per_user) as u64;
    let delivered = tally.delivered.load(Ordering::Relaxed);
    let complete = tally.complete.load(Ordering::Relaxed);
    let data_bytes = tally.data_bytes.load(Ordering::Relaxed);
    let reconnects = tally.reconnects.load(Ordering::Relaxed);
    let failures = tally.failures.load(Ordering::Relaxed);
    let fmt_metric = |v: Option<f64>| v.map_or("unknown".to_owned(), |v| format!("{v:.0}"));
    let resets = tally.resets.load(Ordering::Relaxed);
    // VmHWM survives until the process exits; if it was killed, the last
    // sample's is the best known.
    let peak_kib = end.hwm_kib.max(samples.last.hwm_kib);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "  replay         {delivered}/{expected} notifications ({:.1} MiB of event data) in {replay_s:.1} s; {complete}/{} readers complete, {reconnects} reconnects, {resets} resets, {failures} failures",
        data_bytes as f64 / (1024.0 * 1024.0),
        options.users
    );
    println!(
        "  memory         baseline {:.1} MiB, peak (VmHWM) {:.1} MiB, largest sample {:.1} MiB at {:.1} s, at the end {:.1} MiB ({} samples)",
        mib(baseline.rss_kib),
        mib(peak_kib),
        mib(samples.max_rss_kib),
        samples.max_rss_at_s,
        mib(end.rss_kib),
        samples.count
    );
    println!(
        "  service        {} slow-client disconnects, {} events read from the log for streams",
        fmt_metric(slow_disconnects),
        fmt_metric(replayed)
    );
    for problem in problems.iter().take(10) {
        println!("  problem        {problem}");
    }
    for warning in warnings.iter().take(5) {
        println!("  service log    {warning}");
    }

    let result = json!({
        "scenario": "replay-memory",
        "build": build,
        "cores": cores,
        "fsync": false,
        "users": options.users,
        "per_user": options.per_user,
        "title_chars": content::TITLE_CHARS,
        "body_chars": content::BODY_CHARS,
        "data_bytes": content::DATA_BYTES,
        "read_bytes_per_sec": options.bytes_per_sec(),
        "read_kib": options.read_kib,
        "read_ms": options.read_ms,
        "time_limit_s": options.time_limit_s,
        "settings": {
            "stream_buffer": settings.stream.buffer,
            "stream_replay_page": settings.stream.replay_page,
            "slow_client_timeout_ms": settings.stream.slow_client_timeout_ms,
            "database_max_connections": settings.database.max_connections,
        },
        "fill_s": fill_s,
        "fill_rows": rows,
        "fill_warnings": fill_warnings,
        "replay_s": replay_s,
        "expected": expected,
        "delivered": delivered,
        "event_data_bytes": data_bytes,
        "readers_complete": complete,
        "reconnects": reconnects,
        "resets": resets,
        "failures": failures,
        "slow_client_disconnects": slow_disconnects,
        "replayed_events": replayed,
        "baseline_rss_kib": baseline.rss_kib,
        "peak_hwm_kib": peak_kib,
        "max_sampled_rss_kib": samples.max_rss_kib,
        "max_sampled_rss_at_s": samples.max_rss_at_s,
        "final_rss_kib": end.rss_kib,
        "samples": samples.count,
        "sample_every_ms": sampler::EVERY.as_millis() as u64,
        "killed_over_limit_mib": samples.over_limit.then_some(options.max_rss_mib),
        "service_warnings": warnings.len(),
    });
    println!("RESULT {result}");
    Ok(delivered == expected
        && complete == options.users as u64
        && failures == 0
        && !samples.over_limit
        && stopped_cleanly)
}

/// The service's `/metrics` text (empty if it cannot be read).
struct Metrics(String);

impl Metrics {
    /// The sum of every series of counter `name`, whatever its labels.
    fn sum(&self, name: &str) -> Option<f64> {
        let values: Vec<f64> = self
            .0
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

async fn scrape(http: &reqwest::Client, server: &Server) -> Metrics {
    let text = async { http.get(server.url("/metrics")).send().await?.text().await };
    Metrics(text.await.unwrap_or_default())
}
