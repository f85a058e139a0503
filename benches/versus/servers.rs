//! The two servers under test, each started fresh for every measurement, and
//! the one `Target` through which the scenarios drive either of them.

use herald::http::auth::Scope;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::http::auth::Signer;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::server::{Server, cpu_ticks, pss_kib};

/// The nginx config checked in next to this harness.
const NCHAN_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/nchan/nginx.conf");
/// Where that config listens.
const NCHAN_BASE: &str = "http://127.0.0.1:18090";
/// nginx's module, as Debian's `libnginx-mod-nchan` installs it.
const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/// Users per Herald publish when a scenario only sets the stage (the
/// contract allows up to 10,000 recipients per request).
const SETUP_RECIPIENTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Herald,
    Nchan,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Herald => "herald",
            Self::Nchan => "nchan",
        }
    }

    pub fn available(self) -> bool {
        match self {
            Self::Herald => true,
            Self::Nchan => Path::new(NCHAN_MODULE).exists() && which("nginx").is_some(),
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// What a scenario needs from the target's processes.
enum Processes {
    Herald {
        servers: Vec<Server>,
        pg: Option<EmbeddedPostgres>,
    },
    Nchan {
        child: Child,
    },
}

/// Sends single-recipient publishes; cheap to clone into many tasks.
#[derive(Clone)]
pub struct Publisher {
    kind: Kind,
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Publisher {
    /// What every measured message carries: a title like a notification's
    /// and `data` with the benchmark's own fields (its send time, `t`).
    fn message(data: &Value) -> Value {
        json!({"title": "Benchmark notification", "data": data})
    }

    /// One notification to each of `users` in one request (Herald's batch
    /// publish, all or nothing); how many were accepted. nchan has no batch:
    /// it publishes them one by one, so a comparison quotes its single rate.
    pub async fn publish_batch(&self, users: &[&str], data: &Value) -> anyhow::Result<u64> {
        if self.kind == Kind::Nchan {
            for user in users {
                self.publish(user, data).await?;
            }
            return Ok(users.len() as u64);
        }
        let notifications: Vec<Value> = users
            .iter()
            .map(|u| {
                let mut body = Self::message(data);
                body["recipients"] = json!([u]);
                body
            })
            .collect();
        let response = self
            .http
            .post(format!("{}/v1/notifications/batch", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "notifications": notifications }))
            .send()
            .await?;
        let status = response.status();
        if status != 201 {
            bail!(
                "batch publish: {status} {}",
                response.text().await.unwrap_or_default()
            );
        }
        response.bytes().await?;
        Ok(users.len() as u64)
    }

    /// One notification to one user; Ok once the server accepted it.
    pub async fn publish(&self, user: &str, data: &Value) -> anyhow::Result<()> {
        let request = match self.kind {
            Kind::Herald => {
                let mut body = Self::message(data);
                body["recipients"] = json!([user]);
                self.http
                    .post(format!("{}/v1/notifications", self.base))
                    .bearer_auth(&self.token)
                    .json(&body)
            }
            Kind::Nchan => self
                .http
                .post(format!("{}/pub/{user}", self.base))
                .json(&Self::message(data)),
        };
        let response = request.send().await?;
        let status = response.status();
        // nchan: 201 when subscribers were waiting, 202 when none were.
        if status == 201 || (self.kind == Kind::Nchan && status == 202) {
            response.bytes().await?;
            Ok(())
        } else {
            bail!(
                "publish: {status} {}",
                response.text().await.unwrap_or_default()
            )
        }
    }
}

pub struct Target {
    pub kind: Kind,
    /// One base URL per server process that takes connections.
    pub bases: Vec<String>,
    http: reqwest::Client,
    signer: Option<Signer>,
    publisher: String,
    admin: String,
    processes: Processes,
    dir: PathBuf,
}

impl Target {
    /// Starts `instances` Herald processes on one fresh PostgreSQL (fsync on),
    /// or nginx with nchan (`instances` is then ignored: one server).
    pub async fn start(kind: Kind, instances: usize, dir: &Path) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        match kind {
            Kind::Herald => Self::start_herald(instances, dir, http).await,
            Kind::Nchan => Self::start_nchan(dir, http).await,
        }
    }

    async fn start_herald(
        instances: usize,
        dir: &Path,
        http: reqwest::Client,
    ) -> anyhow::Result<Self> {
        let pg = EmbeddedPostgres::start(Options {
            data_dir: dir.join("postgres"),
            fsync: true,
            max_connections: 300,
        })?;
        pg.create_database("herald").await?;
        let url = pg.url("herald");
        let settings = crate::common::server::settings()?;
        let signer = Signer::from_settings(&settings.auth)?;
        let mut servers = Vec::with_capacity(instances);
        // The first applies the migrations; the others find them applied.
        for i in 0..instances.max(1) {
            let mut server = Server::start(&url, dir.join(format!("herald-{i}.log")), &[])?;
            server.ready(&http).await?;
            servers.push(server);
        }
        let bases = servers.iter().map(|s| s.base.clone()).collect();
        Ok(Self {
            kind: Kind::Herald,
            bases,
            http,
            publisher: signer.token_for("versus-publisher", &[Scope::Publish], 86_400)?,
            admin: signer.token_for("versus-admin", &[Scope::Admin], 86_400)?,
            signer: Some(signer),
            processes: Processes::Herald {
                servers,
                pg: Some(pg),
            },
            dir: dir.to_owned(),
        })
    }

    async fn start_nchan(dir: &Path, http: reqwest::Client) -> anyhow::Result<Self> {
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        if std::net::TcpStream::connect("127.0.0.1:18090").is_ok() {
            bail!("something already listens on 127.0.0.1:18090 (an nginx left running?)");
        }
        let log = std::fs::File::create(dir.join("nginx.log"))?;
        let child = Command::new(which("nginx").context("nginx is not installed")?)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(NCHAN_CONF)
            .arg("-g")
            .arg(format!("pid {};", dir.join("nginx.pid").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nginx")?;
        let target = Self {
            kind: Kind::Nchan,
            bases: vec![NCHAN_BASE.to_owned()],
            http,
            signer: None,
            publisher: String::new(),
            admin: String::new(),
            processes: Processes::Nchan { child },
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = target.http.get(target.url(0, "/nchan_status")).send().await
                && r.status() == 200
            {
                return Ok(target);
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx did not start; see {}",
                    dir.join("nginx.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, instance: usize, path: &str) -> String {
        format!("{}{path}", self.bases[instance % self.bases.len()])
    }

    /// The user ids of a scenario: the same names on both targets.
    pub fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i:06}")).collect()
    }

    /// A token for `user`'s stream (Herald), valid for a day.
    pub fn user_token(&self, user: &str) -> anyhow::Result<String> {
        match &self.signer {
            Some(s) => s.token_for(user, &[], 86_400),
            None => Ok(String::new()),
        }
    }

    /// The request that opens `user`'s SSE stream, resuming after `last_id`.
    /// `shared`: nchan's stream that also carries the channel every user
    /// hears (Herald's streams need nothing extra for that).
    pub fn stream_request(
        &self,
        client: &reqwest::Client,
        instance: usize,
        user: &str,
        token: &str,
        last_id: Option<&str>,
        shared: bool,
    ) -> reqwest::RequestBuilder {
        let request = match self.kind {
            Kind::Herald => client
                .get(self.url(instance, "/v1/me/stream"))
                .bearer_auth(token),
            Kind::Nchan => {
                let path = if shared { "subm" } else { "sub" };
                client.get(self.url(instance, &format!("/{path}/{user}")))
            }
        };
        let request = request.header("Accept", "text/event-stream");
        match last_id {
            Some(id) => request.header("Last-Event-ID", id),
            None => request,
        }
    }

    pub fn publisher(&self) -> Publisher {
        Publisher {
            kind: self.kind,
            base: self.bases[0].clone(),
            http: self.http.clone(),
            token: self.publisher.clone(),
        }
    }

    pub async fn publish(&self, user: &str, data: &Value) -> anyhow::Result<()> {
        self.publisher().publish(user, data).await
    }

    /// One publish that reaches every user in `users` (Herald: one request
    /// naming them all, at most 10,000; nchan: one message on the channel
    /// every `shared` stream carries).
    pub async fn publish_to_all(&self, users: &[String], data: &Value) -> anyhow::Result<()> {
        match self.kind {
            Kind::Herald => {
                let mut body = Publisher::message(data);
                body["recipients"] = json!(users);
                let response = self
                    .http
                    .post(self.url(0, "/v1/notifications"))
                    .bearer_auth(&self.publisher)
                    .json(&body)
                    .send()
                    .await?;
                if response.status() != 201 {
                    bail!("publish: {} {}", response.status(), response.text().await?);
                }
                response.bytes().await?;
                Ok(())
            }
            Kind::Nchan => self.publish("all", data).await,
        }
    }

    /// Makes `users` known to the target before a measurement: Herald learns
    /// of users from their first notification (a user online in a message
    /// center is one it knows); nchan has nothing to learn (its channels
    /// appear with their first subscriber or message).
    pub async fn prepare_users(&self, users: &[String]) -> anyhow::Result<()> {
        match self.kind {
            Kind::Herald => self.publish_each(users, &json!({"warmup": true})).await,
            Kind::Nchan => Ok(()),
        }
    }

    /// Sets the stage: one message to each of `users`, as fast as the target
    /// takes them (Herald: 1,000 recipients per request; nchan: one request
    /// per user, 64 at a time). Not a measurement.
    pub async fn publish_each(&self, users: &[String], data: &Value) -> anyhow::Result<()> {
        use futures_util::{StreamExt, TryStreamExt};
        match self.kind {
            Kind::Herald => {
                futures_util::stream::iter(users.chunks(SETUP_RECIPIENTS))
                    .map(|chunk| self.publish_to_all(chunk, data))
                    .buffer_unordered(4)
                    .try_collect::<()>()
                    .await
            }
            Kind::Nchan => {
                futures_util::stream::iter(users)
                    .map(|user| self.publish(user, data))
                    .buffer_unordered(64)
                    .try_collect::<()>()
                    .await
            }
        }
    }

    /// A broadcast to every user the target knows; returns when it has been
    /// handed to every user's log (Herald) or channel (nchan, which has no
    /// broadcast to per-user channels: one publish per user, 64 at a time).
    pub async fn broadcast(&self, users: &[String], data: &Value) -> anyhow::Result<()> {
        match self.kind {
            Kind::Herald => {
                let response = self
                    .http
                    .post(self.url(0, "/v1/broadcasts"))
                    .bearer_auth(&self.admin)
                    .json(&Publisher::message(data))
                    .send()
                    .await?;
                if response.status() != 202 {
                    bail!(
                        "broadcast: {} {}",
                        response.status(),
                        response.text().await?
                    );
                }
                let accepted: Value = response.json().await?;
                let id = accepted["id"].as_str().context("broadcast id")?.to_owned();
                let deadline = Instant::now() + Duration::from_secs(600);
                loop {
                    let status: Value = self
                        .http
                        .get(self.url(0, &format!("/v1/admin/broadcasts/{id}")))
                        .bearer_auth(&self.admin)
                        .send()
                        .await?
                        .json()
                        .await?;
                    if status["status"] == "done" {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        bail!("the broadcast did not finish in 10 minutes: {status}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Kind::Nchan => self.publish_each(users, data).await,
        }
    }

    /// Streams the server(s) hold open right now.
    pub async fn open_streams(&self) -> anyhow::Result<u64> {
        match self.kind {
            Kind::Herald => {
                let mut total = 0;
                for i in 0..self.bases.len() {
                    let stats: Value = self
                        .http
                        .get(self.url(i, "/v1/admin/stats"))
                        .bearer_auth(&self.admin)
                        .send()
                        .await?
                        .json()
                        .await?;
                    total += stats["connections"]["sse"].as_u64().unwrap_or(0);
                }
                Ok(total)
            }
            Kind::Nchan => {
                let text = self
                    .http
                    .get(self.url(0, "/nchan_status"))
                    .send()
                    .await?
                    .text()
                    .await?;
                text.lines()
                    .find_map(|l| l.strip_prefix("subscribers:"))
                    .and_then(|v| v.trim().parse().ok())
                    .context("nchan_status has no subscriber count")
            }
        }
    }

    /// Waits until the server(s) hold at least `n` streams.
    pub async fn wait_open_streams(&self, n: u64, within: Duration) -> anyhow::Result<()> {
        self.wait_streams(|open| open >= n, within, &format!("at least {n}"))
            .await
    }

    /// Waits until the server(s) hold fewer than `n` streams.
    pub async fn wait_open_streams_below(&self, n: u64, within: Duration) -> anyhow::Result<()> {
        self.wait_streams(|open| open < n, within, &format!("fewer than {n}"))
            .await
    }

    async fn wait_streams(
        &self,
        done: impl Fn(u64) -> bool,
        within: Duration,
        what: &str,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let open = self.open_streams().await?;
            if done(open) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server holds {open} streams, not {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The processes whose memory and CPU are the server's: every Herald
    /// instance, or nginx's master and workers. PostgreSQL is left out.
    pub fn pids(&self) -> Vec<u32> {
        match &self.processes {
            Processes::Herald { servers, .. } => servers.iter().map(|s| s.pid).collect(),
            Processes::Nchan { child } => {
                let master = child.id();
                let children =
                    std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
                        .unwrap_or_default();
                std::iter::once(master)
                    .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
                    .collect()
            }
        }
    }

    /// Resident memory of the server's processes, KiB (proportional set
    /// size, so memory nginx's processes share is counted once).
    pub fn rss_kib(&self) -> u64 {
        self.pids().into_iter().map(pss_kib).sum()
    }

    /// CPU time of the server's processes so far, clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.pids().into_iter().map(cpu_ticks).sum()
    }

    /// Checks every server process is still running.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match &mut self.processes {
            Processes::Herald { servers, .. } => {
                for s in servers {
                    if !s.alive() {
                        bail!("a herald instance died; see {}", s.log.display());
                    }
                }
            }
            Processes::Nchan { child } => {
                if child.try_wait()?.is_some() {
                    bail!("nginx died; see {}", self.dir.join("nginx.log").display());
                }
            }
        }
        Ok(())
    }

    pub fn stop(mut self) {
        match &mut self.processes {
            Processes::Herald { servers, pg } => {
                for s in servers.iter_mut() {
                    s.stop();
                }
                if let Some(pg) = pg.take() {
                    pg.stop();
                }
            }
            Processes::Nchan { child } => {
                use nix::sys::signal::{Signal, kill};
                use nix::unistd::Pid;
                // SIGTERM: nginx's fast shutdown.
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
