//! Coalescing of concurrent database reads: requests that arrive while the
//! workers are busy wait in a queue, and the next free worker answers all of
//! them (up to a limit) with one query.
//!
//! Why: when thousands of clients reconnect at once (a deploy, a network
//! blip), each would otherwise cost a pool connection and a round trip per
//! read, and the database would spend its time on per-statement overhead.
//! With few requests there is no waiting: an idle worker takes a request at
//! once, so a lone read costs what it did before.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

/// Why a batched read failed, for every request in the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BatchFailed {
    /// The database could not be reached (so clients should retry).
    pub unavailable: bool,
    message: Arc<str>,
}

impl From<&sqlx::Error> for BatchFailed {
    fn from(e: &sqlx::Error) -> Self {
        Self {
            unavailable: crate::db::is_unavailable(e),
            message: e.to_string().into(),
        }
    }
}

type Job<Q, A> = (Q, oneshot::Sender<Result<A, BatchFailed>>);

/// Answers `Q`s with `A`s, many per call of the batch function.
pub struct Batcher<Q, A> {
    queue: mpsc::UnboundedSender<Job<Q, A>>,
}

impl<Q, A> Clone for Batcher<Q, A> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Starts `workers` tasks; each takes up to `max_batch` waiting requests
    /// and calls `run` with them, which must answer them in order. The tasks
    /// end when every `Batcher` handle is gone.
    pub fn start<F, Fut>(workers: usize, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<A>, sqlx::Error>> + Send,
    {
        let (queue, rx) = mpsc::unbounded_channel::<Job<Q, A>>();
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        for _ in 0..workers.max(1) {
            let (rx, run) = (Arc::clone(&rx), Arc::clone(&run));
            tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(max_batch);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut jobs, max_batch.max(1)).await == 0 {
                            return;
                        }
                    }
                    let (queries, replies): (Vec<Q>, Vec<_>) = jobs.drain(..).unzip();
                    match run(queries).await {
                        Ok(answers) => {
                            for (reply, answer) in replies.into_iter().zip(answers) {
                                let _ = reply.send(Ok(answer));
                            }
                        }
                        Err(e) => {
                            let failed = BatchFailed::from(&e);
                            for reply in replies {
                                let _ = reply.send(Err(failed.clone()));
                            }
                        }
                    }
                }
            });
        }
        Self { queue }
    }

    pub async fn call(&self, query: Q) -> Result<A, BatchFailed> {
        let (reply, answer) = oneshot::channel();
        let gone = || BatchFailed {
            unavailable: true,
            message: "the service is shutting down".into(),
        };
        self.queue.send((query, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
