//! Thin wrappers over the syscalls staged mounts need. Everything comes from `rustix`, except
//! `mount_setattr`, which rustix 1.1 does not have yet (bytecodealliance/rustix#975 is open):
//! that one call is made by hand through `libc::syscall`.

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxAttributes, StatxFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// How often an `openat2` that failed with `EAGAIN` (a concurrent rename while resolving) is
/// retried before giving up.
const EAGAIN_RETRIES: u32 = 32;

/// `openat2(dirfd, path, flags, resolve)`, retried on `EINTR` and (boundedly) on `EAGAIN`.
pub(crate) fn openat2<Fd: AsFd>(
    dirfd: Fd,
    path: &Path,
    flags: OFlags,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut again = 0;
    loop {
        match rustix::fs::openat2(
            dirfd.as_fd(),
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if again < EAGAIN_RETRIES => {
                again += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
}

/// `struct mount_attr` of `linux/mount.h` (`MOUNT_ATTR_SIZE_VER0`, 32 bytes).
#[repr(C)]
#[derive(Default)]
struct MountAttrRaw {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MS_PRIVATE` as a `mount_attr.propagation` value.
pub(crate) const PROPAGATION_PRIVATE: u64 = libc::MS_PRIVATE;

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {attr_set, 0, propagation})` on one mount (never
/// `AT_RECURSIVE`: a staged tree has exactly one mount).
pub(crate) fn mount_setattr(fd: BorrowedFd<'_>, attr_set: u64, propagation: u64) -> io::Result<()> {
    raw_mount_setattr(fd, libc::AT_EMPTY_PATH, attr_set, propagation)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, {attr_set})`: the flags on every mount
/// of a cloned tree (the in-place `nosuid` over-mount keeps the host's submounts).
pub(crate) fn mount_setattr_recursive(fd: BorrowedFd<'_>, attr_set: u64) -> io::Result<()> {
    raw_mount_setattr(fd, libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, attr_set, 0)
}

/// Hand-written: rustix 1.1 has no `mount_setattr` (rustix#975); the struct is the kernel's
/// extensible `mount_attr`, passed with its exact size.
fn raw_mount_setattr(
    fd: BorrowedFd<'_>,
    at_flags: libc::c_int,
    attr_set: u64,
    propagation: u64,
) -> io::Result<()> {
    let attr = MountAttrRaw {
        attr_set,
        propagation,
        ..Default::default()
    };
    let empty = c"";
    loop {
        // SAFETY: `fd` is a valid open fd for the duration of the call, `empty` is a valid
        // NUL-terminated string and `attr` a properly initialised `mount_attr` whose size is
        // passed; the kernel only reads them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd.as_raw_fd(),
                empty.as_ptr(),
                at_flags as libc::c_uint,
                &attr as *const MountAttrRaw,
                std::mem::size_of::<MountAttrRaw>(),
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Whether `name` in `dir` is the root of a mount (`STATX_ATTR_MOUNT_ROOT`), not following a
/// final symlink. `None` if the entry does not exist.
pub(crate) fn is_mount_root(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<bool>> {
    match rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::BASIC_STATS,
    ) {
        Ok(st) => {
            if !st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the kernel does not report STATX_ATTR_MOUNT_ROOT (Linux < 5.8)",
                ));
            }
            Ok(Some(
                st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
            ))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW)`.
pub(crate) fn detach(path: &Path) -> io::Result<()> {
    use rustix::mount::UnmountFlags;
    rustix::mount::unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW).map_err(Into::into)
}

/// Decode the octal escapes of a `/proc/self/mountinfo` path field (`\040` for space, …).
pub(crate) fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Mount points of the current mount namespace (field 5 of `/proc/self/mountinfo`), decoded.
pub(crate) fn mount_points() -> io::Result<Vec<std::path::PathBuf>> {
    use std::os::unix::ffi::OsStringExt;
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|f| std::path::PathBuf::from(std::ffi::OsString::from_vec(unescape_mountinfo(f))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(
            unescape_mountinfo(r"/a\040b\011c\012d\134e"),
            b"/a b\tc\nd\\e"
        );
        assert_eq!(unescape_mountinfo(r"/plain"), b"/plain");
        assert_eq!(unescape_mountinfo(r"/trail\04"), b"/trail\\04");
        assert_eq!(unescape_mountinfo(r"/x\040(deleted)"), b"/x (deleted)");
    }
}
