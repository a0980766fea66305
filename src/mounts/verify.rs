//! After `docker start`: are the inodes mounted in the container the ones that were checked?

use super::stage::Inode;
use super::sys;
use rustix::fs::{OFlags, ResolveFlags};
use serde::Serialize;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// One container target whose mounted inode is not the checked one (or cannot be seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InodeMismatch {
    /// The container path.
    pub target: String,
    pub expected: Inode,
    /// What the container has there, if it could be opened.
    pub found: Option<Inode>,
    pub detail: String,
}

/// Compare each `(container target, dev, ino)` with what the container at `container_pid`
/// sees. The container's root is opened once through `/proc/<pid>/root` (`O_PATH|O_DIRECTORY`);
/// every target is resolved beneath it with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so a
/// symlink in the container's tree cannot lead the check to a host path.
pub fn verify_mounted(
    container_pid: u32,
    expected: &[(String, u64, u64)],
) -> Result<(), Vec<InodeMismatch>> {
    let root = open_container_root(container_pid);
    let mut bad = Vec::new();
    for (target, dev, ino) in expected {
        let expected = Inode {
            dev: *dev,
            ino: *ino,
        };
        let miss = |found: Option<Inode>, detail: String| InodeMismatch {
            target: target.clone(),
            expected,
            found,
            detail,
        };
        let root = match &root {
            Ok(r) => r,
            Err(e) => {
                bad.push(miss(None, e.clone()));
                continue;
            }
        };
        let opened = sys::openat2(
            root,
            Path::new(target),
            OFlags::PATH,
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) => {
                bad.push(miss(
                    None,
                    format!("{target:?} cannot be opened in the container: {e}"),
                ));
                continue;
            }
        };
        match rustix::fs::fstat(&fd) {
            Ok(st) => {
                let found = Inode {
                    dev: st.st_dev,
                    ino: st.st_ino,
                };
                if found != expected {
                    bad.push(miss(
                        Some(found),
                        format!(
                            "{target:?} in the container is {found}, but the checked source is {expected}"
                        ),
                    ));
                }
            }
            Err(e) => bad.push(miss(None, format!("fstat of {target:?} failed: {e}"))),
        }
    }
    if bad.is_empty() { Ok(()) } else { Err(bad) }
}

/// The mount flags a container target really has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeenFlags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
}

/// `fstatvfs` of `target` opened beneath the container's root (as [`verify_mounted`] does).
///
/// Real behaviour with Docker 20.10 / runc 1.1: a bind Docker makes read-only is remounted by
/// runc with `MS_RDONLY` alone, which clears the `nosuid,nodev` the staged mount carried (in the
/// container's copy only; the staging point keeps them). A read-write bind keeps them.
pub fn mount_flags(container_pid: u32, target: &str) -> Result<SeenFlags, String> {
    use rustix::fs::StatVfsMountFlags as F;
    let root = open_container_root(container_pid)?;
    let fd = sys::openat2(
        &root,
        Path::new(target),
        OFlags::PATH,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| format!("{target:?} cannot be opened in the container: {e}"))?;
    let v = rustix::fs::fstatvfs(&fd).map_err(|e| format!("fstatvfs of {target:?}: {e}"))?;
    Ok(SeenFlags {
        read_only: v.f_flag.contains(F::RDONLY),
        nosuid: v.f_flag.contains(F::NOSUID),
        nodev: v.f_flag.contains(F::NODEV),
    })
}

/// `/proc/<pid>` as a directory (no symlinks), then its `root` magic link — the one step that
/// must follow a magic link — as `O_PATH | O_DIRECTORY`.
fn open_container_root(pid: u32) -> Result<OwnedFd, String> {
    if pid == 0 {
        return Err("the container has no process (pid 0): it is not running".into());
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let dir = sys::openat2(
        rustix::fs::CWD,
        &proc_dir,
        OFlags::PATH | OFlags::DIRECTORY,
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| format!("cannot open {}: {e}", proc_dir.display()))?;
    // The entry `root` of a `/proc/<pid>` fd we hold: a magic link that must be followed here.
    sys::openat2(
        &dir,
        Path::new("root"),
        OFlags::PATH | OFlags::DIRECTORY,
        ResolveFlags::empty(),
    )
    .map_err(|e| format!("cannot open {}/root: {e}", proc_dir.display()))
}
