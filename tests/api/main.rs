//! End-to-end tests: real PostgreSQL, real HTTP, real SSE clients.

mod auth;
mod concurrency;
mod helpers;
mod instances;
mod me;
mod openapi;
mod operations;
mod poll;
mod publish;
mod sse;
mod ws;
