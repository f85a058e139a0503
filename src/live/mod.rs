//! The live path: what happens between a commit and a client's frame.
//!
//! - `hub`: the in-process per-user wake-ups, fed by this instance's commits
//!   and by `listener`, which hears other instances through LISTEN/NOTIFY
//!   (`wakeup` is that payload's format).
//! - `subscription`: one live connection's pump, shared by every transport:
//!   subscribe, then replay, then follow wake-ups, dropping what was sent.
//! - `log_reader` and `coalesce`: the log reads of many connections, batched
//!   into few queries.
//! - `connection_stats`: open connections and deliveries of this process.
//! - `disconnect`: an administrator ending a user's connections everywhere.
//!
//! Owns: delivery. It may use `db`, `domain` and `settings`; never HTTP.
//! Transports (SSE, WebSocket, long-poll) are thin skins in `http`.

pub mod coalesce;
pub mod connection_stats;
mod disconnect;
pub mod hub;
pub mod listener;
pub mod log_reader;
pub mod subscription;
pub mod wakeup;

pub use disconnect::disconnect;
pub use hub::{Hub, Wake, Watch};
