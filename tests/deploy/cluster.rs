//! The pieces of a deployment, as real processes: a private PostgreSQL
//! (one per test binary, a database per test), `herald serve` instances and
//! nginx running the committed configuration with only ports and paths
//! replaced.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use herald::app::embedded_pg::{EmbeddedPostgres, Options, connect_with_retry};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tokio::process::{Child, Command};

/// The HS256 key every instance and every test token shares (48 bytes).
pub const SECRET: &str = "deploy-test-secret-0123456789abcdef0123456789abc";

pub const WAIT: Duration = Duration::from_secs(15);

/// A token for `sub`, signed with [`SECRET`].
pub fn token(sub: &str, scope: Option<&str>) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = json!({"sub": sub, "exp": exp, "scope": scope});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

const SCRATCH_PREFIX: &str = "herald-deploy-test-";

/// A fresh directory for this test process.
pub fn scratch_dir(name: &str) -> PathBuf {
    remove_stale_scratch_dirs();
    let dir = std::env::temp_dir()
        .join(format!("{SCRATCH_PREFIX}{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Scratch directories of earlier test processes that are gone (their
/// PostgreSQL went with them).
fn remove_stale_scratch_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX));
            if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// The private PostgreSQL's URL for the database `postgres`.
fn postgres() -> &'static str {
    static PG: OnceLock<String> = OnceLock::new();
    PG.get_or_init(|| {
        let pg = EmbeddedPostgres::start(Options {
            data_dir: scratch_dir("postgres"),
            fsync: false,
            max_connections: 200,
        })
        .expect("a private PostgreSQL starts");
        let url = pg.url("postgres");
        // Never stopped: it shuts down with this process (parent-death signal).
        std::mem::forget(pg);
        url
    })
}

