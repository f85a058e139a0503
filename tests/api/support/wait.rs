//! Waiting for an observable condition, never for a guessed time.

use std::time::Duration;

/// How long a test waits for anything that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it holds; panics after `WAIT`.
pub async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
