//! Fault tests: the service killed mid-traffic and restarted, PostgreSQL
//! going away under open streams, the LISTEN connection lost on every
//! instance, a stalled client next to a healthy one, and connection churn.
//! Real processes, real PostgreSQL, real SSE / WebSocket / long-poll clients;
//! every check is exact: each event exactly once, in seq order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::live::connection_stats::Transport;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{
    Herald, Service, TestApp, assert_problem, fresh_database, scratch_dir_path,
    start_private_postgres, wait_for,
};

/// How long a subscriber, once told the final seq, may take to reach it.
const STUCK: Duration = Duration::from_secs(60);

/// Polls a synchronous condition until it holds; panics after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Subscribers: read one user's events over one transport, resuming from the
// last seq seen whenever the connection ends or is refused, until told the
// user's final seq. They assert as they go that every seq is above the last.

/// A notification as a subscriber received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    seq: i64,
    id: String,
    title: String,
}

#[derive(Debug, Clone, Copy)]
enum Via {
    Sse,
    Ws,
    Poll,
}

/// How one connection (or one poll) ended.
enum Session {
    /// Everything up to the final seq arrived.
    Done,
    /// A poll answered; the next one follows at once.
    Answered,
    /// An open stream ended (server closed it, or the connection broke).
    Ended,
    /// No connection: refused, reset, or answered 503.
    Refused,
}

#[derive(Default)]
struct Progress {
    /// The last seq received.
    seen: AtomicI64,
    /// Open streams that ended before the subscriber was done.
    ended: AtomicUsize,
    /// Connection attempts or polls that failed (and were retried).
    refused: AtomicUsize,
}

struct Subscriber {
    user: String,
    via: Via,
    progress: Arc<Progress>,
    until: watch::Sender<Option<i64>>,
    task: JoinHandle<Vec<Got>>,
}

impl Subscriber {
    /// Starts reading `user`'s events from seq 0.
    fn start(service: &Service, user: &str, via: Via) -> Self {
        let progress = Arc::new(Progress::default());
        let (until, rx) = watch::channel(None);
        let task = tokio::spawn(subscribe(
            service.clone(),
            user.to_owned(),
            via,
            Arc::clone(&progress),
            rx,
        ));
        Self {
            user: user.to_owned(),
            via,
            progress,
            until,
            task,
        }
    }

    fn seen(&self) -> i64 {
        self.progress.seen.load(Ordering::Relaxed)
    }

    fn ended(&self) -> usize {
        self.progress.ended.load(Ordering::Relaxed)
    }

    fn refused(&self) -> usize {
        self.progress.refused.load(Ordering::Relaxed)
    }

    /// Waits until everything up to `last_seq` has arrived; what arrived.
    async fn finish(self, last_seq: i64) -> Vec<Got> {
        self.until.send_replace(Some(last_seq));
        let (user, via) = (self.user.clone(), self.via);
        match tokio::time::timeout(STUCK, self.task).await {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => panic!("the {via:?} subscriber of {user} failed: {e}"),
            Err(_) => panic!(
                "the {via:?} subscriber of {user} is stuck at seq {} of {last_seq}",
                self.progress.seen.load(Ordering::Relaxed)
            ),
        }
    }
}

fn finished(until: &watch::Receiver<Option<i64>>, got: &[Got]) -> bool {
    matches!(*until.borrow(), Some(last) if last_of(got) >= last)
}

fn last_of(got: &[Got]) -> i64 {
    got.last().map_or(0, |g| g.seq)
}

