//! `sql`: publishes/s of `herald_publish(...)` called by SQL clients, each
//! on its own connection, each call its own transaction (so one commit and
//! one fsync per publish, as an application that publishes inside its own
//! short transactions pays). Single recipients spread over known users.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::common::Percentiles;

pub struct Outcome {
    pub published: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub latency: Percentiles,
}

pub async fn run(
    db_url: &str,
    users: Arc<Vec<String>>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(sqlx::PgConnection::connect(db_url).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(clients);
    for mut conn in connections {
        let (users, next, errors) = (Arc::clone(&users), Arc::clone(&next), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let user = &users[i % users.len()];
                let sent = Instant::now();
                let published: Result<Vec<(uuid::Uuid,)>, sqlx::Error> = sqlx::query_as(
                    "SELECT id FROM herald_publish(ARRAY[$1], 'Benchmark notification',
                         'A durable single-recipient notification.', data => $2)",
                )
                .bind(user)
                .bind(sqlx::types::Json(serde_json::json!({ "i": i })))
                .fetch_all(&mut conn)
                .await;
                match published {
                    Ok(rows) if rows.len() == 1 => {
                        latencies.push(sent.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    Ok(Outcome {
        published: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed_s: started.elapsed().as_secs_f64(),
        latency: Percentiles::of(&mut latencies),
    })
}
