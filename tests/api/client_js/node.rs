//! The package's tests against a live Herald, from Node (`clients/js/test/live`):
//! each transport, token renewal, and the mini-program entry with a `wx`
//! over real sockets. Each file gets a server of its own (they read its
//! connection statistics), with a heartbeat every second: a server notices
//! a stream whose client went away when it next writes to it, and the tests
//! check that a stopped client leaves no stream behind.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{js_dir, require_node_modules};
use crate::support::{TEST_SECRET, TestApp};

async fn node_test(file: &str) {
    require_node_modules();
    let app = TestApp::spawn_with(|s| s.server.heartbeat_secs = 1).await;
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .args(["--test", &format!("test/live/{file}")])
        .current_dir(js_dir())
        .env("HERALD_URL", &app.address)
        .env("HERALD_TEST_SECRET", TEST_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/test.sh installs it)");
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node --test test/live/{file} ran over 180 s"))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "node --test test/live/{file} failed:\n{text}"
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# pass") || l.starts_with("# fail"))
        .collect();
    eprintln!(
        "node --test test/live/{file}: {} in {:?}",
        summary.join(", "),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_each_transport_against_a_live_herald() {
    node_test("transports.test.js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_token_renewal_and_refusal_against_a_live_herald() {
    node_test("tokens.test.js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_the_mini_program_entry_over_real_sockets() {
    node_test("miniprogram.test.js").await;
}
