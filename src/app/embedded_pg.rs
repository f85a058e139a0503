//! A private PostgreSQL, started and stopped by Herald itself when no
//! `DATABASE_URL` is given (development, demos, tests).
//!
//! It listens on a Unix socket only. `initdb` and `postgres` refuse to run as
//! root, so as root they run as the `postgres` account (or `nobody`), with
//! their data where that account can reach it. The server is started through
//! `setpriv --pdeathsig INT` from a thread that lives as long as the server,
//! so it shuts down fast if Herald dies without stopping it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User, chown};

pub struct Options {
    /// Data directory (created and initialised when missing).
    pub data_dir: PathBuf,
    /// Durable commits. Tests turn it off for speed.
    pub fsync: bool,
    pub max_connections: u32,
}

pub struct EmbeddedPostgres {
    pid: Pid,
    socket_dir: PathBuf,
    exited: mpsc::Receiver<()>,
}

/// The account the server runs as.
struct Account {
    uid: u32,
    gid: u32,
    name: String,
}

impl EmbeddedPostgres {
    pub fn start(options: Options) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let account = account()?;
        let data_dir = data_dir_for(&account, &options.data_dir)?;
        let socket_dir = socket_dir_for(&data_dir);
        prepare_dir(&socket_dir, &account)?;
        if !data_dir.join("PG_VERSION").exists() {
            prepare_dir(&data_dir, &account)?;
            let mut initdb = Command::new(bin.join("initdb"));
            let status = as_account(&mut initdb, &account)
                .args(["-D"])
                .arg(&data_dir)
                .args([
                    "-U",
                    "herald",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .status()
                .context("running initdb")?;
            if !status.success() {
                bail!("initdb failed for {}", data_dir.display());
            }
        }
        let log =
            fs::File::create(data_dir.join("server.log")).context("creating the server log")?;
        let mut command = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "INT"]).arg(bin.join("postgres"));
            c
        } else {
            Command::new(bin.join("postgres"))
        };
        as_account(&mut command, &account)
            .arg("-D")
            .arg(&data_dir)
            .arg("-k")
            .arg(&socket_dir)
            .args(["-c", "listen_addresses="])
            .args([
                "-c",
                &format!("max_connections={}", options.max_connections),
            ])
            .args([
                "-c",
                &format!("fsync={}", if options.fsync { "on" } else { "off" }),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let (started_tx, started_rx) = mpsc::channel();
        let (exited_tx, exited) = mpsc::channel();
        // This thread must outlive the server: the parent-death signal fires
        // when the thread that spawned the process exits.
        std::thread::Builder::new()
            .name("embedded-postgres".into())
            .spawn(move || match command.spawn() {
                Ok(mut child) => {
                    let _ = started_tx.send(Ok(child.id()));
                    let _ = child.wait();
                    let _ = exited_tx.send(());
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            })?;
        let pid = started_rx.recv()?.context("starting postgres")?;
        let server = Self {
            pid: Pid::from_raw(pid as i32),
            socket_dir,
            exited,
        };
        server.wait_for_socket(&data_dir)?;
        Ok(server)
    }

    fn wait_for_socket(&self, data_dir: &Path) -> anyhow::Result<()> {
        let socket = self.socket_dir.join(".s.PGSQL.5432");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            if self.exited.try_recv().is_ok() {
                bail!(
                    "postgres exited; see {}",
                    data_dir.join("server.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("postgres did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A URL for database `db` as the superuser `herald`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://herald@localhost/{db}?host={}",
            self.socket_dir.display()
        )
    }

    /// Creates database `db` unless it exists.
    pub async fn create_database(&self, db: &str) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut conn = connect_with_retry(&self.url("postgres")).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(db)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let quoted = format!("\"{}\"", db.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Fast shutdown (SIGINT): ends sessions, no waiting for clients.
    pub fn stop(self) {
        if kill(self.pid, Signal::SIGINT).is_ok() {
            let _ = self.exited.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// Connects, retrying while the server finishes starting up.
pub async fn connect_with_retry(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// An explicit `HERALD_PG_BIN`, then `postgres` on PATH, then the highest
/// `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HERALD_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let has_tools = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .context("PostgreSQL server binaries not found: install the `postgresql` package or set HERALD_PG_BIN")
}

fn account() -> anyhow::Result<Option<Account>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = User::from_name(name)? {
            return Ok(Some(Account {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                name: name.into(),
            }));
        }
    }
    bail!("running as root needs a `postgres` or `nobody` account to run PostgreSQL as")
}

fn as_account<'a>(command: &'a mut Command, account: &Option<Account>) -> &'a mut Command {
    if let Some(a) = account {
        command.uid(a.uid).gid(a.gid);
    }
    command
}

/// As root, the configured directory is used only if the server's account
/// can reach it (every ancestor searchable by others); otherwise the data go
/// under /var/tmp, keyed by the configured path.
fn data_dir_for(account: &Option<Account>, configured: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(configured)?;
    let Some(account) = account else {
        return Ok(absolute);
    };
    let reachable = absolute
        .ancestors()
        .skip(1)
        .all(|dir| fs::metadata(dir).map_or(true, |m| m.permissions().mode() & 0o001 != 0));
    if reachable {
        return Ok(absolute);
    }
    let fallback = PathBuf::from(format!(
        "/var/tmp/herald-{}-{:016x}",
        account.name,
        hash(&absolute)
    ));
    tracing::info!(data_dir = %fallback.display(), "the configured data directory is not reachable by the PostgreSQL account; using another");
    Ok(fallback)
}

/// Unix socket paths are limited to about 100 bytes: keep the socket short.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    PathBuf::from(format!("/tmp/herald-pg-{:016x}", hash(data_dir)))
}

fn hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

fn prepare_dir(dir: &Path, account: &Option<Account>) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    if let Some(a) = account {
        chown(dir, Some(a.uid.into()), Some(a.gid.into()))?;
    }
    Ok(())
}
