//! File operations, as the sandbox user, in the container's own view.
//!
//! Every path is resolved by the kernel beneath a handle on its mount root with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`): an absolute symlink, a `..` or symlink climbing
//! out, or a magic link (`/proc/self/fd/N`) is refused (`escapes_root`); there is no fallback
//! to `open` (fail closed, `unsupported`, where `openat2` is missing or filtered). Symlinks that
//! stay beneath the root are followed, as the container itself would. Permissions and
//! read-only mounts are the kernel's business: the agent runs as the sandbox user.
//!
//! Writes never go through the final component: a new temp file (`O_CREAT | O_EXCL |
//! O_NOFOLLOW`) is filled in chunks as they arrive, fsynced and `renameat`ed over the leaf, so a
//! final symlink is replaced (its target untouched) and no half-written file is ever visible.

use crate::proto::{AgentError, DirEntry, ErrorCode, FileStat, FileTarget};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat as RawStat, Mode, fstat, fstatat};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Mode of written files: never set-id, sticky or executable.
pub const FILE_MODE: u32 = 0o644;
/// Mode of created directories (before the umask).
pub const DIR_MODE: u32 = 0o755;
/// Prefix of write temp files.
pub const TEMP_PREFIX: &str = ".clawden-tmp-";

/// Map an errno to a structured error.
pub fn errno_error(e: Errno, op: &str, shown: &str) -> AgentError {
    let code = match e {
        Errno::ENOENT => ErrorCode::NotFound,
        Errno::EACCES | Errno::EPERM => ErrorCode::PermissionDenied,
        Errno::EXDEV => ErrorCode::EscapesRoot,
        Errno::EISDIR => ErrorCode::IsDirectory,
        Errno::ENOTDIR => ErrorCode::NotDirectory,
        Errno::EROFS => ErrorCode::ReadOnlyMount,
        Errno::ELOOP => ErrorCode::SymlinkLoop,
        Errno::EMLINK => ErrorCode::TooManyLinks,
        Errno::ENAMETOOLONG => ErrorCode::NameTooLong,
        Errno::ENOSPC | Errno::EDQUOT => ErrorCode::NoSpace,
        Errno::EFBIG => ErrorCode::TooLarge,
        Errno::EAGAIN | Errno::EBUSY | Errno::ETXTBSY => ErrorCode::Busy,
        Errno::EEXIST => ErrorCode::AlreadyExists,
        Errno::ENOTEMPTY => ErrorCode::NotEmpty,
        Errno::ENXIO => ErrorCode::SpecialFile,
        Errno::ENOSYS => ErrorCode::Unsupported,
        _ => ErrorCode::IoError,
    };
    let extra = match e {
        Errno::EXDEV => {
            " (resolves outside its mount root: absolute symlink, magic link, or climbing out)"
        }
        Errno::ENOSYS => " (openat2 is unavailable: refusing to resolve paths unsafely)",
        _ => "",
    };
    AgentError::new(code, format!("{op} {shown:?}: {}{extra}", e.desc()))
}

fn err(code: ErrorCode, msg: String) -> AgentError {
    AgentError::new(code, msg)
}

/// A mount root, opened once (`O_PATH`), directory or single-file bind.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    is_dir: bool,
}

/// One `openat2` with the given resolve flags, retried on `EINTR`/`EAGAIN` (a concurrent
/// rename while resolving `..`).
fn open2(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlag,
    mode: u32,
    resolve: ResolveFlag,
) -> Result<OwnedFd, Errno> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(resolve);
    let mut tries = 0;
    loop {
        match openat2(dir, rel, how) {
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if tries < 64 => tries += 1,
            r => return r,
        }
    }
}

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn cwd_fd() -> BorrowedFd<'static> {
    nix::fcntl::AT_FDCWD
}

