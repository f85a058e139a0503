//! Soak run: the `herald` binary as its own process on a private, durable
//! PostgreSQL, under steady publishing for minutes while every user's
//! subscriber (SSE, WebSocket or long-poll) drops its connection at random
//! and resumes from the last seq it saw. See RELIABILITY.md.
//!
//! ```text
//! cargo bench --bench soak -- [--minutes 10] [--rate 300] [--users 300]
//!                             [--sample-secs 10] [--scrape-metrics 0]
//!                             [--csv target/soak.csv]
//! ```
//!
//! `--scrape-metrics S` fetches `/metrics` every S seconds during the run, as
//! a Prometheus server would; by default nothing scrapes it.
//!
//! Every `--sample-secs` it prints one line about the service process: RSS,
//! open descriptors, threads, its PostgreSQL connections, its live
//! connections by transport, and the publishes and deliveries so far. At the
//! end it stops publishing, lets every subscriber catch up, and checks that
//! each user received exactly the acknowledged publishes for that user, once
//! each, in seq order. Then all clients leave and the service must get back
//! to no live connections. It reports whether RSS, descriptors, threads and
//! database connections stayed flat over the second half of the load. The
//! table also goes to a CSV file, and a last line `RESULT {json}` carries
//! every number. The exit status is non-zero if anything was lost,
//! duplicated or out of order, any publish failed, the service kept
//! connections after the clients left or did not shut down cleanly, or a
//! resource was not flat.
//!
//! Not a test: under `cargo test` (no `--bench` argument) it does nothing.

mod common;

use common::args::Words;
use common::resuming::{self, Progress, Subscriber, Transport};
use common::server::{Server, ensure_open_files, proc_sample, server_warnings};
use common::{Percentiles, ms};
use herald::http::auth::Scope;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::http::auth::Signer;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DATABASE: &str = "herald_soak";
/// Reconnect intervals are drawn uniformly from this range (seconds).
const HOLD_SECS: std::ops::RangeInclusive<f64> = 1.0..=20.0;
/// How long the subscribers get to catch up after the last publish.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Config {
    minutes: f64,
    rate: f64,
    users: usize,
    sample_secs: f64,
    /// Fetch `/metrics` this often, as a Prometheus server would (0: never).
    scrape_secs: f64,
    csv: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            minutes: 10.0,
            rate: 300.0,
            users: 300,
            sample_secs: 10.0,
            scrape_secs: 0.0,
            csv: None,
        }
    }
}

impl Config {
    fn load_secs(&self) -> f64 {
        self.minutes * 60.0
    }
}

const USAGE: &str = "usage: [--minutes M] [--rate R] [--users N] [--sample-secs S] [--scrape-metrics S] [--csv PATH]";

/// `cargo bench` passes `--bench` after the user's arguments; `cargo test`
/// does not, and then there is nothing to do (`None`).
fn parse_args(args: &[String]) -> anyhow::Result<Option<Config>> {
    if !args.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut config = Config::default();
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        let mut value = || words.value(&word).with_context(|| USAGE.to_string());
        match word.as_str() {
            "--bench" => {}
            "--minutes" => config.minutes = value()?.parse()?,
            "--rate" => config.rate = value()?.parse()?,
            "--users" => config.users = value()?.parse()?,
            "--sample-secs" => config.sample_secs = value()?.parse()?,
            "--scrape-metrics" => config.scrape_secs = value()?.parse()?,
            "--csv" => config.csv = Some(PathBuf::from(value()?)),
            _ => bail!("unknown argument {word:?}; {USAGE}"),
        }
    }
    if config.minutes <= 0.0 || config.rate <= 0.0 || config.users < 3 || config.sample_secs <= 0.0
    {
        bail!("--minutes, --rate and --sample-secs must be positive, --users at least 3");
    }
    if config.scrape_secs < 0.0 {
        bail!("--scrape-metrics must be 0 (never) or positive");
    }
    Ok(Some(config))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(config) = parse_args(&args)? else {
        return Ok(());
    };
    // This process holds one connection per subscriber plus publishers; the
    // server (which inherits the limit) the other ends plus its pool.
    ensure_open_files(2 * config.users + 2048)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("herald-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pg = EmbeddedPostgres::start(Options {
        data_dir: dir.join("postgres"),
        fsync: true,
        max_connections: 100,
    })?;
    let outcome: anyhow::Result<bool> = runtime.block_on(async {
        pg.create_database(DATABASE).await?;
        let mut server = Server::start(&pg.url(DATABASE), dir.join("herald.log"), &[])?;
        soak(&config, &pg.url(DATABASE), &mut server).await
    });
    pg.stop();
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(1)
        }
    }
}

