//! The standing adversarial suite: attacks on a release build of Herald over
//! loopback, while a well-behaved client publishes and receives over SSE.
//! See SECURITY.md ("Adversarial run") for the method and the last results.
//!
//! ```text
//! scripts/attack.sh [attack...] [--scale F] [--churn N] [--procs N]
//!                   [--settle S] [--rounds N] [--request-timeout-ms MS]
//!     attacks: slowloris floods churn ws json tokens longpoll (default: all)
//! ```
//!
//! Each attack runs twice in a row (`--rounds`). The allocator keeps memory
//! a burst made it take, for reuse, without giving it back to the system:
//! after the first round resident memory may stay up without a leak. So the
//! first round is judged on the good client and the findings only, and the
//! second must return to the level the first left (no growth from repeating
//! an attack).
//!
//! Each attack prints a table: what the attack got (status codes, connections
//! the server closed and when), peak and final RSS, descriptors and pool use
//! of the `herald` process, and the well-behaved client's p99. The run fails
//! (exit 1) when, for any attack, that p99 reaches 100 ms, the resources do
//! not return to baseline (see `Tolerance`), or the attack got something it
//! must not (listed under "findings").
//!
//! Under `cargo test` (no `--bench`) every attack runs once with a tiny load
//! against the debug build: the harness must work and the server must stay
//! up and deliver every probe, but latency, resource and finding verdicts
//! are only printed (they are measurements, not test assertions).

#[path = "../common/mod.rs"]
mod common;

mod churn;
mod floods;
mod good;
mod json;
mod longpoll;
mod raw;
mod report;
mod slowloris;
mod target;
mod tokens;
mod ws_flood;

use std::time::Duration;

use anyhow::bail;
use common::args::Words;
use report::{Outcome, Phase};
use target::{Target, Tolerance};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    Slowloris,
    Floods,
    Churn,
    Ws,
    Json,
    Tokens,
    Longpoll,
}

impl Attack {
    const ALL: [Attack; 7] = [
        Self::Slowloris,
        Self::Floods,
        Self::Churn,
        Self::Ws,
        Self::Json,
        Self::Tokens,
        Self::Longpoll,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Slowloris => "slowloris",
            Self::Floods => "floods",
            Self::Churn => "churn",
            Self::Ws => "ws",
            Self::Json => "json",
            Self::Tokens => "tokens",
            Self::Longpoll => "longpoll",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == word)
    }
}

/// The load of a run. `scale` multiplies every count except `churn`.
#[derive(Debug, Clone)]
pub struct Config {
    pub smoke: bool,
    pub scale: f64,
    /// Connections opened and closed by the churn, over `procs` processes.
    pub churn: usize,
    pub procs: usize,
    /// How long resources may take to return to baseline after an attack.
    pub settle: Duration,
    /// The server's `client_request_timeout_ms`.
    pub request_timeout: Duration,
    /// Rounds of each attack, one after the other; all but the last are
    /// judged on the good client only (see `Phase::warmup`).
    pub rounds: usize,
}

impl Config {
    fn full() -> Self {
        Self {
            smoke: false,
            scale: 1.0,
            churn: 20_000,
            procs: 4,
            settle: Duration::from_secs(30),
            request_timeout: Duration::from_millis(10_000),
            rounds: 2,
        }
    }

    /// The `cargo test` run: every attack once, a handful of requests each.
    fn smoke() -> Self {
        Self {
            smoke: true,
            scale: 0.02,
            churn: 200,
            procs: 2,
            settle: Duration::from_secs(5),
            request_timeout: Duration::from_millis(1_000),
            rounds: 1,
        }
    }

    /// `n` scaled, at least 1.
    pub fn n(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }
}

enum Plan {
    Run(Vec<Attack>, Config),
    Skip,
}

const USAGE: &str = "usage: [slowloris|floods|churn|ws|json|tokens|longpoll]... [--scale F] [--churn N] [--procs N] [--settle S] [--rounds N] [--request-timeout-ms MS]";

