//! Fault tests: the service killed mid-traffic and restarted, PostgreSQL
//! going away under open streams, the LISTEN connection lost on every
//! instance, a stalled client next to a healthy one, and connection churn.
//! Real processes, real PostgreSQL, real SSE / WebSocket / long-poll clients;
//! every check is exact: each event exactly once, in seq order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{Service, assert_problem};

mod churn;
mod kill_restart;
mod listener_loss;
mod postgres_outage;
mod stalled_client;

/// How long a subscriber, once told the final seq, may take to reach it.
const STUCK: Duration = Duration::from_secs(60);

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
