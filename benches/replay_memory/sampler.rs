//! Samples the service's memory every 200 ms while the readers run, prints
//! progress every 5 s, and kills the service if it grows past a limit (the
//! machine is shared: a runaway replay must not take it down).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::reader::Readers;
use crate::common::server::{Memory, memory};

pub const EVERY: Duration = Duration::from_millis(200);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Samples {
    pub count: u64,
    /// The largest VmRSS seen in a sample.
    pub max_rss_kib: u64,
    /// Seconds from the readers' start to that sample.
    pub max_rss_at_s: f64,
    /// The last sample.
    pub last: Memory,
    /// The service passed `limit_kib` and was killed.
    pub over_limit: bool,
}

/// Samples `pid` until `readers.stop` is cancelled.
pub async fn sample(pid: u32, readers: Arc<Readers>, limit_kib: u64, users: usize) -> Samples {
    let started = Instant::now();
    let mut samples = Samples::default();
    let mut ticks = tokio::time::interval(EVERY);
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        tokio::select! {
            _ = readers.stop.cancelled() => return samples,
            _ = ticks.tick() => {}
        }
        let now = memory(pid);
        if now.rss_kib == 0 {
            // The process is gone.
            return samples;
        }
        samples.count += 1;
        samples.last = now;
        if now.rss_kib > samples.max_rss_kib {
            samples.max_rss_kib = now.rss_kib;
            samples.max_rss_at_s = started.elapsed().as_secs_f64();
        }
        if now.rss_kib > limit_kib {
            use nix::sys::signal::{Signal, kill};
            use nix::unistd::Pid;
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            samples.over_limit = true;
            eprintln!(
                "  the service passed {} MiB and was killed",
                limit_kib / 1024
            );
            readers.stop.cancel();
            return samples;
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            let tally = &readers.tally;
            println!(
                "  {:>6.1} s  RSS {:>8.1} MiB  peak {:>8.1} MiB  delivered {:>7}/{}  complete {}/{users}  reconnects {}",
                started.elapsed().as_secs_f64(),
                now.rss_kib as f64 / 1024.0,
                now.hwm_kib as f64 / 1024.0,
                tally.delivered.load(Ordering::Relaxed),
                readers.per_user * users,
                tally.complete.load(Ordering::Relaxed),
                tally.reconnects.load(Ordering::Relaxed),
            );
        }
    }
}
