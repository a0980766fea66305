//! The service's socket: `/run/clawden/clawden.sock` as root, else
//! `$XDG_RUNTIME_DIR/clawden/clawden.sock`, or `--socket`; directory 0750 and socket 0660,
//! refused when the directory is writable by others or owned by someone else; one service per
//! socket (a lock held for the process's life); systemd socket activation (`LISTEN_FDS`).

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// A listening socket and what keeps it ours.
pub struct Bound {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Held while the service runs: a second `serve` on the same socket cannot take it.
    pub lock: Option<Flock<File>>,
}

/// Why the socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{0}")]
    NoDefault(String),
    #[error("socket directory {path}: {why}")]
    UnsafeDir { path: PathBuf, why: String },
    #[error("another clawden serve is running on {0}")]
    InUse(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SocketError {
    pub fn fix(&self) -> String {
        match self {
            SocketError::NoDefault(_) => "give --socket PATH, or set XDG_RUNTIME_DIR".into(),
            SocketError::UnsafeDir { path, .. } => format!(
                "use a directory only you can write (chmod 0750 {}), or another --socket",
                path.display()
            ),
            SocketError::InUse(_) => {
                "stop the running service first, or give another --socket".into()
            }
            SocketError::Io { .. } => "check the path and its permissions".into(),
        }
    }
}

/// The default socket path for this user.
pub fn default_path() -> Result<PathBuf, SocketError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/run/clawden/clawden.sock"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d).join("clawden/clawden.sock")),
        _ => Err(SocketError::NoDefault(
            "no default socket: XDG_RUNTIME_DIR is not set and clawden is not root".into(),
        )),
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory must be a real directory owned by us and not writable by group or others.
fn check_dir(dir: &Path) -> Result<(), SocketError> {
    let m = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    let unsafe_dir = |why: String| SocketError::UnsafeDir {
        path: dir.to_path_buf(),
        why,
    };
    if !m.is_dir() {
        return Err(unsafe_dir("is not a directory (or is a symlink)".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(unsafe_dir(format!("is owned by uid {}, not {me}", m.uid())));
    }
    if m.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Systemd socket activation: fd 3 when `LISTEN_PID` is us and `LISTEN_FDS` ≥ 1.
fn activated() -> Option<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd;
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: systemd passed fd 3 to this very process (LISTEN_PID) as a listening socket; we
    // take ownership of it once.
    let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
    let _ = nix::fcntl::fcntl(
        &l,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(l)
}

/// Bind (or take over from systemd) the service socket at `path`.
pub fn bind(path: Option<&Path>) -> Result<Bound, SocketError> {
    if let Some(l) = activated() {
        l.set_nonblocking(true)
            .map_err(io(Path::new("LISTEN_FDS")))?;
        let path = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("(socket activation)"));
        return Ok(Bound {
            listener: UnixListener::from_std(l).map_err(io(&path))?,
            path,
            lock: None,
        });
    }
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => default_path()?,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)
            .map_err(io(&dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).map_err(io(&dir))?;
    }
    check_dir(&dir)?;
    // One service per socket: the lock decides, not a connect probe (two starting at once).
    let lock_path = {
        let mut s = path.clone().into_os_string();
        s.push(".lock");
        PathBuf::from(s)
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|_| SocketError::InUse(path.clone()))?;
    // A socket left by a service that died: ours to replace (we hold the lock). Anything
    // else at the path is not.
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket_like() => {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        Ok(_) => {
            return Err(SocketError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "something other than a socket is there",
                ),
            });
        }
        Err(_) => {}
    }
    let l = std::os::unix::net::UnixListener::bind(&path).map_err(io(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).map_err(io(&path))?;
    l.set_nonblocking(true).map_err(io(&path))?;
    Ok(Bound {
        listener: UnixListener::from_std(l).map_err(io(&path))?,
        path,
        lock: Some(lock),
    })
}

trait SocketLike {
    fn is_socket_like(&self) -> bool;
}

impl SocketLike for std::fs::FileType {
    fn is_socket_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_bind_is_refused_and_unsafe_dirs_too() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("svc");
        let sock = dir.join("c.sock");
        let first = bind(Some(&sock)).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o750);
        assert!(matches!(bind(Some(&sock)), Err(SocketError::InUse(_))));
        drop(first);
        // The stale socket is replaced once the lock is free.
        let again = bind(Some(&sock)).unwrap();
        drop(again);
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            bind(Some(&open.join("c.sock"))),
            Err(SocketError::UnsafeDir { .. })
        ));
        // A regular file at the path is never removed.
        let file_dir = d.path().join("f");
        std::fs::create_dir(&file_dir).unwrap();
        std::fs::set_permissions(&file_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(file_dir.join("c.sock"), b"keep").unwrap();
        assert!(bind(Some(&file_dir.join("c.sock"))).is_err());
        assert_eq!(std::fs::read(file_dir.join("c.sock")).unwrap(), b"keep");
    }
}
