//! End-to-end tests: real PostgreSQL, real HTTP, real SSE clients.

mod admin;
mod auth;
mod broadcast;
mod browser;
mod concurrency;
mod embedded;
mod faults;
mod fuzz_findings;
mod helpers;
mod instances;
mod logs;
mod me;
mod metrics;
mod openapi;
mod operations;
mod poll;
mod publish;
mod retention;
mod security;
mod sse;
mod ws;
