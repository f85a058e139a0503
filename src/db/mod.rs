//! SQL, one query per named function. Functions take a connection or a
//! transaction (`&mut PgConnection`) or the pool, never build SQL from input.

pub mod broadcasts;
pub mod changes;
pub mod events;
pub mod idempotency;
pub mod instances;
pub mod notifications;
pub mod preferences;
pub mod publish;
pub mod retention;
pub mod schedules;
pub mod stats;
pub mod timers;
pub mod topics;
pub mod users;
pub mod webhooks;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::settings::DatabaseSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The application pool. Connections are opened lazily so the service starts
/// (and answers /readyz with 503) while the database is down.
pub fn pool(settings: &DatabaseSettings, url: &str) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .application_name("herald")
        .options([
            (
                "statement_timeout",
                settings.statement_timeout_ms.to_string(),
            ),
            (
                "idle_in_transaction_session_timeout",
                settings.idle_in_transaction_timeout_ms.to_string(),
            ),
        ]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_lazy_with(options))
}

/// A one-connection pool for LISTEN, named (`herald-listener` for the
/// wake-ups, `herald-webhooks` for the webhook worker) so operators and
/// tests can tell the connections apart.
pub fn listen_pool(
    settings: &DatabaseSettings,
    url: &str,
    name: &str,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse::<PgConnectOptions>()?.application_name(name);
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.acquire_timeout())
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options))
}

/// Applies the migrations. A migration may rightly take longer than the
/// service's statement timeout (an index on a large table), so it runs
/// without one.
/// A new, empty pool like `pool`. The listener takes one on every reconnect:
/// a connection whose network path died without a reset is never handed
/// back to its pool (dropping a listener first runs `UNLISTEN` on it, which
/// waits as long as the dead path lasts), so a one-connection pool would
/// stay exhausted.
pub fn fresh_pool_like(pool: &PgPool) -> PgPool {
    pool.options()
        .clone()
        .connect_lazy_with((*pool.connect_options()).clone())
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    MIGRATOR.run(&mut *conn).await?;
    sqlx::query("RESET statement_timeout")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A read-only transaction with one snapshot for all its queries, so values
/// read together (a page and `last_seq`) are consistent.
pub async fn snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// `SELECT 1`, for /readyz.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Errors that mean "the database cannot be reached right now" rather than
/// "this request is wrong": they answer 503 so clients retry.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
            // 08xxx connection exceptions, 53300 too many connections.
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "53300"),
        _ => false,
    }
}
