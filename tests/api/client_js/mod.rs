//! The JavaScript client (`clients/js`, the npm package `herald-client`)
//! with this server: the files Herald serves (`served.rs`), the package's
//! tests against a live Herald from Node (`node.rs`), and pages built on it
//! in headless Chromium (`browser.rs`).

mod browser;
mod node;
mod served;

use std::path::PathBuf;

/// The package's directory.
fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

/// The package's development dependencies (`ws`, `esbuild`, React), which
/// `npm ci` installs; scripts/test.sh runs it.
fn require_node_modules() {
    let modules = js_dir().join("node_modules");
    assert!(
        ["ws", "esbuild", "react", "react-dom"]
            .iter()
            .all(|m| modules.join(m).exists()),
        "the JavaScript client's tests need Node and `npm ci` in clients/js (scripts/test.sh does both)"
    );
}
