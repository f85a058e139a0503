//! Long-poll pool drain: one user holds many waiting long-polls and a
//! publisher wakes them several times a second; every wake-up answers every
//! poll, which polls again. The per-user stream cap should refuse most of
//! them (429), and the reads they cause must not starve other users.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::Config;
use crate::report::{Outcome, Tally};
use crate::target::Target;

const USER: &str = "attack-poller";

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Outcome> {
    let polls = config.n(1_000);
    let seconds = if config.smoke { 2.0 } else { 15.0 };
    let wakes_per_sec = 5.0;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(polls)
        .build()?;
    let token = target.token(USER, None);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let url = target.url("/v1/me/events");
    let pollers = (0..polls).map(|_| {
        let (http, token, url, stop, tally) = (
            http.clone(),
            token.clone(),
            url.clone(),
            stop.clone(),
            tally.clone(),
        );
        tokio::spawn(async move {
            let mut after = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let response = http
                    .get(format!("{url}?after={after}&wait=30"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(40))
                    .send()
                    .await;
                let status = match response {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        if status == 200
                            && let Ok(body) = r.json::<Value>().await
                        {
                            after = body["last_seq"].as_u64().unwrap_or(after);
                        }
                        status.to_string()
                    }
                    Err(_) => "error".to_owned(),
                };
                tally.lock().await.add(status.clone());
                if status != "200" {
                    // A refused poll backs off as a client would.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        })
    });
    let pollers: Vec<_> = pollers.collect();
    let started = Instant::now();
    let mut wakes = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / wakes_per_sec));
    while started.elapsed().as_secs_f64() < seconds {
        tick.tick().await;
        let status = http
            .post(target.url("/v1/notifications"))
            .bearer_auth(&target.publisher)
            .json(&json!({"recipients": [USER], "title": "wake"}))
            .send()
            .await
            .map_or("error".to_owned(), |r| r.status().as_u16().to_string());
        wakes.add(status);
    }
    stop.store(true, Ordering::Relaxed);
    for poller in &pollers {
        poller.abort();
    }
    let _ = join_all(pollers).await;
    let tally = tally.lock().await.clone();
    let mut outcome = Outcome::default();
    outcome.row(
        format!("{polls} long-polls of one user, woken {wakes_per_sec}/s for {seconds} s"),
        format!("polls answered: {tally}; wake-up publishes: {wakes}"),
    );
    let answered = tally.get("200");
    if answered > (16.0 * wakes_per_sec * seconds * 2.0) as u64 {
        outcome.finding(format!(
            "one user's long-polls were answered {answered} times: polls are not capped per user"
        ));
    }
    let errors = tally.outside(&["200", "429"]);
    if !errors.is_empty() || !wakes.outside(&["201"]).is_empty() {
        outcome.finding(format!(
            "errors: polls {}; wake-up publishes {wakes}",
            errors.join(" ")
        ));
    }
    Ok(outcome)
}