/// Users take the transports in turn.
fn transport_of(user: usize) -> Transport {
    Transport::ALL[user % 3]
}

/// Every subscriber drops its connection after a random hold and resumes.
fn subscriber_options() -> resuming::Options {
    resuming::Options {
        hold_secs: Some(HOLD_SECS),
        poll_wait_secs: 25,
        // A poll unanswered 60 s after it was sent has failed.
        poll_slack: Duration::from_secs(35),
        retry_after: Duration::from_millis(200),
        print_failures: 3,
    }
}

struct Ctx {
    base: String,
    users: Vec<String>,
    subs: Vec<Arc<Progress>>,
    /// Acknowledged publishes per user: (seq, id).
    acked: Vec<Mutex<Vec<(i64, String)>>>,
    published: AtomicU64,
    publish_errors: AtomicU64,
    /// Publish latencies (µs) since the last sample, and all of them.
    window: Mutex<Vec<u64>>,
    latencies: Mutex<Vec<u64>>,
    stop: CancellationToken,
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn sum(&self, f: impl Fn(&Progress) -> &AtomicU64) -> u64 {
        self.subs.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    }

    fn sum_for(&self, t: Transport, f: impl Fn(&Progress) -> &AtomicU64) -> u64 {
        self.subs
            .iter()
            .enumerate()
            .filter(|(i, _)| transport_of(*i) == t)
            .map(|(_, s)| f(s).load(Ordering::Relaxed))
            .sum()
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Sample {
    t: f64,
    phase: &'static str,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    db_conns: i64,
    live: [i64; 3],
    published: u64,
    publish_errors: u64,
    delivered: u64,
    connects: u64,
    publish_p99_us: u64,
}

const HEADER: &str = "     t  phase   rss_MiB   fds  thr  db   sse   ws  poll  published  errors  delivered  connects  pub_p99_ms";

impl Sample {
    fn line(&self) -> String {
        format!(
            "{:>6.0}  {:<7} {:>7.1} {:>5} {:>4} {:>3} {:>5} {:>4} {:>5} {:>10} {:>7} {:>10} {:>9} {:>11.2}",
            self.t,
            self.phase,
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.threads,
            self.db_conns,
            self.live[0],
            self.live[1],
            self.live[2],
            self.published,
            self.publish_errors,
            self.delivered,
            self.connects,
            self.publish_p99_us as f64 / 1000.0,
        )
    }

    const CSV_HEADER: &str = "t_secs,phase,rss_kib,fds,threads,db_connections,sse,ws,poll,published,publish_errors,delivered,connects,publish_p99_us";

    fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t,
            self.phase,
            self.rss_kib,
            self.fds,
            self.threads,
            self.db_conns,
            self.live[0],
            self.live[1],
            self.live[2],
            self.published,
            self.publish_errors,
            self.delivered,
            self.connects,
            self.publish_p99_us
        )
    }
}

struct Monitor {
    pid: u32,
    pool: sqlx::PgPool,
    http: reqwest::Client,
    stats_url: String,
    admin: String,
}

impl Monitor {
    async fn sample(&self, ctx: &Ctx, t: f64, phase: &'static str) -> Sample {
        let (rss_kib, threads, fds) = proc_sample(self.pid);
        let db_conns: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE 'herald%'",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap_or(-1);
        let live = self.live().await;
        let mut window = std::mem::take(&mut *ctx.window.lock().unwrap());
        Sample {
            t,
            phase,
            rss_kib,
            fds,
            threads,
            db_conns,
            live,
            published: ctx.published.load(Ordering::Relaxed),
            publish_errors: ctx.publish_errors.load(Ordering::Relaxed),
            delivered: ctx.sum(|s| &s.events),
            connects: ctx.sum(|s| &s.connects),
            publish_p99_us: Percentiles::of(&mut window).p99,
        }
    }

