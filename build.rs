//! Build-time inputs: the migrations embedded by `sqlx::migrate!`, and the
//! git revision that `herald --version` names.

use std::path::Path;
use std::process::Command;

fn main() {
    // Re-embed migrations when they change (sqlx::migrate! reads them at compile time).
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=HERALD_GIT_REVISION");
    let revision = std::env::var("HERALD_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision)
        // A source tarball has no `.git`: the build still works, and the
        // version says the revision is not known rather than guessing one.
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HERALD_GIT_REVISION={revision}");
}

/// The checked-out commit, only when this crate is the top of a git work
/// tree (an unpacked tarball inside some other repository must not borrow
/// that repository's commit).
fn git_revision() -> Option<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let toplevel = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&toplevel).canonicalize().ok()? != Path::new(&manifest_dir).canonicalize().ok()? {
        return None;
    }
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it
    // points at (a commit), loose or packed. Only existing paths are named,
    // since cargo treats a missing one as always changed.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch])?);
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"])?);
    for path in watched {
        let path = Path::new(&manifest_dir).join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
