//! One function per scenario. Each gets a freshly started target and returns
//! its measurements as JSON; BENCHMARKS.md describes the method of each.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Published, Tally, open_streams, unix_micros, wait_until};
use crate::common::Percentiles;
use crate::servers::{Kind, Target};

/// Streams being set up at once while a scenario opens its streams (not in
/// the replay storm, where everyone reconnects at once).
const OPENING: usize = 256;
/// How long deliveries may trail the last publish before they count as lost.
const DRAIN: Duration = Duration::from_secs(15);

/// The measurements of one scenario on one target, with the raw latency
/// samples worth plotting.
pub struct Outcome {
    pub result: Value,
    pub deliver_samples: Vec<u64>,
}

fn stream_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .build()?)
}

/// Opens one live stream per user (`shared`: nchan's streams that also carry
/// the channel everyone hears) and waits until the server counts them all.
async fn open_live(
    target: &Target,
    users: &[String],
    tally: &Arc<Tally>,
    expect: usize,
    stop: &CancellationToken,
    shared: bool,
) -> anyhow::Result<()> {
    let client = stream_client()?;
    let mut requests = Vec::with_capacity(users.len());
    for (i, user) in users.iter().enumerate() {
        let token = target.user_token(user)?;
        requests.push(target.stream_request(&client, i, user, &token, None, shared));
    }
    // The tasks end on `stop`; their last ids are not needed here.
    drop(open_streams(requests, tally, expect, stop, OPENING).await);
    if tally.failed() > 0 {
        bail!(
            "{} of {} streams could not be opened",
            tally.failed(),
            users.len()
        );
    }
    target
        .wait_open_streams(users.len() as u64, Duration::from_secs(60))
        .await
}

fn settle() -> tokio::time::Sleep {
    // Lets the server finish what opening thousands of streams set in motion
    // (first heartbeats, allocator caches) before memory is read.
    tokio::time::sleep(Duration::from_secs(3))
}

/// `streams` idle SSE streams: server RSS per stream, and the CPU their
/// heartbeats cost over `hold` seconds.
pub async fn idle(target: &Target, streams: usize, hold: f64) -> anyhow::Result<Outcome> {
    let users = Target::users(streams);
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    settle().await;
    let before = target.rss_kib();
    open_live(target, &users, &tally, 0, &stop, false).await?;
    settle().await;
    let after = target.rss_kib();
    let ticks = target.cpu_ticks();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let cpu_s = (target.cpu_ticks() - ticks) as f64 / 100.0;
    let ended = tally.ended();
    stop.cancel();
    let per_stream_kib = (after.saturating_sub(before)) as f64 / streams as f64;
    println!(
        "  {streams} streams: RSS {before} → {after} KiB, {per_stream_kib:.2} KiB per stream; idle CPU {cpu_s:.2} s in {hold} s; {ended} ended"
    );
    if ended > 0 {
        bail!("{ended} idle streams ended");
    }
    Ok(Outcome {
        result: json!({
            "streams": streams,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_per_stream_kib": per_stream_kib,
            "hold_s": hold,
            "idle_cpu_s": cpu_s,
            "primary": per_stream_kib,
        }),
        deliver_samples: Vec::new(),
    })
}

/// Delivery results after publishing stopped: waits (up to `DRAIN`) for
/// every accepted message to arrive.
async fn drained(tally: &Tally, accepted: u64) -> Value {
    wait_until(DRAIN, || tally.received() >= accepted).await;
    let received = tally.received();
    json!({
        "accepted": accepted,
        "received": received,
        "completeness": if accepted == 0 { 0.0 } else { received as f64 / accepted as f64 },
        "streams_ended": tally.ended(),
        "resets": tally.resets(),
    })
}

/// A measurement whose messages were not all accepted and delivered, once
/// each, is not a result.
fn complete(delivery: &Value) -> anyhow::Result<()> {
    let count = |field: &str| delivery[field].as_u64().unwrap_or(0);
    if count("errors") > 0
        || count("received") != count("accepted")
        || count("streams_ended") > 0
        || count("resets") > 0
    {
        bail!("incomplete: {delivery}");
    }
    Ok(())
}

