//! Atomic whole-file writes beneath a mount root.

use super::openat::{self, BENEATH, RESOLVE_NO_SYMLINKS, RootDir};
use super::{FileError, check_relative};
use crate::validate::RefusalCode;
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The default write cap (same as the read cap: 16 MiB, configurable).
pub const DEFAULT_WRITE_CAP: u64 = 16 * 1024 * 1024;

/// Prefix of the temp files a write creates next to its target.
pub const TEMP_PREFIX: &str = ".clawden-tmp-";

/// Mode of every written file: never setuid, setgid or sticky, never executable.
pub const FILE_MODE: u32 = 0o644;

/// Mode of directories created by `mkdir_parents` (before the umask).
pub const DIR_MODE: u32 = 0o755;

/// How a write behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Create missing parent directories, one component at a time, each beneath the root.
    pub mkdir_parents: bool,
    /// `(uid, gid)` of the container user: the new file (and created directories) get it
    /// when clawden runs as root; ignored otherwise (an unprivileged supervisor cannot chown).
    pub owner: Option<(u32, u32)>,
    /// Largest content accepted, in bytes.
    pub cap: u64,
    /// The mount is read-only: the write is refused before any syscall.
    pub read_only_mount: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mkdir_parents: false,
            owner: None,
            cap: DEFAULT_WRITE_CAP,
            read_only_mount: false,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    pub bytes_written: u64,
    /// No entry existed at the path before (as seen just before the rename).
    pub created: bool,
}

/// Write `content` as the whole new content of the file at `relative` beneath `root`.
///
/// Order: refuse on a read-only mount, over the cap, or for a malformed path — all before any
/// syscall. Then open the parent directory beneath the root (`openat2`, `RESOLVE_BENEATH |
/// RESOLVE_NO_MAGICLINKS`; with `mkdir_parents`, missing components are created one at a time
/// with `mkdirat` relative to the previous directory fd, each re-opened beneath the root), create
/// `.clawden-tmp-<random>` there with `O_CREAT | O_EXCL | O_NOFOLLOW`, write everything, `fchown`
/// (root only), `fchmod 0644`, `fsync`, and `renameat` it over the leaf, then `fsync` the
/// directory. The rename *replaces* a final symlink (dangling or not) or hard link with the new
/// regular file: nothing is ever written through a link, and a link target is never created.
/// An existing directory at the leaf is refused (`is_directory`). On any error the temp file is
/// removed: no half-written file is left.
pub fn write_file(
    root: &RootDir,
    relative: &Path,
    content: &[u8],
    opts: WriteOptions,
) -> Result<WriteOutcome, FileError> {
    if opts.read_only_mount {
        return Err(FileError::refused(
            RefusalCode::ReadOnlyMount,
            relative.to_string_lossy(),
            format!(
                "write {:?}: the mount is read-only",
                relative.to_string_lossy()
            ),
            "write to a path on a read-write mount (e.g. the workdir), or change the workspace access",
        ));
    }
    if content.len() as u64 > opts.cap {
        return Err(FileError::refused(
            RefusalCode::TooLarge,
            relative.to_string_lossy(),
            format!(
                "write {:?}: {} bytes is over the write cap of {} bytes",
                relative.to_string_lossy(),
                content.len(),
                opts.cap
            ),
            "write less content, or raise the configured write cap",
        ));
    }
    check_relative(relative)?;
    let (Some(leaf), Some(parent)) = (relative.file_name(), relative.parent()) else {
        return Err(FileError::refused(
            RefusalCode::IsDirectory,
            "",
            "write: the path is the mount root itself, a directory",
            "name a file beneath the mount",
        ));
    };
    let leaf = Path::new(leaf);

    let dir = open_parent(root, parent, &opts)?;
    let dir = dir.as_fd();
    let err = |e: Errno| FileError::from_errno(e, "write", relative);

    // Refuse a directory at the leaf before creating anything; `created` for the outcome.
    let created = match openat::lstatat(dir, leaf) {
        Ok(st) if openat::file_type(&st) == libc::S_IFDIR => return Err(err(Errno::EISDIR)),
        Ok(_) => false,
        Err(Errno::ENOENT) => true,
        Err(e) => return Err(err(e)),
    };

    let (tmp, file) = create_temp(dir).map_err(err)?;
    let mut guard = TempGuard {
        dir,
        name: tmp,
        armed: true,
    };
    openat::write_all(file.as_fd(), content).map_err(err)?;
    if let Some((uid, gid)) = opts.owner
        && nix::unistd::geteuid().is_root()
    {
        openat::fchown(file.as_fd(), uid, gid).map_err(err)?;
    }
    // After fchown (which clears set-id bits anyway): the final mode, never set-id.
    openat::fchmod(file.as_fd(), FILE_MODE).map_err(err)?;
    openat::fsync(file.as_fd()).map_err(err)?;
    // The container may have renamed our temp name away and put something else there; then
    // the rename would install its object, not our content. Refuse rather than claim success.
    // (A swap between this check and the rename only moves the container's own object within
    // its own directory: no harm to anyone but itself. Concurrent clawden writes to the same
    // leaf use distinct temp names, so they never trip this.)
    let ours = openat::fstat(file.as_fd()).map_err(err)?;
    match openat::lstatat(dir, &guard.name) {
        Ok(st) if st.st_dev == ours.st_dev && st.st_ino == ours.st_ino => {}
        _ => return Err(err(Errno::EBUSY)),
    }
    drop(file);
    openat::renameat(dir, &guard.name, leaf).map_err(err)?;
    guard.armed = false;
    // Durability of the rename; the file is already in place, so a directory that cannot be
    // fsynced (some filesystems say EINVAL) does not fail the call.
    let _ = openat::fsync(dir);
    Ok(WriteOutcome {
        bytes_written: content.len() as u64,
        created,
    })
}