impl Root {
    /// Open a mount root by its container path (absolute; no symlink anywhere in it: mount
    /// targets are planned canonical paths).
    pub fn new(root: &str) -> Result<Root, AgentError> {
        let path = PathBuf::from(root);
        if !path.is_absolute() {
            return Err(err(
                ErrorCode::InvalidPath,
                format!("mount root {root:?} is not absolute"),
            ));
        }
        let fd = open2(
            cwd_fd(),
            &path,
            OFlag::O_PATH,
            0,
            ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(|e| errno_error(e, "open mount root", root))?;
        let st = fstat(&fd).map_err(|e| errno_error(e, "stat mount root", root))?;
        let is_dir = kind_bits(&st) == libc::S_IFDIR;
        if !is_dir && kind_bits(&st) != libc::S_IFREG {
            return Err(err(
                ErrorCode::SpecialFile,
                format!("mount root {root:?} is neither a directory nor a regular file"),
            ));
        }
        Ok(Root { fd, path, is_dir })
    }

    /// Open `rel` beneath the root. The empty path is the root itself (for a single-file bind,
    /// re-opened by its planned path: a mount point cannot be swapped by the sandbox).
    pub fn open(&self, rel: &Path, flags: OFlag, mode: u32) -> Result<OwnedFd, Errno> {
        if rel.as_os_str().is_empty() {
            if self.is_dir {
                return open2(self.fd.as_fd(), rel, flags, mode, beneath());
            }
            return open2(
                cwd_fd(),
                &self.path,
                flags,
                mode,
                ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        }
        if !self.is_dir {
            return Err(Errno::ENOTDIR);
        }
        open2(self.fd.as_fd(), rel, flags, mode, beneath())
    }

    /// Whether the root is a directory (not a single-file bind).
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }
}

/// Split a target into (opened root, path beneath it). No lexical clean-up of `..` or symlinks:
/// the kernel resolves the rest beneath the root.
pub fn resolve(t: &FileTarget) -> Result<(Root, PathBuf), AgentError> {
    let rel = relative(&t.root, &t.path)?;
    Ok((Root::new(&t.root)?, rel))
}

fn relative(root: &str, path: &str) -> Result<PathBuf, AgentError> {
    if path.contains('\0') || root.contains('\0') {
        return Err(err(ErrorCode::InvalidPath, "path holds a NUL byte".into()));
    }
    if !path.starts_with('/') {
        return Err(err(
            ErrorCode::InvalidPath,
            format!("{path:?} is not an absolute container path"),
        ));
    }
    let r = root.trim_end_matches('/');
    let rest = if r.is_empty() {
        Some(path)
    } else {
        path.strip_prefix(r)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    match rest {
        Some(rest) => Ok(PathBuf::from(rest.trim_start_matches('/'))),
        None => Err(err(
            ErrorCode::NotOnMount,
            format!("{path:?} is not beneath mount root {root:?}"),
        )),
    }
}

/// Resolve a call's cwd: an existing directory under one of `roots`, symlinks resolved beneath
/// that root. Returns an fd of it (the command `fchdir`s to it: nothing is re-resolved).
pub fn resolve_cwd(cwd: &str, roots: &[String]) -> Result<OwnedFd, AgentError> {
    // The longest root that contains the cwd (nested mounts).
    let root = roots
        .iter()
        .filter(|r| relative(r, cwd).is_ok())
        .max_by_key(|r| r.len())
        .ok_or_else(|| {
            err(
                ErrorCode::NotOnMount,
                format!("cwd {cwd:?} lies on none of the mounts"),
            )
        })?;
    let rel = relative(root, cwd)?;
    let root = Root::new(root)?;
    if !root.is_dir() {
        return Err(err(
            ErrorCode::NotDirectory,
            format!("cwd {cwd:?} is a single-file mount"),
        ));
    }
    root.open(&rel, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
        .map_err(|e| errno_error(e, "cwd", cwd))
}

fn kind_bits(st: &RawStat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

fn kind_name(st: &RawStat) -> &'static str {
    match kind_bits(st) {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "char_device",
        libc::S_IFBLK => "block_device",
        _ => "other",
    }
}

/// A content tag: changes when the file is replaced or modified.
pub fn etag(st: &RawStat) -> String {
    format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}",
        st.st_dev, st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec
    )
}

fn to_stat(st: &RawStat) -> FileStat {
    FileStat {
        kind: kind_name(st).into(),
        size: st.st_size.max(0) as u64,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_ns: st
            .st_mtime
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec),
        etag: etag(st),
    }
}