async fn subscribe(
    service: Service,
    user: String,
    via: Via,
    progress: Arc<Progress>,
    mut until: watch::Receiver<Option<i64>>,
) -> Vec<Got> {
    let mut got = Vec::new();
    loop {
        let mut reader = Reader {
            user: &user,
            got: &mut got,
            progress: &progress,
            until: &mut until,
        };
        let session = match via {
            Via::Sse => reader.sse(&service).await,
            Via::Ws => reader.ws(&service).await,
            Via::Poll => reader.poll(&service).await,
        };
        match session {
            Session::Done => return got,
            Session::Answered => {}
            Session::Ended => {
                progress.ended.fetch_add(1, Ordering::Relaxed);
            }
            Session::Refused => {
                progress.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Reader<'a> {
    user: &'a str,
    got: &'a mut Vec<Got>,
    progress: &'a Progress,
    until: &'a mut watch::Receiver<Option<i64>>,
}

impl Reader<'_> {
    fn last(&self) -> i64 {
        last_of(self.got)
    }

    fn done(&self) -> bool {
        finished(self.until, self.got)
    }

    /// One received event: it must be the next notification in order.
    fn take(&mut self, seq: i64, kind: &str, data: &Value) {
        let user = self.user;
        let last = self.last();
        assert_eq!(kind, "notification", "{user}: a {kind} event at seq {seq}");
        assert!(
            seq > last,
            "{user}: seq {seq} after {last}: repeated or out of order"
        );
        assert_eq!(data["seq"], seq, "{user}: {data}");
        self.got.push(Got {
            seq,
            id: data["id"].as_str().unwrap().to_owned(),
            title: data["title"].as_str().unwrap().to_owned(),
        });
        self.progress.seen.store(seq, Ordering::Relaxed);
    }

    /// A refusal must be a clean one: 503 problem+json while the database is
    /// away. Anything else is a failure.
    async fn refused(response: reqwest::Response) -> Session {
        assert_eq!(
            response.status(),
            503,
            "unexpected answer {:?}",
            response.text().await
        );
        assert_problem(response, 503, "database").await;
        Session::Refused
    }

    async fn sse(&mut self, service: &Service) -> Session {
        let response = service
            .http
            .get(service.url("/v1/me/stream"))
            .bearer_auth(service.token(self.user))
            .header("Last-Event-ID", self.last().to_string())
            .send()
            .await;
        let response = match response {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => return Self::refused(r).await,
            Err(_) => return Session::Refused,
        };
        let mut events = response.bytes_stream().eventsource();
        loop {
            if self.done() {
                return Session::Done;
            }
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(e)) => {
                        let data: Value = serde_json::from_str(&e.data).unwrap();
                        self.take(e.id.parse().unwrap(), &e.event, &data);
                    }
                    Some(Err(_)) | None => return Session::Ended,
                },
                Ok(()) = self.until.changed() => {}
            }
        }
    }

    async fn ws(&mut self, service: &Service) -> Session {
        let url = format!(
            "{}?access_token={}&last_event_id={}",
            service.url("/v1/me/ws").replacen("http", "ws", 1),
            service.token(self.user),
            self.last()
        );
        let mut socket = match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => socket,
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503, "{response:?}");
                return Session::Refused;
            }
            Err(_) => return Session::Refused,
        };
        loop {
            if self.done() {
                let _ = socket.close(None).await;
                return Session::Done;
            }
            tokio::select! {
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        let kind = frame["type"].as_str().unwrap_or("?").to_owned();
                        self.take(frame["seq"].as_i64().unwrap(), &kind, &frame["data"]);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Binary(b))) => panic!("a binary frame {b:?}"),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Session::Ended,
                },
                Ok(()) = self.until.changed() => {}
            }
        }
    }

    /// One long-poll. It must answer within its `wait` (plus slack).
    async fn poll(&mut self, service: &Service) -> Session {
        if self.done() {
            return Session::Done;
        }
        const WAIT: u64 = 3;
        let request = service
            .http
            .get(service.url(&format!("/v1/me/events?after={}&wait={WAIT}", self.last())))
            .bearer_auth(service.token(self.user))
            .send();
        let answered = async {
            let response = request.await?;
            if response.status() != 200 {
                return Ok(Err(response));
            }
            response.json::<Value>().await.map(Ok)
        };
        let body = match tokio::time::timeout(Duration::from_secs(WAIT + 15), answered).await {
            Err(_) => panic!("{}: a long-poll hung beyond its wait", self.user),
            Ok(Err(_)) => return Session::Refused,
            Ok(Ok(Err(response))) => return Self::refused(response).await,
            Ok(Ok(Ok(body))) => body,
        };
        for event in body["events"].as_array().unwrap() {
            let kind = event["type"].as_str().unwrap().to_owned();
            self.take(event["seq"].as_i64().unwrap(), &kind, &event["data"]);
        }
        assert!(body["last_seq"].as_i64().unwrap() >= self.last(), "{body}");
        if self.done() {
            Session::Done
        } else {
            Session::Answered
        }
    }
}