/// A new, empty database on the private PostgreSQL: its URL.
pub async fn fresh_database(name: &str) -> String {
    use sqlx::Connection;
    let admin = postgres();
    let mut conn = connect_with_retry(admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let url = admin.replacen("/postgres", &format!("/{name}"), 1);
    assert_ne!(url, admin, "the URL names the database `postgres`");
    url
}

/// A port free now, for a process that must keep it across restarts.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One `herald serve` process, built by this test run, on a fixed port.
pub struct Herald {
    child: Child,
    pub port: u16,
    db_url: String,
    log: PathBuf,
}

impl Herald {
    pub async fn start(db_url: &str, log: PathBuf) -> Self {
        let port = free_port();
        let child = spawn(db_url, port, &log).await;
        Self {
            child,
            port,
            db_url: db_url.to_owned(),
            log,
        }
    }

    /// SIGTERM, as systemd stops a unit, and waits for a clean exit.
    pub async fn stop(&mut self) {
        let pid = self.child.id().expect("still running") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("herald exits within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "herald exited with {status}");
    }

    /// Waits until nginx routes requests to this instance again: its own
    /// count of acknowledged publishes is above zero.
    pub async fn wait_until_routed(&self) {
        let metrics = format!("http://127.0.0.1:{}/metrics", self.port);
        let line =
            r#"herald_http_requests_total{route="/v1/notifications",method="POST",status="201"}"#;
        let deadline = Instant::now() + WAIT;
        loop {
            let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            if text.lines().any(|l| l.starts_with(line)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx sends no publish to port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new process on the same port and database.
    pub async fn restart(&mut self) {
        self.child = spawn(&self.db_url, self.port, &self.log).await;
    }
}

async fn spawn(db_url: &str, port: u16, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_remove("HERALD_ENV")
        .env_remove("RUST_LOG")
        .env("DATABASE_URL", db_url)
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_JWT_SECRET", SECRET)
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        // Heartbeats every 2 s, so a test sees several pass the proxy.
        .env("HERALD__SERVER__HEARTBEAT_SECS", "2")
        .env("HERALD__SERVER__WORKERS", "1")
        .env("HERALD__DATABASE__MAX_CONNECTIONS", "8")
        .env("HERALD__LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .expect("the herald binary runs");
    wait_for_ok(&format!("http://127.0.0.1:{port}/readyz"), || {
        child.try_wait().unwrap().is_none()
    })
    .await;
    child
}

/// Polls `url` until it answers 200, while `alive()` holds.
async fn wait_for_ok(url: &str, mut alive: impl FnMut() -> bool) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(alive(), "the process behind {url} exited");
        let answer = http.get(url).timeout(Duration::from_secs(2)).send().await;
        if matches!(answer, Ok(r) if r.status() == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// nginx with `deploy/nginx/*.conf`: the TLS server block and the redirect
/// as committed (ports, certificate and log paths replaced), plus a plain
/// loopback listener with the same locations for the test's clients, which
/// speak no TLS.
pub struct Nginx {
    child: Child,
    pub plain: u16,
    pub tls: u16,
    pub redirect: u16,
    pub dir: PathBuf,
}

impl Nginx {
    pub async fn start(name: &str, upstreams: [u16; 2]) -> Self {
        let nginx = which("nginx").expect(
            "nginx is needed for the deployment tests: install Debian's `nginx` (scripts/test.sh does)",
        );
        let dir = scratch_dir(name);
        for sub in ["conf", "logs", "tls", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        make_certificate(&dir.join("tls"));
        let (plain, tls, redirect) = (free_port(), free_port(), free_port());
        let d = dir.display();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx");
        let conf = |file: &str, replacements: &[(&str, String)]| {
            let mut text = std::fs::read_to_string(source.join(file)).unwrap();
            for (from, to) in replacements {
                assert!(
                    text.contains(from),
                    "deploy/nginx/{file} no longer has {from:?}"
                );
                text = text.replace(from, to);
            }
            std::fs::write(dir.join("conf").join(file), text).unwrap();
        };
        let snippets = ("/etc/nginx/snippets/", format!("{d}/conf/"));
        conf(
            "herald.conf",
            &[
                (
                    "server 127.0.0.1:8081 ",
                    format!("server 127.0.0.1:{} ", upstreams[0]),
                ),
                (
                    "server 127.0.0.1:8082 ",
                    format!("server 127.0.0.1:{} ", upstreams[1]),
                ),
                ("listen 80;", format!("listen 127.0.0.1:{redirect};")),
                ("listen [::]:80;\n", String::new()),
                ("listen 443 ssl", format!("listen 127.0.0.1:{tls} ssl")),
                ("listen [::]:443 ssl http2;\n", String::new()),
                ("/etc/ssl/herald/", format!("{d}/tls/")),
                ("/var/log/nginx/", format!("{d}/logs/")),
                snippets.clone(),
            ],
        );
        conf("herald-locations.conf", &[snippets]);
        conf("herald-proxy-headers.conf", &[]);
        // As root, nginx's workers drop to an unprivileged account.
        let user = if nix::unistd::Uid::effective().is_root() {
            "user nobody nogroup;"
        } else {
            ""
        };
        let main = format!(
            "{user}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/conf/herald.conf;
    server {{
        listen 127.0.0.1:{plain};
        client_max_body_size 4m;
        access_log {d}/logs/herald.access.log herald_access;
        error_log {d}/logs/herald.error.log crit;
        include {d}/conf/herald-locations.conf;
    }}
}}
"
        );
        std::fs::write(dir.join("conf/nginx.conf"), main).unwrap();
        let mut child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("conf/nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_for_ok(&format!("http://127.0.0.1:{plain}/healthz"), || {
            child.try_wait().unwrap().is_none()
        })
        .await;
        Self {
            child,
            plain,
            tls,
            redirect,
            dir,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.plain)
    }

    pub fn access_log(&self) -> String {
        self.log("herald.access.log")
    }

    /// Every log nginx writes for Herald's servers, and its own error log.
    pub fn all_logs(&self) -> String {
        ["herald.access.log", "herald.error.log", "error.log"]
            .map(|f| self.log(f))
            .concat()
    }

    fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(file)).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of master and workers.
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
    }
}

/// A self-signed certificate for `localhost` (fullchain.pem, privkey.pem).
fn make_certificate(dir: &Path) {
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(dir.join("privkey.pem"))
        .arg("-out")
        .arg(dir.join("fullchain.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(
        status.success(),
        "openssl could not make a test certificate"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Two instances on one fresh database behind one nginx.
pub struct Deployment {
    pub instances: Vec<Herald>,
    pub nginx: Nginx,
    pub http: reqwest::Client,
}

impl Deployment {
    pub async fn start(name: &str) -> Self {
        let db = fresh_database(&name.replace('-', "_")).await;
        let logs = scratch_dir(&format!("{name}-herald"));
        let mut instances = Vec::new();
        for n in 0..2 {
            instances.push(Herald::start(&db, logs.join(format!("herald-{n}.log"))).await);
        }
        let nginx = Nginx::start(name, [instances[0].port, instances[1].port]).await;
        Self {
            instances,
            nginx,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.nginx.base())
    }

    /// Publishes `title` to `user` through the proxy; the answer's seq.
    pub async fn publish(&self, user: &str, title: &str) -> i64 {
        let answer = self
            .http
            .post(self.url("/v1/notifications"))
            .bearer_auth(token("publisher", Some("publish")))
            .json(&json!({"recipients": [user], "title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        let body: serde_json::Value = answer.json().await.unwrap();
        body["notifications"][0]["seq"].as_i64().unwrap()
    }
}
