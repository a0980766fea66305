//! `stage`, `unstage`, `sweep`: staging points under `<state>/staging/<container>/<index>`.

use super::sys;
use crate::decide::mounts::PlannedMount;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{MountAttrFlags, MoveMountFlags, OpenTreeFlags};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The directory under the state dir that holds every container's staging points.
pub const STAGING: &str = "staging";

/// Whether the mounts were staged (root) or go to Docker as planned (no root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageMode {
    Staged,
    Unstaged,
}

/// What a checked source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Directory,
    File,
}

/// `(st_dev, st_ino)` of a checked source, as `fstat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Inode {
    pub dev: u64,
    pub ino: u64,
}

impl fmt::Display for Inode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev {} ino {}", self.dev, self.ino)
    }
}

/// One mount after staging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedMount {
    /// The planned mount with `host` replaced by the staging point (or unchanged, unstaged).
    pub mount: PlannedMount,
    /// The checked host path the mount came from.
    pub checked_source: PathBuf,
    /// The inode that was opened (and, staged, is the root of the staged mount).
    pub inode: Inode,
    pub kind: SourceKind,
}

/// The result of [`stage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Staged {
    pub mode: StageMode,
    pub container: String,
    pub mounts: Vec<StagedMount>,
}

impl Staged {
    /// The mounts to give Docker (staging points as hosts when staged).
    pub fn planned(&self) -> Vec<PlannedMount> {
        self.mounts.iter().map(|m| m.mount.clone()).collect()
    }

    /// `(container target, dev, ino)` per mount, for [`super::verify_mounted`].
    pub fn expected(&self) -> Vec<(String, u64, u64)> {
        self.mounts
            .iter()
            .map(|m| (m.mount.container.clone(), m.inode.dev, m.inode.ino))
            .collect()
    }
}

/// Stable codes of a [`StageError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageCode {
    /// The source is no longer what was checked: a symlink in a component, gone, or no longer a
    /// directory or regular file.
    SourceChanged,
    /// The container name cannot name a staging directory.
    InvalidName,
    /// Staging points of an earlier container of this name could not be removed.
    StagingBusy,
    /// The kernel or the process lacks the new mount API (`ENOSYS`, `EPERM`).
    Unsupported,
    /// Any other failure while staging.
    StagingFailed,
}

impl StageCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StageCode::SourceChanged => "source_changed",
            StageCode::InvalidName => "invalid_name",
            StageCode::StagingBusy => "staging_busy",
            StageCode::Unsupported => "unsupported",
            StageCode::StagingFailed => "staging_failed",
        }
    }
}

/// Why a stage failed. Nothing is left staged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub code: StageCode,
    /// The host path (or staging path) concerned.
    pub path: PathBuf,
    pub message: String,
    pub fix: String,
}

impl StageError {
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    fn new(
        code: StageCode,
        path: &Path,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        StageError {
            code,
            path: path.to_path_buf(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn failed(path: &Path, what: &str, e: impl fmt::Display) -> Self {
        let code = StageCode::StagingFailed;
        StageError::new(
            code,
            path,
            format!("staging mount {:?}: {what}: {e}", path.to_string_lossy()),
            "check the state directory (it must be local, root-owned and writable by clawden)",
        )
    }

    pub(crate) fn from_mount_api(path: &Path, what: &str, e: Errno) -> Self {
        if matches!(e, Errno::NOSYS | Errno::PERM) {
            StageError::new(
                StageCode::Unsupported,
                path,
                format!(
                    "staging mount {:?}: {what} failed: {e} (the new mount API needs Linux ≥ 5.12 and CAP_SYS_ADMIN)",
                    path.to_string_lossy()
                ),
                "run clawden as root on a kernel with open_tree/move_mount/mount_setattr, outside a restricted container",
            )
        } else {
            StageError::failed(path, what, e)
        }
    }
}

/// Staging points that could not be removed (left in place, never deleted recursively).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("staging of {container} was not fully removed: {}", .problems.join("; "))]
pub struct UnstageError {
    pub container: String,
    pub problems: Vec<String>,
}

/// `<state>/staging/<container>`.
pub fn staging_dir(state_dir: &Path, container: &str) -> PathBuf {
    state_dir.join(STAGING).join(container)
}

fn check_name(container: &str) -> Result<(), String> {
    let ok = !container.is_empty()
        && container.len() <= 128
        && container != "."
        && container != ".."
        && container
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "container name {container:?} cannot name a staging directory (only [A-Za-z0-9_.-], at most 128)"
        ))
    }
}