// ---------------------------------------------------------------------------
// Publishers: publish continuously, recording for every attempt whether it was
// acknowledged (201 and its items), refused (an error answer: must change
// nothing) or lost (no answer: may or may not have committed, all or nothing).

#[derive(Debug)]
enum Outcome {
    Acked(Vec<Value>),
    Refused(u16),
    Lost,
}

#[derive(Debug)]
struct Attempt {
    title: String,
    recipients: Vec<String>,
    outcome: Outcome,
}

struct Publishers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Vec<Attempt>>>,
}

impl Publishers {
    /// `count` publishers, the n-th publishing through `services[n % len]`;
    /// `recipients(n, i)` names the recipients of its i-th attempt.
    fn start(
        services: &[Service],
        count: usize,
        recipients: impl Fn(usize, usize) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let recipients = Arc::new(recipients);
        let tasks = (0..count)
            .map(|n| {
                let service = services[n % services.len()].clone();
                let (stop, acked, recipients) = (stop.clone(), acked.clone(), recipients.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .pool_max_idle_per_host(0)
                        .build()
                        .unwrap();
                    let token = service.publisher();
                    let mut attempts = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let title = format!("p{n}-{i}");
                        let to = recipients(n, i);
                        i += 1;
                        let sent = http
                            .post(service.url("/v1/notifications"))
                            .bearer_auth(&token)
                            .json(&json!({"recipients": to, "title": title}))
                            .send()
                            .await;
                        let outcome = match sent {
                            Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                                Ok(body) => {
                                    acked.fetch_add(1, Ordering::Relaxed);
                                    Outcome::Acked(
                                        body["notifications"].as_array().unwrap().clone(),
                                    )
                                }
                                Err(_) => Outcome::Lost,
                            },
                            Ok(r) => Outcome::Refused(r.status().as_u16()),
                            Err(_) => Outcome::Lost,
                        };
                        if !matches!(outcome, Outcome::Acked(_)) {
                            // The service is away: do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        attempts.push(Attempt {
                            title,
                            recipients: to,
                            outcome,
                        });
                    }
                    attempts
                })
            })
            .collect();
        Self { stop, acked, tasks }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("a publisher panicked"));
        }
        all
    }
}

/// Every notification in the database: user → `[(seq, id, title)]` in seq order.
async fn stored(pool: &PgPool) -> BTreeMap<String, Vec<Got>> {
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT user_id, seq, id::text, title FROM notifications ORDER BY user_id, seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut by_user: BTreeMap<String, Vec<Got>> = BTreeMap::new();
    for (user, seq, id, title) in rows {
        by_user
            .entry(user)
            .or_default()
            .push(Got { seq, id, title });
    }
    by_user
}

