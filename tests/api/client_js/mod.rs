//! The JavaScript client (`clients/js`, the npm package `herald-client`)
//! with this server: the files Herald serves (`served.rs`), the package's
//! tests against a live Herald from Node (`node.rs`), and pages built on it
//! in headless Chromium (`browser.rs`).

mod served;

use std::path::PathBuf;

/// The package's directory.
fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}
