//! `openat2` and the few other syscalls the file tools make, as thin safe wrappers.
//!
//! Everything beneath a mount's host root is opened relative to a [`RootDir`] handle with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel refuses (`EXDEV`) any resolution that
//! would leave the root, whatever symlinks or renames the container races in. There is no
//! fallback: without `openat2` (`ENOSYS`, Linux < 5.6) every call fails closed (`unsupported`).
//!
//! `RESOLVE_NO_XDEV` is deliberately *not* used: submounts beneath a root are legitimate and the
//! container cannot create mounts, so crossing one is never attacker-driven.
//!
//! Under `cfg(test)` every wrapper counts itself in a thread-local, so tests can prove that a
//! refusal happened before any syscall.

use super::FileError;
use crate::validate::RefusalCode;
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `RESOLVE_NO_XDEV`: no mount-point crossing (unused, see the module docs).
pub const RESOLVE_NO_XDEV: u64 = 0x01;
/// `RESOLVE_NO_MAGICLINKS`: no `/proc/<pid>/fd`-style magic links.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_NO_SYMLINKS`: no symlinks at all.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// `RESOLVE_BENEATH`: resolution must stay beneath the directory fd.
pub const RESOLVE_BENEATH: u64 = 0x08;

/// The resolve flags of every open beneath a root.
pub const BENEATH: u64 = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

/// How often an `openat2` that failed with `EAGAIN` (a concurrent rename or mount while
/// resolving `..` beneath the root) is retried before the call is refused as `busy`.
const EAGAIN_RETRIES: u32 = 64;

/// `struct open_how` of `linux/openat2.h` (libc's is `#[non_exhaustive]`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[cfg(test)]
thread_local! {
    static SYSCALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Syscalls made by this module on the current thread (tests only).
#[cfg(test)]
pub(crate) fn syscall_count() -> u64 {
    SYSCALLS.with(|c| c.get())
}

#[inline]
fn note_syscall() {
    #[cfg(test)]
    SYSCALLS.with(|c| c.set(c.get() + 1));
}

/// A path as a C string. Paths from [`super::check_relative`] never hold NUL; anything else
/// is refused as `EINVAL`.
pub(crate) fn cpath(p: &Path) -> Result<CString, Errno> {
    let bytes = p.as_os_str().as_bytes();
    let bytes = if bytes.is_empty() { b"." } else { bytes };
    CString::new(bytes).map_err(|_| Errno::EINVAL)
}

/// One raw `openat2` call, retried on `EINTR` and (boundedly) on `EAGAIN`.
pub fn openat2(
    dirfd: RawFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd, Errno> {
    let c = cpath(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u32 as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            mode as u64
        } else {
            0
        },
        resolve,
    };
    let mut again = 0;
    loop {
        note_syscall();
        // SAFETY: `c` is a valid NUL-terminated string and `how` a valid `open_how` of the
        // size passed; the kernel only reads them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if r >= 0 {
            // SAFETY: a successful openat2 returns a new fd that we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN if again < EAGAIN_RETRIES => {
                again += 1;
                std::thread::yield_now();
            }
            e => return Err(e),
        }
    }
}

/// A handle on a mount's host root: an `O_PATH | O_DIRECTORY` fd everything else is resolved
/// beneath.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RootDir {
    /// The host path the root was opened from (for messages only; never re-opened by name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for RootDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Open a mount's host root once, as an `O_PATH | O_DIRECTORY` fd.