/// Stat (symlinks beneath the root followed).
pub fn stat(t: &FileTarget) -> Result<FileStat, AgentError> {
    let (root, rel) = resolve(t)?;
    let fd = root
        .open(&rel, OFlag::O_PATH, 0)
        .map_err(|e| errno_error(e, "stat", &t.path))?;
    let st = fstat(&fd).map_err(|e| errno_error(e, "stat", &t.path))?;
    Ok(to_stat(&st))
}

/// An open regular file, ready to be read.
pub struct ReadPlan {
    /// The file.
    pub file: std::fs::File,
    /// Its size.
    pub size: u64,
    /// First byte to send.
    pub offset: u64,
    /// Bytes to send.
    pub length: u64,
    /// The cap cut the read short.
    pub truncated: bool,
    /// Its etag.
    pub etag: String,
}

/// Open a regular file for reading: `O_NONBLOCK` (a FIFO opens at once), then `fstat`; anything
/// but a regular file is refused before a byte is read.
pub fn open_read(
    t: &FileTarget,
    offset: u64,
    length: Option<u64>,
    cap: u64,
) -> Result<ReadPlan, AgentError> {
    let (root, rel) = resolve(t)?;
    let fd = root
        .open(
            &rel,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            0,
        )
        .map_err(|e| errno_error(e, "read", &t.path))?;
    let st = fstat(&fd).map_err(|e| errno_error(e, "read", &t.path))?;
    match kind_bits(&st) {
        libc::S_IFREG => {}
        libc::S_IFDIR => {
            return Err(err(
                ErrorCode::IsDirectory,
                format!("read {:?}: is a directory", t.path),
            ));
        }
        _ => {
            return Err(err(
                ErrorCode::SpecialFile,
                format!(
                    "read {:?}: a {} is not a regular file",
                    t.path,
                    kind_name(&st)
                ),
            ));
        }
    }
    let size = st.st_size.max(0) as u64;
    let avail = size.saturating_sub(offset);
    let wanted = length.map_or(avail, |l| l.min(avail));
    let send = wanted.min(cap);
    Ok(ReadPlan {
        file: std::fs::File::from(fd),
        size,
        offset,
        length: send,
        truncated: send < wanted || (length.is_none() && send < avail),
        etag: etag(&st),
    })
}

/// A write in progress: temp file created, content streamed in with [`PendingWrite::append`],
/// then [`PendingWrite::commit`]. Dropping it removes the temp file.
pub struct PendingWrite {
    dir: OwnedFd,
    leaf: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    written: u64,
    /// Bytes whose writeback was already started (see [`WRITEBACK_STEP`]).
    flushed: u64,
    cap: u64,
    created: bool,
    exclusive: bool,
    shown: String,
    done: bool,
}

