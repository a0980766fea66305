//! Setuid bits a sandbox plants stay inert on the host too. A sandbox with a writable mount can
//! create a setuid (or setgid) file owned by its uid, and since that uid is a real host user, a
//! host user running the file through the workspace's own host path would become it — outside
//! every namespace and filter. Staging points are `nosuid`, but the operator's path is not, so
//! the writable source directory itself is over-mounted in place, as root, with a recursive
//! clone of itself carrying `nosuid,nodev`: the same files and submounts, seen the same way by
//! the host, whose setuid bits now do nothing. Once per directory (an already `nosuid,nodev`
//! path is left alone); it stays for as long as the host runs, like the workspace itself.

use super::stage::{SourceKind, StageError, open_checked};
use super::sys;
use rustix::mount::{MountAttrFlags, MoveMountFlags, OpenTreeFlags};
use std::os::fd::AsFd;
use std::path::Path;

/// Make `host` (a checked directory) `nosuid,nodev` in place. Returns whether it over-mounted.
pub fn make_nosuid_in_place(host: &Path) -> Result<bool, StageError> {
    let (fd, _inode, kind) = open_checked(host)?;
    if kind != SourceKind::Directory {
        return Ok(false);
    }
    let flags = rustix::fs::fstatvfs(&fd)
        .map_err(|e| StageError::failed(host, "fstatvfs", e))?
        .f_flag;
    let wanted = rustix::fs::StatVfsMountFlags::NOSUID | rustix::fs::StatVfsMountFlags::NODEV;
    if flags.contains(wanted) {
        return Ok(false);
    }
    // Recursive: the host's view keeps every submount; only the flags change.
    let tree = rustix::mount::open_tree(
        &fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH
            | OpenTreeFlags::AT_RECURSIVE,
    )
    .map_err(|e| StageError::from_mount_api(host, "open_tree", e))?;
    let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
    sys::mount_setattr_recursive(tree.as_fd(), u64::from(attrs.bits()))
        .map_err(|e| StageError::failed(host, "mount_setattr", e))?;
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        &fd,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| StageError::from_mount_api(host, "move_mount", e))?;
    Ok(true)
}