    /// The service's live connections by transport (`-1`: unknown).
    async fn live(&self) -> [i64; 3] {
        let stats: Value = async {
            self.http
                .get(&self.stats_url)
                .bearer_auth(&self.admin)
                .send()
                .await?
                .json()
                .await
        }
        .await
        .unwrap_or(Value::Null);
        Transport::ALL.map(|t| stats["connections"][t.name()].as_i64().unwrap_or(-1))
    }
}

async fn publish_one(
    ctx: Arc<Ctx>,
    http: reqwest::Client,
    token: Arc<String>,
    user: usize,
    due: Instant,
) {
    let body = json!({
        "recipients": [ctx.users[user]],
        "title": "Soak notification",
        "body": "Steady publishing while subscribers reconnect.",
        "category": "soak",
    });
    let answer = async {
        let r = http
            .post(ctx.url("/v1/notifications"))
            .bearer_auth(&*token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if status != 201 {
            bail!("publish answered {status}: {text}");
        }
        let v: Value = serde_json::from_str(&text)?;
        let item = &v["notifications"][0];
        match (item["seq"].as_i64(), item["id"].as_str()) {
            (Some(seq), Some(id)) => Ok((seq, id.to_owned())),
            _ => bail!("unexpected publish answer {text}"),
        }
    }
    .await;
    match answer {
        Ok(entry) => {
            let took = due.elapsed().as_micros() as u64;
            ctx.acked[user].lock().unwrap().push(entry);
            ctx.window.lock().unwrap().push(took);
            ctx.latencies.lock().unwrap().push(took);
            ctx.published.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            if ctx.publish_errors.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("  publish error: {e:#}");
            }
        }
    }
}

/// Open loop: publish *i* is due at `start + i/rate` and is sent then, even
/// if earlier ones are unanswered. Returns (sent, worst schedule lag).
async fn publish_all(
    ctx: &Arc<Ctx>,
    config: &Config,
    token: String,
) -> anyhow::Result<(u64, Duration)> {
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let token = Arc::new(token);
    let total = (config.rate * config.load_secs()).round() as u64;
    let start = Instant::now();
    let mut max_lag = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / config.rate);
        tokio::time::sleep_until(due).await;
        max_lag = max_lag.max(due.elapsed());
        let user = i as usize % ctx.users.len();
        tasks.spawn(publish_one(
            Arc::clone(ctx),
            http.clone(),
            Arc::clone(&token),
            user,
            due,
        ));
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok((total, max_lag))
}