/// `cargo bench` passes `--bench`; `cargo test` does not, and may pass test
/// filters and libtest flags instead.
fn parse_args(args: &[String]) -> anyhow::Result<Plan> {
    let bench = args.iter().any(|a| a == "--bench");
    let mut config = if bench {
        Config::full()
    } else {
        Config::smoke()
    };
    let mut attacks = Vec::new();
    let mut filtered = false;
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        let flag = word.as_str();
        let mut value = || words.value(flag);
        match flag {
            "--bench" => {}
            "--scale" => config.scale = value()?.parse()?,
            "--churn" => config.churn = value()?.parse()?,
            "--procs" => config.procs = value()?.parse()?,
            "--settle" => config.settle = Duration::from_secs_f64(value()?.parse()?),
            "--rounds" => config.rounds = value()?.parse::<usize>()?.max(1),
            "--request-timeout-ms" => {
                config.request_timeout = Duration::from_millis(value()?.parse()?)
            }
            "--list" if !bench => return Ok(Plan::Skip),
            _ if Attack::parse(flag).is_some() => attacks.push(Attack::parse(flag).unwrap()),
            _ if bench => bail!("unknown argument {word:?}; {USAGE}"),
            _ if flag.starts_with("--") => {}
            // A test-name filter: `cargo test sse::` must not run the attacks.
            _ => filtered = true,
        }
    }
    if filtered && attacks.is_empty() {
        return Ok(Plan::Skip);
    }
    if attacks.is_empty() {
        attacks = Attack::ALL.to_vec();
    }
    if config.scale <= 0.0 || config.procs == 0 || config.churn == 0 {
        bail!("--scale, --procs and --churn must be positive");
    }
    Ok(Plan::Run(attacks, config))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A churn client process started by the run below.
    if args.first().map(String::as_str) == Some(churn::WORKER) {
        return churn::worker(&args[1..]);
    }
    let (attacks, config) = match parse_args(&args)? {
        Plan::Run(attacks, config) => (attacks, config),
        Plan::Skip => return Ok(()),
    };
    common::server::ensure_open_files(if config.smoke { 4_096 } else { 19_000 })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let failed = runtime.block_on(run(attacks, config))?;
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the attacks one after the other; true when any verdict failed.
async fn run(attacks: Vec<Attack>, config: Config) -> anyhow::Result<bool> {
    let dir = std::env::temp_dir().join(format!("herald-attack-{}", std::process::id()));
    let mut target = Target::start(&dir, &config).await?;
    let good = good::GoodClient::start(&target).await?;
    let tolerance = Tolerance::default();
    let start = target.baseline(&good).await?;
    println!(
        "herald pid {} on {}; at start RSS {} MiB, {} fds, pool {} open / {} in use, {} metric series",
        target.pid(),
        target.base,
        start.rss_kib / 1024,
        start.fds,
        start.pool_size,
        start.pool_in_use(),
        start.series
    );
    println!(
        "pass: good client p99 < {} ms; within {} s after each attack: RSS <= baseline + {} MiB, fds <= baseline + {}, pool in use <= baseline + {} (baseline: just before that attack)",
        tolerance.p99.as_millis(),
        config.settle.as_secs(),
        tolerance.rss_kib / 1024,
        tolerance.fds,
        tolerance.pool_in_use
    );
    let mut phases = Vec::new();
    let rounds = config.rounds;
    for attack in attacks
        .into_iter()
        .flat_map(|a| (1..=rounds).map(move |r| (a, r)))
    {
        let (attack, round) = attack;
        if rounds > 1 {
            println!("\n== {} (round {round} of {rounds}) ...", attack.name());
        } else {
            println!("\n== {} ...", attack.name());
        }
        // Each attack is judged against the resources just before it, so one
        // attack's leftovers are not charged to the next.
        let baseline = target.sample().await;
        target.monitor.reset_peak();
        good.take();
        let started = std::time::Instant::now();
        let outcome: Outcome = match attack {
            Attack::Slowloris => slowloris::run(&target, &config).await?,
            Attack::Floods => floods::run(&target, &config).await?,
            Attack::Churn => churn::run(&target, &config).await?,
            Attack::Ws => ws_flood::run(&target, &config).await?,
            Attack::Json => json::run(&target, &config).await?,
            Attack::Tokens => tokens::run(&target, &config).await?,
            Attack::Longpoll => longpoll::run(&target, &config).await?,
        };
        let took = started.elapsed();
        // Every window holds probes, also after a short attack, and the
        // server must get probes through again once the attack is over.
        let recovered = good
            .wait_for_probes(good.delivered() + 2, Duration::from_secs(10))
            .await
            .is_ok();
        let probes = good.take();
        // An attack shorter than the sampling interval still has a peak.
        let peak = target.monitor.peak().max(&target.sample().await);
        let (settled, final_sample, settle_took) =
            target.settle(&baseline, &tolerance, config.settle).await;
        let alive = target.alive();
        let phase = Phase {
            name: attack.name(),
            took,
            outcome,
            probes,
            baseline,
            peak,
            final_sample,
            settled,
            settle_took,
            alive,
            recovered,
            warmup: round < rounds,
        };
        phase.print(&tolerance);
        phases.push(phase);
        if !alive {
            println!(
                "herald is no longer running; see {}",
                target.log().display()
            );
            break;
        }
    }
    let failed = report::summary(&phases, &tolerance, config.smoke);
    target.stop();
    if !failed {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(failed)
}