/// Closed loop: `publishers` publishers, single recipients round-robin over
/// `users` users that each hold one stream, for `seconds`.
pub async fn throughput(
    target: &Target,
    users: usize,
    publishers: usize,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    let users = Arc::new(Target::users(users));
    // Every user known to the server before the clock starts.
    target.prepare_users(&users).await?;
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    open_live(target, &users, &tally, 0, &stop, false).await?;
    let published = Arc::new(Published::default());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let (users, published, next) = (users.clone(), published.clone(), next.clone());
        let target: &Target = target;
        tasks.push(async move {
            while Instant::now() < deadline {
                let user = &users[next.fetch_add(1, Ordering::Relaxed) % users.len()];
                let sent = Instant::now();
                let outcome = target.publish(user, &json!({"t": unix_micros()})).await;
                published.record(outcome, sent.elapsed().as_micros() as u64);
            }
        });
    }
    futures_util::future::join_all(tasks).await;
    let rate = Rate {
        unit: "publishes/s",
        per_request: "publish",
        start,
        publishers,
    };
    rate.report(&published, &tally, stop, serde_json::Map::new())
        .await
}

/// Bulk publishing: each publisher sends batches of `batch` single-recipient
/// notifications (Herald's `POST /v1/notifications/batch`), closed loop. The
/// figure is durable notifications per second, every one delivered live.
/// nchan has no batch, so against it this is its single-publish loop: the
/// rate to compare Herald's bulk rate with.
pub async fn bulk(
    target: &Target,
    users: usize,
    publishers: usize,
    batch: usize,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    if target.kind == Kind::Nchan {
        return throughput(target, users, publishers, seconds).await;
    }
    let users = Arc::new(Target::users(users));
    target.prepare_users(&users).await?;
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    open_live(target, &users, &tally, 0, &stop, false).await?;
    let published = Arc::new(Published::default());
    let next = Arc::new(AtomicUsize::new(0));
    let publisher = target.publisher();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let (users, published, next) = (users.clone(), published.clone(), next.clone());
        let publisher = publisher.clone();
        tasks.push(async move {
            while Instant::now() < deadline {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                let chosen: Vec<&str> = (first..first + batch)
                    .map(|i| users[i % users.len()].as_str())
                    .collect();
                let sent = Instant::now();
                let outcome = publisher
                    .publish_batch(&chosen, &json!({"t": unix_micros()}))
                    .await;
                published.record_many(outcome, sent.elapsed().as_micros() as u64);
            }
        });
    }
    futures_util::future::join_all(tasks).await;
    let rate = Rate {
        unit: "notifications/s",
        per_request: "batch",
        start,
        publishers,
    };
    let mut extra = serde_json::Map::new();
    extra.insert("batch".into(), json!(batch));
    rate.report(&published, &tally, stop, extra).await
}

/// The end of a closed-loop rate measurement: waits for the deliveries,
/// prints the line and builds the result.
struct Rate {
    /// What is counted per second (`publishes/s`, `notifications/s`).
    unit: &'static str,
    /// What one request is, in the printed line.
    per_request: &'static str,
    start: Instant,
    publishers: usize,
}

impl Rate {
    async fn report(
        &self,
        published: &Published,
        tally: &Tally,
        stop: CancellationToken,
        extra: serde_json::Map<String, Value>,
    ) -> anyhow::Result<Outcome> {
        let elapsed = self.start.elapsed().as_secs_f64();
        let accepted = published.accepted();
        let mut delivery = drained(tally, accepted).await;
        stop.cancel();
        let rate = accepted as f64 / elapsed;
        let publish = Percentiles::of(&mut published.latencies.lock().unwrap());
        let mut samples = std::mem::take(&mut *tally.latencies.lock().unwrap());
        let deliver = Percentiles::of(&mut samples);
        println!(
            "  {rate:.0} {} ({accepted} in {elapsed:.1} s, {} errors); {} {}; deliver {}; {}/{accepted} delivered",
            self.unit,
            published.errors(),
            self.per_request,
            publish.human(),
            deliver.human(),
            tally.received(),
        );
        let key = self.unit.replace('/', "_per_");
        delivery[key.as_str()] = json!(rate);
        for (k, v) in extra {
            delivery[k.as_str()] = v;
        }
        delivery["publishers"] = json!(self.publishers);
        delivery["errors"] = json!(published.errors());
        delivery["publish"] = publish.json();
        delivery["deliver"] = deliver.json();
        delivery["primary"] = json!(rate);
        complete(&delivery)?;
        Ok(Outcome {
            result: delivery,
            deliver_samples: samples,
        })
    }
}

