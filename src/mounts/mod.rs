//! Staged mounts: what Docker mounts is what was checked (sandbox.md §5, security.md
//! "Principles learned from attacks", 4).
//!
//! When clawden runs as root, every planned mount is staged by clawden itself with the new mount
//! API before the container is created:
//!
//! 1. the checked (canonical) host path is opened race-free: `openat2` from `/` with
//!    `RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` and `O_PATH` — a symlink that appeared in any
//!    component since validation fails the stage (`source_changed`); the inode is recorded;
//! 2. `open_tree(fd, "", OPEN_TREE_CLONE)` **without** `AT_RECURSIVE` makes a detached copy of
//!    just that mount: submounts below the source (a tmpfs, a bind, a bound socket) do not come
//!    along, so nothing mounted inside a workspace leaks in and read-only holds all the way down;
//! 3. `mount_setattr` sets `NOSUID | NODEV` (and `RDONLY` for `ro` access) and private
//!    propagation on that copy;
//! 4. `move_mount` attaches it at `<state>/staging/<container>/<index>` (root-owned, `0700`),
//!    and Docker binds that staging point instead of the host path.
//!
//! `MOUNT_ATTR_NOSYMFOLLOW` is deliberately not set: symlinks inside a workspace resolve in the
//! container's own view (they cannot reach the host), while refusing to follow them would break
//! ordinary trees (git checkouts, `node_modules/.bin`, virtualenvs). `NOEXEC` is not set either:
//! sandboxes run what they build.
//!
//! Without root nothing is staged: the mounts go to Docker as planned, with their inodes
//! recorded for [`verify_mounted`] after start, and [`sandbox_writable_check`] refuses bind
//! sources a sandbox could rewrite. [`doctor_report`] says what is lost.
//!
//! Staging points are removed by [`unstage`] (detach-unmount, then `rmdir`/`unlink` of empty
//! points only — never a recursive delete) and swept for dead containers by [`sweep`].
//!
//! How the supervisor uses it:
//! - [`stage`] after the workspace directories exist and before the container is created — and
//!   again before an existing stopped container is started (staging mounts do not survive a
//!   reboot or a sweep; staging is idempotent and reuses the same paths). Docker gets
//!   [`Staged::planned`].
//! - After every start, [`verify_mounted`] with the container's `State.Pid` and
//!   [`Staged::expected`]; a mismatch destroys the container (then [`unstage`]).
//! - [`unstage`] once the container is removed, never while it may be started again (the
//!   running container keeps its own copies; a restarted one would bind empty points).
//! - [`sweep`] with every existing container (running or not) as `live`, while no `ensure` is
//!   between its `stage` and its container create.
//! - Real behaviour (Docker 20.10, runc 1.1, fuse-overlayfs): the container sees the checked
//!   inode at each target; a bind Docker makes read-only is remounted by runc with `MS_RDONLY`
//!   alone, which clears `nosuid,nodev` in the container's copy (read-only holds; a plain bind of
//!   the read-only staged mount would keep all three, see [`mount_flags`]).

mod doctor;
mod inplace;
mod stage;
mod sys;
mod verify;
mod writable;

pub use doctor::{DoctorItem, doctor_items, doctor_report};
pub use inplace::make_nosuid_in_place;
pub use stage::{
    Inode, SourceKind, StageCode, StageError, StageMode, Staged, StagedMount, UnstageError,
    orphaned_staging_mounts, stage, stage_as, staging_dir, sweep, unstage,
};
pub use verify::{InodeMismatch, SeenFlags, mount_flags, verify_mounted};
pub use writable::{sandbox_writable_check, sandbox_writable_dirs};

#[cfg(test)]
mod tests;