async fn last_seq(pool: &PgPool, user: &str) -> i64 {
    sqlx::query_scalar("SELECT last_seq FROM users WHERE user_id = $1")
        .bind(user)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// The publish record against the database: everything acknowledged is
/// stored under its ids and seqs; a refused publish left nothing; a lost one
/// is stored for all its recipients or for none; nothing else is stored.
fn check_attempts(attempts: &[Attempt], db: &BTreeMap<String, Vec<Got>>) -> (usize, usize) {
    let mut by_title: HashMap<&str, Vec<(&str, &Got)>> = HashMap::new();
    for (user, rows) in db {
        for row in rows {
            by_title
                .entry(row.title.as_str())
                .or_default()
                .push((user.as_str(), row));
        }
    }
    let (mut lost_present, mut lost_absent) = (0, 0);
    let mut titles = HashSet::new();
    for a in attempts {
        titles.insert(a.title.as_str());
        let rows = by_title.get(a.title.as_str()).cloned().unwrap_or_default();
        let mut users: Vec<&str> = rows.iter().map(|(u, _)| *u).collect();
        users.sort_unstable();
        let mut expected: Vec<&str> = a.recipients.iter().map(String::as_str).collect();
        expected.sort_unstable();
        match &a.outcome {
            Outcome::Acked(items) => {
                assert_eq!(
                    users, expected,
                    "acknowledged {} is not fully stored",
                    a.title
                );
                for item in items {
                    let user = item["user_id"].as_str().unwrap();
                    let row = rows.iter().find(|(u, _)| *u == user).unwrap().1;
                    assert_eq!(
                        (row.id.as_str(), row.seq),
                        (item["id"].as_str().unwrap(), item["seq"].as_i64().unwrap()),
                        "{} for {user}: the acknowledgement differs from what is stored",
                        a.title
                    );
                }
            }
            Outcome::Refused(status) => {
                assert!(
                    users.is_empty(),
                    "{} was refused with {status} but stored for {users:?}",
                    a.title
                );
            }
            Outcome::Lost if users.is_empty() => lost_absent += 1,
            Outcome::Lost => {
                assert_eq!(users, expected, "unacknowledged {} is half stored", a.title);
                lost_present += 1;
            }
        }
    }
    for title in by_title.keys() {
        assert!(
            titles.contains(title),
            "{title} is stored but was never published"
        );
    }
    (lost_present, lost_absent)
}

// ---------------------------------------------------------------------------
// 1. Kill -9 and restart.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_mid_traffic_every_subscriber_gets_each_stored_event_once() {
    const KILLS: usize = 2;
    // Acknowledged publishes between two faults.
    const STRETCH: usize = 60;
    let db_url = fresh_database().await;
    let mut herald = Herald::start(&db_url).await;
    let service = Service::new(herald.base());
    let users = ["kill-sse", "kill-ws", "kill-poll"];
    let subscribers = [
        Subscriber::start(&service, users[0], Via::Sse),
        Subscriber::start(&service, users[1], Via::Ws),
        Subscriber::start(&service, users[2], Via::Poll),
    ];
    // Each publish goes to two of the three users.
    let publishers = Publishers::start(std::slice::from_ref(&service), 4, move |n, i| {
        let skip = (n + i) % 3;
        (0..3)
            .filter(|&u| u != skip)
            .map(|u| users[u].to_owned())
            .collect()
    });

    for round in 0..=KILLS {
        // Traffic flows and every subscriber is reading, mid-stream.
        let (acked, seen): (usize, Vec<i64>) = (
            publishers.acked(),
            subscribers.iter().map(Subscriber::seen).collect(),
        );
        wait_until("publishing and delivery", Duration::from_secs(30), || {
            publishers.acked() >= acked + STRETCH
                && subscribers
                    .iter()
                    .zip(&seen)
                    .all(|(s, &before)| s.seen() > before)
        })
        .await;
        if round < KILLS {
            herald.kill().await;
            herald.restart().await;
        }
    }
    let attempts = publishers.stop().await;

    let pool = PgPool::connect(&db_url).await.unwrap();
    let mut received = HashMap::new();
    for s in subscribers {
        let (user, ended) = (s.user.clone(), s.ended() + s.refused());
        let target = last_seq(&pool, &user).await;
        received.insert(user.clone(), s.finish(target).await);
        if !user.ends_with("poll") {
            assert!(
                ended >= KILLS,
                "{user}: the stream should have broken {KILLS} times"
            );
        }
    }
    let db = stored(&pool).await;
    for user in users {
        assert_eq!(
            received[user], db[user],
            "{user} must hold exactly what is stored, each once, in seq order"
        );
    }
    let (present, absent) = check_attempts(&attempts, &db);
    let acked = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
        .count();
    assert!(acked >= (KILLS + 1) * STRETCH);
    eprintln!(
        "kill/restart: {} attempts, {acked} acknowledged, lost: {present} stored, {absent} not",
        attempts.len()
    );
}

