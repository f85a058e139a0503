//! The HTTP edge: the route table, extractors and token checks, the one
//! error type (RFC 9457 problem+json), CORS, body deadlines, rate limits and
//! request telemetry.
//!
//! Owns: everything actix. It may use the engine (`inbox`, `live`), `db` for
//! plain reads, `domain` and `settings`; the engine never uses it. Engine
//! errors become problem+json in one place, `error.rs`.

pub mod auth;
pub mod body_deadline;
pub mod cors;
pub mod error;
pub mod jwks;
pub mod limits;
pub mod payloads;
pub mod readiness;
pub mod routes;
pub mod slow_heads;
pub mod state;
pub mod telemetry;
