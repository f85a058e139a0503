//! An administrator's disconnect: the user's live connections end on every
//! instance, and reconnect with their token checked anew.

use sqlx::PgPool;

use crate::db;
use crate::domain::UserId;
use crate::live::{Hub, wakeup};

/// Ends `user`'s live connections here and, through the wake-up channel, on
/// every other instance. Other instances first: if the database is down this
/// fails and changes nothing, here included.
pub async fn disconnect(
    pool: &PgPool,
    hub: &Hub,
    instance: &str,
    user: &UserId,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let kicks = wakeup::encode_kicks(instance, [user.to_string()]);
    db::events::notify(&mut conn, &kicks).await?;
    drop(conn);
    hub.kick(user);
    Ok(())
}
