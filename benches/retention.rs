//! Retention's scans with and without indexes on age: fills a private
//! PostgreSQL with `--rows` notifications and as many idempotency keys,
//! then explains the exact purge statements (`EXPLAIN (ANALYZE, BUFFERS)`,
//! inside a transaction that is rolled back, so every run sees the same
//! rows) without the indexes of `migrations/0003_retention_indexes.sql`
//! and with them, and measures what the indexes add to each row written.
//! See RELIABILITY.md for the figures.
//!
//! ```text
//! cargo bench --bench retention -- [--rows 1000000]
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it runs with 20,000 rows, as a
//! smoke test that keeps this benchmark working. Prints one `RESULT {json}`
//! line per measurement.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use herald::app::embedded_pg::{EmbeddedPostgres, Options, connect_with_retry};
use herald::db::retention::PURGE_IDEMPOTENCY_KEYS;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const INDEXES: &str = include_str!("../migrations/0003_retention_indexes.sql");
/// Rows one purge statement removes (`retention.batch`).
const BATCH: i64 = 1000;
const USERS: i64 = 10_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let rows = match args.iter().position(|a| a == "--rows") {
        Some(i) => args.get(i + 1).context("--rows N")?.parse()?,
        None if bench => 1_000_000,
        None => 20_000,
    };
    let dir = std::env::temp_dir().join(format!("herald-retention-{}", std::process::id()));
    let pg = EmbeddedPostgres::start(Options {
        data_dir: dir.clone(),
        fsync: true,
        max_connections: 20,
    })?;
    let result = run(&pg, rows).await;
    pg.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(pg: &EmbeddedPostgres, rows: i64) -> anyhow::Result<()> {
    pg.create_database("retention").await?;
    let mut conn = connect_with_retry(&pg.url("retention")).await?;
    herald::db::MIGRATOR.run(&mut conn).await?;
    // Full-page images depend on when the last checkpoint happened, which
    // would make the WAL per row of two runs incomparable; without them the
    // WAL is that of the rows and index entries alone.
    for statement in [
        "ALTER SYSTEM SET full_page_writes = off",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(statement).execute(&mut conn).await?;
    }
    sqlx::raw_sql("DROP INDEX notifications_created_at, idempotency_keys_created_at")
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    fill(&mut conn, rows).await?;
    println!(
        "filled {rows} notifications and {rows} idempotency keys in {:.1?}",
        started.elapsed()
    );

    for indexed in [false, true] {
        if indexed {
            let started = Instant::now();
            sqlx::raw_sql(INDEXES).execute(&mut conn).await?;
            println!("created the indexes in {:.1?}", started.elapsed());
            sqlx::raw_sql("VACUUM ANALYZE").execute(&mut conn).await?;
        }
        for (label, sql, cutoff_age) in scans() {
            let cutoff = Utc::now() - cutoff_age;
            let mut best: Option<Value> = None;
            // The first run reads from disk; the best of three is the
            // steady state of a purge that runs every minute.
            for _ in 0..3 {
                let run = explain(&mut conn, &sql, cutoff).await?;
                if best
                    .as_ref()
                    .is_none_or(|b| run["ms"].as_f64() < b["ms"].as_f64())
                {
                    best = Some(run);
                }
            }
            let mut best = best.unwrap();
            best["scan"] = json!(label);
            best["indexed"] = json!(indexed);
            best["rows"] = json!(rows);
            println!("RESULT {best}");
        }
        let written = write_cost(&mut conn, rows / 10, indexed).await?;
        println!("RESULT {written}");
    }
    let sizes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT relname::text, pg_relation_size(oid) FROM pg_class
         WHERE relname IN ('notifications', 'idempotency_keys',
                           'notifications_created_at', 'idempotency_keys_created_at')
         ORDER BY relname",
    )
    .fetch_all(&mut conn)
    .await?;
    println!("RESULT {}", json!({"sizes_bytes": sizes}));
    conn.close().await?;
    Ok(())
}

/// Each purge statement that looks for rows by age, with a cutoff that
/// matches nothing (the usual case: the purge runs every minute, so almost
/// always nothing or little has aged out) and one that matches more than a
/// batch.
fn scans() -> Vec<(&'static str, String, chrono::Duration)> {
    let notifications = herald::db::timers::CLAIM_AGED.to_owned();
    let keys = PURGE_IDEMPOTENCY_KEYS.to_owned();
    vec![
        (
            "notifications, nothing aged out",
            notifications.clone(),
            chrono::Duration::days(90),
        ),
        (
            "notifications, a batch aged out",
            notifications,
            chrono::Duration::days(88),
        ),
        (
            "idempotency keys, nothing aged out",
            keys.clone(),
            chrono::Duration::hours(24),
        ),
        (
            "idempotency keys, a batch aged out",
            keys,
            chrono::Duration::hours(22),
        ),
    ]
}