///
/// The host root is a canonical, absolute path from the mount plan, so it is opened with
/// `RESOLVE_NO_SYMLINKS`: a symlink anywhere in it means the host changed since the plan was
/// made (`symlink_refused`). Fails closed (`unsupported`) without `openat2`.
pub fn open_root(host_root: &Path) -> Result<RootDir, FileError> {
    if !host_root.is_absolute() {
        return Err(FileError::refused(
            RefusalCode::NonAbsolute,
            host_root.to_string_lossy(),
            format!(
                "mount root {:?} is not an absolute host path",
                host_root.to_string_lossy()
            ),
            "open mount roots from the mount plan's canonical host paths",
        ));
    }
    match openat2(
        libc::AT_FDCWD,
        host_root,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(RootDir {
            fd,
            path: host_root.to_path_buf(),
        }),
        Err(Errno::ELOOP) => Err(FileError::Os {
            refusal: crate::validate::Refusal::new(
                RefusalCode::SymlinkRefused,
                host_root.to_string_lossy(),
                format!(
                    "mount root {:?} is, or passes through, a symlink: it is no longer the canonical path that was planned",
                    host_root.to_string_lossy()
                ),
                "re-create the session so the mount plan is canonicalised again",
            ),
            errno: Errno::ELOOP as i32,
        }),
        Err(e) => Err(FileError::from_errno(e, "open mount root", host_root)),
    }
}

