//! Herald side by side with nginx + nchan, driven by the same client code.
//! See BENCHMARKS.md for the method and the results.
//!
//! ```text
//! cargo bench --bench versus -- <scenario>... [--target herald|nchan|both] [--runs 3]
//!     scenarios: idle throughput bulk latency fanout replay broadcast scale all
//!     options:   --streams N --users N --publishers N --seconds S --rate R
//!                --hold S --instances N --missed N --out DIR
//! ```
//!
//! Every measurement starts its target afresh (Herald: a new PostgreSQL with
//! fsync on and new `herald` processes; nchan: a new nginx with
//! `benches/nchan/nginx.conf`), prints one `RESULT {json}` line, and the run
//! ends with a table of medians and `<out>/summary.json`; latency-type
//! scenarios also write a CDF picture, `<out>/<scenario>-cdf.svg`.
//!
//! Under `cargo test` (no `--bench`) every scenario runs once against Herald
//! with a tiny load, so the harness keeps working.

#[path = "../common/mod.rs"]
mod common;

mod cdf;
mod client;
mod scale;
mod scenarios;
mod servers;

use std::path::{Path, PathBuf};

use anyhow::bail;
use scenarios::Outcome;
use serde_json::{Value, json};
use servers::{Kind, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Idle,
    Throughput,
    /// Batches of 100 single-recipient notifications (Herald); nchan's
    /// single publishes as the yardstick.
    Bulk,
    Latency,
    Fanout,
    Replay,
    Broadcast,
    Scale,
}

/// Notifications per request in the bulk scenario.
const BULK_BATCH: usize = 100;

impl Scenario {
    const ALL: [Scenario; 7] = [
        Self::Idle,
        Self::Throughput,
        Self::Bulk,
        Self::Latency,
        Self::Fanout,
        Self::Replay,
        Self::Broadcast,
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "idle" => Self::Idle,
            "throughput" => Self::Throughput,
            "bulk" => Self::Bulk,
            "latency" => Self::Latency,
            "fanout" => Self::Fanout,
            "replay" => Self::Replay,
            "broadcast" => Self::Broadcast,
            "scale" => Self::Scale,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Throughput => "throughput",
            Self::Bulk => "bulk",
            Self::Latency => "latency",
            Self::Fanout => "fanout",
            Self::Replay => "replay",
            Self::Broadcast => "broadcast",
            Self::Scale => "scale",
        }
    }

    /// What the latency samples of this scenario measure.
    fn sampled(self) -> &'static str {
        match self {
            Self::Fanout | Self::Scale => "publish sent → each stream has it",
            Self::Replay => "reconnect → stream caught up",
            _ => "publish→deliver latency",
        }
    }

    /// What the table shows for this scenario: a label, the unit the primary
    /// number is shown in (and its divisor), and whether higher is better.
    fn primary(self) -> (&'static str, f64, bool) {
        match self {
            Self::Idle => ("RSS per idle stream, KiB", 1.0, false),
            Self::Throughput => ("publishes/s", 1.0, true),
            Self::Bulk => ("notifications/s", 1.0, true),
            Self::Latency => ("publish→deliver p99, ms", 1e3, false),
            Self::Fanout => ("p99 until delivered, ms", 1e3, false),
            Self::Replay => ("until all caught up, s", 1.0, false),
            Self::Broadcast => ("until every user has it, s", 1.0, false),
            Self::Scale => ("broadcast deliver p99, ms", 1e3, false),
        }
    }
}

/// One measurement to make: a scenario with its load.
#[derive(Debug, Clone)]
struct Case {
    scenario: Scenario,
    streams: usize,
    users: usize,
    publishers: usize,
    seconds: f64,
    rate: f64,
    hold: f64,
    instances: usize,
    missed: usize,
}

impl Case {
    fn label(&self) -> String {
        match self.scenario {
            Scenario::Idle | Scenario::Fanout => {
                format!("{} {}", self.scenario.name(), self.streams)
            }
            Scenario::Replay => format!("replay {}×{}", self.users, self.missed),
            Scenario::Broadcast => format!("broadcast {}", self.users),
            Scenario::Scale => format!("scale {}×{}", self.instances, self.streams),
            Scenario::Throughput => format!("throughput {} pub", self.publishers),
            Scenario::Bulk => format!("bulk {} pub ×{}", self.publishers, BULK_BATCH),
            Scenario::Latency => format!("latency {}/s", self.rate),
        }
    }
}

/// Options as given; `None` means the scenario's own default.
#[derive(Debug, Default)]
struct Overrides {
    streams: Option<usize>,
    users: Option<usize>,
    publishers: Option<usize>,
    seconds: Option<f64>,
    rate: Option<f64>,
    hold: Option<f64>,
    instances: Option<usize>,
    missed: Option<usize>,
}

