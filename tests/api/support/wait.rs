//! Waiting for an observable condition, never for a guessed time.

use std::time::Duration;

/// How long a test waits for anything that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it holds; panics after `WAIT`.
pub async fn wait_for(check: impl AsyncFnMut() -> bool) {
    wait_within("condition", WAIT, check).await;
}

/// Polls `check` until it holds; panics after `timeout`, naming `what`.
pub async fn wait_within(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