/// `fstat` an fd.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat, Errno> {
    note_syscall();
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd, `st` is a properly sized out-buffer.
    let r = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstat succeeded and filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)` of one entry of a directory fd.
pub(crate) fn lstatat(dirfd: BorrowedFd<'_>, name: &Path) -> Result<libc::stat, Errno> {
    let c = cpath(name)?;
    note_syscall();
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd and NUL-terminated name; `st` is a properly sized out-buffer.
    let r = unsafe {
        libc::fstatat(
            dirfd.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstatat succeeded and filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// `pread` into `buf`, retried on `EINTR`; returns the bytes read (0 at end of file).
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let off = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    loop {
        note_syscall();
        // SAFETY: `buf` is a valid writable buffer of the given length.
        let r = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
        if r >= 0 {
            return Ok(r as usize);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Write all of `buf`, retried on `EINTR` and short writes.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        note_syscall();
        // SAFETY: `buf` is a valid readable buffer of the given length.
        let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if r < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        if r == 0 {
            return Err(Errno::EIO);
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// `mkdirat(dirfd, name, mode)`: never follows a final symlink (it fails with `EEXIST`).
pub(crate) fn mkdirat(dirfd: BorrowedFd<'_>, name: &Path, mode: u32) -> Result<(), Errno> {
    let c = cpath(name)?;
    note_syscall();
    // SAFETY: valid fd and NUL-terminated name.
    Errno::result(unsafe { libc::mkdirat(dirfd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
        .map(drop)
}

/// `renameat(dirfd, from, dirfd, to)` within one directory.
pub(crate) fn renameat(dirfd: BorrowedFd<'_>, from: &Path, to: &Path) -> Result<(), Errno> {
    let (f, t) = (cpath(from)?, cpath(to)?);
    note_syscall();
    let d = dirfd.as_raw_fd();
    // SAFETY: valid fd and NUL-terminated names.
    Errno::result(unsafe { libc::renameat(d, f.as_ptr(), d, t.as_ptr()) }).map(drop)
}

/// `unlinkat(dirfd, name, 0)`.
pub(crate) fn unlinkat(dirfd: BorrowedFd<'_>, name: &Path) -> Result<(), Errno> {
    let c = cpath(name)?;
    note_syscall();
    // SAFETY: valid fd and NUL-terminated name.
    Errno::result(unsafe { libc::unlinkat(dirfd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
}

/// `fchown(fd, uid, gid)`.
pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    note_syscall();
    // SAFETY: valid fd.
    Errno::result(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    note_syscall();
    // SAFETY: valid fd.
    Errno::result(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// `fsync(fd)`, retried on `EINTR`.
pub(crate) fn fsync(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    loop {
        note_syscall();
        // SAFETY: valid fd.
        match Errno::result(unsafe { libc::fsync(fd.as_raw_fd()) }) {
            Err(Errno::EINTR) => continue,
            r => return r.map(drop),
        }
    }
}

/// The file type bits of a `stat`.
pub(crate) fn file_type(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// A human name for a file type.
pub(crate) fn type_name(st: &libc::stat) -> &'static str {
    match file_type(st) {
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "special file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileio::test_support::Fixture;

    #[test]
    fn open_root_opens_a_directory_and_nothing_else() {
        let fx = Fixture::new();
        let root = open_root(&fx.root).unwrap();
        assert_eq!(root.path(), fx.root);
        let st = fstat(root.as_fd()).unwrap();
        assert_eq!(file_type(&st), libc::S_IFDIR);

        std::fs::write(fx.root.join("f"), b"x").unwrap();
        let e = open_root(&fx.root.join("f")).unwrap_err();
        assert_eq!(e.code(), RefusalCode::NotDirectory);
        let e = open_root(&fx.root.join("missing")).unwrap_err();
        assert_eq!(e.code(), RefusalCode::NotFound);
        let e = open_root(Path::new("relative/dir")).unwrap_err();
        assert_eq!(e.code(), RefusalCode::NonAbsolute);
    }

    #[test]
    fn open_root_refuses_a_symlinked_root() {
        let fx = Fixture::new();
        let link = fx.base.join("root-link");
        std::os::unix::fs::symlink(&fx.root, &link).unwrap();
        let e = open_root(&link).unwrap_err();
        assert_eq!(e.code(), RefusalCode::SymlinkRefused);
        let e = open_root(&link.join("sub")).unwrap_err();
        assert!(
            matches!(
                e.code(),
                RefusalCode::SymlinkRefused | RefusalCode::NotFound
            ),
            "{e}"
        );
    }

    #[test]
    fn beneath_refuses_absolute_and_climbing_paths() {
        let fx = Fixture::new();
        let root = open_root(&fx.root).unwrap();
        for p in ["/etc/passwd", "../outside/canary", "a/../../outside/canary"] {
            std::fs::create_dir_all(fx.root.join("a")).unwrap();
            let e = openat2(root.raw(), Path::new(p), libc::O_RDONLY, 0, BENEATH).unwrap_err();
            assert_eq!(e, Errno::EXDEV, "{p}");
        }
        // A magic link is refused even where it would stay beneath (there is none here; the
        // flag is checked on /proc from the cwd).
        let e = openat2(
            libc::AT_FDCWD,
            Path::new("/proc/self/root/etc/hostname"),
            libc::O_RDONLY,
            0,
            RESOLVE_NO_MAGICLINKS,
        )
        .unwrap_err();
        assert_eq!(e, Errno::ELOOP);
    }

    #[test]
    fn cpath_maps_empty_to_dot_and_refuses_nul() {
        assert_eq!(cpath(Path::new("")).unwrap().as_bytes(), b".");
        let nul = Path::new(std::ffi::OsStr::from_bytes(b"a\0b"));
        assert_eq!(cpath(nul).unwrap_err(), Errno::EINVAL);
    }

    #[test]
    fn errno_mapping_has_stable_codes() {
        let cases = [
            (Errno::ENOENT, "not_found"),
            (Errno::EISDIR, "is_directory"),
            (Errno::ENOTDIR, "not_directory"),
            (Errno::ELOOP, "symlink_loop"),
            (Errno::EXDEV, "escapes_root"),
            (Errno::EMLINK, "too_many_links"),
            (Errno::EACCES, "permission_denied"),
            (Errno::EPERM, "permission_denied"),
            (Errno::ENAMETOOLONG, "name_too_long"),
            (Errno::ENOSPC, "no_space"),
            (Errno::EDQUOT, "no_space"),
            (Errno::EROFS, "read_only_mount"),
            (Errno::EAGAIN, "busy"),
            (Errno::ENXIO, "special_file"),
            (Errno::ENOSYS, "unsupported"),
            (Errno::EIO, "io_error"),
        ];
        for (errno, code) in cases {
            let e = FileError::from_errno(errno, "read", Path::new("a/b"));
            assert_eq!(e.code().as_str(), code, "{errno:?}");
            assert_eq!(e.errno(), Some(errno as i32));
            assert_eq!(e.refusal().value, "a/b");
            assert!(e.refusal().message.contains("\"a/b\""));
            assert!(!e.refusal().fix.is_empty());
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["code"], code);
            assert_eq!(json["errno"], errno as i32);
        }
    }
}
