//! The fault tests' subscribers: the resuming subscriber the soak benchmark
//! also runs, keeping each connection until the server ends it and retrying
//! at once, judged strictly when it finishes: every event exactly once, in
//! seq order, and every refusal a clean 503 while the database is away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::resuming::{self, Options, Refusal};
pub use crate::support::resuming::{Received as Got, Transport as Via};
use crate::support::{Service, assert_problem_parts, wait_within};

/// How long a subscriber, once told the final seq, may take to reach it.
const STUCK: Duration = Duration::from_secs(60);

pub struct Subscriber {
    pub user: String,
    pub via: Via,
    inner: resuming::Subscriber,
}

impl Subscriber {
    /// Starts reading `user`'s events from seq 0.
    pub fn start(service: &Service, user: &str, via: Via) -> Self {
        let options = Options {
            hold_secs: None,
            poll_wait_secs: 3,
            // A long-poll must answer within its wait, plus this slack.
            poll_slack: Duration::from_secs(15),
            retry_after: Duration::from_millis(50),
            print_failures: 0,
        };
        let inner = resuming::Subscriber::start(
            &service.base,
            &service.http,
            user,
            service.token(user),
            via,
            options,
            CancellationToken::new(),
        );
        Self {
            user: user.to_owned(),
            via,
            inner,
        }
    }

    /// The last seq received.
    pub fn seen(&self) -> i64 {
        self.inner.progress().last_seq()
    }

    /// Open streams that ended before the subscriber was done.
    pub fn ended(&self) -> usize {
        count(&self.inner.progress().server_closed) as usize
    }

    /// Connection attempts or polls that failed (and were retried).
    pub fn refused(&self) -> usize {
        count(&self.inner.progress().failures) as usize
    }

    /// Waits until everything up to `last_seq` has arrived; what arrived.
    pub async fn finish(self, last_seq: i64) -> Vec<Got> {
        let (user, via) = (self.user, self.via);
        let progress = Arc::clone(self.inner.progress());
        wait_within(
            &format!("the {via:?} subscriber of {user} reaching seq {last_seq}"),
            STUCK,
            async || progress.last_seq() >= last_seq,
        )
        .await;
        let progress = match self.inner.stop().await {
            Ok(progress) => progress,
            Err(e) => panic!("the {via:?} subscriber of {user} failed: {e}"),
        };
        assert_eq!(
            (count(&progress.out_of_order), count(&progress.duplicates)),
            (0, 0),
            "{user}: events repeated or out of order"
        );
        assert_eq!(count(&progress.resets), 0, "{user}: a reset");
        assert_eq!(
            count(&progress.unexpected),
            0,
            "{user}: an event other than a notification, or a malformed answer"
        );
        assert_eq!(
            count(&progress.hung_polls),
            0,
            "{user}: a long-poll hung beyond its wait"
        );
        for refusal in progress.refusals() {
            assert_clean_refusal(&user, &refusal);
        }
        progress.received()
    }
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A refusal must be a clean one: 503 (over HTTP, problem+json) while the
/// database is away. Anything else is a failure.
fn assert_clean_refusal(user: &str, refusal: &Refusal) {
    assert_eq!(refusal.status, 503, "{user}: unexpected answer {refusal:?}");
    if refusal.transport != Via::Ws {
        assert_problem_parts(
            refusal.status,
            &refusal.content_type,
            &refusal.body,
            503,
            "database",
        );
    }
}