fn cases(scenario: Scenario, o: &Overrides, smoke: bool) -> Vec<Case> {
    let base = Case {
        scenario,
        streams: o.streams.unwrap_or(if smoke { 40 } else { 10_000 }),
        users: o.users.unwrap_or(if smoke { 40 } else { 1000 }),
        publishers: o.publishers.unwrap_or(if smoke { 4 } else { 64 }),
        seconds: o.seconds.unwrap_or(if smoke { 1.0 } else { 20.0 }),
        rate: o.rate.unwrap_or(if smoke { 100.0 } else { 5000.0 }),
        hold: o.hold.unwrap_or(if smoke { 0.5 } else { 30.0 }),
        instances: o.instances.unwrap_or(if smoke { 2 } else { 6 }),
        missed: o.missed.unwrap_or(if smoke { 3 } else { 10 }),
    };
    match scenario {
        Scenario::Replay if o.users.is_none() && !smoke => [1000, 10_000]
            .into_iter()
            .map(|users| Case {
                users,
                ..base.clone()
            })
            .collect(),
        Scenario::Broadcast => vec![Case {
            users: o.users.unwrap_or(if smoke { 300 } else { 100_000 }),
            rate: o.rate.unwrap_or(if smoke { 50.0 } else { 500.0 }),
            ..base
        }],
        Scenario::Scale => vec![Case {
            streams: o.streams.unwrap_or(if smoke { 60 } else { 100_000 }),
            hold: o.hold.unwrap_or(if smoke { 0.5 } else { 60.0 }),
            ..base
        }],
        _ => vec![base],
    }
}

struct Plan {
    cases: Vec<Case>,
    targets: Vec<Kind>,
    runs: usize,
    out: PathBuf,
}

/// `cargo bench` passes `--bench` after the user's arguments; `cargo test`
/// does not, and may pass test filters and libtest flags instead.
fn parse_args(args: &[String]) -> anyhow::Result<Option<Plan>> {
    let bench = args.iter().any(|a| a == "--bench");
    let mut scenarios = Vec::new();
    let mut o = Overrides::default();
    let mut target = None;
    let mut runs = None;
    let mut out = None;
    let mut filtered = false;
    let mut words = common::args::Words::new(args);
    while let Some(flag) = words.next_word() {
        let mut value = || words.value(&flag);
        match flag.as_str() {
            "--bench" => {}
            "all" => scenarios.extend(Scenario::ALL),
            "--target" => target = Some(value()?),
            "--runs" => runs = Some(value()?.parse()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--streams" => o.streams = Some(value()?.parse()?),
            "--users" => o.users = Some(value()?.parse()?),
            "--publishers" => o.publishers = Some(value()?.parse()?),
            "--seconds" => o.seconds = Some(value()?.parse()?),
            "--rate" => o.rate = Some(value()?.parse()?),
            "--hold" => o.hold = Some(value()?.parse()?),
            "--instances" => o.instances = Some(value()?.parse()?),
            "--missed" => o.missed = Some(value()?.parse()?),
            name => match Scenario::parse(name) {
                Some(s) => scenarios.push(s),
                None if bench => bail!("unknown argument {name:?}"),
                // libtest flags and filters under `cargo test`.
                None => filtered |= !name.starts_with("--") || name == "--list",
            },
        }
    }
    if !bench && filtered {
        return Ok(None);
    }
    let smoke = !bench;
    if scenarios.is_empty() {
        if bench {
            bail!(
                "name a scenario: idle throughput bulk latency fanout replay broadcast scale all"
            );
        }
        scenarios.extend(Scenario::ALL);
        scenarios.push(Scenario::Scale);
    }
    let targets = match target.as_deref() {
        Some("herald") => vec![Kind::Herald],
        Some("nchan") => vec![Kind::Nchan],
        Some("both") => vec![Kind::Herald, Kind::Nchan],
        None if smoke => vec![Kind::Herald],
        None => vec![Kind::Herald, Kind::Nchan],
        Some(other) => bail!("--target is herald, nchan or both, not {other:?}"),
    };
    for kind in &targets {
        if !kind.available() {
            bail!(
                "{} is not installed (Debian: apt-get install nginx libnginx-mod-nchan); or use --target herald",
                kind.name()
            );
        }
    }
    Ok(Some(Plan {
        cases: scenarios
            .iter()
            .flat_map(|s| cases(*s, &o, smoke))
            .collect(),
        targets,
        runs: runs.unwrap_or(if smoke { 1 } else { 3 }),
        // Smoke runs keep away from the results of real ones.
        out: out.unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(if smoke {
                "target/tmp/versus-smoke"
            } else {
                "target/versus"
            })
        }),
    }))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__worker") {
        return scale::worker_main(&args[1..]);
    }
    let Some(plan) = parse_args(&args)? else {
        return Ok(());
    };
    let most = plan
        .cases
        .iter()
        .map(|c| c.streams.max(c.users))
        .max()
        .unwrap_or(0);
    common::server::ensure_open_files(most.min(17_000) + 2048)?;
    std::fs::create_dir_all(&plan.out)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&plan))
}

/// A measurement's result, with its raw samples for the picture.
struct Measured {
    case: Case,
    kind: Kind,
    outcome: Outcome,
}

