//! End-to-end tests: real PostgreSQL, real HTTP, real SSE clients.

mod admin;
mod auth;
mod broadcast;
mod browser;
mod concurrency;
mod embedded;
mod faults;
mod fuzz_findings;
mod instances;
mod listener;
mod logs;
mod me;
mod metrics;
mod openapi;
mod operations;
mod output;
mod poll;
mod publish;
mod replay_bytes;
mod retention;
mod security;
mod settings;
mod sse;
mod support;
mod wakeup;
mod ws;