/// Prepare an atomic write: open (or create) the parent beneath the root, apply `exclusive` and
/// `expected_etag`, create the temp file.
pub fn begin_write(
    t: &FileTarget,
    mkdir_parents: bool,
    exclusive: bool,
    expected_etag: Option<&str>,
    cap: u64,
) -> Result<PendingWrite, AgentError> {
    let (root, rel) = resolve(t)?;
    let shown = t.path.clone();
    if !rel.as_os_str().is_empty() {
        check_leaf(&shown)?;
    }
    let (Some(leaf), Some(parent)) = (rel.file_name(), rel.parent()) else {
        if root.is_dir() {
            return Err(err(
                ErrorCode::IsDirectory,
                format!("write {shown:?}: is the mount root, a directory"),
            ));
        }
        return Err(err(
            ErrorCode::Busy,
            format!("write {shown:?}: a single-file mount cannot be replaced atomically"),
        ));
    };
    let leaf = PathBuf::from(leaf);
    let dir = open_dir(&root, parent, mkdir_parents, &shown)?;
    let current = match fstatat(&dir, leaf.as_path(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Some(st),
        Err(Errno::ENOENT) => None,
        Err(e) => return Err(errno_error(e, "write", &shown)),
    };
    if let Some(st) = &current {
        if kind_bits(st) == libc::S_IFDIR {
            return Err(err(
                ErrorCode::IsDirectory,
                format!("write {shown:?}: is a directory"),
            ));
        }
        if exclusive {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!("write {shown:?}: exists"),
            ));
        }
    }
    if let Some(want) = expected_etag {
        let have = current.as_ref().map(etag);
        if have.as_deref() != Some(want) {
            return Err(err(
                ErrorCode::EtagMismatch,
                format!("write {shown:?}: the file changed (etag {have:?}, expected {want:?})"),
            ));
        }
    }
    let (tmp, fd) =
        create_temp(dir.as_fd()).map_err(|e| errno_error(e, "write (temp file)", &shown))?;
    Ok(PendingWrite {
        dir,
        leaf,
        tmp,
        file: std::fs::File::from(fd),
        written: 0,
        flushed: 0,
        cap,
        created: current.is_none(),
        exclusive,
        shown,
        done: false,
    })
}

/// Start the disk writeback of a large write every this many bytes, while the rest still
/// streams in, so the fsync before the rename has little left to wait for.
const WRITEBACK_STEP: u64 = 4 << 20;

impl PendingWrite {
    /// Append a chunk (refused once over the cap).
    pub fn append(&mut self, data: &[u8]) -> Result<(), AgentError> {
        use std::io::Write;
        self.written += data.len() as u64;
        if self.written > self.cap {
            return Err(err(
                ErrorCode::TooLarge,
                format!(
                    "write {:?}: over the write cap of {} bytes",
                    self.shown, self.cap
                ),
            ));
        }
        self.file.write_all(data).map_err(|e| {
            errno_error(
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                "write",
                &self.shown,
            )
        })?;
        if self.written - self.flushed >= WRITEBACK_STEP {
            use std::os::fd::AsRawFd;
            // Hand-written: neither nix 0.30 nor rustix 1 wraps sync_file_range(2). It only
            // starts writeback (no wait, no data-integrity promise: the fsync in `commit` is
            // still what makes the write durable); a failure here changes nothing.
            // SAFETY: a valid open descriptor, a byte range within what was written.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.flushed as libc::off64_t,
                    (self.written - self.flushed) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed = self.written;
        }
        Ok(())
    }

