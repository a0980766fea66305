//! Race-free file I/O for the `read` / `write` tool calls (sandbox.md §6, security.md 1–6).
//!
//! A tool call names a *container* path. clawden performs the I/O on the HOST side, beneath the
//! host directory of the bind mount that carries the path, while a hostile process inside the
//! container controls everything under that directory (symlinks, directory swaps, FIFOs, hard
//! links, sparse files). The layers:
//!
//! - [`resolve`] (pure): container path → (mount, components beneath the mount's host root).
//!   Lexical normalisation happens here, on the container path only.
//! - [`openat`]: the `openat2` wrapper and the handle of a mount's host root ([`RootDir`]).
//!   Every path below the root is resolved by the kernel with
//!   `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`; no fallback to `open` (fail closed).
//! - [`read`]: capped reads of regular files only.
//! - [`write`]: atomic writes (new temp file, fsync, `renameat`), never through a link.
//!
//! # Decisions
//!
//! - **Symlinks beneath the root are followed; nothing else is.** `RESOLVE_BENEATH` makes the
//!   kernel refuse (`EXDEV` → `escapes_root`) any resolution that would leave the root: an
//!   absolute symlink, a `..` climbing above it, a magic link. A symlink that stays inside the
//!   root is harmless and is what the container itself would see, so a read of `alias ->
//!   real.txt` reads `real.txt`. Absolute symlinks are always refused, even `/workspace/x`: the
//!   container's `/` is not the mount root and re-rooting them (`RESOLVE_IN_ROOT`) would give
//!   them a meaning they do not have inside the container.
//! - **No `RESOLVE_NO_XDEV`.** Mount points beneath a root (host-side submounts) are legitimate
//!   and the container cannot create mounts (`EPERM`), so crossing one is not attacker-driven.
//! - **Writes replace the final component; they never write through it.** The new content goes
//!   to a fresh temp file and `renameat` swaps it in: a final symlink (dangling or not) or hard
//!   link is *replaced* by a regular file, its target untouched and never created. Intermediate
//!   directories are resolved beneath the root like reads.
//! - **Mount roots are opened with `RESOLVE_NO_SYMLINKS`**: planned host paths are canonical, so
//!   a symlink in one means the host changed under us (`symlink_refused`).
//!
//! Every error is a [`FileError`] carrying a [`Refusal`] with a stable [`RefusalCode`].

pub mod openat;
pub mod read;
pub mod resolve;
pub mod write;

#[cfg(test)]
mod test_support;

pub use openat::{RootDir, open_root};
pub use read::{DEFAULT_READ_CAP, ReadOutcome, read_file};
pub use resolve::{MappedPath, map_container_path};
pub use write::{DEFAULT_WRITE_CAP, WriteOptions, WriteOutcome, write_file};

use crate::validate::{Refusal, RefusalCode};
use nix::errno::Errno;
use std::fmt;
use std::path::Path;

/// Every failure of a file tool: a structured refusal with a stable code.
///
/// `Refused` comes from a rule checked before the target was touched (read-only mount, cap,
/// path shape); `Os` from the kernel, its errno mapped to a code (the raw errno is kept).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum FileError {
    Refused(Refusal),
    Os {
        #[serde(flatten)]
        refusal: Refusal,
        errno: i32,
    },
}

impl FileError {
    /// The structured refusal (code, value, message, fix).
    pub fn refusal(&self) -> &Refusal {
        match self {
            FileError::Refused(r) | FileError::Os { refusal: r, .. } => r,
        }
    }

    /// The stable code.
    pub fn code(&self) -> RefusalCode {
        self.refusal().code
    }