// ---------------------------------------------------------------------------
// 2. PostgreSQL outage with open streams.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_ride_out_a_postgresql_outage_and_see_every_event_once() {
    const AFTER: usize = 20;
    let pg = start_private_postgres("fault-outage");
    pg.create_database("herald").await.unwrap();
    let db_url = pg.url("herald");
    let app = TestApp::spawn_on(&db_url, |_| {}).await;
    let stats = &app.handle.state().hub.stats;
    let service = Service::of(&app);
    let users = ["out-sse", "out-ws", "out-poll"];
    service.publish(&users, "before").await;
    let subscribers = [
        Subscriber::start(&service, users[0], Via::Sse),
        Subscriber::start(&service, users[1], Via::Ws),
        Subscriber::start(&service, users[2], Via::Poll),
    ];
    wait_until(
        "the first event everywhere",
        Duration::from_secs(20),
        || subscribers.iter().all(|s| s.seen() == 1),
    )
    .await;
    // An SSE stream, a WebSocket and a waiting long-poll are open.
    wait_until("three open connections", Duration::from_secs(20), || {
        stats.connections(Transport::Sse) == 1
            && stats.connections(Transport::Ws) == 1
            && stats.connections(Transport::Poll) == 1
    })
    .await;

    app.pool.close().await;
    pg.stop();

    let r = service
        .post_notification(&json!({"recipients": users, "title": "during the outage"}))
        .await;
    assert_problem(r, 503, "database").await;
    let r = service.get(Some(users[0]), "/v1/me/notifications").await;
    assert_problem(r, 503, "database").await;
    let r = service.get(None, "/readyz").await;
    assert_problem(r, 503, "database").await;
    let r = service.get(Some("out-new"), "/v1/me/stream").await;
    assert_problem(r, 503, "database").await;
    let r = service.get(None, "/healthz").await;
    assert_eq!(r.status(), 200);
    // The waiting poll runs out of time and cannot read the log: it answers
    // 503, and its client keeps retrying (also answered 503) until the
    // database is back. The outage lasts at least that long.
    let poller = &subscribers[2];
    wait_until("the poll's 503", Duration::from_secs(20), || {
        poller.refused() >= 2
    })
    .await;
    let r = service
        .post_notification(&json!({"recipients": users, "title": "during the outage"}))
        .await;
    assert_problem(r, 503, "database").await;

    let pg = EmbeddedPostgres::start(Options {
        data_dir: scratch_dir_path("fault-outage"),
        fsync: false,
        max_connections: 100,
    })
    .unwrap();
    wait_for(|| async { service.get(None, "/readyz").await.status() == 200 }).await;
    for i in 0..AFTER {
        service.publish(&users, &format!("after-{i}")).await;
    }

    let pool = PgPool::connect(&db_url).await.unwrap();
    let db = stored(&pool).await;
    let mut titles = vec!["before".to_owned()];
    titles.extend((0..AFTER).map(|i| format!("after-{i}")));
    for s in subscribers {
        let (user, via, ended, refused) = (s.user.clone(), s.via, s.ended(), s.refused());
        let got = s.finish(1 + AFTER as i64).await;
        assert_eq!(got, db[&user], "{user} over {via:?}");
        let seqs: Vec<i64> = got.iter().map(|g| g.seq).collect();
        assert_eq!(seqs, (1..=1 + AFTER as i64).collect::<Vec<_>>(), "{user}");
        let got_titles: Vec<&str> = got.iter().map(|g| g.title.as_str()).collect();
        assert_eq!(got_titles, titles, "{user}");
        eprintln!("outage: {user} over {via:?}: {ended} stream ends, {refused} refused attempts");
    }
    pool.close().await;
    pg.stop();
}

// ---------------------------------------------------------------------------
// 3. The LISTEN connection lost on every instance.

