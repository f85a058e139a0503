//! The readiness check behind `/readyz`, asked of the database at most once
//! at a time. Probes that arrive while a check runs wait for it and share
//! its answer, so a flood of probes (a misconfigured balancer, an attacker:
//! `/readyz` needs no token) uses one pool connection instead of draining
//! the pool that requests need.

use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::db;

#[derive(Default)]
pub struct Readiness {
    /// When the last check finished and whether the database answered. The
    /// lock is held during a check: that is what makes checks one at a time.
    last: Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    /// Whether the database answers: the answer of a check that finished
    /// after this call began (one running meanwhile), else of a new check.
    pub async fn database_answers(&self, pool: &PgPool) -> bool {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((finished, answered)) = *last
            && finished >= asked
        {
            return answered;
        }
        let answered = match db::ping(pool).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "readiness check: the database does not answer");
                false
            }
        };
        *last = Some((Instant::now(), answered));
        answered
    }
}
