//! A private PostgreSQL, started and stopped by Herald itself when no
//! `DATABASE_URL` is given (development, demos, tests).
//!
//! It listens on a Unix socket only. `initdb` and `postgres` refuse to run as
//! root, so as root they run as the `postgres` account (or `nobody`), with
//! their data where that account can reach it. The server is started through
//! `setpriv --pdeathsig INT` from a thread that lives as long as the server,
//! so it shuts down fast if Herald dies without stopping it.
//!
//! Only Herald may connect: the cluster is initialised with password
//! authentication (a random password, kept in `herald-password` in the data
//! directory, readable by its owner only), and its socket lives in a fresh
//! directory with a random name, so no other local process can claim or
//! predict it. As root, every file Herald creates in the account's
//! directories is created anew without following links (see
//! `private_files`).
//!
//! A second Herald process on the same data directory (`herald migrate`
//! beside `herald serve`) finds the running server through its
//! `postmaster.pid` and uses it as it is, touching none of its files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};

use crate::app::private_files::{self, Owner};

/// The database superuser Herald connects as.
const SUPERUSER: &str = "herald";
/// Where the superuser's password is kept, in the data directory.
const PASSWORD_FILE: &str = "herald-password";
/// Where the socket directory's name is kept, in the data directory, so a
/// restarted server is found at the same address.
const SOCKET_DIR_FILE: &str = "herald-socket-dir";
/// Socket directories are `/tmp/herald-pg-` and 8 random characters.
const SOCKET_DIR_PREFIX: &str = "/tmp/herald-pg-";

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
    /// `None` for a cluster initialised before passwords were used.
    password: Option<String>,
    /// `None` when the server belongs to another process (see `attach`).
    exited: Option<mpsc::Receiver<()>>,
}

/// The account the server runs as.
struct Account {
    uid: u32,
    gid: u32,
    name: String,
}