/// Stage `mounts` for `container`: as root with the new mount API, otherwise only record the
/// inodes (see the module docs).
pub fn stage(
    state_dir: &Path,
    container: &str,
    mounts: &[PlannedMount],
) -> Result<Staged, StageError> {
    let mode = if nix::unistd::geteuid().is_root() {
        StageMode::Staged
    } else {
        StageMode::Unstaged
    };
    stage_as(state_dir, container, mounts, mode)
}

/// [`stage`] with the mode chosen by the caller (`Staged` needs root).
pub fn stage_as(
    state_dir: &Path,
    container: &str,
    mounts: &[PlannedMount],
    mode: StageMode,
) -> Result<Staged, StageError> {
    check_name(container).map_err(|m| {
        StageError::new(
            StageCode::InvalidName,
            &staging_dir(state_dir, container),
            m,
            "use a container name of letters, digits, '_', '.' and '-'",
        )
    })?;
    // Open every source first: a source that changed fails the stage before anything is made.
    let mut opened = Vec::with_capacity(mounts.len());
    for m in mounts {
        opened.push(open_checked(&m.host)?);
    }
    if mode == StageMode::Unstaged {
        return Ok(Staged {
            mode,
            container: container.to_string(),
            mounts: mounts
                .iter()
                .zip(&opened)
                .map(|(m, (_, inode, kind))| StagedMount {
                    mount: m.clone(),
                    checked_source: m.host.clone(),
                    inode: *inode,
                    kind: *kind,
                })
                .collect(),
        });
    }

    // Leftovers of an earlier container of this name (a crash before unstage) go first.
    unstage(state_dir, container).map_err(|e| {
        StageError::new(
            StageCode::StagingBusy,
            &staging_dir(state_dir, container),
            e.to_string(),
            format!(
                "unmount or empty the staging points under {:?} by hand, then retry",
                staging_dir(state_dir, container).to_string_lossy()
            ),
        )
    })?;

    // Undo on a panic; errors are undone below, with the undo's own failure in the message.
    let mut guard = Undo {
        state_dir,
        container,
        armed: true,
    };
    let result = attach_all(state_dir, container, mounts, &opened);
    guard.armed = false;
    match result {
        Ok(out) => Ok(Staged {
            mode,
            container: container.to_string(),
            mounts: out,
        }),
        Err(mut e) => {
            if let Err(u) = unstage(state_dir, container) {
                e.message
                    .push_str(&format!("; undoing the partial stage also failed: {u}"));
            }
            Err(e)
        }
    }
}

/// Make every staging point and attach its staged mount.
fn attach_all(
    state_dir: &Path,
    container: &str,
    mounts: &[PlannedMount],
    opened: &[(OwnedFd, Inode, SourceKind)],
) -> Result<Vec<StagedMount>, StageError> {
    let cdir = open_container_dir(state_dir, container)?;
    let dir_path = staging_dir(state_dir, container);
    let mut out = Vec::with_capacity(mounts.len());
    for (i, (m, (fd, inode, kind))) in mounts.iter().zip(opened).enumerate() {
        let name = i.to_string();
        let point = dir_path.join(&name);
        make_point(cdir.as_fd(), &name, *kind).map_err(|e| match e {
            Errno::EXIST => StageError::new(
                StageCode::StagingBusy,
                &point,
                format!("staging point {:?} already exists", point.to_string_lossy()),
                "remove the stale staging point by hand, then retry",
            ),
            e => StageError::failed(&point, "cannot create the staging point", e),
        })?;
        attach(
            fd.as_fd(),
            *inode,
            m.access.read_only(),
            cdir.as_fd(),
            &name,
            &m.host,
        )?;
        #[cfg(test)]
        if FAIL_AFTER_ATTACH.with(|f| f.get()) == Some(i) {
            return Err(StageError::failed(&point, "injected failure", "test"));
        }
        let mut staged = m.clone();
        staged.host = point;
        out.push(StagedMount {
            mount: staged,
            checked_source: m.host.clone(),
            inode: *inode,
            kind: *kind,
        });
    }
    Ok(out)
}

