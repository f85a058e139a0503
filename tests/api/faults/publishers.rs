//! Publishers for the fault tests: they publish continuously, recording for
//! every attempt whether it was acknowledged (201 and its items), refused (an
//! error answer: must change nothing) or lost (no answer: may or may not have
//! committed, all or nothing), and the check of that record against the
//! database.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::Got;
use crate::support::Service;

#[derive(Debug)]
pub enum Outcome {
    Acked(Vec<Value>),
    Refused(u16),
    Lost,
}

#[derive(Debug)]
pub struct Attempt {
    pub title: String,
    pub recipients: Vec<String>,
    pub outcome: Outcome,
}

pub struct Publishers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Vec<Attempt>>>,
}

impl Publishers {
    /// `count` publishers, the n-th publishing through `services[n % len]`;
    /// `recipients(n, i)` names the recipients of its i-th attempt.
    pub fn start(
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

    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    pub async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("a publisher panicked"));
        }
        all
    }
}

/// Every notification in the database: user → `[(seq, id, title)]` in seq order.
pub async fn stored(pool: &PgPool) -> BTreeMap<String, Vec<Got>> {
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

pub async fn last_seq(pool: &PgPool, user: &str) -> i64 {
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
pub fn check_attempts(attempts: &[Attempt], db: &BTreeMap<String, Vec<Got>>) -> (usize, usize) {
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