impl EmbeddedPostgres {
    /// Starts a server on `options.data_dir` (initialising it first if
    /// needed). Fails, touching nothing, if one already runs there.
    pub fn start(options: Options) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let account = account()?;
        let owner = account.as_ref().map_or_else(Owner::current, Account::owner);
        let data_dir = data_dir_for(&account, &options.data_dir)?;
        if let Some(running) = Running::find(&data_dir)? {
            bail!(
                "a PostgreSQL (pid {}) already runs on {}; stop it first",
                running.pid,
                data_dir.display()
            );
        }
        let socket_dir = socket_dir_for(&data_dir, owner)?;
        let started = Self::start_in(
            &bin,
            &account,
            owner,
            &data_dir,
            socket_dir.clone(),
            &options,
        );
        if started.is_err() {
            let _ = fs::remove_dir_all(&socket_dir);
        }
        started
    }

    /// The server another process started on `data_dir` and still runs,
    /// used as it is (never stopped by this process).
    pub fn attach(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let data_dir = data_dir_for(&account()?, data_dir)?;
        let Some(running) = Running::find(&data_dir)? else {
            return Ok(None);
        };
        let server = Self {
            pid: running.pid,
            socket_dir: running.socket_dir,
            password: read_password(&data_dir)?,
            exited: None,
        };
        server.wait_for_socket(&data_dir)?;
        Ok(Some(server))
    }

    fn start_in(
        bin: &Path,
        account: &Option<Account>,
        owner: Owner,
        data_dir: &Path,
        socket_dir: PathBuf,
        options: &Options,
    ) -> anyhow::Result<Self> {
        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(bin, account, owner, data_dir, &socket_dir)?;
        }
        private_files::write_fresh(
            &data_dir.join(SOCKET_DIR_FILE),
            socket_dir.as_os_str().as_encoded_bytes(),
            owner,
        )?;
        let password = read_password(data_dir)?;
        if password.is_none() {
            tracing::warn!(data_dir = %data_dir.display(), "this data directory was initialised without a password: any local process of its account can connect; remove it to start afresh with one");
        }
        let log = private_files::create_fresh(&data_dir.join("server.log"), owner)
            .context("creating the server log")?;
        let mut command = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "INT"]).arg(bin.join("postgres"));
            c
        } else {
            Command::new(bin.join("postgres"))
        };
        as_account(&mut command, account)
            .arg("-D")
            .arg(data_dir)
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
            password,
            exited: Some(exited),
        };
        server.wait_for_socket(data_dir)?;
        Ok(server)
    }

    fn wait_for_socket(&self, data_dir: &Path) -> anyhow::Result<()> {
        let socket = self.socket_dir.join(".s.PGSQL.5432");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            let exited = match &self.exited {
                Some(exited) => exited.try_recv().is_ok(),
                None => kill(self.pid, None).is_err(),
            };
            if exited {
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

    /// A URL for database `db` as the superuser `herald`. It carries the
    /// password: never log it.
    pub fn url(&self, db: &str) -> String {
        // The password is hex, so it needs no escaping.
        let password = self
            .password
            .as_ref()
            .map_or_else(String::new, |p| format!(":{p}"));
        format!(
            "postgres://{SUPERUSER}{password}@localhost/{db}?host={}",
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

    /// Fast shutdown (SIGINT): ends sessions, no waiting for clients. A
    /// server this process did not start is left running.
    pub fn stop(self) {
        let Some(exited) = self.exited else {
            return;
        };
        if kill(self.pid, Signal::SIGINT).is_ok() {
            let _ = exited.recv_timeout(Duration::from_secs(10));
        }
        let _ = fs::remove_dir_all(&self.socket_dir);
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

impl Account {
    fn owner(&self) -> Owner {
        Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }
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

/// The directory for the server's socket: the one this data directory's
/// server used before (so clients of a restarted server find it again), if
/// it can be made again or is still `owner`'s own; else a new one with a
/// random name. Either way a directory of `owner`, mode 0700. Unix socket
/// paths are limited to about 100 bytes, so it sits directly in /tmp.
fn socket_dir_for(data_dir: &Path, owner: Owner) -> anyhow::Result<PathBuf> {
    if let Some(dir) = remembered_socket_dir(data_dir)? {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let reusable = match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => true,
            // Left by a server that died: still ours only if no one else
            // took the name meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => fs::symlink_metadata(&dir)
                .is_ok_and(|m| m.is_dir() && m.uid() == owner.uid && m.mode() & 0o077 == 0),
            Err(_) => false,
        };
        if reusable {
            std::os::unix::fs::lchown(&dir, Some(owner.uid), Some(owner.gid))?;
            return Ok(dir);
        }
    }
    let dir = nix::unistd::mkdtemp(format!("{SOCKET_DIR_PREFIX}XXXXXXXX").as_str())
        .context("creating the socket directory")?;
    // mkdtemp made it 0700 and ours: nobody else could have swapped it.
    std::os::unix::fs::lchown(&dir, Some(owner.uid), Some(owner.gid))?;
    Ok(dir)
}

/// The socket directory recorded in the data directory, if it has the
/// shape Herald gives them (the file is writable by the server's account,
/// which must not be able to point root at another directory).
fn remembered_socket_dir(data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let Some(text) = private_files::read(&data_dir.join(SOCKET_DIR_FILE))? else {
        return Ok(None);
    };
    let valid = text
        .strip_prefix(SOCKET_DIR_PREFIX)
        .is_some_and(|name| name.len() == 8 && name.bytes().all(|b| b.is_ascii_alphanumeric()));
    Ok(valid.then(|| PathBuf::from(text)))
}

/// `initdb` with password authentication for every connection; the random
/// password reaches `initdb` through a file in the private socket directory
/// and is then kept in the data directory.
fn init_cluster(
    bin: &Path,
    account: &Option<Account>,
    owner: Owner,
    data_dir: &Path,
    socket_dir: &Path,
) -> anyhow::Result<()> {
    private_files::prepare_dir(data_dir, owner)?;
    let password = new_password()?;
    let pwfile = socket_dir.join("initdb-password");
    private_files::write_fresh(&pwfile, password.as_bytes(), owner)?;
    let mut initdb = Command::new(bin.join("initdb"));
    let status = as_account(&mut initdb, account)
        .args(["-D"])
        .arg(data_dir)
        .args(["-U", SUPERUSER, "--auth=scram-sha-256", "--pwfile"])
        .arg(&pwfile)
        .args(["-E", "UTF8", "--no-locale", "--no-sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .context("running initdb");
    let _ = fs::remove_file(&pwfile);
    if !status?.success() {
        bail!("initdb failed for {}", data_dir.display());
    }
    private_files::write_fresh(&data_dir.join(PASSWORD_FILE), password.as_bytes(), owner)
}

/// 256 random bits from the operating system, hex-encoded.
fn new_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

fn read_password(data_dir: &Path) -> anyhow::Result<Option<String>> {
    Ok(private_files::read(&data_dir.join(PASSWORD_FILE))?
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty()))
}

/// A server that runs on a data directory, as its `postmaster.pid` says.
struct Running {
    pid: Pid,
    socket_dir: PathBuf,
}

impl Running {
    /// `postmaster.pid` lists the postmaster's pid (line 1) and its socket
    /// directory (line 5). A file left by a server that died names a process
    /// that is gone.
    fn find(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let Some(text) = private_files::read(&data_dir.join("postmaster.pid"))? else {
            return Ok(None);
        };
        let lines: Vec<&str> = text.lines().collect();
        let Some(pid) = lines.first().and_then(|l| l.trim().parse::<i32>().ok()) else {
            return Ok(None);
        };
        let pid = Pid::from_raw(pid);
        // EPERM still means the process exists.
        if pid.as_raw() <= 0 || kill(pid, None) == Err(nix::errno::Errno::ESRCH) {
            return Ok(None);
        }
        let Some(socket_dir) = lines.get(4).map(|l| l.trim()).filter(|l| !l.is_empty()) else {
            bail!(
                "a PostgreSQL (pid {pid}) is starting on {} without a socket; try again",
                data_dir.display()
            );
        };
        Ok(Some(Self {
            pid,
            socket_dir: PathBuf::from(socket_dir),
        }))
    }
}

fn hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}
