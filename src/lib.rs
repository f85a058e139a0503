//! Herald: every change of a user's message center, in order, exactly once,
//! on every device, after any disconnect.
//!
//! The layers, from the outside in (each may use only those below it):
//! - [`app`]: the command line, startup, and the embedded PostgreSQL.
//! - [`http`]: routes, auth, problem+json, middleware. The only layer that
//!   knows actix.
//! - [`jobs`]: background work on a timer (purges, heartbeats).
//! - [`live`]: pushing committed events to open connections.
//! - [`inbox`]: writing and reading the per-user log.
//! - [`db`]: SQL, one query per named function.
//! - [`domain`]: parsed values and the event model; [`settings`]: typed
//!   configuration. Both depend on nothing of Herald's.
#![forbid(unsafe_code)]

pub mod app;
pub mod db;
pub mod domain;
pub mod http;
pub mod inbox;
pub mod jobs;
pub mod live;
pub mod settings;