#[cfg(test)]
thread_local! {
    /// Tests: fail the stage right after mount `i` was attached.
    pub(crate) static FAIL_AFTER_ATTACH: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

/// Undoes a half-made stage on every early return (and on a panic).
struct Undo<'a> {
    state_dir: &'a Path,
    container: &'a str,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = unstage(self.state_dir, self.container)
        {
            tracing::error!("undoing a failed stage: {e}");
        }
    }
}

/// Open a checked source race-free and record what it is.
pub(crate) fn open_checked(host: &Path) -> Result<(OwnedFd, Inode, SourceKind), StageError> {
    let changed = |what: String| {
        StageError::new(
            StageCode::SourceChanged,
            host,
            format!(
                "mount source {:?} is no longer what was checked: {what}",
                host.to_string_lossy()
            ),
            "something replaced the source (or a directory above it) since it was validated; \
             check who can write there, then retry",
        )
    };
    if !host.is_absolute() {
        return Err(changed("not an absolute path".into()));
    }
    let fd = sys::openat2(
        rustix::fs::CWD,
        host,
        OFlags::PATH,
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        Errno::LOOP => changed("a symlink in its path".into()),
        Errno::NOENT | Errno::NOTDIR => changed(format!("it no longer resolves ({e})")),
        Errno::XDEV => changed(format!("it crosses a magic link ({e})")),
        Errno::NOSYS => StageError::new(
            StageCode::Unsupported,
            host,
            "openat2 is not available (Linux < 5.6): sources cannot be opened race-free",
            "run clawden on Linux 5.6 or newer",
        ),
        e => StageError::failed(host, "cannot open the source", e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| StageError::failed(host, "fstat", e))?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => SourceKind::Directory,
        FileType::RegularFile => SourceKind::File,
        other => return Err(changed(format!("it is now {other:?}"))),
    };
    let inode = Inode {
        dev: st.st_dev,
        ino: st.st_ino,
    };
    Ok((fd, inode, kind))
}

/// Open `<state>` (following the operator's own path) and make `staging` and `<container>`
/// below it: root-owned `0700` directories, opened without following symlinks.
fn open_container_dir(state_dir: &Path, container: &str) -> Result<OwnedFd, StageError> {
    let staging = state_dir.join(STAGING);
    std::fs::create_dir_all(state_dir)
        .map_err(|e| StageError::failed(state_dir, "cannot create the state directory", e))?;
    let state = rustix::fs::open(
        state_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StageError::failed(state_dir, "cannot open the state directory", e))?;
    let sdir = private_dir(state.as_fd(), STAGING)
        .map_err(|e| StageError::failed(&staging, "staging directory", e))?;
    private_dir(sdir.as_fd(), container)
        .map_err(|e| StageError::failed(&staging.join(container), "container staging directory", e))
}

/// `mkdirat(dir, name, 0700)` unless it exists, then open it (no symlinks) and insist it is a
/// root-owned directory closed to others.
fn private_dir(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = open_beneath_dir(dir, name)?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_uid != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{name:?} is owned by uid {}, not root", st.st_uid),
        ));
    }
    if st.st_mode & 0o077 != 0 {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
    }
    Ok(fd)
}