/// Flatness of one resource: its value at minute 1 and at the end of the
/// load, max/min over the second half of the load, and the least-squares
/// slope (per minute) over that half; `flat` when `is_flat(min, max)`.
fn flatness(
    samples: &[Sample],
    load_secs: f64,
    value: impl Fn(&Sample) -> f64,
    is_flat: impl Fn(f64, f64) -> bool,
) -> Value {
    let load: Vec<&Sample> = samples.iter().filter(|s| s.phase == "load").collect();
    let minute1 = load
        .iter()
        .find(|s| s.t >= 60.0_f64.min(load_secs / 2.0))
        .or(load.first())
        .map(|s| value(s));
    let end = load.last().map(|s| value(s));
    let points: Vec<(f64, f64)> = load
        .iter()
        .filter(|s| s.t >= load_secs / 2.0)
        .map(|s| (s.t / 60.0, value(s)))
        .collect();
    let half: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
    let max = half.iter().copied().fold(f64::MIN, f64::max);
    let min = half.iter().copied().fold(f64::MAX, f64::min);
    let slope = if points.len() < 2 {
        Value::Null
    } else {
        let n = points.len() as f64;
        let (mt, mv) = (
            points.iter().map(|p| p.0).sum::<f64>() / n,
            points.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let num: f64 = points.iter().map(|(t, v)| (t - mt) * (v - mv)).sum();
        let den: f64 = points.iter().map(|(t, _)| (t - mt) * (t - mt)).sum();
        if den > 0.0 {
            json!((num / den * 1000.0).round() / 1000.0)
        } else {
            Value::Null
        }
    };
    let ratio = if half.is_empty() || min <= 0.0 {
        Value::Null
    } else {
        json!((max / min * 1000.0).round() / 1000.0)
    };
    json!({
        "minute1": minute1,
        "end": end,
        "second_half_min": if half.is_empty() { Value::Null } else { json!(min) },
        "second_half_max": if half.is_empty() { Value::Null } else { json!(max) },
        "second_half_max_over_min": ratio,
        "second_half_slope_per_min": slope,
        "flat": !half.is_empty() && is_flat(min, max),
    })
}

fn csv_path(config: &Config) -> PathBuf {
    if let Some(p) = &config.csv {
        return p.clone();
    }
    // The bench runs from <target>/<profile>/deps/.
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .filter(|t| t.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("soak.csv")
}

async fn soak(config: &Config, db_url: &str, server: &mut Server) -> anyhow::Result<bool> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    server.ready(&http).await?;
    let settings = common::server::settings()?;
    let signer = Signer::from_settings(&settings.auth)?;
    let ttl = (config.load_secs() as i64) + 3600;
    let users: Vec<String> = (0..config.users)
        .map(|i| format!("soak-user-{i:05}"))
        .collect();
    let tokens = users
        .iter()
        .map(|u| signer.token_for(u, &[], ttl))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "soak: herald (pid {}) on a private PostgreSQL with fsync on, {build} build, {cores} cores",
        server.pid
    );
    println!(
        "  /metrics {}",
        if config.scrape_secs > 0.0 {
            format!("scraped every {} s", config.scrape_secs)
        } else {
            "never scraped".to_owned()
        }
    );
    println!(
        "  {} min at {}/s round-robin over {} users; subscribers {} SSE / {} WebSocket / {} long-poll, each reconnecting every 1-20 s",
        config.minutes,
        config.rate,
        config.users,
        (0..config.users)
            .filter(|u| transport_of(*u) == Transport::Sse)
            .count(),
        (0..config.users)
            .filter(|u| transport_of(*u) == Transport::Ws)
            .count(),
        (0..config.users)
            .filter(|u| transport_of(*u) == Transport::Poll)
            .count(),
    );

    // Subscribers first, all from seq 0 (a moment to connect follows).
    let stop = CancellationToken::new();
    let stream_http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let subscribers: Vec<Subscriber> = users
        .iter()
        .zip(tokens)
        .enumerate()
        .map(|(user, (name, token))| {
            Subscriber::start(
                &server.base,
                &stream_http,
                name,
                token,
                transport_of(user),
                subscriber_options(),
                stop.clone(),
            )
        })
        .collect();
    let ctx = Arc::new(Ctx {
        base: server.base.clone(),
        subs: subscribers
            .iter()
            .map(|s| Arc::clone(s.progress()))
            .collect(),
        acked: (0..config.users).map(|_| Mutex::new(Vec::new())).collect(),
        users,
        published: AtomicU64::new(0),
        publish_errors: AtomicU64::new(0),
        window: Mutex::new(Vec::new()),
        latencies: Mutex::new(Vec::new()),
        stop: stop.clone(),
    });
    let monitor = Monitor {
        pid: server.pid,
        pool: sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(
                db_url
                    .parse::<sqlx::postgres::PgConnectOptions>()?
                    .application_name("soak-monitor"),
            )
            .await?,
        http: http.clone(),
        stats_url: server.url("/v1/admin/stats"),
        admin: signer.token_for("soak-admin", &[Scope::Admin], ttl)?,
    };

    tokio::time::sleep(Duration::from_secs(2)).await;

    // Optionally a Prometheus-like scraper, until the end.
    let scrapes = Arc::new(AtomicU64::new(0));
    if config.scrape_secs > 0.0 {
        let (http, url, stop, scrapes) = (
            http.clone(),
            server.url("/metrics"),
            ctx.stop.clone(),
            Arc::clone(&scrapes),
        );
        let every = Duration::from_secs_f64(config.scrape_secs);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = interval.tick() => {}
                }
                if let Ok(r) = http.get(&url).send().await
                    && r.status() == 200
                    && r.bytes().await.is_ok()
                {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    // Load, sampled every `sample_secs`.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let started = Instant::now();
    let load_over = CancellationToken::new();
    let sampler = {
        let (ctx, samples, load_over) = (Arc::clone(&ctx), Arc::clone(&samples), load_over.clone());
        let every = Duration::from_secs_f64(config.sample_secs);
        tokio::spawn(async move {
            println!("{HEADER}");
            let mut tick = 1u64;
            loop {
                let at = started + every * tick as u32;
                tokio::select! {
                    _ = load_over.cancelled() => break,
                    _ = tokio::time::sleep_until(at) => {}
                }
                let s = monitor
                    .sample(&ctx, started.elapsed().as_secs_f64(), "load")
                    .await;
                println!("{}", s.line());
                samples.lock().unwrap().push(s);
                tick += 1;
            }
            monitor
        })
    };
    let publisher = signer.token_for("soak-publisher", &[Scope::Publish], ttl)?;
    let (sent, max_lag) = publish_all(&ctx, config, publisher).await?;
    let load_secs = started.elapsed().as_secs_f64();
    // A last sample at the end of the load.
    load_over.cancel();
    let monitor = sampler.await?;
    let last_t = samples.lock().unwrap().last().map_or(0.0, |s| s.t);
    if load_secs - last_t >= 1.0 {
        let s = monitor.sample(&ctx, load_secs, "load").await;
        println!("{}", s.line());
        samples.lock().unwrap().push(s);
    }

    // Drain: every subscriber resumes (still reconnecting at random) until it
    // has its user's last acknowledged seq.
    let expected: Vec<i64> = ctx
        .acked
        .iter()
        .map(|a| {
            a.lock()
                .unwrap()
                .iter()
                .map(|(seq, _)| *seq)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let drain_started = Instant::now();
    let behind = || {
        expected
            .iter()
            .zip(&ctx.subs)
            .filter(|(want, s)| s.last_seq() < **want)
            .count()
    };
    while behind() > 0 && drain_started.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let still_behind = behind();
    let s = monitor
        .sample(&ctx, started.elapsed().as_secs_f64(), "drained")
        .await;
    println!("{}", s.line());
    samples.lock().unwrap().push(s);
    ctx.stop.cancel();
    for subscriber in subscribers {
        subscriber.stop().await?;
    }

    // Idle: every client has gone; the service should notice (a dropped SSE
    // stream at its next heartbeat, an abandoned poll at its timeout) and
    // get back to no connections.
    let idle_started = Instant::now();
    let idle_limit = Duration::from_secs(60);
    while monitor.live().await.iter().any(|n| *n != 0) && idle_started.elapsed() < idle_limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let idle_secs = idle_started.elapsed().as_secs_f64();
    let idle = monitor
        .sample(&ctx, started.elapsed().as_secs_f64(), "idle")
        .await;
    println!("{}", idle.line());
    let idle_ok = idle.live == [0, 0, 0];
    samples.lock().unwrap().push(idle.clone());
    let server_alive = server.alive();
    let stopped = server.stop();
    let clean_stop = stopped.is_some_and(|s| s.success());
    let warnings = server_warnings(&server.log);

    // Verify: per user, the received (seq, id) list is exactly the
    // acknowledged publishes in seq order.
    let (mut lost, mut extra, mut users_wrong) = (0u64, 0u64, 0usize);
    let mut examples = Vec::new();
    for (user, sub) in ctx.subs.iter().enumerate() {
        let mut want = ctx.acked[user].lock().unwrap().clone();
        want.sort();
        let got: Vec<(i64, String)> = sub.received().into_iter().map(|r| (r.seq, r.id)).collect();
        if got == want {
            continue;
        }
        users_wrong += 1;
        let want_ids: HashSet<&String> = want.iter().map(|(_, id)| id).collect();
        let got_ids: HashSet<&String> = got.iter().map(|(_, id)| id).collect();
        let missing = want.iter().filter(|(_, id)| !got_ids.contains(id)).count() as u64;
        let unknown = got_ids.iter().filter(|id| !want_ids.contains(*id)).count() as u64;
        lost += missing;
        extra += unknown;
        if examples.len() < 5 {
            examples.push(format!(
                "{} ({}): {} acknowledged, {} received, {missing} missing, {unknown} unknown",
                ctx.users[user],
                transport_of(user).name(),
                want.len(),
                got.len()
            ));
        }
    }
    let published = ctx.published.load(Ordering::Relaxed);
    let publish_errors = ctx.publish_errors.load(Ordering::Relaxed);
    let delivered: u64 = ctx.subs.iter().map(|s| s.received_count() as u64).sum();
    let duplicates = ctx.sum(|s| &s.duplicates);
    let out_of_order = ctx.sum(|s| &s.out_of_order);
    let resets = ctx.sum(|s| &s.resets);
    let unexpected = ctx.sum(|s| &s.unexpected);
    let publish = Percentiles::of(&mut ctx.latencies.lock().unwrap());

    let samples = samples.lock().unwrap().clone();
    let csv = csv_path(config);
    let mut text = String::from(Sample::CSV_HEADER);
    text.push('\n');
    for s in &samples {
        writeln!(text, "{}", s.csv())?;
    }
    if let Some(dir) = csv.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&csv, text).with_context(|| format!("writing {}", csv.display()))?;

    // Condensed table: one row a minute (or every sample in short runs).
    println!();
    println!("per minute:");
    println!("{HEADER}");
    let mut printed: Option<f64> = None;
    for (i, s) in samples.iter().enumerate() {
        let minute = (s.t / 60.0).round();
        let on_minute = minute >= 1.0 && (s.t - 60.0 * minute).abs() < config.sample_secs / 2.0;
        let wanted = config.load_secs() < 120.0 || on_minute || i + 1 == samples.len();
        if wanted && printed.is_none_or(|p| s.t - p >= 1.0) {
            println!("{}", s.line());
            printed = Some(s.t);
        }
    }
    println!("table written to {}", csv.display());

    // Flat: RSS and threads within 10% over the second half; descriptors
    // (which follow the connection churn) within 50%; database connections
    // never above the pool plus the LISTEN connection.
    let pool_cap = (settings.database.max_connections + 1) as f64;
    let rss = flatness(
        &samples,
        load_secs,
        |s| s.rss_kib as f64,
        |lo, hi| hi <= lo * 1.10,
    );
    let fds = flatness(
        &samples,
        load_secs,
        |s| s.fds as f64,
        |lo, hi| hi <= lo * 1.5,
    );
    let threads = flatness(
        &samples,
        load_secs,
        |s| s.threads as f64,
        |lo, hi| hi <= lo * 1.10,
    );
    let db = flatness(
        &samples,
        load_secs,
        |s| s.db_conns as f64,
        |_, hi| hi <= pool_cap,
    );
    let flat = [&rss, &fds, &threads, &db]
        .iter()
        .all(|v| v["flat"] == true);
    let per_transport: serde_json::Map<String, Value> = Transport::ALL
        .iter()
        .map(|t| {
            (
                t.name().to_owned(),
                json!({
                    "connects": ctx.sum_for(*t, |s| &s.connects),
                    "server_closed": ctx.sum_for(*t, |s| &s.server_closed),
                    "errors": ctx.sum_for(*t, |s| &s.failures),
                    "events": ctx.sum_for(*t, |s| &s.events),
                }),
            )
        })
        .collect();
    let mut acked_per_transport: HashMap<&str, u64> = HashMap::new();
    for (user, acked) in ctx.acked.iter().enumerate() {
        *acked_per_transport
            .entry(transport_of(user).name())
            .or_default() += acked.lock().unwrap().len() as u64;
    }

    println!();
    println!(
        "  published      {published}/{sent} acknowledged, {publish_errors} errors, in {load_secs:.1} s; schedule lag max {}",
        ms(max_lag.as_micros() as u64)
    );
    println!("  publish        {}", publish.human());
    println!(
        "  delivered      {delivered}/{published} ({lost} lost, {extra} unknown, {duplicates} duplicates, {out_of_order} out of order, {resets} resets, {unexpected} unexpected); {users_wrong} users wrong"
    );
    for t in Transport::ALL {
        let p = &per_transport[t.name()];
        println!(
            "  {:<5}          {} connects, {} ended by the server, {} failed connects/polls, {} events ({} acknowledged for its users)",
            t.name(),
            p["connects"],
            p["server_closed"],
            p["errors"],
            p["events"],
            acked_per_transport.get(t.name()).copied().unwrap_or(0),
        );
    }
    println!(
        "  caught up      in {drain_secs:.1} s after the last publish ({still_behind} subscribers still behind)"
    );
    let flat_line = |name: &str, v: &Value, unit: f64, suffix: &str| {
        let f = |x: &Value| {
            x.as_f64()
                .map_or("-".into(), |x| format!("{:.1}", x / unit))
        };
        let slope = v["second_half_slope_per_min"]
            .as_f64()
            .map_or("-".into(), |x| format!("{:+.2}", x / unit));
        println!(
            "  {name:<14} minute 1 {}{suffix}, end {}{suffix}, second half {}–{}{suffix} (max/min {}, {slope}{suffix}/min): {}",
            f(&v["minute1"]),
            f(&v["end"]),
            f(&v["second_half_min"]),
            f(&v["second_half_max"]),
            v["second_half_max_over_min"],
            if v["flat"] == true {
                "flat"
            } else {
                "NOT FLAT"
            }
        );
    };
    flat_line("RSS", &rss, 1024.0, " MiB");
    flat_line("descriptors", &fds, 1.0, "");
    flat_line("threads", &threads, 1.0, "");
    flat_line("DB conns", &db, 1.0, "");
    for e in &examples {
        println!("  wrong: {e}");
    }
    if !server_alive {
        println!("  the service process died during the run");
    }
    println!(
        "  idle           {} live connections {idle_secs:.1} s after the last client left; RSS {:.1} MiB, {} descriptors, {} threads, {} DB connections",
        idle.live.iter().sum::<i64>(),
        idle.rss_kib as f64 / 1024.0,
        idle.fds,
        idle.threads,
        idle.db_conns
    );
    println!(
        "  shutdown       {}",
        match stopped {
            Some(s) if s.success() => "clean (SIGTERM, exit 0)".to_owned(),
            Some(s) => format!("exited with {s}"),
            None => "did not stop within 15 s of SIGTERM (killed)".to_owned(),
        }
    );
    println!("  service log    {} lines at warn or above", warnings.len());
    for line in warnings.iter().take(10) {
        println!("    {line}");
    }

    let ok = publish_errors == 0
        && published == sent
        && lost == 0
        && extra == 0
        && duplicates == 0
        && out_of_order == 0
        && resets == 0
        && unexpected == 0
        && users_wrong == 0
        && still_behind == 0
        && server_alive
        && idle_ok
        && clean_stop;
    println!(
        "  verdict        delivery {}; resources {}",
        if ok { "PASS" } else { "FAIL" },
        if flat { "flat" } else { "NOT FLAT" }
    );
    let result = json!({
        "scenario": "soak",
        "build": build,
        "cores": cores,
        "fsync": true,
        "minutes": config.minutes,
        "rate": config.rate,
        "users": config.users,
        "metrics_scrape_secs": config.scrape_secs,
        "metrics_scrapes": scrapes.load(Ordering::Relaxed),
        "load_seconds": load_secs,
        "sent": sent,
        "published": published,
        "publish_errors": publish_errors,
        "schedule_lag_max_us": max_lag.as_micros() as u64,
        "publish_latency_us": publish.json(),
        "delivered": delivered,
        "lost": lost,
        "unknown": extra,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "resets": resets,
        "unexpected": unexpected,
        "users_wrong": users_wrong,
        "drain_seconds": drain_secs,
        "still_behind": still_behind,
        "transports": per_transport,
        "rss_kib": rss,
        "fds": fds,
        "threads": threads,
        "db_connections": db,
        "samples": samples.len(),
        "clean_shutdown": clean_stop,
        "idle": {
            "seconds": idle_secs,
            "live_connections": idle.live.iter().sum::<i64>(),
            "rss_kib": idle.rss_kib,
            "fds": idle.fds,
            "threads": idle.threads,
            "db_connections": idle.db_conns,
        },
        "service_warnings": warnings.len(),
        "csv": csv.display().to_string(),
        "ok": ok,
        "flat": flat,
    });
    println!("RESULT {result}");
    Ok(ok && flat)
}
