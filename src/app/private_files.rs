//! Files and directories that root writes or reads inside a directory owned
//! by the unprivileged PostgreSQL account. That account could replace any
//! name there by a link to a file it may not touch itself (`/etc/shadow`),
//! so nothing here follows a link or trusts a name it did not create.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use nix::fcntl::OFlag;

/// Who should own what is created: the server's account, or (when Herald
/// does not run as root) the current user.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn current() -> Self {
        Self {
            uid: nix::unistd::Uid::effective().as_raw(),
            gid: nix::unistd::Gid::effective().as_raw(),
        }
    }
}

/// Creates `path` anew (an existing file or link of that name is removed,
/// never written through), readable and writable by `owner` only.
pub fn create_fresh(path: &Path, owner: Owner) -> anyhow::Result<fs::File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    // O_EXCL: if someone recreates the name in between, this fails rather
    // than opening their file or following their link.
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))?;
    Ok(file)
}

/// Writes `contents` to a new file at `path` (see `create_fresh`).
pub fn write_fresh(path: &Path, contents: &[u8], owner: Owner) -> anyhow::Result<()> {
    let mut file = create_fresh(path, owner)?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Reads a small regular file without following a link at `path`; `None`
/// when there is none.
pub fn read(path: &Path) -> anyhow::Result<Option<String>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits())
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        bail!("{} is not a plain file", path.display());
    }
    let mut text = String::new();
    file.take(64 * 1024).read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Makes sure `dir` is a real directory (not a link) owned by `owner` or by
/// us, mode 0700, then hands it to `owner`. A directory someone else made
/// first under a predictable name is refused, not adopted.
pub fn prepare_dir(dir: &Path, owner: Owner) -> anyhow::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => {
            let us = Owner::current().uid;
            if !meta.is_dir() {
                bail!("{} exists and is not a directory", dir.display());
            }
            if meta.uid() != owner.uid && meta.uid() != us {
                bail!(
                    "{} belongs to another account (uid {}); remove it or choose another directory",
                    dir.display(),
                    meta.uid()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", dir.display())),
    }
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    std::os::unix::fs::lchown(dir, Some(owner.uid), Some(owner.gid))?;
    Ok(())
}