fn open_beneath_dir(dir: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Errno> {
    sys::openat2(
        dir,
        Path::new(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// An empty point to mount on: a `0700` directory, or an empty `0600` regular file.
fn make_point(dir: BorrowedFd<'_>, name: &str, kind: SourceKind) -> Result<(), Errno> {
    match kind {
        SourceKind::Directory => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)),
        SourceKind::File => rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map(drop),
    }
}

/// Clone the single mount at `src` (no submounts), make it nosuid/nodev (and read-only),
/// private, and attach it at `dir/name`.
fn attach(
    src: BorrowedFd<'_>,
    inode: Inode,
    read_only: bool,
    dir: BorrowedFd<'_>,
    name: &str,
    host: &Path,
) -> Result<(), StageError> {
    // No AT_RECURSIVE: submounts below the source are not part of the copy.
    let tree = rustix::mount::open_tree(
        src,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| StageError::from_mount_api(host, "open_tree", e))?;
    let mut attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
    if read_only {
        attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
    }
    sys::mount_setattr(
        tree.as_fd(),
        u64::from(attrs.bits()),
        sys::PROPAGATION_PRIVATE,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => StageError::from_mount_api(
            host,
            "mount_setattr",
            Errno::from_io_error(&e).unwrap_or(Errno::NOSYS),
        ),
        _ => StageError::failed(host, "mount_setattr", e),
    })?;
    let st = rustix::fs::fstat(&tree).map_err(|e| StageError::failed(host, "fstat", e))?;
    if (st.st_dev, st.st_ino) != (inode.dev, inode.ino) {
        return Err(StageError::new(
            StageCode::SourceChanged,
            host,
            format!(
                "mount source {:?}: the cloned mount is not the opened inode",
                host.to_string_lossy()
            ),
            "retry; report this if it persists",
        ));
    }
    // The staging point is ours (root-owned, 0700); a symlink there is not followed.
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        dir,
        name,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| StageError::from_mount_api(host, "move_mount", e))?;
    // Attaching below a shared parent makes the new mount shared again: make it private.
    sys::mount_setattr(tree.as_fd(), 0, sys::PROPAGATION_PRIVATE)
        .map_err(|e| StageError::failed(host, "mount_setattr (private after attach)", e))?;
    Ok(())
}

/// Detach-unmount every staging point of `container` and remove the emptied points and the
/// directory. A point that is still a mount, or not empty, is left alone and reported. A missing
/// directory is fine (idempotent).
pub fn unstage(state_dir: &Path, container: &str) -> Result<(), UnstageError> {
    let fail = |problems: Vec<String>| UnstageError {
        container: container.to_string(),
        problems,
    };
    check_name(container).map_err(|m| fail(vec![m]))?;
    let dir_path = staging_dir(state_dir, container);
    let state = match rustix::fs::open(
        state_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(fail(vec![format!("cannot open the state directory: {e}")])),
    };
    let staging = match open_beneath_dir(state.as_fd(), STAGING) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(fail(vec![format!(
                "cannot open the staging directory: {e}"
            )]));
        }
    };
    let cdir = match open_beneath_dir(staging.as_fd(), container) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(fail(vec![format!(
                "cannot open {:?}: {e}",
                dir_path.to_string_lossy()
            )]));
        }
    };
    let mut problems = Vec::new();
    let names = match list_names(cdir.as_fd()) {
        Ok(n) => n,
        Err(e) => {
            return Err(fail(vec![format!(
                "cannot list {:?}: {e}",
                dir_path.to_string_lossy()
            )]));
        }
    };
    for name in names {
        if let Err(p) = remove_point(cdir.as_fd(), &dir_path, &name) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        match rustix::fs::unlinkat(&staging, container, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => problems.push(format!(
                "{:?} left in place: {e}",
                dir_path.to_string_lossy()
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(fail(problems))
    }
}

fn list_names(dir: BorrowedFd<'_>) -> std::io::Result<Vec<String>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let bytes = ent.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        names.push(String::from_utf8_lossy(bytes).into_owned());
    }
    Ok(names)
}

/// Unmount and remove one staging point, or say why it was left.
fn remove_point(dir: BorrowedFd<'_>, dir_path: &Path, name: &str) -> Result<(), String> {
    let path = dir_path.join(name);
    let shown = path.to_string_lossy().into_owned();
    if name.parse::<usize>().is_err() {
        return Err(format!("{shown:?} is not a staging point; left in place"));
    }
    // Mounts may be stacked on a point: detach until it is a plain directory or file.
    for _ in 0..16 {
        match sys::is_mount_root(dir, name) {
            Ok(Some(true)) => {
                if let Err(e) = sys::detach(&path) {
                    return Err(format!(
                        "{shown:?} cannot be unmounted ({e}); left in place"
                    ));
                }
            }
            Ok(Some(false)) => break,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("{shown:?}: {e}; left in place")),
        }
    }
    if sys::is_mount_root(dir, name).ok().flatten() == Some(true) {
        return Err(format!("{shown:?} is still a mount point; left in place"));
    }
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(format!("{shown:?}: {e}; left in place")),
    };
    let r = match FileType::from_raw_mode(st.st_mode) {
        // rmdir: fails on anything not empty, never deletes contents.
        FileType::Directory => rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR),
        FileType::RegularFile if st.st_size == 0 => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())
        }
        FileType::RegularFile => {
            return Err(format!(
                "{shown:?} is a non-empty file, not an unmounted point; left in place"
            ));
        }
        other => return Err(format!("{shown:?} is {other:?}; left in place")),
    };
    match r {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(format!("{shown:?} cannot be removed ({e}); left in place")),
    }
}

