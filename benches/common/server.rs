//! The service as a separate process, and what the benchmarks read about
//! processes from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

/// The `herald` binary, run as a separate process on a free port.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `herald serve` on a free loopback port, logging JSON at `warn`
    /// to `log`; `env` adds or overrides settings (`HERALD__SECTION__KEY`).
    pub fn start(db_url: &str, log: PathBuf, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .arg("serve")
            .env("DATABASE_URL", db_url)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD__LOG__LEVEL", "warn")
            .env("HERALD__LOG__FORMAT", "json")
            .env("HERALD_CONFIG_DIR", config_dir())
            // An external database: the development secret is refused.
            .env("HERALD_JWT_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = command.spawn().context("starting the herald binary")?;
        let pid = child.id();
        Ok(Self {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "herald exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("herald was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 15 s.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The HS256 secret of every benchmark's server and token signer: with an
/// external database the shipped development secret is refused.
pub const SECRET: &str = "herald-benchmark-secret-not-for-production";

/// The settings the benchmarks' servers run with (the repository's config,
/// this process's environment, and [`SECRET`]).
pub fn settings() -> anyhow::Result<herald::settings::Settings> {
    let env = std::env::vars().chain([("HERALD_JWT_SECRET".to_owned(), SECRET.to_owned())]);
    Ok(herald::settings::Settings::load_with(&config_dir(), env)?)
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The service logs JSON at `warn`: every log line is worth a look (its
/// start-up banner, which is not JSON, is not).
pub fn server_warnings(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

/// RSS (KiB) and threads from `/proc/<pid>/status`, open descriptors from
/// `/proc/<pid>/fd`.
pub fn proc_sample(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (field("VmRSS:"), field("Threads:"), fds)
}

/// Resident memory of a process, KiB, from `/proc/<pid>/status`: `VmRSS`
/// now and `VmHWM`, the most it has held since it started (the kernel keeps
/// it, so a peak between two samples is not missed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// Proportional set size of a process, KiB: its resident memory with pages
/// shared between processes split among them, so that summing it over
/// several processes (nginx's master and workers share their memory zone)
/// counts each page once. Falls back to VmRSS.
pub fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| proc_sample(pid).0)
}

/// CPU time a process has used so far (user + system), in clock ticks
/// (fields 14 and 15 of `/proc/<pid>/stat`; 100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let at = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3, so field 14 is index 11.
    at(11) + at(12)
}

/// Raises the soft open-files limit to the hard one when it is too low for
/// `needed` descriptors (util-linux `prlimit`; no extra crate). The service
/// process inherits it.
pub fn ensure_open_files(needed: usize) -> anyhow::Result<()> {
    let read = || -> Option<(u64, u64)> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut numbers = line
            .split_whitespace()
            .filter_map(|w| w.parse::<u64>().ok());
        Some((numbers.next()?, numbers.next()?))
    };
    let Some((soft, hard)) = read() else {
        return Ok(());
    };
    if soft >= needed as u64 {
        return Ok(());
    }
    let _ = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status();
    match read() {
        Some((soft, _)) if soft >= needed as u64 => Ok(()),
        _ => bail!(
            "this run needs about {needed} open files but the limit is {soft} (hard {hard}); raise it (ulimit -n) or use a smaller load"
        ),
    }
}