/// Open loop: publish *i* is due at `start + i/rate` and goes out then even if
/// earlier ones are unanswered; each carries its due time, so a slow server
/// cannot hide its queueing from the measurement.
pub async fn latency(
    target: &Target,
    users: usize,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    let users = Target::users(users);
    target.prepare_users(&users).await?;
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    open_live(target, &users, &tally, 0, &stop, false).await?;
    let published = Arc::new(Published::default());
    let publisher = target.publisher();
    let total = (rate * seconds) as usize;
    let start = Instant::now();
    let start_unix = unix_micros();
    let mut worst_lag = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let offset = Duration::from_secs_f64(i as f64 / rate);
        let due = start + offset;
        tokio::time::sleep_until(due).await;
        worst_lag = worst_lag.max(due.elapsed());
        let user = users[i % users.len()].clone();
        let (publisher, published) = (publisher.clone(), published.clone());
        let due_unix = start_unix + offset.as_micros() as i64;
        tasks.spawn(async move {
            let outcome = publisher.publish(&user, &json!({"t": due_unix})).await;
            published.record(outcome, due.elapsed().as_micros() as u64);
        });
        // Reap finished publishes as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let accepted = published.accepted();
    let mut delivery = drained(&tally, accepted).await;
    stop.cancel();
    let publish = Percentiles::of(&mut published.latencies.lock().unwrap());
    let mut samples = std::mem::take(&mut *tally.latencies.lock().unwrap());
    let deliver = Percentiles::of(&mut samples);
    println!(
        "  {rate}/s for {seconds} s: {accepted} accepted, {} errors; publish {}; deliver {}; {}/{accepted} delivered; generator lag up to {:.1} ms",
        published.errors(),
        publish.human(),
        deliver.human(),
        tally.received(),
        worst_lag.as_secs_f64() * 1e3,
    );
    delivery["rate"] = json!(rate);
    delivery["errors"] = json!(published.errors());
    delivery["publish"] = publish.json();
    delivery["deliver"] = deliver.json();
    delivery["generator_lag_us"] = json!(worst_lag.as_micros() as u64);
    delivery["primary"] = json!(deliver.p99);
    complete(&delivery)?;
    Ok(Outcome {
        result: delivery,
        deliver_samples: samples,
    })
}

/// One publish to `streams` online users; how long until each has it,
/// counted from the moment the publish was sent.
pub async fn fanout(target: &Target, streams: usize) -> anyhow::Result<Outcome> {
    let users = Target::users(streams);
    target.prepare_users(&users).await?;
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    open_live(target, &users, &tally, 1, &stop, true).await?;
    let sent = unix_micros();
    target.publish_to_all(&users, &json!({"t": sent})).await?;
    let accepted = unix_micros() - sent;
    let all = wait_until(Duration::from_secs(60), || tally.completed() >= streams).await;
    let received = tally.received();
    stop.cancel();
    let mut samples: Vec<u64> = tally
        .completions
        .lock()
        .unwrap()
        .iter()
        .map(|&at| (at - sent).max(0) as u64)
        .collect();
    let deliver = Percentiles::of(&mut samples);
    println!(
        "  {streams} streams: accepted after {:.1} ms; delivered {}; {received}/{streams} received",
        accepted as f64 / 1e3,
        deliver.human(),
    );
    if !all {
        bail!("only {received} of {streams} streams got the fan-out");
    }
    Ok(Outcome {
        result: json!({
            "streams": streams,
            "accepted_us": accepted,
            "deliver": deliver.json(),
            "received": received,
            "streams_ended": tally.ended(),
            "primary": deliver.p99,
        }),
        deliver_samples: samples,
    })
}