async fn listener_pids(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'herald-listener' AND datname = current_database()",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_listener_on_every_instance_loses_no_event() {
    const ROUNDS: usize = 3;
    const STRETCH: usize = 40;
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let (on_a, on_b) = (Service::of(&a), Service::of(&b));
    let users = ["lis-a", "lis-b", "lis-both"];
    let subscribers = [
        Subscriber::start(&on_a, users[0], Via::Sse),
        Subscriber::start(&on_b, users[1], Via::Sse),
        Subscriber::start(&on_a, users[2], Via::Ws),
        Subscriber::start(&on_b, users[2], Via::Sse),
        Subscriber::start(&on_b, users[0], Via::Poll),
    ];
    let (stats_a, stats_b) = (&a.handle.state().hub.stats, &b.handle.state().hub.stats);
    wait_until("the streams are open", Duration::from_secs(20), || {
        stats_a.connections(Transport::Sse) == 1
            && stats_a.connections(Transport::Ws) == 1
            && stats_b.connections(Transport::Sse) == 2
    })
    .await;
    // Publishing through both instances, to every user.
    let publishers = Publishers::start(&[on_a, on_b], 4, move |_, _| {
        users.iter().map(|u| u.to_string()).collect()
    });
    for _ in 0..ROUNDS {
        let acked = publishers.acked();
        wait_until("publishing", Duration::from_secs(30), || {
            publishers.acked() >= acked + STRETCH
        })
        .await;
        let old = listener_pids(&a.pool).await;
        assert_eq!(old.len(), 2, "one listener per instance");
        for pid in &old {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&a.pool)
                .await
                .unwrap();
        }
        wait_for(|| async {
            let now = listener_pids(&a.pool).await;
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        })
        .await;
    }
    let acked = publishers.acked();
    wait_until("publishing", Duration::from_secs(30), || {
        publishers.acked() >= acked + STRETCH
    })
    .await;
    let attempts = publishers.stop().await;
    for attempt in &attempts {
        assert!(
            matches!(attempt.outcome, Outcome::Acked(_)),
            "{attempt:?}: the database never went away"
        );
    }

    let db = stored(&a.pool).await;
    check_attempts(&attempts, &db);

    // Last, one more notification per user whose wake-up is lost for good:
    // committed without NOTIFY, as if while the listeners were away. Only
    // the catch-up when each listener comes back delivers it.
    for user in users {
        sqlx::query(
            "WITH u AS (UPDATE users SET last_seq = last_seq + 1 WHERE user_id = $1 RETURNING last_seq)
             INSERT INTO notifications (id, user_id, seq, title, created_at)
             SELECT gen_random_uuid(), $1, last_seq, 'unheard', now() FROM u",
        )
        .bind(user)
        .execute(&a.pool)
        .await
        .unwrap();
    }
    let old = listener_pids(&a.pool).await;
    for pid in &old {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&a.pool)
            .await
            .unwrap();
    }
    wait_for(|| async {
        let now = listener_pids(&a.pool).await;
        now.len() == 2 && now.iter().all(|p| !old.contains(p))
    })
    .await;

    let db = stored(&a.pool).await;
    for s in subscribers {
        let (user, via, ended, refused) = (s.user.clone(), s.via, s.ended(), s.refused());
        let target = last_seq(&a.pool, &user).await;
        assert_eq!(target, db[&user].len() as i64);
        let got = s.finish(target).await;
        assert_eq!(got, db[&user], "{user} over {via:?}");
        if !matches!(via, Via::Poll) {
            assert_eq!(
                (ended, refused),
                (0, 0),
                "{user} over {via:?}: a lost listener must not break streams"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. A stalled client next to a healthy one.

/// An SSE client that reads the response head and then nothing: a raw socket
/// with a tiny receive buffer, so only the server's side buffers anything.
struct StalledSse {
    socket: tokio::net::TcpStream,
    received: Vec<u8>,
}

impl StalledSse {
    async fn open(app: &TestApp, user: &str) -> Self {
        let addr: SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut socket = socket.connect(addr).await.unwrap();
        let request = format!(
            "GET /v1/me/stream?last_event_id=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
            app.token(user, None)
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(crate::support::WAIT, socket.read(&mut byte))
                .await
                .expect("the response head in time")
                .unwrap();
            assert_eq!(n, 1, "the connection closed during the response head");
            received.push(byte[0]);
        }
        let head = String::from_utf8(received.clone())
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        Self { socket, received }
    }

    /// Reads everything the server still sends until it closes; the seqs of
    /// the complete events, and whether the response ended properly.
    async fn drain(mut self) -> (Vec<i64>, bool) {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.socket.read_to_end(&mut self.received),
        )
        .await
        .expect("the server ends the stalled stream")
        .unwrap();
        let start = self
            .received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        let (body, complete) = dechunk(&self.received[start..]);
        let events: Vec<_> = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body)])
            .eventsource()
            .collect()
            .await;
        let seqs = events
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.event, "notification");
                e.id.parse().unwrap()
            })
            .collect();
        (seqs, complete)
    }
}