    /// fchmod 0644, fsync, check the temp name is still ours, rename over the leaf.
    /// Returns (bytes, created, etag).
    pub fn commit(mut self) -> Result<(u64, bool, String), AgentError> {
        let e = |x: Errno| errno_error(x, "write", &self.shown);
        nix::sys::stat::fchmod(&self.file, Mode::from_bits_truncate(FILE_MODE)).map_err(e)?;
        nix::unistd::fsync(&self.file).map_err(e)?;
        let ours = fstat(&self.file).map_err(e)?;
        // The sandbox may have renamed our temp file away and put something else there; then
        // the rename would install its object, not our content: refuse.
        match fstatat(&self.dir, self.tmp.as_path(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_dev == ours.st_dev && st.st_ino == ours.st_ino => {}
            _ => return Err(e(Errno::EBUSY)),
        }
        // Exclusive: whatever appeared at the leaf since the check is never replaced.
        let flags = if self.exclusive {
            nix::fcntl::RenameFlags::RENAME_NOREPLACE
        } else {
            nix::fcntl::RenameFlags::empty()
        };
        nix::fcntl::renameat2(
            &self.dir,
            self.tmp.as_path(),
            &self.dir,
            self.leaf.as_path(),
            flags,
        )
        .map_err(e)?;
        self.done = true;
        let _ = nix::unistd::fsync(&self.dir);
        Ok((self.written, self.created, etag(&ours)))
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if !self.done {
            let _ = nix::unistd::unlinkat(
                &self.dir,
                self.tmp.as_path(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

fn create_temp(dir: BorrowedFd<'_>) -> Result<(PathBuf, OwnedFd), Errno> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut tries = 0;
    loop {
        let mut seed = [0u8; 8];
        // SAFETY: getrandom fills at most `seed.len()` bytes of a valid buffer. (A short read
        // only makes the name more guessable; O_EXCL keeps it safe.)
        unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), libc::GRND_NONBLOCK) };
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = PathBuf::from(format!("{TEMP_PREFIX}{:x}-{n:x}", u64::from_le_bytes(seed)));
        match open2(
            dir,
            &name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY,
            0o600,
            beneath() | ResolveFlag::RESOLVE_NO_SYMLINKS,
        ) {
            Ok(fd) => return Ok((name, fd)),
            Err(Errno::EEXIST) if tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Open a directory beneath the root, creating missing components one at a time (each
/// `mkdirat` relative to the previous directory's fd, each re-opened beneath the root).
fn open_dir(root: &Root, rel: &Path, create: bool, shown: &str) -> Result<OwnedFd, AgentError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    match root.open(rel, flags, 0) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create => {}
        Err(e) => return Err(errno_error(e, "open parent directory of", shown)),
    }
    let mut cur = root
        .open(Path::new(""), flags, 0)
        .map_err(|e| errno_error(e, "open mount root for", shown))?;
    let mut prefix = PathBuf::new();
    for comp in rel.iter() {
        prefix.push(comp);
        match root.open(&prefix, flags, 0) {
            Ok(fd) => cur = fd,
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    &cur,
                    Path::new(comp),
                    Mode::from_bits_truncate(DIR_MODE),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(errno_error(e, "create directory", shown)),
                }
                cur = root
                    .open(&prefix, flags, 0)
                    .map_err(|e| errno_error(e, "create directory", shown))?;
            }
            Err(e) => return Err(errno_error(e, "open parent directory of", shown)),
        }
    }
    Ok(cur)
}

/// The last component of a path that is written, created, removed or renamed must be a name:
/// `a/.` or `a/..` would otherwise act on `a` or its parent.
fn check_leaf(path: &str) -> Result<(), AgentError> {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if last.is_empty() || last == "." || last == ".." {
        return Err(err(
            ErrorCode::InvalidPath,
            format!("{path:?}: the last component must be a name"),
        ));
    }
    Ok(())
}

/// Split into (parent dir fd, leaf name); the leaf must be a plain name.
fn parent_and_leaf(
    root: &Root,
    rel: &Path,
    shown: &str,
    create: bool,
) -> Result<(OwnedFd, PathBuf), AgentError> {
    let (Some(leaf), Some(parent)) = (rel.file_name(), rel.parent()) else {
        return Err(err(
            ErrorCode::InvalidPath,
            format!("{shown:?}: names the mount root itself"),
        ));
    };
    check_leaf(shown)?;
    Ok((open_dir(root, parent, create, shown)?, PathBuf::from(leaf)))
}

/// mkdir (optionally with parents; then an existing directory is fine).
pub fn mkdir(t: &FileTarget, parents: bool) -> Result<(), AgentError> {
    let (root, rel) = resolve(t)?;
    if rel.as_os_str().is_empty() {
        return if parents {
            Ok(())
        } else {
            Err(err(
                ErrorCode::AlreadyExists,
                format!("mkdir {:?}: exists", t.path),
            ))
        };
    }
    if parents {
        open_dir(&root, &rel, true, &t.path)?;
        return Ok(());
    }
    let (dir, leaf) = parent_and_leaf(&root, &rel, &t.path, false)?;
    nix::sys::stat::mkdirat(&dir, leaf.as_path(), Mode::from_bits_truncate(DIR_MODE))
        .map_err(|e| errno_error(e, "mkdir", &t.path))
}

/// Remove a file, symlink (not its target) or empty directory.
pub fn remove(t: &FileTarget) -> Result<(), AgentError> {
    let (root, rel) = resolve(t)?;
    let (dir, leaf) = parent_and_leaf(&root, &rel, &t.path, false)?;
    let st = fstatat(&dir, leaf.as_path(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| errno_error(e, "remove", &t.path))?;
    let how = if kind_bits(&st) == libc::S_IFDIR {
        nix::unistd::UnlinkatFlags::RemoveDir
    } else {
        nix::unistd::UnlinkatFlags::NoRemoveDir
    };
    nix::unistd::unlinkat(&dir, leaf.as_path(), how).map_err(|e| errno_error(e, "remove", &t.path))
}

/// Rename (the final components themselves, never through them).
pub fn rename(from: &FileTarget, to: &FileTarget, no_replace: bool) -> Result<(), AgentError> {
    let (froot, frel) = resolve(from)?;
    let (troot, trel) = resolve(to)?;
    let (fdir, fleaf) = parent_and_leaf(&froot, &frel, &from.path, false)?;
    let (tdir, tleaf) = parent_and_leaf(&troot, &trel, &to.path, false)?;
    let flags = if no_replace {
        nix::fcntl::RenameFlags::RENAME_NOREPLACE
    } else {
        nix::fcntl::RenameFlags::empty()
    };
    nix::fcntl::renameat2(&fdir, fleaf.as_path(), &tdir, tleaf.as_path(), flags).map_err(|e| {
        if e == Errno::EXDEV {
            err(
                ErrorCode::CrossDevice,
                format!("rename {:?} → {:?}: different mounts", from.path, to.path),
            )
        } else {
            errno_error(e, "rename", &from.path)
        }
    })
}

/// List a directory (entries sorted by name, symlinks not followed).
pub fn list(t: &FileTarget, max_entries: u64) -> Result<(Vec<DirEntry>, bool), AgentError> {
    let (root, rel) = resolve(t)?;
    let fd = root
        .open(&rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
        .map_err(|e| errno_error(e, "list", &t.path))?;
    let dir = nix::dir::Dir::from_fd(fd).map_err(|e| errno_error(e, "list", &t.path))?;
    let raw = dir.as_raw_fd();
    // SAFETY: `dir` owns the fd and outlives this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let mut out = Vec::new();
    let mut truncated = false;
    for ent in dir {
        let ent = ent.map_err(|e| errno_error(e, "list", &t.path))?;
        let name = ent.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        if out.len() as u64 >= max_entries {
            truncated = true;
            break;
        }
        let (kind, size) = match fstatat(borrowed, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => (kind_name(&st).to_string(), st.st_size.max(0) as u64),
            Err(_) => ("other".to_string(), 0),
        };
        out.push(DirEntry {
            name: String::from_utf8_lossy(bytes).into_owned(),
            kind,
            size,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_split_on_component_boundaries() {
        assert_eq!(relative("/w", "/w").unwrap(), PathBuf::from(""));
        assert_eq!(relative("/w/", "/w/a/b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(relative("/", "/etc/x").unwrap(), PathBuf::from("etc/x"));
        assert_eq!(
            relative("/w", "/wx/a").unwrap_err().code,
            ErrorCode::NotOnMount
        );
        assert_eq!(
            relative("/w", "w/a").unwrap_err().code,
            ErrorCode::InvalidPath
        );
        assert_eq!(
            relative("/w", "/w/a\0").unwrap_err().code,
            ErrorCode::InvalidPath
        );
        // `..` is left to the kernel (RESOLVE_BENEATH refuses climbing out).
        assert_eq!(
            relative("/w", "/w/../etc").unwrap(),
            PathBuf::from("../etc")
        );
    }
}
