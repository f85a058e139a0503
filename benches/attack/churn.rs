//! Connection churn: `--churn` connections (20,000 by default) opened and
//! closed as fast as `--procs` client processes can (one process may hold
//! at most 20,000 descriptors here). Half send a request and close after
//! the answer, a quarter connect and close at once, a quarter close in the
//! middle of a request head. Every request must be answered.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::Config;
use crate::common::args::Words;
use crate::raw::first_status;
use crate::report::{Outcome, Tally};
use crate::target::Target;

/// The first argument that makes this executable a churn client process.
pub const WORKER: &str = "churn-worker";
/// Connections in flight per client process.
const IN_FLIGHT: usize = 500;

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe()?;
    let per_process = config.churn.div_ceil(config.procs);
    let in_flight = if config.smoke { 20 } else { IN_FLIGHT };
    println!(
        "{} client processes × {per_process} connections, {in_flight} in flight each",
        config.procs
    );
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..config.procs {
        let child = tokio::process::Command::new(&exe)
            .arg(WORKER)
            .args(["--addr", &target.addr])
            .args(["--connections", &per_process.to_string()])
            .args(["--in-flight", &in_flight.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a churn client process")?;
        children.push(child);
    }
    let mut tally = Tally::default();
    let mut slowest = Duration::ZERO;
    for child in children {
        let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
            .await
            .context("a churn client process ran over 300 s")??;
        if !output.status.success() {
            bail!("a churn client process failed: {}", output.status);
        }
        let report: Value = serde_json::from_slice(&output.stdout)?;
        for (label, count) in report["tally"].as_object().into_iter().flatten() {
            *tally.0.entry(label.clone()).or_default() += count.as_u64().unwrap_or(0);
        }
        slowest = slowest.max(Duration::from_millis(
            report["took_ms"].as_u64().unwrap_or(0),
        ));
    }
    let took = started.elapsed();
    let total = per_process * config.procs;
    let mut outcome = Outcome::default();
    outcome.row(
        format!("{total} connections over {} processes", config.procs),
        format!(
            "{tally}; {:.1} s, {:.0} connections/s",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64()
        ),
    );
    let bad = tally.outside(&["200", "dropped by client"]);
    if !bad.is_empty() {
        outcome.finding(format!("requests not answered 200: {}", bad.join(" ")));
    }
    Ok(outcome)
}

/// The client process: prints `{"tally": {...}, "took_ms": N}`.
pub fn worker(args: &[String]) -> anyhow::Result<()> {
    let mut addr = String::new();
    let mut connections = 0usize;
    let mut in_flight = IN_FLIGHT;
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        match word.as_str() {
            "--addr" => addr = words.value(&word)?,
            "--connections" => connections = words.value(&word)?.parse()?,
            "--in-flight" => in_flight = words.value(&word)?.parse()?,
            other => bail!("churn worker: unknown argument {other:?}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let labels: Vec<String> = runtime.block_on(
        stream::iter(0..connections)
            .map(|i| {
                let addr = addr.clone();
                async move { one(&addr, i % 4).await }
            })
            .buffer_unordered(in_flight)
            .collect(),
    );
    let mut tally = Tally::default();
    for label in labels {
        tally.add(label);
    }
    println!(
        "{}",
        json!({"tally": tally.0, "took_ms": started.elapsed().as_millis() as u64})
    );
    Ok(())
}

async fn one(addr: &str, mode: usize) -> String {
    const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    match mode {
        0 | 1 => first_status(addr, REQUEST, Duration::from_secs(30))
            .await
            .label(),
        2 => match TcpStream::connect(addr).await {
            Ok(_) => "dropped by client".into(),
            Err(_) => "connect failed".into(),
        },
        _ => match TcpStream::connect(addr).await {
            Ok(mut stream) => {
                let _ = stream.write_all(&REQUEST[..20]).await;
                "dropped by client".into()
            }
            Err(_) => "connect failed".into(),
        },
    }
}
