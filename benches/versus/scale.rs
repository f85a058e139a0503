//! 100,000 streams across several Herald instances on one database. A
//! process may hold at most 20,000 descriptors here, so the streams are held
//! by worker processes (this same binary, started with `__worker`), one per
//! instance, and the servers are several `herald` processes.
//!
//! The coordinator talks to each worker over its stdin and stdout, one line
//! at a time: the worker prints `OPENED <ok> <failed>` once its streams are
//! open; on `REPORT <seconds>` it waits up to that long for every stream to
//! have one message and prints a JSON report; at end of input it exits.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use herald::http::auth::Signer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use crate::client::{Tally, open_streams, unix_micros, wait_until};
use crate::common::Percentiles;
use crate::common::server::ensure_open_files;
use crate::scenarios::Outcome;
use crate::servers::{Kind, Target};

/// Connections a worker sets up at once.
const OPENING: usize = 256;

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(base: &str, first: usize, count: usize) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["__worker", base, &first.to_string(), &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        self.lines
            .next_line()
            .await?
            .context("a worker exited early")
    }
}

/// The coordinator: `instances` Herald processes, `streams` streams spread
/// evenly over them, `hold` seconds of idle heartbeats, then one broadcast
/// that must reach every stream.
pub async fn scale(
    dir: &std::path::Path,
    instances: usize,
    streams: usize,
    hold: f64,
) -> anyhow::Result<Outcome> {
    let mut target = Target::start(Kind::Herald, instances, dir).await?;
    let outcome = measure(&target, instances, streams, hold).await;
    target.check_alive()?;
    target.stop();
    outcome
}

async fn measure(
    target: &Target,
    instances: usize,
    streams: usize,
    hold: f64,
) -> anyhow::Result<Outcome> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = target.rss_kib();
    let mut workers = Vec::with_capacity(instances);
    for i in 0..instances {
        let first = i * streams / instances;
        let count = (i + 1) * streams / instances - first;
        workers.push(Worker::spawn(&target.bases[i], first, count)?);
    }
    let mut opened = 0;
    for worker in &mut workers {
        let line = worker.line().await?;
        let mut words = line.split_whitespace();
        let (Some("OPENED"), Some(ok), Some(failed)) = (words.next(), words.next(), words.next())
        else {
            bail!("a worker said {line:?}");
        };
        if failed != "0" {
            bail!("a worker could not open {failed} streams");
        }
        opened += ok.parse::<usize>()?;
    }
    target
        .wait_open_streams(streams as u64, Duration::from_secs(120))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = target.rss_kib();
    let per_stream_kib = after.saturating_sub(before) as f64 / streams as f64;
    println!(
        "  {opened} streams on {instances} instances: RSS {before} → {after} KiB, {per_stream_kib:.2} KiB per stream"
    );
    let ticks = target.cpu_ticks();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let idle_cpu_s = (target.cpu_ticks() - ticks) as f64 / 100.0;
    let still_open = target.open_streams().await?;
    println!(
        "  idle for {hold} s: {idle_cpu_s:.2} CPU-seconds over all instances; {still_open} streams open"
    );
    let sent = unix_micros();
    target
        .broadcast(&[], &json!({"t": sent}))
        .await
        .context("the broadcast")?;
    let committed_us = unix_micros() - sent;
    let mut reports = Vec::with_capacity(instances);
    for worker in &mut workers {
        worker.stdin.write_all(b"REPORT 60\n").await?;
    }
    for worker in &mut workers {
        let report: Value = serde_json::from_str(&worker.line().await?)?;
        reports.push(report);
    }
    let open_after = target.open_streams().await?;
    for mut worker in workers {
        drop(worker.stdin);
        let _ = worker.child.wait().await;
    }
    let sum = |field: &str| {
        reports
            .iter()
            .map(|r| r[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let (received, ended) = (sum("received"), sum("ended"));
    let mut samples: Vec<u64> = reports
        .iter()
        .flat_map(|r| r["completions"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_i64())
        .map(|at| (at - sent).max(0) as u64)
        .collect();
    let deliver = Percentiles::of(&mut samples);
    println!(
        "  broadcast: committed for every user after {:.2} s; delivered {}; {received}/{streams} received, {ended} streams ended, {open_after} open afterwards",
        committed_us as f64 / 1e6,
        deliver.human(),
    );
    if received != streams as u64 || ended > 0 || open_after != streams as u64 {
        bail!("streams were lost or events missed");
    }
    Ok(Outcome {
        result: json!({
            "instances": instances,
            "streams": streams,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_per_stream_kib": per_stream_kib,
            "hold_s": hold,
            "idle_cpu_s": idle_cpu_s,
            "broadcast_committed_us": committed_us,
            "deliver": deliver.json(),
            "received": received,
            "streams_ended": ended,
            "primary": deliver.p99,
        }),
        deliver_samples: samples,
    })
}

/// The worker process: `__worker <base> <first user> <count>`.
pub fn worker_main(args: &[String]) -> anyhow::Result<()> {
    let [base, first, count, ..] = args else {
        bail!("usage: __worker <base> <first> <count>");
    };
    let (first, count): (usize, usize) = (first.parse()?, count.parse()?);
    ensure_open_files(count + 256)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(worker(base, first, count))
}

async fn worker(base: &str, first: usize, count: usize) -> anyhow::Result<()> {
    let settings = crate::common::server::settings()?;
    let signer = Signer::from_settings(&settings.auth)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut requests = Vec::with_capacity(count);
    for user in &Target::users(first + count)[first..] {
        requests.push(
            client
                .get(format!("{base}/v1/me/stream"))
                .bearer_auth(signer.token_for(user, &[], 86_400)?)
                .header("Accept", "text/event-stream"),
        );
    }
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let _tasks = open_streams(requests, &tally, 1, &stop, OPENING).await;
    let mut out = tokio::io::stdout();
    out.write_all(format!("OPENED {} {}\n", tally.opened(), tally.failed()).as_bytes())
        .await?;
    out.flush().await?;
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        let Some(seconds) = command.strip_prefix("REPORT ") else {
            continue;
        };
        let opened = tally.opened() as usize;
        wait_until(Duration::from_secs_f64(seconds.trim().parse()?), || {
            tally.completed() >= opened
        })
        .await;
        let report = json!({
            "opened": tally.opened(),
            "failed": tally.failed(),
            "ended": tally.ended(),
            "received": tally.received(),
            "completions": *tally.completions.lock().unwrap(),
        });
        out.write_all(format!("{report}\n").as_bytes()).await?;
        out.flush().await?;
    }
    stop.cancel();
    Ok(())
}
