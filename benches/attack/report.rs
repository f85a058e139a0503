//! What each attack got, its verdicts, and the tables printed for them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::good::Probes;
use crate::target::{Sample, Tolerance};

/// What one attack reports: lines of "what it did → what it got", and
/// findings (things the server must never let it get).
#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<(String, String)>,
    pub findings: Vec<String>,
}

impl Outcome {
    pub fn row(&mut self, what: impl Into<String>, got: impl Into<String>) {
        self.rows.push((what.into(), got.into()));
    }

    pub fn finding(&mut self, text: impl Into<String>) {
        self.findings.push(text.into());
    }
}

/// Counts of what came back, by label (a status code, "closed", ...).
#[derive(Debug, Default, Clone)]
pub struct Tally(pub BTreeMap<String, u64>);

impl Tally {
    pub fn add(&mut self, label: impl Into<String>) {
        *self.0.entry(label.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Tally) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        self.0.get(label).copied().unwrap_or(0)
    }

    /// Labels that are not in `allowed` (status codes, or other outcomes).
    pub fn outside(&self, allowed: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}×{v}"))
            .collect()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}×{v}")).collect();
        write!(f, "{}", parts.join(" "))
    }
}

pub struct Phase {
    pub name: &'static str,
    pub took: Duration,
    pub outcome: Outcome,
    pub probes: Probes,
    pub baseline: Sample,
    pub peak: Sample,
    pub final_sample: Sample,
    pub settled: bool,
    pub settle_took: Duration,
    pub alive: bool,
    /// The good client got probes through again after the attack.
    pub recovered: bool,
    /// The first of two rounds of the attack: what the allocator keeps for
    /// reuse after it (not given back to the system, not leaked) is not
    /// judged; the second round must return to the level the first left.
    pub warmup: bool,
}

impl Phase {
    pub fn p99_ok(&self, tolerance: &Tolerance) -> bool {
        self.probes.sent > 0
            && self.probes.lost == 0
            && Duration::from_micros(self.probes.latency.p99) < tolerance.p99
    }

    pub fn passed(&self, tolerance: &Tolerance) -> bool {
        self.alive
            && self.recovered
            && (self.settled || self.warmup)
            && self.p99_ok(tolerance)
            && self.outcome.findings.is_empty()
    }

    pub fn print(&self, tolerance: &Tolerance) {
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        println!(
            "-- {} ({:.1} s): {}",
            self.name,
            self.took.as_secs_f64(),
            if self.passed(tolerance) {
                "PASS"
            } else {
                "FAIL"
            }
        );
        let width = self
            .outcome
            .rows
            .iter()
            .map(|(w, _)| w.chars().count())
            .max()
            .unwrap_or(0);
        for (what, got) in &self.outcome.rows {
            println!("  {what:<width$} | {got}");
        }
        println!(
            "  {:<14} | {:>10} | {:>10} | {:>10}",
            "", "baseline", "peak", "final"
        );
        let b = &self.baseline;
        let p = &self.peak;
        let f = &self.final_sample;
        println!(
            "  {:<14} | {:>10} | {:>10} | {:>10}",
            "RSS",
            mib(b.rss_kib),
            mib(p.rss_kib),
            mib(f.rss_kib)
        );
        println!(
            "  {:<14} | {:>10} | {:>10} | {:>10}",
            "fds", b.fds, p.fds, f.fds
        );
        println!(
            "  {:<14} | {:>10} | {:>10} | {:>10}",
            "pool in use",
            format!("{}/{}", b.pool_in_use(), b.pool_size),
            format!("{}/{}", p.pool_in_use(), p.pool_size),
            format!("{}/{}", f.pool_in_use(), f.pool_size)
        );
        println!(
            "  {:<14} | {:>10} | {:>10} | {:>10}",
            "metric series", b.series, p.series, f.series
        );
        println!(
            "  {:<14} | {:>10} | {:>10} | {:>10}",
            "/metrics size",
            format!("{} KiB", b.metrics_bytes / 1024),
            format!("{} KiB", p.metrics_bytes / 1024),
            format!("{} KiB", f.metrics_bytes / 1024)
        );
        println!(
            "  back to baseline: {} (after {:.1} s){}",
            if self.settled { "yes" } else { "NO" },
            self.settle_took.as_secs_f64(),
            if self.warmup {
                "; first round, not judged"
            } else {
                ""
            }
        );
        println!(
            "  good client: {} probes, {}, lost {}, publish errors {}, stream reconnects {}",
            self.probes.sent,
            self.probes.latency.human(),
            self.probes.lost,
            self.probes.publish_errors,
            self.probes.reconnects
        );
        if !self.alive {
            println!("  FINDING: herald exited");
        } else if !self.recovered {
            println!("  FINDING: no probe got through within 10 s after the attack");
        }
        for finding in &self.outcome.findings {
            println!("  FINDING: {finding}");
        }
    }
}

/// Prints one line per attack and returns true when the run failed. In the
/// smoke run only a broken harness or server fails it.
pub fn summary(phases: &[Phase], tolerance: &Tolerance, smoke: bool) -> bool {
    println!("\n== summary");
    println!(
        "  {:<10} | {:>9} | {:>8} | {:>9} | {:>5} | verdict",
        "attack", "p99", "peak RSS", "peak fds", "back"
    );
    let mut failed = false;
    for phase in phases {
        let passed = phase.passed(tolerance);
        println!(
            "  {:<10} | {:>9} | {:>4} MiB | {:>9} | {:>5} | {}{}",
            phase.name,
            crate::common::ms(phase.probes.latency.p99),
            phase.peak.rss_kib / 1024,
            phase.peak.fds,
            if phase.settled { "yes" } else { "no" },
            if passed { "PASS" } else { "FAIL" },
            if phase.outcome.findings.is_empty() {
                String::new()
            } else {
                format!(" ({} findings)", phase.outcome.findings.len())
            }
        );
        let broken = !phase.alive || !phase.recovered;
        failed |= if smoke { broken } else { !passed };
    }
    if smoke {
        println!(
            "smoke run: verdicts above are informative; it fails only if herald exits or stops delivering"
        );
    }
    println!("attack run: {}", if failed { "FAILED" } else { "passed" });
    failed
}