/// Decodes an HTTP/1.1 chunked body; whether it ended with the last chunk.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let line = std::str::from_utf8(&body[..eol]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[eol + 2..];
        if size == 0 {
            return (out, true);
        }
        if body.len() < size + 2 {
            out.extend_from_slice(&body[..size.min(body.len())]);
            return (out, false);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Enough large notifications (about 19 kB each) to overflow what the stalled
/// connection can absorb: the client's tiny receive buffer, the queue, and
/// the server's send buffer, which grows up to the kernel's `tcp_wmem` maximum.
fn stall_count() -> i64 {
    let wmem_max: i64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().last()?.parse().ok())
        .unwrap_or(4 << 20);
    (wmem_max / 19_000 + 100).max(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_hold_up_another_and_resumes_with_everything() {
    let n = stall_count();
    let app = TestApp::spawn_with(|s| {
        s.stream.buffer = 4;
        s.stream.slow_client_timeout_ms = 10_000;
    })
    .await;
    let stats = &app.handle.state().hub.stats;
    let stalled = StalledSse::open(&app, "stalled").await;
    let mut reader = app.sse("reader", Some("0"), None).await;
    wait_until("both streams open", Duration::from_secs(10), || {
        stats.connections(Transport::Sse) == 2
    })
    .await;

    // Large notifications, each to both users, from concurrent publishers.
    let next = Arc::new(AtomicI64::new(0));
    let publishing: Vec<_> = (0..8)
        .map(|_| {
            let (service, next) = (Service::of(&app), next.clone());
            tokio::spawn(async move {
                let token = service.publisher();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let r = service
                        .http
                        .post(service.url("/v1/notifications"))
                        .bearer_auth(&token)
                        .json(&json!({
                            "recipients": ["stalled", "reader"],
                            "title": format!("n{i}"),
                            "body": "b".repeat(4000),
                            "data": {"pad": "d".repeat(15000)},
                        }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                }
            })
        })
        .collect();

    // The reader gets every one of its events, in order...
    for seq in 1..=n {
        let event = reader.next().await.expect("the reader's stream stays open");
        assert_eq!(event.id, seq.to_string());
    }
    // ...while the stalled stream is still open and far behind: its queue is
    // full and its pump waits (the reader took n of the deliveries).
    let to_stalled = stats.deliveries() as i64 - n;
    assert_eq!(
        stats.connections(Transport::Sse),
        2,
        "the stalled stream must still be open when the reader is done"
    );
    assert!(
        to_stalled < n,
        "the stalled client took {to_stalled} of {n}: it was not stalled"
    );
    for p in publishing {
        p.await.unwrap();
    }

    // Then the server gives up on the stalled one, and its stream ends.
    wait_until(
        "the slow-client disconnect",
        Duration::from_secs(30),
        || stats.connections(Transport::Sse) == 1,
    )
    .await;
    let (seqs, complete) = stalled.drain().await;
    assert!(
        complete,
        "the stalled stream ends with a proper end of body"
    );
    let last = seqs.last().copied().unwrap_or(0);
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert!(last < n, "got {last}");
    // Resuming from what it saw delivers exactly the rest.
    let mut resumed = app.sse("stalled", Some(&last.to_string()), None).await;
    let rest: Vec<String> = resumed
        .take((n - last) as usize)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    let expected: Vec<String> = (last + 1..=n).map(|s| s.to_string()).collect();
    assert_eq!(rest, expected);
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_err(),
        "nothing more"
    );
    // The healthy stream was never disturbed.
    assert!(
        reader
            .next_within(Duration::from_millis(100))
            .await
            .is_err()
    );
    eprintln!(
        "stalled client: {last} events before the disconnect, {to_stalled} queued when the reader finished"
    );
}

// ---------------------------------------------------------------------------
// 5. Connection churn.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_leaks_no_connections_users_or_database_sessions() {
    const USERS: usize = 400;
    const CYCLES: usize = 2000;
    const WORKERS: usize = 16;
    let app = TestApp::spawn_with(|s| {
        // A closed SSE client is noticed at the next heartbeat write.
        s.server.heartbeat_secs = 1;
        // Under a loaded machine, waiting for a pooled connection is not
        // what this test is about.
        s.database.acquire_timeout_ms = 5000;
    })
    .await;
    let state = app.handle.state();
    let users: Arc<Vec<String>> = Arc::new((0..USERS).map(|i| format!("churn-{i}")).collect());
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let service = Service::of(&app);
    service.publish(&names, "hello").await;
    // A fresh TCP connection for every cycle.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (service, http, users, next) =
                (service.clone(), http.clone(), users.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= CYCLES {
                        return;
                    }
                    churn_once(&service, &http, &users[i % USERS], i % 6).await;
                }
            })
        })
        .collect();
    let max = app.settings.database.max_connections;
    while next.load(Ordering::Relaxed) < CYCLES {
        assert!(state.pool.size() <= max, "pool size {}", state.pool.size());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in workers {
        w.await.unwrap();
    }

    // Everything the cycles opened is gone: closed SSE clients are noticed at
    // the next heartbeat, abandoned polls when their wait runs out at the latest.
    let hub = &state.hub;
    wait_until("every connection gone", Duration::from_secs(20), || {
        hub.stats.connections(Transport::Sse) == 0
            && hub.stats.connections(Transport::Ws) == 0
            && hub.stats.connections(Transport::Poll) == 0
            && hub.stream_count() == 0
            && hub.user_count() == 0
    })
    .await;
    assert!(state.pool.size() <= max);
    wait_until("pool connections returned", Duration::from_secs(20), || {
        state.pool.num_idle() == state.pool.size() as usize
    })
    .await;
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'herald'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(sessions <= max as i64, "{sessions} database sessions");
    let metrics = service.get(None, "/metrics").await.text().await.unwrap();
    for transport in ["sse", "ws", "poll"] {
        assert!(
            metrics.contains(&format!("herald_connections{{transport=\"{transport}\"}}")),
            "{transport}"
        );
    }
    // And the service still works.
    let mut stream = app.sse("churn-7", None, None).await;
    service.publish(&["churn-7"], "after the churn").await;
    assert_eq!(stream.next().await.unwrap().id, "2");
}