    /// The raw errno when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            FileError::Refused(_) => None,
            FileError::Os { errno, .. } => Some(*errno),
        }
    }

    /// Replace the offending value (e.g. with the container path the caller was given).
    pub fn with_value(mut self, value: impl Into<String>) -> Self {
        match &mut self {
            FileError::Refused(r) | FileError::Os { refusal: r, .. } => r.value = value.into(),
        }
        self
    }

    pub(crate) fn refused(
        code: RefusalCode,
        value: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        FileError::Refused(Refusal::new(code, value, message, fix))
    }

    /// Map an errno from operation `op` on `path` (relative to a mount root) to a code.
    pub(crate) fn from_errno(errno: Errno, op: &str, path: &Path) -> Self {
        let shown = format!("{:?}", path.to_string_lossy());
        let (code, what, fix) = match errno {
            Errno::ENOENT => (
                RefusalCode::NotFound,
                "does not exist",
                "check the path; use mkdir to create missing parent directories on write",
            ),
            Errno::EISDIR => (
                RefusalCode::IsDirectory,
                "is a directory",
                "name a regular file, not a directory",
            ),
            Errno::ENOTDIR => (
                RefusalCode::NotDirectory,
                "has a component that is not a directory",
                "check every parent of the path is a directory",
            ),
            Errno::ELOOP => (
                RefusalCode::SymlinkLoop,
                "has too many levels of symbolic links",
                "remove the symlink loop",
            ),
            Errno::EXDEV => (
                RefusalCode::EscapesRoot,
                "resolves outside its mount root (an absolute symlink, or a symlink or '..' climbing out)",
                "use a path whose symlinks stay inside the mount; absolute symlinks are never followed",
            ),
            Errno::EMLINK => (
                RefusalCode::TooManyLinks,
                "has too many links",
                "reduce the number of links or entries",
            ),
            Errno::EACCES | Errno::EPERM => (
                RefusalCode::PermissionDenied,
                "is not accessible",
                "check the file's permissions on the host",
            ),
            Errno::ENAMETOOLONG => (
                RefusalCode::NameTooLong,
                "is too long for the kernel",
                "use shorter names and paths",
            ),
            Errno::ENOSPC | Errno::EDQUOT => (
                RefusalCode::NoSpace,
                "cannot be written: no space or quota left",
                "free space in the workspace",
            ),
            Errno::EROFS => (
                RefusalCode::ReadOnlyMount,
                "is on a read-only filesystem",
                "write to a read-write mount",
            ),
            Errno::EAGAIN | Errno::EBUSY | Errno::ETXTBSY => (
                RefusalCode::Busy,
                "was changed or busy during the call",
                "retry; stop modifying the path concurrently",
            ),
            Errno::ENXIO => (
                RefusalCode::SpecialFile,
                "is a socket or device without a backing file",
                "name a regular file",
            ),
            Errno::ENOSYS => (
                RefusalCode::Unsupported,
                "cannot be resolved safely: the kernel lacks openat2 (Linux >= 5.6 needed)",
                "run clawden on Linux 5.6 or newer; there is no unsafe fallback",
            ),
            _ => (
                RefusalCode::IoError,
                "failed",
                "see the error number; retry or check the host filesystem",
            ),
        };
        FileError::Os {
            refusal: Refusal::new(
                code,
                path.to_string_lossy(),
                format!("{op} {shown}: path {what} ({})", errno.desc()),
                fix,
            ),
            errno: errno as i32,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code(), self.refusal().message)
    }
}

impl std::error::Error for FileError {}

impl From<Refusal> for FileError {
    fn from(r: Refusal) -> Self {
        FileError::Refused(r)
    }
}

/// Check that `relative` is a clean path beneath a root: only normal components (no `/`
/// prefix, no `.` or `..`). [`map_container_path`] only produces such paths; this is defence
/// in depth for callers that build one by hand. Pure: no syscall.
pub(crate) fn check_relative(relative: &Path) -> Result<(), FileError> {
    use std::path::Component;
    if relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        && !relative.as_os_str().as_encoded_bytes().contains(&0)
    {
        Ok(())
    } else {
        Err(FileError::refused(
            RefusalCode::InvalidPath,
            relative.to_string_lossy(),
            format!(
                "path {:?} beneath a mount root must be relative, without '.', '..' or NUL",
                relative.to_string_lossy()
            ),
            "map the container path with map_container_path first",
        ))
    }
}
