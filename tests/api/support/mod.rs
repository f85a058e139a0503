//! What the tests share: the application under test and the clients and
//! checks they drive it with. One file per concern.

mod app;
pub mod chromium;
mod database;
pub mod jwks;
mod logs;
pub mod paths;
mod problem;
mod process;
pub mod raw_http;
pub mod receiver;
// Shared with the soak benchmark, which also uses what the tests do not.
#[allow(dead_code)]
#[path = "../../../benches/common/resuming.rs"]
pub mod resuming;
mod service;
mod sse;
pub mod static_files;
pub mod tcp_proxy;
pub mod tokens;
mod wait;
pub mod ws;

pub use app::{TestApp, healthy, list_with, publish_many, test_settings};
pub use database::{fresh_database, scratch_dir, scratch_dir_path, start_private_postgres};
pub use logs::captured_logs;
pub use problem::{assert_problem, assert_problem_parts};
pub use process::Herald;
pub use service::Service;
pub use sse::{SseClient, data};
pub use tokens::TEST_SECRET;
pub use wait::{WAIT, wait_for, wait_within};