async fn run(plan: &Plan) -> anyhow::Result<()> {
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let scratch = std::env::temp_dir().join(format!("herald-versus-{}", std::process::id()));
    let mut measured = Vec::new();
    for case in &plan.cases {
        // Scale is about Herald's instances; nchan has no counterpart here.
        let targets: Vec<Kind> = if case.scenario == Scenario::Scale {
            vec![Kind::Herald]
        } else {
            plan.targets.clone()
        };
        for run in 1..=plan.runs {
            for &kind in &targets {
                println!(
                    "{} — {} — run {run}/{}",
                    case.label(),
                    kind.name(),
                    plan.runs
                );
                let outcome = measure(case, kind, &scratch.join(kind.name())).await?;
                let mut line = outcome.result.clone();
                line["scenario"] = json!(case.scenario.name());
                line["case"] = json!(case.label());
                line["target"] = json!(kind.name());
                line["run"] = json!(run);
                line["build"] = json!(build);
                line["cores"] = json!(cores);
                println!("RESULT {line}");
                measured.push(Measured {
                    case: case.clone(),
                    kind,
                    outcome: Outcome {
                        result: line,
                        deliver_samples: outcome.deliver_samples,
                    },
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    summarize(plan, &measured)
}

async fn measure(case: &Case, kind: Kind, dir: &Path) -> anyhow::Result<Outcome> {
    if case.scenario == Scenario::Scale {
        return scale::scale(dir, case.instances, case.streams, case.hold).await;
    }
    let mut target = Target::start(kind, 1, dir).await?;
    let outcome = match case.scenario {
        Scenario::Idle => scenarios::idle(&target, case.streams, case.hold).await,
        Scenario::Bulk => {
            let (users, publishers, seconds) = (case.users, case.publishers, case.seconds);
            scenarios::bulk(&target, users, publishers, BULK_BATCH, seconds).await
        }
        Scenario::Throughput => {
            scenarios::throughput(&target, case.users, case.publishers, case.seconds).await
        }
        Scenario::Latency => scenarios::latency(&target, case.users, case.rate, case.seconds).await,
        Scenario::Fanout => scenarios::fanout(&target, case.streams).await,
        Scenario::Replay => scenarios::replay(&target, case.users, case.missed).await,
        Scenario::Broadcast => scenarios::broadcast(&target, case.users, case.rate).await,
        Scenario::Scale => unreachable!("handled above"),
    };
    let alive = target.check_alive();
    target.stop();
    alive?;
    outcome
}

/// The run with the median primary number (the lower middle one for an even
/// count).
fn median<'a>(runs: &[&'a Measured]) -> Option<&'a Measured> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| primary(a).total_cmp(&primary(b)));
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

fn primary(m: &Measured) -> f64 {
    m.outcome.result["primary"].as_f64().unwrap_or(f64::NAN)
}

fn summarize(plan: &Plan, measured: &[Measured]) -> anyhow::Result<()> {
    println!("\n| Scenario | Measure | Herald | nchan | Herald ÷ nchan |");
    println!("| --- | --- | --- | --- | --- |");
    let mut summary = Vec::new();
    for case in &plan.cases {
        let (label, divisor, higher_better) = case.scenario.primary();
        let of = |kind: Kind| {
            let runs: Vec<&Measured> = measured
                .iter()
                .filter(|m| m.kind == kind && m.case.label() == case.label())
                .collect();
            median(&runs)
        };
        let (herald, nchan) = (of(Kind::Herald), of(Kind::Nchan));
        let shown = |m: Option<&Measured>| {
            m.map_or("—".to_owned(), |m| format!("{:.2}", primary(m) / divisor))
        };
        let ratio = match (herald, nchan) {
            (Some(h), Some(n)) if primary(n) > 0.0 => Some(primary(h) / primary(n)),
            _ => None,
        };
        println!(
            "| {} | {label} | {} | {} | {} |",
            case.label(),
            shown(herald),
            shown(nchan),
            ratio.map_or("—".to_owned(), |r| format!("{r:.2}")),
        );
        let all_runs = |kind: Kind| {
            measured
                .iter()
                .filter(|m| m.kind == kind && m.case.label() == case.label())
                .map(|m| primary(m) / divisor)
                .collect::<Vec<_>>()
        };
        summary.push(json!({
            "case": case.label(),
            "measure": label,
            "higher_is_better": higher_better,
            "herald": herald.map(|m| &m.outcome.result),
            "nchan": nchan.map(|m| &m.outcome.result),
            "herald_runs": all_runs(Kind::Herald),
            "nchan_runs": all_runs(Kind::Nchan),
            "ratio": ratio,
        }));
        let series: Vec<(&str, &[u64])> = [herald, nchan]
            .into_iter()
            .flatten()
            .filter(|m| !m.outcome.deliver_samples.is_empty())
            .map(|m| (m.kind.name(), m.outcome.deliver_samples.as_slice()))
            .collect();
        if !series.is_empty() {
            let name = case.label().replace(['/', ' ', '×'], "-");
            let path = plan.out.join(format!("{name}-cdf.svg"));
            std::fs::write(
                &path,
                cdf::svg(&case.label(), case.scenario.sampled(), &series),
            )?;
            println!("  (picture: {})", path.display());
        }
    }
    let path = plan.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&Value::from(summary))?)?;
    println!("\nsummary: {}", path.display());
    Ok(())
}
