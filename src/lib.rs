//! Herald: every change of a user's message center, in order, exactly once,
//! on every device, after any disconnect.
#![forbid(unsafe_code)]

pub mod auth;
pub mod batch;
pub mod body_deadline;
pub mod broadcast;
pub mod center;
pub mod cli;
pub mod cors;
pub mod db;
pub mod domain;
pub mod embedded_pg;
pub mod error;
pub mod event;
pub mod heartbeat;
pub mod limits;
pub mod live;
pub mod log_reader;
pub mod publish;
pub mod retention;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod stats;
pub mod subscription;
pub mod telemetry;