/// Removes the temp file unless the rename consumed it.
struct TempGuard<'a> {
    dir: BorrowedFd<'a>,
    name: PathBuf,
    armed: bool,
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = openat::unlinkat(self.dir, &self.name);
        }
    }
}

/// Create a fresh temp file in `dir`: `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600 until written.
fn create_temp(dir: BorrowedFd<'_>) -> Result<(PathBuf, OwnedFd), Errno> {
    let mut tries = 0;
    loop {
        let name = PathBuf::from(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        match openat::openat2(
            dir.as_raw_fd(),
            &name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY,
            0o600,
            BENEATH | RESOLVE_NO_SYMLINKS,
        ) {
            Ok(fd) => return Ok((name, fd)),
            Err(Errno::EEXIST) if tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Open the parent directory beneath the root, creating missing components if asked.
fn open_parent(root: &RootDir, parent: &Path, opts: &WriteOptions) -> Result<OwnedFd, FileError> {
    const DIR: i32 = libc::O_RDONLY | libc::O_DIRECTORY;
    let open = |p: &Path| openat::openat2(root.raw(), p, DIR, 0, BENEATH);
    match open(parent) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if opts.mkdir_parents => {}
        Err(e) => return Err(FileError::from_errno(e, "write (parent directory)", parent)),
    }
    // Walk: each prefix is re-opened beneath the root, each missing component created with
    // mkdirat relative to the fd of the previous one (mkdirat never follows a final symlink).
    let mut cur: Option<OwnedFd> = None;
    let mut prefix = PathBuf::new();
    for comp in parent.iter() {
        prefix.push(comp);
        let fd = match open(&prefix) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let at = cur.as_ref().map_or(root.as_fd(), |fd| fd.as_fd());
                let made = match openat::mkdirat(at, Path::new(comp), DIR_MODE) {
                    Ok(()) => true,
                    Err(Errno::EEXIST) => false, // created concurrently: just open it
                    Err(e) => return Err(FileError::from_errno(e, "create directory", &prefix)),
                };
                let fd = open(&prefix)
                    .map_err(|e| FileError::from_errno(e, "create directory", &prefix))?;
                if made {
                    chown_created_dir(fd.as_fd(), opts.owner)
                        .map_err(|e| FileError::from_errno(e, "create directory", &prefix))?;
                }
                fd
            }
            Err(e) => {
                return Err(FileError::from_errno(
                    e,
                    "write (parent directory)",
                    &prefix,
                ));
            }
        };
        cur = Some(fd);
    }
    match cur {
        Some(fd) => Ok(fd),
        // `parent` was empty (the root) and yet missing: only if the root vanished.
        None => open(parent).map_err(|e| FileError::from_errno(e, "write", parent)),
    }
}

/// Give a directory clawden just created to the container user (root only). Only a directory
/// still owned by clawden is changed: one the container swapped in is already its own.
fn chown_created_dir(fd: BorrowedFd<'_>, owner: Option<(u32, u32)>) -> Result<(), Errno> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Ok(());
    }
    let st = openat::fstat(fd)?;
    if st.st_uid == euid.as_raw() {
        openat::fchown(fd, uid, gid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileio::open_root;
    use crate::fileio::openat::syscall_count;
    use crate::fileio::test_support::{CANARY, Fixture};
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn write(fx: &Fixture, rel: &str, content: &[u8]) -> Result<WriteOutcome, FileError> {
        write_opts(fx, rel, content, WriteOptions::default())
    }

    fn write_opts(
        fx: &Fixture,
        rel: &str,
        content: &[u8],
        opts: WriteOptions,
    ) -> Result<WriteOutcome, FileError> {
        let root = open_root(&fx.root).unwrap();
        write_file(&root, Path::new(rel), content, opts)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_and_replaces_a_regular_file() {
        let fx = Fixture::new();
        let out = write(&fx, "f.txt", b"one").unwrap();
        assert_eq!(
            out,
            WriteOutcome {
                bytes_written: 3,
                created: true
            }
        );
        assert_eq!(std::fs::read(fx.root.join("f.txt")).unwrap(), b"one");
        assert_eq!(mode(&fx.root.join("f.txt")), FILE_MODE);
        let out = write(&fx, "f.txt", b"").unwrap();
        assert_eq!(
            out,
            WriteOutcome {
                bytes_written: 0,
                created: false
            }
        );
        assert_eq!(std::fs::read(fx.root.join("f.txt")).unwrap(), b"");
        assert!(fx.leftover_temps().is_empty());
    }

    #[test]
    fn binary_and_invalid_utf8_round_trip() {
        let fx = Fixture::new();
        let bytes: Vec<u8> = (0..=255u8)
            .rev()
            .chain([0xc3, 0x28, 0xed, 0xa0, 0x80, 0])
            .collect();
        write(&fx, "bin", &bytes).unwrap();
        let root = open_root(&fx.root).unwrap();
        let back = crate::fileio::read_file(&root, Path::new("bin"), 0, None, 1 << 20).unwrap();
        assert_eq!(back.content, bytes);
    }

    #[test]
    fn read_only_mount_is_refused_before_any_syscall() {
        let fx = Fixture::new();
        std::fs::write(fx.root.join("f"), b"old").unwrap();
        let root = open_root(&fx.root).unwrap();
        let opts = WriteOptions {
            read_only_mount: true,
            mkdir_parents: true,
            ..WriteOptions::default()
        };
        let before = syscall_count();
        for rel in ["f", "new/dir/f", "../outside/canary", ""] {
            let e = write_file(&root, Path::new(rel), b"new", opts).unwrap_err();
            assert_eq!(e.code(), RefusalCode::ReadOnlyMount, "{rel}");
            assert_eq!(e.errno(), None);
        }
        assert_eq!(syscall_count(), before, "no syscall was made");
        assert_eq!(std::fs::read(fx.root.join("f")).unwrap(), b"old");
        assert!(!fx.root.join("new").exists());
    }

    #[test]
    fn over_cap_and_malformed_paths_are_refused_before_any_syscall() {
        let fx = Fixture::new();
        let root = open_root(&fx.root).unwrap();
        let before = syscall_count();
        let small = WriteOptions {
            cap: 4,
            ..WriteOptions::default()
        };
        let e = write_file(&root, Path::new("f"), b"12345", small).unwrap_err();
        assert_eq!(e.code(), RefusalCode::TooLarge);
        assert!(write_file(&root, Path::new("f"), b"1234", small).is_ok());
        let after_ok = syscall_count();
        assert!(after_ok > before);
        for (rel, code) in [
            ("../outside/x", RefusalCode::InvalidPath),
            ("/etc/cron.d/x", RefusalCode::InvalidPath),
            ("a/../../x", RefusalCode::InvalidPath),
            ("", RefusalCode::IsDirectory),
        ] {
            let e = write_file(&root, Path::new(rel), b"x", WriteOptions::default()).unwrap_err();
            assert_eq!(e.code(), code, "{rel}");
        }
        assert_eq!(syscall_count(), after_ok);
        assert!(fx.leftover_temps().is_empty());
    }

    #[test]
    fn final_symlink_is_replaced_and_its_target_untouched() {
        let fx = Fixture::new();
        let before = fx.outside_snapshot();
        symlink(fx.outside.join("canary"), fx.root.join("l")).unwrap();
        let out = write(&fx, "l", b"mine").unwrap();
        assert!(!out.created);
        let md = std::fs::symlink_metadata(fx.root.join("l")).unwrap();
        assert!(md.file_type().is_file(), "the link became a regular file");
        assert_eq!(std::fs::read(fx.root.join("l")).unwrap(), b"mine");
        assert_eq!(fx.outside_snapshot(), before);
        assert_eq!(std::fs::read(fx.outside.join("canary")).unwrap(), CANARY);
    }

    #[test]
    fn dangling_symlink_write_never_creates_the_target() {
        // inside the container: ln -s /etc/cron.d/x /workspace/dl; then write dl
        let fx = Fixture::new();
        let before = fx.outside_snapshot();
        let target = fx.outside.join("cron.d-x");
        symlink(&target, fx.root.join("dl")).unwrap();
        symlink("../outside/rel-x", fx.root.join("dl2")).unwrap();
        for name in ["dl", "dl2"] {
            write(&fx, name, b"* * * * * root evil\n").unwrap();
            assert!(
                std::fs::symlink_metadata(fx.root.join(name))
                    .unwrap()
                    .file_type()
                    .is_file()
            );
        }
        assert!(!target.exists());
        assert!(!fx.outside.join("rel-x").exists());
        assert_eq!(fx.outside_snapshot(), before);
    }

    #[test]
    fn symlinked_parent_directory_out_of_the_root_is_refused() {
        // inside the container: ln -s /etc /workspace/d; then write d/x
        let fx = Fixture::new();
        let before = fx.outside_snapshot();
        symlink(&fx.outside, fx.root.join("d")).unwrap();
        symlink("../outside", fx.root.join("r")).unwrap();
        std::fs::create_dir(fx.root.join("deep")).unwrap();
        symlink("../../outside", fx.root.join("deep/up")).unwrap();
        for mkdir in [false, true] {
            let opts = WriteOptions {
                mkdir_parents: mkdir,
                ..WriteOptions::default()
            };
            for rel in [
                "d/x",
                "d/canary",
                "r/x",
                "d/new/x",
                "deep/up/x",
                "deep/up/n/x",
            ] {
                let e = write_opts(&fx, rel, b"evil", opts).unwrap_err();
                assert_eq!(e.code(), RefusalCode::EscapesRoot, "{rel} mkdir={mkdir}");
            }
        }
        assert_eq!(fx.outside_snapshot(), before);
        assert!(fx.leftover_temps().is_empty());
    }

    #[test]
    fn hard_link_to_an_outside_file_is_replaced_not_written_through() {
        let fx = Fixture::new();
        let before = fx.outside_snapshot();
        std::fs::hard_link(fx.outside.join("canary"), fx.root.join("hl")).unwrap();
        write(&fx, "hl", b"overwritten?").unwrap();
        assert_eq!(std::fs::read(fx.root.join("hl")).unwrap(), b"overwritten?");
        assert_eq!(std::fs::read(fx.outside.join("canary")).unwrap(), CANARY);
        assert_eq!(
            std::fs::metadata(fx.outside.join("canary"))
                .unwrap()
                .nlink(),
            1
        );
        assert_eq!(fx.outside_snapshot(), before);
    }

    #[test]
    fn setuid_bits_are_never_set() {
        let fx = Fixture::new();
        let p = fx.root.join("suid");
        std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o6755)).unwrap();
        write(&fx, "suid", b"new").unwrap();
        assert_eq!(mode(&p), FILE_MODE);
        let owner = WriteOptions {
            owner: Some((4242, 4343)),
            ..WriteOptions::default()
        };
        write_opts(&fx, "suid", b"new2", owner).unwrap();
        assert_eq!(mode(&p), FILE_MODE);
    }

    #[test]
    fn owner_is_applied_when_running_as_root() {
        let fx = Fixture::new();
        let opts = WriteOptions {
            owner: Some((4242, 4343)),
            mkdir_parents: true,
            ..WriteOptions::default()
        };
        write_opts(&fx, "a/b/f", b"x", opts).unwrap();
        let md = std::fs::metadata(fx.root.join("a/b/f")).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!((md.uid(), md.gid()), (4242, 4343));
            for d in ["a", "a/b"] {
                let md = std::fs::metadata(fx.root.join(d)).unwrap();
                assert_eq!((md.uid(), md.gid()), (4242, 4343), "{d}");
            }
        } else {
            assert_eq!(md.uid(), nix::unistd::geteuid().as_raw());
        }
    }

    #[test]
    fn mkdir_parents_creates_beneath_the_root_only() {
        let fx = Fixture::new();
        let e = write(&fx, "x/y/z.txt", b"1").unwrap_err();
        assert_eq!(e.code(), RefusalCode::NotFound);
        assert!(!fx.root.join("x").exists());
        let opts = WriteOptions {
            mkdir_parents: true,
            ..WriteOptions::default()
        };
        write_opts(&fx, "x/y/z.txt", b"1", opts).unwrap();
        assert_eq!(std::fs::read(fx.root.join("x/y/z.txt")).unwrap(), b"1");
        // through an in-root symlinked directory: created in its target, inside the root
        std::fs::create_dir(fx.root.join("real")).unwrap();
        symlink("real", fx.root.join("alias")).unwrap();
        write_opts(&fx, "alias/n/f", b"2", opts).unwrap();
        assert_eq!(std::fs::read(fx.root.join("real/n/f")).unwrap(), b"2");
        // a file where a directory is needed
        let e = write_opts(&fx, "x/y/z.txt/w", b"3", opts).unwrap_err();
        assert_eq!(e.code(), RefusalCode::NotDirectory);
    }

    #[test]
    fn directory_at_the_leaf_is_refused_and_nothing_left_behind() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.root.join("d/inner")).unwrap();
        let e = write(&fx, "d", b"x").unwrap_err();
        assert_eq!(e.code(), RefusalCode::IsDirectory);
        assert!(fx.root.join("d/inner").is_dir());
        assert!(fx.leftover_temps().is_empty());
    }

    #[test]
    fn temp_file_is_removed_when_the_rename_fails() {
        let fx = Fixture::new();
        let root = open_root(&fx.root).unwrap();
        let dir = openat::openat2(
            root.raw(),
            Path::new(""),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            BENEATH,
        )
        .unwrap();
        // Drive the guard directly: a temp file, then a failing step.
        let (name, _fd) = create_temp(dir.as_fd()).unwrap();
        assert_eq!(fx.leftover_temps().len(), 1);
        {
            let _guard = TempGuard {
                dir: dir.as_fd(),
                name: name.clone(),
                armed: true,
            };
            std::fs::create_dir_all(fx.root.join("busy/x")).unwrap();
            // renaming a file over a non-empty directory fails
            assert!(openat::renameat(dir.as_fd(), &name, Path::new("busy")).is_err());
        }
        assert!(fx.leftover_temps().is_empty());
    }

    #[test]
    fn symlink_loop_and_hostile_names() {
        let fx = Fixture::new();
        symlink("loop2", fx.root.join("loop1")).unwrap();
        symlink("loop1", fx.root.join("loop2")).unwrap();
        let e = write(&fx, "loop1/x", b"x").unwrap_err();
        assert_eq!(e.code(), RefusalCode::SymlinkLoop);
        // A final-component loop is just a link: replaced.
        write(&fx, "loop1", b"x").unwrap();
        let e = write(&fx, &"a".repeat(300), b"x").unwrap_err();
        assert_eq!(e.code(), RefusalCode::NameTooLong);
        let deep = vec!["x"; 5000].join("/");
        let opts = WriteOptions {
            mkdir_parents: true,
            ..WriteOptions::default()
        };
        let e = write_opts(&fx, &deep, b"x", opts).unwrap_err();
        assert_eq!(e.code(), RefusalCode::NameTooLong);
        // A leading '-' is an ordinary name: never interpreted as an option.
        write(&fx, "-rf", b"dash").unwrap();
        assert_eq!(std::fs::read(fx.root.join("-rf")).unwrap(), b"dash");
        assert!(fx.leftover_temps().is_empty());
    }

    #[test]
    fn fifo_and_socket_at_the_leaf_are_replaced_without_blocking() {
        let fx = Fixture::new();
        nix::unistd::mkfifo(&fx.root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(fx.root.join("sock")).unwrap();
        let root = fx.root.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = open_root(&root).unwrap();
            for name in ["fifo", "sock"] {
                let _ = tx.send(write_file(
                    &r,
                    Path::new(name),
                    b"x",
                    WriteOptions::default(),
                ));
            }
        });
        for _ in 0..2 {
            let res = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("writing over a FIFO must not block");
            assert!(!res.unwrap().created);
        }
        for name in ["fifo", "sock"] {
            let md = std::fs::symlink_metadata(fx.root.join(name)).unwrap();
            assert!(md.file_type().is_file(), "{name}");
        }
    }
}