/// Unstage every container under `<state>/staging` that is not in `live` (every container that
/// still exists, running or not: a stopped container binds its staging points again when it is
/// started); returns the names cleaned. Then staging mounts of dead containers that
/// `/proc/self/mountinfo` lists but that cannot be reached by path (their directory entry is
/// gone or hidden) are detached where possible and logged ([`orphaned_staging_mounts`]).
pub fn sweep(state_dir: &Path, live: &BTreeSet<String>) -> Vec<String> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(state_dir.join(STAGING)) {
        for ent in rd.flatten() {
            names.insert(ent.file_name().to_string_lossy().into_owned());
        }
    }
    // Mounted but not listed (e.g. the listing failed): unstage by name all the same.
    for (name, _) in staging_mounts(state_dir) {
        names.insert(name);
    }
    let mut cleaned = Vec::new();
    for name in names {
        if live.contains(&name) || check_name(&name).is_err() {
            continue;
        }
        let existed = std::fs::symlink_metadata(staging_dir(state_dir, &name)).is_ok();
        match unstage(state_dir, &name) {
            Ok(()) if existed => cleaned.push(name),
            Ok(()) => {}
            Err(e) => tracing::warn!("sweep: {e}"),
        }
    }
    for p in orphaned_staging_mounts(state_dir, live) {
        match sys::detach(&p) {
            Ok(()) => tracing::warn!("sweep: detached orphaned staging mount {}", p.display()),
            Err(e) => tracing::warn!(
                "sweep: staging mount {} has no reachable directory entry and cannot be detached by path ({e}); it stays until the next reboot",
                p.display()
            ),
        }
    }
    cleaned
}

/// Every mount point below `<state>/staging` in `/proc/self/mountinfo`, with the container name
/// (first component below `staging`). A mount whose point was deleted is listed with its
/// ` (deleted)` suffix removed.
fn staging_mounts(state_dir: &Path) -> Vec<(String, PathBuf)> {
    let staging = state_dir.join(STAGING);
    let canon = std::fs::canonicalize(&staging).unwrap_or(staging);
    let Ok(points) = sys::mount_points() else {
        return Vec::new();
    };
    points
        .into_iter()
        .filter_map(|p| {
            let p = match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
                Some(s) => PathBuf::from(s),
                None => p,
            };
            let name = p
                .strip_prefix(&canon)
                .ok()?
                .components()
                .next()?
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            Some((name, p))
        })
        .collect()
}

/// Staging mounts of containers not in `live` that `/proc/self/mountinfo` lists but whose path
/// no longer leads to them (the entry is gone, or hidden under another mount): `unstage` cannot
/// reach them by name. For `doctor` and `sweep`.
pub fn orphaned_staging_mounts(state_dir: &Path, live: &BTreeSet<String>) -> Vec<PathBuf> {
    staging_mounts(state_dir)
        .into_iter()
        .filter(|(name, p)| {
            !live.contains(name) && {
                let reachable = p.parent().zip(p.file_name()).is_some_and(|(dir, base)| {
                    std::fs::File::open(dir).is_ok_and(|d| {
                        sys::is_mount_root(d.as_fd(), &base.to_string_lossy())
                            .ok()
                            .flatten()
                            == Some(true)
                    })
                });
                !reachable
            }
        })
        .map(|(_, p)| p)
        .collect()
}