/// Notifications spread evenly over the last 89 days and idempotency keys
/// over the last 23 hours, in the order they were written.
async fn fill(conn: &mut PgConnection, rows: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO users (user_id, last_seq)
         SELECT 'user-' || u, 0 FROM generate_series(0, $1 - 1) u",
    )
    .bind(USERS)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO notifications (id, user_id, seq, title, body, created_at)
         SELECT gen_random_uuid(), 'user-' || (i % $2), i, 'Title ' || i, 'A body of some length',
                now() - interval '89 days' + (i * interval '89 days') / $1
         FROM generate_series(1, $1) i",
    )
    .bind(rows)
    .bind(USERS)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (publisher, key, request_hash, response, created_at)
         SELECT 'publisher-' || (i % 10), 'key-' || i, sha256(i::text::bytea), '{}'::json,
                now() - interval '23 hours' + (i * interval '23 hours') / $1
         FROM generate_series(1, $1) i",
    )
    .bind(rows)
    .execute(&mut *conn)
    .await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of `sql` with `$1 = cutoff`, `$2 = BATCH`,
/// rolled back: execution time and the pages it touched.
async fn explain(
    conn: &mut PgConnection,
    sql: &str,
    cutoff: chrono::DateTime<Utc>,
) -> anyhow::Result<Value> {
    let mut tx = conn.begin().await?;
    let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"
    )))
    .bind(cutoff)
    .bind(BATCH)
    .fetch_one(&mut *tx)
    .await?;
    tx.rollback().await?;
    let top = &plan[0];
    Ok(json!({
        "ms": top["Execution Time"],
        "shared_hit": top["Plan"]["Shared Hit Blocks"],
        "shared_read": top["Plan"]["Shared Read Blocks"],
        "plan": scan_nodes(&top["Plan"]),
    }))
}

/// The scan nodes of a plan, e.g. `Seq Scan on notifications`.
fn scan_nodes(node: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(kind) = node["Node Type"].as_str()
        && kind.contains("Scan")
        && let Some(relation) = node["Relation Name"].as_str()
    {
        let index = node["Index Name"]
            .as_str()
            .map_or_else(String::new, |i| format!(" using {i}"));
        out.push(format!("{kind} on {relation}{index}"));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        out.extend(scan_nodes(child));
    }
    out
}

/// What writing `n` more notifications and idempotency keys costs, one row
/// per statement as a publish writes them (each in its own transaction):
/// WAL bytes (without full-page images) and time per transaction.
async fn write_cost(conn: &mut PgConnection, n: i64, indexed: bool) -> anyhow::Result<Value> {
    let n = n.clamp(100, 20_000);
    // Commits do not wait for the disk, so the time is the work.
    sqlx::raw_sql("SET synchronous_commit = off")
        .execute(&mut *conn)
        .await?;
    let offset: i64 = sqlx::query_scalar("SELECT max(seq) + 1 FROM notifications")
        .fetch_one(&mut *conn)
        .await?;
    // A warm-up of 100 rows, not counted.
    let (warm_up, offset) = (offset..offset + 100, offset + 100);
    for i in warm_up {
        write_one(conn, i).await?;
    }
    let before = current_lsn(conn).await?;
    let started = Instant::now();
    for i in offset..offset + n {
        write_one(conn, i).await?;
    }
    let elapsed: Duration = started.elapsed();
    let after = current_lsn(conn).await?;
    sqlx::raw_sql("RESET synchronous_commit")
        .execute(&mut *conn)
        .await?;
    let wal: f64 = sqlx::query_scalar("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8")
        .bind(&after)
        .bind(&before)
        .fetch_one(&mut *conn)
        .await?;
    Ok(json!({
        "write": "one notification + one idempotency key per transaction",
        "indexed": indexed,
        "transactions": n,
        "wal_bytes_per_txn": (wal / n as f64).round(),
        "us_per_txn": (elapsed.as_secs_f64() * 1e6 / n as f64).round(),
    }))
}

async fn current_lsn(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(conn)
        .await
}

/// One notification and one idempotency key, in one transaction.
async fn write_one(conn: &mut PgConnection, i: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH n AS (
             INSERT INTO notifications (id, user_id, seq, title, body, created_at)
             VALUES (gen_random_uuid(), 'user-' || ($1 % 10000), $1, 'Title', 'A body', now())
         )
         INSERT INTO idempotency_keys (publisher, key, request_hash, response, created_at)
         VALUES ('publisher', 'key-' || $1, sha256($1::text::bytea), '{}'::json, now())",
    )
    .bind(i)
    .execute(conn)
    .await
    .map(|_| ())
}