/// `users` users each hold a stream and have one message; they go away, miss
/// `missed` messages each, and all reconnect at the same moment with
/// Last-Event-ID. Time until every one of them has caught up.
pub async fn replay(target: &Target, users: usize, missed: usize) -> anyhow::Result<Outcome> {
    let n = users;
    let users = Target::users(n);
    target.prepare_users(&users).await?;
    // Everyone sees one message and remembers its id.
    let first = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let client = stream_client()?;
    let mut tokens = Vec::with_capacity(n);
    let mut requests = Vec::with_capacity(n);
    for (i, user) in users.iter().enumerate() {
        tokens.push(target.user_token(user)?);
        requests.push(target.stream_request(&client, i, user, &tokens[i], None, false));
    }
    let tasks = open_streams(requests, &first, 1, &stop, OPENING).await;
    target
        .wait_open_streams(n as u64, Duration::from_secs(60))
        .await?;
    target.publish_each(&users, &json!({"seen": true})).await?;
    if !wait_until(Duration::from_secs(60), || first.completed() >= n).await {
        bail!(
            "only {} of {n} streams got their first message",
            first.completed()
        );
    }
    stop.cancel();
    let mut last_ids = Vec::with_capacity(n);
    for task in tasks {
        last_ids.push(task.await?.context("a stream ended without an id")?);
    }
    target
        .wait_open_streams_below(1, Duration::from_secs(60))
        .await?;
    // While they are away, each misses `missed` messages.
    for k in 0..missed {
        target.publish_each(&users, &json!({"missed": k})).await?;
    }
    // Everyone reconnects at once.
    let storm = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let client = stream_client()?;
    let requests: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            target.stream_request(&client, i, user, &tokens[i], Some(&last_ids[i]), false)
        })
        .collect();
    let started = unix_micros();
    let _tasks = open_streams(requests, &storm, missed, &stop, n).await;
    let all = wait_until(Duration::from_secs(120), || storm.completed() >= n).await;
    let completions = storm.completions.lock().unwrap().clone();
    let finished = completions.iter().copied().max().unwrap_or(started);
    // Anything beyond `missed` per stream would be a duplicate.
    let extra = wait_until(Duration::from_millis(500), || {
        storm.received() > (n * missed) as u64
    })
    .await;
    let received = storm.received();
    stop.cancel();
    let mut samples: Vec<u64> = completions
        .iter()
        .map(|&at| (at - started).max(0) as u64)
        .collect();
    let each = Percentiles::of(&mut samples);
    let total_s = (finished - started) as f64 / 1e6;
    println!(
        "  {n} × {missed}: everyone caught up in {total_s:.3} s (per stream {}); {received}/{} received, {} failed, {} resets",
        each.human(),
        n * missed,
        storm.failed(),
        storm.resets(),
    );
    if !all || extra || storm.failed() > 0 || storm.resets() > 0 {
        bail!(
            "replay storm incomplete: {} of {n} caught up, {received} messages for {} expected, {} failed, {} resets",
            storm.completed(),
            n * missed,
            storm.failed(),
            storm.resets()
        );
    }
    Ok(Outcome {
        result: json!({
            "users": n,
            "missed": missed,
            "total_s": total_s,
            "per_stream": each.json(),
            "received": received,
            "primary": total_s,
        }),
        deliver_samples: samples,
    })
}

/// A broadcast to `users` known users while single publishes go on at
/// `rate`/s (open loop) to other users: how long the broadcast takes, and
/// what it does to the single publishes.
pub async fn broadcast(target: &Target, users: usize, rate: f64) -> anyhow::Result<Outcome> {
    let all = Target::users(users);
    target.prepare_users(&all).await?;
    let singles: Arc<Vec<String>> = Arc::new((0..1000).map(|i| format!("single{i:04}")).collect());
    target.prepare_users(&singles).await?;
    let published = Arc::new(Published::default());
    let done = CancellationToken::new();
    let generator = {
        let (publisher, published, done, singles) = (
            target.publisher(),
            published.clone(),
            done.clone(),
            singles.clone(),
        );
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0.. {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = done.cancelled() => break,
                }
                let (publisher, published) = (publisher.clone(), published.clone());
                let user = singles[i % singles.len()].clone();
                tasks.spawn(async move {
                    let outcome = publisher.publish(&user, &json!({"t": unix_micros()})).await;
                    published.record(outcome, due.elapsed().as_micros() as u64);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    // Single publishes running steadily before the broadcast starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    target.broadcast(&all, &json!({"t": unix_micros()})).await?;
    let took = started.elapsed().as_secs_f64();
    done.cancel();
    generator.await?;
    let singles = Percentiles::of(&mut published.latencies.lock().unwrap());
    println!(
        "  {users} users in {took:.2} s ({:.0} users/s); single publishes meanwhile: {} accepted, {} errors, {}",
        users as f64 / took,
        published.accepted(),
        published.errors(),
        singles.human(),
    );
    if published.errors() > 0 {
        bail!(
            "{} single publishes failed during the broadcast",
            published.errors()
        );
    }
    Ok(Outcome {
        result: json!({
            "users": users,
            "total_s": took,
            "users_per_s": users as f64 / took,
            "singles_rate": rate,
            "singles": singles.json(),
            "singles_accepted": published.accepted(),
            "singles_errors": published.errors(),
            "primary": took,
        }),
        deliver_samples: Vec::new(),
    })
}