/// One connect/disconnect cycle of one kind.
async fn churn_once(service: &Service, http: &reqwest::Client, user: &str, kind: usize) {
    let token = service.token(user);
    match kind {
        // SSE replaying seq 1, dropped after it.
        0 | 1 => {
            let mut request = http.get(service.url("/v1/me/stream")).bearer_auth(&token);
            if kind == 0 {
                request = request.header("Last-Event-ID", "0");
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            if kind == 0 {
                let mut events = response.bytes_stream().eventsource();
                let first = tokio::time::timeout(crate::support::WAIT, events.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                assert_eq!(first.id, "1");
            }
        }
        // WebSocket: replay and a clean close, or just a dropped socket.
        2 | 3 => {
            let mut url = format!(
                "{}?access_token={token}",
                service.url("/v1/me/ws").replacen("http", "ws", 1)
            );
            if kind == 2 {
                url.push_str("&last_event_id=0");
            }
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            if kind == 2 {
                loop {
                    let m = tokio::time::timeout(crate::support::WAIT, socket.next())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    if let Message::Text(t) = m {
                        assert_eq!(serde_json::from_str::<Value>(&t).unwrap()["seq"], 1);
                        break;
                    }
                }
                socket.close(None).await.unwrap();
            }
        }
        // A poll that answers at once.
        4 => {
            let r = http
                .get(service.url("/v1/me/events?after=0&wait=0"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["events"][0]["seq"], 1);
        }
        // A waiting long-poll the client abandons.
        _ => {
            let r = http
                .get(service.url("/v1/me/events?after=1&wait=2"))
                .bearer_auth(&token)
                .timeout(Duration::from_millis(50))
                .send()
                .await;
            assert!(r.is_err(), "the poll should still be waiting: {r:?}");
        }
    }
}
