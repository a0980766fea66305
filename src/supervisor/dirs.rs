//! Host directories clawden creates for sandboxes (workspaces, agent channels), made race-free:
//! every component is opened relative to its parent's descriptor with `O_NOFOLLOW`, created with
//! `mkdirat` and given to its owner with `fchown` on the new directory's own descriptor — so a
//! symlink planted in the path (by a sandbox that can write a parent) is never followed, and root
//! never chowns something else by name.

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

fn open_dir(parent: &impl AsFd, name: &Path) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `mkdir -p` of an absolute path with `mode` for each directory it creates, giving those to
/// `owner` when clawden runs as root. An existing component that is a symlink is an error
/// (`ELOOP`/`ENOTDIR`), never followed.
pub fn create_dir_owned(dir: &Path, owner: Option<(u32, u32)>, mode: u32) -> std::io::Result<()> {
    if !dir.is_absolute() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not absolute", dir.display()),
        ));
    }
    let root = nix::fcntl::open(
        "/",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let is_root = nix::unistd::geteuid().is_root();
    let mut cur = root;
    for c in dir.components() {
        let name = match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => Path::new(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} is not a canonical path", dir.display()),
                ));
            }
        };
        let next = match open_dir(&cur, name) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => {
                match mkdirat(&cur, name, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                let fd = open_dir(&cur, name)?;
                if let Some((uid, gid)) = owner.filter(|_| is_root) {
                    nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into()))?;
                }
                fd
            }
            Err(e) => return Err(e.into()),
        };
        cur = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_missing_and_refuses_symlinked_components() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        let want = base.join("a/b/c");
        create_dir_owned(&want, None, 0o755).unwrap();
        assert!(want.is_dir());
        // Idempotent.
        create_dir_owned(&want, None, 0o755).unwrap();
        // A symlink in the path is never followed, even to an existing directory.
        let outside = base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
        assert!(create_dir_owned(&base.join("link/new"), None, 0o755).is_err());
        assert!(!outside.join("new").exists());
        assert!(create_dir_owned(Path::new("rel/x"), None, 0o755).is_err());
        assert!(create_dir_owned(&base.join("a/../x"), None, 0o755).is_err());
    }

    #[test]
    fn chowns_what_it_creates_when_root() {
        if !nix::unistd::geteuid().is_root() {
            return; // ownership needs root; the symlink test above covers the rest
        }
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        create_dir_owned(&base.join("x/y"), Some((4242, 4343)), 0o700).unwrap();
        for p in [base.join("x"), base.join("x/y")] {
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (4242, 4343), "{}", p.display());
        }
        // The pre-existing base keeps its owner.
        assert_eq!(std::fs::metadata(&base).unwrap().uid(), 0);
    }
}
