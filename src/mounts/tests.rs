//! Staged mounts against the real kernel (these tests run as root, as the project's CI does).
//! Every mount a test makes is undone by a guard, also when the test fails, and each test ends
//! by proving that `/proc/self/mountinfo` no longer mentions its directory.

use super::*;
use crate::decide::mounts::{Access, MountSource, PlannedMount};
use rustix::fs::StatVfsMountFlags;
use rustix::mount::UnmountFlags;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A canonical temp dir. Before it is removed, every mount still below it is detached (deepest
/// first), so a failed test can never make `remove_dir_all` reach through a mount.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical tempdir");
        World { _dir: dir, root }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.p(rel);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }
    fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.p(rel);
        std::fs::write(&p, content).expect("write");
        p
    }
    /// Mount points below this world, from `/proc/self/mountinfo`.
    fn mounts(&self) -> Vec<PathBuf> {
        mounts_below(&self.root)
    }
    fn assert_no_mounts(&self) {
        let left = self.mounts();
        assert!(left.is_empty(), "mounts left behind: {left:?}");
    }
}

fn mounts_below(root: &Path) -> Vec<PathBuf> {
    super::sys::mount_points()
        .expect("mountinfo")
        .into_iter()
        .filter(|p| p.starts_with(root))
        .collect()
}

impl Drop for World {
    fn drop(&mut self) {
        for _ in 0..4 {
            let mut left = self.mounts();
            if left.is_empty() {
                break;
            }
            left.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for p in left {
                let _ = rustix::mount::unmount(&p, UnmountFlags::DETACH);
            }
        }
    }
}

/// Mounts a test made itself, undone (LIFO) on drop.
struct TestMounts(Vec<PathBuf>);

impl TestMounts {
    fn tmpfs(&mut self, at: &Path) {
        rustix::mount::mount(
            "tmpfs",
            at,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"size=1m",
        )
        .expect("mount tmpfs");
        self.0.push(at.to_path_buf());
    }
    fn bind(&mut self, from: &Path, at: &Path) {
        rustix::mount::mount_bind(from, at).expect("bind mount");
        self.0.push(at.to_path_buf());
    }
}

impl Drop for TestMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = rustix::mount::unmount(p, UnmountFlags::DETACH);
        }
    }
}

/// Unstages the named containers on drop.
struct Unstage<'a> {
    state: PathBuf,
    names: Vec<&'a str>,
}

impl Drop for Unstage<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = unstage(&self.state, n);
        }
    }
}

fn bind(host: &Path, target: &str, access: Access) -> PlannedMount {
    PlannedMount {
        host: host.to_path_buf(),
        container: target.to_string(),
        access,
        source: MountSource::Bind,
    }
}

fn inode_of(p: &Path) -> Inode {
    let m = std::fs::metadata(p).expect("metadata");
    Inode {
        dev: m.dev(),
        ino: m.ino(),
    }
}

fn is_mount_root(p: &Path) -> bool {
    let parent = p.parent().expect("parent");
    let name = p.file_name().expect("name").to_string_lossy().into_owned();
    let dir = std::fs::File::open(parent).expect("open parent");
    super::sys::is_mount_root(std::os::fd::AsFd::as_fd(&dir), &name)
        .expect("statx")
        .unwrap_or(false)
}

#[test]
fn submounts_and_sockets_below_a_source_do_not_cross() {
    let w = World::new();
    let src = w.mkdir("ws");
    w.write("ws/plain.txt", "plain");
    let sub = w.mkdir("ws/sub");
    let outside = w.p("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&outside).expect("listen");
    let sock_at = w.write("ws/docker.sock", "");
    let mut tm = TestMounts(vec![]);
    tm.tmpfs(&sub);
    std::fs::write(sub.join("secret"), "on the tmpfs").expect("write tmpfs");
    tm.bind(&outside, &sock_at);
    // Control: on the host, both cross the source.
    assert!(sub.join("secret").exists());
    assert!(std::os::unix::net::UnixStream::connect(&sock_at).is_ok());

    let staged =
        stage(&w.state(), "c-sub", &[bind(&src, "/workspace", Access::Rw)]).expect("stage");
    let _u = Unstage {
        state: w.state(),
        names: vec!["c-sub"],
    };
    assert_eq!(staged.mode, StageMode::Staged);
    let point = &staged.mounts[0].mount.host;
    assert_eq!(point, &staging_dir(&w.state(), "c-sub").join("0"));
    assert_eq!(staged.mounts[0].checked_source, src);
    assert_eq!(staged.mounts[0].inode, inode_of(&src));
    assert_eq!(
        inode_of(point),
        inode_of(&src),
        "the staged root is the checked inode"
    );
    assert_eq!(
        std::fs::read_to_string(point.join("plain.txt")).unwrap(),
        "plain"
    );
    // The tmpfs below the source is not there: an empty directory of the source's own fs.
    let staged_sub = point.join("sub");
    assert!(staged_sub.is_dir());
    assert_eq!(std::fs::read_dir(&staged_sub).unwrap().count(), 0);
    assert!(!is_mount_root(&staged_sub));
    // The bound socket is not there: the empty file beneath it, not connectable.
    let staged_sock = point.join("docker.sock");
    let meta = std::fs::symlink_metadata(&staged_sock).expect("stat");
    assert!(meta.file_type().is_file() && meta.len() == 0, "{meta:?}");
    assert!(std::os::unix::net::UnixStream::connect(&staged_sock).is_err());
    // nosuid,nodev; writable (rw access).
    let vfs = rustix::fs::statvfs(point).expect("statvfs");
    assert!(
        vfs.f_flag
            .contains(StatVfsMountFlags::NOSUID | StatVfsMountFlags::NODEV)
    );
    assert!(!vfs.f_flag.contains(StatVfsMountFlags::RDONLY));
    std::fs::write(point.join("new.txt"), "x").expect("rw staging is writable");
    assert_eq!(std::fs::read_to_string(src.join("new.txt")).unwrap(), "x");

    unstage(&w.state(), "c-sub").expect("unstage");
    assert!(!staging_dir(&w.state(), "c-sub").exists());
    drop(tm);
    drop(listener);
    w.assert_no_mounts();
}

#[test]
fn read_only_staging_is_read_only_all_the_way_down() {
    let w = World::new();
    let src = w.mkdir("agent");
    w.write("agent/f.txt", "keep");
    let m = w.mkdir("agent/m");
    w.mkdir("agent/d");
    let mut tm = TestMounts(vec![]);
    tm.tmpfs(&m);
    // Control: on the host the submount is writable.
    std::fs::write(m.join("host-writes"), "ok").expect("host tmpfs writable");

    let staged = stage(&w.state(), "c-ro", &[bind(&src, "/agent", Access::Ro)]).expect("stage");
    let _u = Unstage {
        state: w.state(),
        names: vec!["c-ro"],
    };
    let point = staged.mounts[0].mount.host.clone();
    let erofs = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs(std::fs::write(point.join("new"), "x"), "create at the top");
    erofs(
        std::fs::OpenOptions::new()
            .write(true)
            .open(point.join("f.txt"))
            .map(drop),
        "open existing for write",
    );
    erofs(
        std::fs::write(point.join("d/new"), "x"),
        "create in a subdirectory",
    );
    erofs(
        std::fs::write(point.join("m/new"), "x"),
        "create in a directory that is a mountpoint on the host",
    );
    erofs(
        std::fs::create_dir(point.join("m/dir")),
        "mkdir below the host mountpoint",
    );
    erofs(std::fs::remove_file(point.join("f.txt")), "unlink");
    let vfs = rustix::fs::statvfs(&point).expect("statvfs");
    assert!(vfs.f_flag.contains(
        StatVfsMountFlags::RDONLY | StatVfsMountFlags::NOSUID | StatVfsMountFlags::NODEV
    ));
    assert_eq!(std::fs::read_to_string(src.join("f.txt")).unwrap(), "keep");

    unstage(&w.state(), "c-ro").expect("unstage");
    drop(tm);
    w.assert_no_mounts();
}

#[test]
fn setuid_files_are_inert_through_the_staging_point() {
    let w = World::new();
    let src = w.mkdir("ws");
    // A setuid-root copy of `id`: harmless, and it prints the effective uid.
    let id = src.join("id");
    std::fs::copy("/usr/bin/id", &id).expect("copy /usr/bin/id");
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
    // The unprivileged user must be able to reach both paths.
    for d in [w.root.clone(), src.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    let staged = stage(
        &w.state(),
        "c-suid",
        &[bind(&src, "/workspace", Access::Rw)],
    )
    .expect("stage");
    let _u = Unstage {
        state: w.state(),
        names: vec!["c-suid"],
    };
    let point = staged.mounts[0].mount.host.clone();
    let vfs = rustix::fs::statvfs(&point).expect("statvfs");
    assert!(vfs.f_flag.contains(StatVfsMountFlags::NOSUID));
    // Let uid 65534 traverse the (0700, root) staging directories, for this test only.
    for d in [
        w.state(),
        w.state().join("staging"),
        staging_dir(&w.state(), "c-suid"),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    }
    let euid_running = |path: &Path| -> String {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(path)
            .arg("-u")
            .output()
            .expect("setpriv");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        euid_running(&point.join("id")),
        "65534",
        "through the staging point the setuid bit does nothing"
    );
    // Control: the same file through its host path (on a suid-capable mount) does gain euid 0.
    let host_vfs = rustix::fs::statvfs(&src).expect("statvfs");
    if !host_vfs.f_flag.contains(StatVfsMountFlags::NOSUID) {
        assert_eq!(
            euid_running(&id),
            "0",
            "control: the host path honours setuid"
        );
    }
    std::fs::remove_file(&id).expect("remove the setuid copy");
    unstage(&w.state(), "c-suid").expect("unstage");
    w.assert_no_mounts();
}

/// `renameat2(RENAME_EXCHANGE)` of `a` and `b` in a tight loop until `stop`.
fn swapper(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &a,
                rustix::fs::CWD,
                &b,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .expect("exchange");
            n += 1;
        }
        n
    })
}

#[test]
fn a_source_swapped_for_a_symlink_during_stage_is_never_staged() {
    let w = World::new();
    // Variant 1: the source itself is exchanged with a symlink to /etc.
    let src = w.mkdir("race/src");
    w.write("race/src/marker", "mine");
    std::os::unix::fs::symlink("/etc", w.p("race/evil")).expect("symlink");
    // Variant 2: a parent of a file source is exchanged with a symlink to /etc, so the path
    // would reach /etc/hostname.
    w.mkdir("race2/p");
    let file_src = w.write("race2/p/hostname", "mine");
    std::os::unix::fs::symlink("/etc", w.p("race2/q")).expect("symlink");
    let (want_dir, want_file) = (inode_of(&src), inode_of(&file_src));
    let etc = inode_of(Path::new("/etc"));

    let stop = Arc::new(AtomicBool::new(false));
    let t1 = swapper(src.clone(), w.p("race/evil"), stop.clone());
    let t2 = swapper(w.p("race2/p"), w.p("race2/q"), stop.clone());
    let state = w.state();
    let _u = Unstage {
        state: state.clone(),
        names: vec!["race"],
    };
    let (mut ok, mut changed) = (0, 0);
    for i in 0..500 {
        let (m, want) = if i % 2 == 0 {
            (bind(&src, "/workspace", Access::Rw), want_dir)
        } else {
            (bind(&file_src, "/data/hostname", Access::Ro), want_file)
        };
        match stage(&state, "race", std::slice::from_ref(&m)) {
            Ok(s) => {
                assert_eq!(s.mounts[0].inode, want, "iteration {i}");
                assert_ne!(s.mounts[0].inode, etc);
                // What is mounted is the checked inode (pinned, whatever the path does now).
                assert_eq!(inode_of(&s.mounts[0].mount.host), want, "iteration {i}");
                if i % 2 == 0 {
                    let p = &s.mounts[0].mount.host;
                    assert!(p.join("marker").exists() && !p.join("passwd").exists());
                } else {
                    assert_eq!(
                        std::fs::read_to_string(&s.mounts[0].mount.host).unwrap(),
                        "mine"
                    );
                }
                ok += 1;
                unstage(&state, "race").expect("unstage");
            }
            Err(e) => {
                assert_eq!(e.code(), "source_changed", "iteration {i}: {e}");
                changed += 1;
            }
        }
        // Successful stages are unstaged at once, failed ones leave nothing: no mount remains.
        assert!(
            mounts_below(&state).is_empty(),
            "iteration {i}: a mount was left"
        );
        assert!(!staging_dir(&state, "race").exists(), "iteration {i}");
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = t1.join().expect("swapper") + t2.join().expect("swapper");
    eprintln!("race: {ok} staged, {changed} source_changed, {swaps} swaps");
    assert_eq!(ok + changed, 500);
    assert!(
        changed > 0,
        "the swapper never won: the race was not exercised"
    );
    assert!(ok > 0, "no stage ever succeeded");
    w.assert_no_mounts();
}

#[test]
fn a_failed_stage_leaves_nothing_behind() {
    let w = World::new();
    let a = w.mkdir("a");
    let state = w.state();
    // The second source does not exist: nothing is staged, not even the first.
    let err = stage(
        &state,
        "c-half",
        &[
            bind(&a, "/a", Access::Rw),
            bind(&w.p("missing"), "/b", Access::Rw),
        ],
    )
    .expect_err("missing source");
    assert_eq!(err.code(), "source_changed");
    assert!(!staging_dir(&state, "c-half").exists());
    // A source that became a socket is refused before anything is made.
    let _l = std::os::unix::net::UnixListener::bind(w.p("s.sock")).expect("listen");
    let err = stage(
        &state,
        "c-half",
        &[
            bind(&a, "/a", Access::Rw),
            bind(&w.p("s.sock"), "/s", Access::Rw),
        ],
    )
    .expect_err("socket source");
    assert_eq!(err.code(), "source_changed");
    assert!(!staging_dir(&state, "c-half").exists());
    // A failure after mounts were attached: every attached mount is undone.
    let b = w.mkdir("b");
    super::stage::FAIL_AFTER_ATTACH.with(|f| f.set(Some(1)));
    let r = stage(
        &state,
        "c-half",
        &[
            bind(&a, "/a", Access::Rw),
            bind(&b, "/b", Access::Ro),
            bind(&a, "/c", Access::Ro),
        ],
    );
    super::stage::FAIL_AFTER_ATTACH.with(|f| f.set(None));
    assert_eq!(r.expect_err("injected").code(), "staging_failed");
    assert!(!staging_dir(&state, "c-half").exists());
    assert!(mounts_below(&state).is_empty());
    for bad in ["", ".", "..", "a/b", "x\0y"] {
        let e = stage(&state, bad, &[]).expect_err(bad);
        assert_eq!(e.code(), "invalid_name");
    }
    w.assert_no_mounts();
}

#[test]
fn unstaged_mode_records_inodes_and_changes_nothing() {
    let w = World::new();
    let a = w.mkdir("a");
    let f = w.write("f", "x");
    let mounts = [bind(&a, "/a", Access::Ro), bind(&f, "/f", Access::Rw)];
    let s = stage_as(&w.state(), "c-un", &mounts, StageMode::Unstaged).expect("unstaged");
    assert_eq!(s.mode, StageMode::Unstaged);
    assert_eq!(s.planned(), mounts.to_vec());
    assert_eq!(
        s.expected(),
        vec![
            ("/a".to_string(), inode_of(&a).dev, inode_of(&a).ino),
            ("/f".to_string(), inode_of(&f).dev, inode_of(&f).ino),
        ]
    );
    assert_eq!(s.mounts[1].kind, SourceKind::File);
    assert!(!w.state().join("staging").exists());
    // A symlink in the path is refused even unstaged.
    std::os::unix::fs::symlink(&a, w.p("link")).expect("symlink");
    let e = stage_as(
        &w.state(),
        "c-un",
        &[bind(&w.p("link"), "/a", Access::Ro)],
        StageMode::Unstaged,
    )
    .expect_err("symlink");
    assert_eq!(e.code(), "source_changed");
}

#[test]
fn a_file_source_is_staged_on_an_empty_file_point() {
    let w = World::new();
    let f = w.write("config.json", "{}");
    let s = stage(
        &w.state(),
        "c-file",
        &[bind(&f, "/etc/app.json", Access::Ro)],
    )
    .expect("stage");
    let _u = Unstage {
        state: w.state(),
        names: vec!["c-file"],
    };
    let point = &s.mounts[0].mount.host;
    assert_eq!(s.mounts[0].kind, SourceKind::File);
    assert_eq!(std::fs::read_to_string(point).unwrap(), "{}");
    let e = std::fs::write(point, "x").expect_err("ro");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    unstage(&w.state(), "c-file").expect("unstage");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "{}");
    w.assert_no_mounts();
}

/// Drop CAP_SYS_ADMIN from the calling thread's effective set (capabilities are per thread).
fn drop_sys_admin_in_this_thread() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: valid header and a two-element data array, as capget/capset v3 expect.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    assert_eq!(r, 0, "capget");
    const CAP_SYS_ADMIN: u32 = 21;
    d[0].effective &= !(1 << CAP_SYS_ADMIN);
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) };
    assert_eq!(r, 0, "capset");
}

#[test]
fn unstage_never_deletes_workspace_contents() {
    let w = World::new();
    let src = w.mkdir("ws");
    w.mkdir("ws/sub");
    w.write("ws/a.txt", "a");
    w.write("ws/sub/b.txt", "b");
    let state = w.state();
    let _u = Unstage {
        state: state.clone(),
        names: vec!["c-keep"],
    };
    let files_intact = || {
        assert_eq!(std::fs::read_to_string(src.join("a.txt")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(src.join("sub/b.txt")).unwrap(), "b");
    };
    stage(&state, "c-keep", &[bind(&src, "/workspace", Access::Rw)]).expect("stage");
    unstage(&state, "c-keep").expect("unstage");
    files_intact();
    unstage(&state, "c-keep").expect("idempotent");

    // A point that cannot be unmounted (no CAP_SYS_ADMIN) is left alone and reported.
    let s = stage(&state, "c-keep", &[bind(&src, "/workspace", Access::Rw)]).expect("stage");
    let point = s.mounts[0].mount.host.clone();
    let st = state.clone();
    let err = std::thread::spawn(move || {
        drop_sys_admin_in_this_thread();
        unstage(&st, "c-keep")
    })
    .join()
    .expect("thread")
    .expect_err("cannot unmount without CAP_SYS_ADMIN");
    assert!(
        err.problems
            .iter()
            .any(|p| p.contains("cannot be unmounted")),
        "{err}"
    );
    assert!(is_mount_root(&point), "left mounted");
    assert_eq!(std::fs::read_to_string(point.join("a.txt")).unwrap(), "a");
    files_intact();

    // A non-empty leftover that is not a mount is left alone too (never deleted).
    let mut f = std::fs::File::create(staging_dir(&state, "c-keep").join("7")).expect("create");
    f.write_all(b"precious").expect("write");
    drop(f);
    let err = unstage(&state, "c-keep").expect_err("non-empty leftover");
    assert!(err.to_string().contains("non-empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(staging_dir(&state, "c-keep").join("7")).unwrap(),
        "precious"
    );
    // The mounted point was handled in the same pass; the leftover is the only thing left.
    assert!(!point.exists());
    files_intact();
    // A non-empty directory point (e.g. a stale point someone wrote into) is not emptied.
    std::fs::remove_file(staging_dir(&state, "c-keep").join("7")).expect("rm");
    std::fs::create_dir(staging_dir(&state, "c-keep").join("3")).expect("mkdir");
    std::fs::write(staging_dir(&state, "c-keep").join("3/x"), "x").expect("write");
    let err = unstage(&state, "c-keep").expect_err("non-empty dir");
    assert!(err.to_string().contains("cannot be removed"), "{err}");
    assert!(staging_dir(&state, "c-keep").join("3/x").exists());
    std::fs::remove_dir_all(staging_dir(&state, "c-keep").join("3")).expect("rm");
    unstage(&state, "c-keep").expect("clean now");
    assert!(!staging_dir(&state, "c-keep").exists());
    files_intact();
    w.assert_no_mounts();
}

#[test]
fn sweep_cleans_dead_containers_and_keeps_live_ones() {
    let w = World::new();
    let src = w.mkdir("ws");
    w.write("ws/a", "a");
    let state = w.state();
    let _u = Unstage {
        state: state.clone(),
        names: vec!["live-1", "dead-1", "dead-2"],
    };
    for n in ["live-1", "dead-1", "dead-2"] {
        stage(&state, n, &[bind(&src, "/workspace", Access::Ro)]).expect("stage");
    }
    let live: BTreeSet<String> = ["live-1".to_string()].into();
    let cleaned = sweep(&state, &live);
    assert_eq!(cleaned, vec!["dead-1".to_string(), "dead-2".to_string()]);
    assert!(is_mount_root(&staging_dir(&state, "live-1").join("0")));
    assert!(!staging_dir(&state, "dead-1").exists());
    assert!(!staging_dir(&state, "dead-2").exists());
    assert_eq!(mounts_below(&state.join("staging")).len(), 1);
    assert!(sweep(&state, &live).is_empty(), "nothing more to sweep");
    assert_eq!(std::fs::read_to_string(src.join("a")).unwrap(), "a");
    unstage(&state, "live-1").expect("unstage");
    assert_eq!(sweep(&state, &BTreeSet::new()), Vec::<String>::new());
    w.assert_no_mounts();
}

#[test]
fn sweep_detects_staging_mounts_it_cannot_reach_by_path() {
    let w = World::new();
    let src = w.mkdir("ws");
    let state = w.state();
    let _u = Unstage {
        state: state.clone(),
        names: vec!["dead-h", "live-h"],
    };
    stage(&state, "dead-h", &[bind(&src, "/workspace", Access::Rw)]).expect("stage");
    stage(&state, "live-h", &[bind(&src, "/workspace", Access::Rw)]).expect("stage");
    let live: BTreeSet<String> = ["live-h".to_string()].into();
    assert!(orphaned_staging_mounts(&state, &live).is_empty());
    // Hide every staging entry under a tmpfs: the mounts are still there, unreachable by path.
    let mut tm = TestMounts(vec![]);
    tm.tmpfs(&state.join("staging"));
    let orphans = orphaned_staging_mounts(&state, &live);
    assert_eq!(
        orphans,
        vec![staging_dir(&state, "dead-h").join("0")],
        "only the dead container's mount"
    );
    assert!(
        sweep(&state, &live).is_empty(),
        "nothing reachable to clean"
    );
    assert_eq!(
        orphaned_staging_mounts(&state, &live).len(),
        1,
        "still detected"
    );
    drop(tm);
    // Reachable again: swept.
    assert_eq!(sweep(&state, &live), vec!["dead-h".to_string()]);
    assert!(orphaned_staging_mounts(&state, &live).is_empty());
    assert!(is_mount_root(&staging_dir(&state, "live-h").join("0")));
    unstage(&state, "live-h").expect("unstage");
    w.assert_no_mounts();
}

// ---- verify_mounted against a real container ----

/// Removes the named containers on drop.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", n])
                .output();
        }
    }
}

fn ensure_minimal_image() {
    let have = std::process::Command::new("docker")
        .args(["image", "inspect", crate::images::MINIMAL_TAG])
        .output()
        .expect("docker CLI (run scripts/ensure-docker.sh)");
    if have.status.success() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let e = crate::engine::docker::DockerEngine::connect()
            .await
            .expect("Docker engine (run scripts/ensure-docker.sh)");
        let ctx = crate::images::minimal_context().expect("static busybox");
        use crate::engine::ContainerEngine;
        e.build_image(crate::images::MINIMAL_TAG, ctx, &|_| {})
            .await
            .expect("build minimal image");
    });
}

fn run_container(name: &str, mounts: &[(&Path, &str, bool)]) -> u32 {
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["run", "-d", "--rm", "--name", name, "--network", "none"]);
    for (src, dst, ro) in mounts {
        cmd.arg("--mount").arg(format!(
            "type=bind,source={},target={dst}{}",
            src.display(),
            if *ro { ",readonly" } else { "" }
        ));
    }
    cmd.args([crate::images::MINIMAL_TAG, "/bin/sleep", "300"]);
    let out = cmd.output().expect("docker run");
    assert!(out.status.success(), "docker run: {out:?}");
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid")
}

fn container_mountinfo(name: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["exec", name, "cat", "/proc/self/mountinfo"])
        .output()
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn options_at(mountinfo: &str, target: &str) -> String {
    mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .and_then(|l| l.split(' ').nth(5))
        .unwrap_or("")
        .to_string()
}

#[test]
fn verify_mounted_matches_staged_binds_and_catches_a_different_dir() {
    ensure_minimal_image();
    let w = World::new();
    let ws = w.mkdir("ws");
    let agent = w.mkdir("agent");
    w.write("ws/a", "a");
    let state = w.state();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (good, bad) = (format!("cdt-mnt-{tag}-good"), format!("cdt-mnt-{tag}-bad"));
    let _u = Unstage {
        state: state.clone(),
        names: vec![good.as_str()],
    };
    let staged = stage(
        &state,
        &good,
        &[
            bind(&ws, "/workspace", Access::Rw),
            bind(&agent, "/agent", Access::Ro),
        ],
    )
    .expect("stage");
    let _c = Containers(vec![good.clone(), bad.clone()]);
    let planned = staged.planned();
    let pid = run_container(
        &good,
        &[
            (&planned[0].host, "/workspace", false),
            (&planned[1].host, "/agent", true),
            // The read-only staged mount bound without Docker's readonly flag.
            (&planned[1].host, "/agent2", false),
        ],
    );
    assert_eq!(verify_mounted(pid, &staged.expected()), Ok(()));
    let mut also = staged.expected();
    also.push(("/agent2".into(), inode_of(&agent).dev, inode_of(&agent).ino));
    assert_eq!(verify_mounted(pid, &also), Ok(()));
    // What the container really has, seen through its root and through its own mountinfo.
    let flags = |t: &str| mount_flags(pid, t).expect("flags");
    let mi = container_mountinfo(&good);
    eprintln!(
        "in the container: /workspace {:?} ({}), /agent {:?} ({}), /agent2 {:?} ({})",
        flags("/workspace"),
        options_at(&mi, "/workspace"),
        flags("/agent"),
        options_at(&mi, "/agent"),
        flags("/agent2"),
        options_at(&mi, "/agent2"),
    );
    let all = |read_only| SeenFlags {
        read_only,
        nosuid: true,
        nodev: true,
    };
    assert_eq!(flags("/workspace"), all(false));
    assert!(
        flags("/agent").read_only,
        "Docker's readonly bind is read-only"
    );
    // runc remounts a readonly bind with MS_RDONLY alone: nosuid,nodev are cleared there
    // (runc 1.1). A plain bind of the read-only staged mount keeps all three.
    assert_eq!(flags("/agent2"), all(true));
    let e = std::fs::write(planned[1].host.join("x"), "x").expect_err("ro");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let ws_opts = options_at(&mi, "/workspace");
    for o in ["rw", "nosuid", "nodev"] {
        assert!(ws_opts.split(',').any(|x| x == o), "/workspace {ws_opts}");
    }

    // A container with a different directory at the target is caught.
    let other = w.mkdir("other");
    let pid2 = run_container(
        &bad,
        &[(&other, "/workspace", false), (&agent, "/agent", true)],
    );
    let mism = verify_mounted(pid2, &staged.expected()).expect_err("mismatch");
    assert_eq!(mism.len(), 1, "{mism:?}");
    assert_eq!(mism[0].target, "/workspace");
    assert_eq!(mism[0].found, Some(inode_of(&other)));
    assert_eq!(mism[0].expected, inode_of(&ws));
    // A target missing in the container, and a dead pid, are mismatches too.
    let missing = vec![("/nowhere".to_string(), 1, 2)];
    assert!(verify_mounted(pid, &missing).is_err());
    assert!(verify_mounted(0, &staged.expected()).is_err());
    drop(_c);
    unstage(&state, &good).expect("unstage");
    w.assert_no_mounts();
}

// ---- sandbox_writable_check ----

fn pm(host: &str, source: MountSource) -> PlannedMount {
    PlannedMount {
        host: PathBuf::from(host),
        container: "/mnt/x".into(),
        access: Access::Ro,
        source,
    }
}

fn refused(host: &str, writable: &[&str]) -> bool {
    let w: Vec<PathBuf> = writable.iter().map(PathBuf::from).collect();
    let r = sandbox_writable_check(&[pm(host, MountSource::Bind)], &w);
    if let Some(r) = r.first() {
        assert_eq!(r.code, crate::validate::RefusalCode::SourceSandboxWritable);
        assert_eq!(r.code.as_str(), "source_sandbox_writable");
    }
    !r.is_empty()
}

#[test]
fn sandbox_writable_check_table() {
    assert!(refused("/a/ws", &["/a/ws"]), "equal");
    assert!(refused("/a/ws/data", &["/a/ws"]), "under");
    assert!(refused("/a/ws/d/e/f", &["/x", "/a/ws"]), "deep under");
    assert!(
        !refused("/a/ws2", &["/a/ws"]),
        "sibling with a common prefix"
    );
    assert!(!refused("/a/ws2/data", &["/a/ws"]), "under the sibling");
    assert!(!refused("/a", &["/a/ws"]), "an ancestor is not inside");
    assert!(!refused("/b/ws", &["/a/ws"]), "elsewhere");
    assert!(refused("/a/ws/", &["/a/ws"]), "trailing slash");
    assert!(
        refused("/a/ws/data", &["/a/x/../ws"]),
        "`..` in the writable dir"
    );
    assert!(refused("/a/ws/./data", &["/a/ws"]), "`.` in the source");
    assert!(!refused("/a/ws2", &[""]), "an empty entry matches nothing");
    // Only operator binds are judged; the managed workspaces are the writable dirs themselves.
    let w = vec![PathBuf::from("/a/ws")];
    for s in [MountSource::Workspace, MountSource::Agent] {
        assert!(sandbox_writable_check(&[pm("/a/ws/x", s)], &w).is_empty());
    }
}

#[test]
fn sandbox_writable_refusal_names_both_paths_and_a_fix() {
    let w = vec![PathBuf::from("/srv"), PathBuf::from("/srv/agents/a1")];
    let r = sandbox_writable_check(&[pm("/srv/agents/a1/data", MountSource::Bind)], &w);
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.value, "/srv/agents/a1/data:/mnt/x:ro");
    assert!(
        r.message.contains("\"/srv/agents/a1/data\""),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("\"/srv/agents/a1\""),
        "deepest dir named: {}",
        r.message
    );
    assert!(
        r.fix.contains("root") && r.fix.contains("/srv/agents/a1"),
        "{}",
        r.fix
    );
}

#[test]
fn sandbox_writable_check_after_canonicalisation() {
    // `..` and symlink spellings are resolved by the kernel before comparing (never lexically
    // alone): a source reached through a symlink into a writable dir is caught.
    let w = World::new();
    w.mkdir("ws/proj");
    w.mkdir("elsewhere");
    std::os::unix::fs::symlink(w.p("ws"), w.p("elsewhere/link")).expect("symlink");
    let canon = |p: &Path| crate::validate::canonicalize_through_ancestor(p).expect("canonical");
    let writable = vec![canon(&w.p("elsewhere/../ws"))];
    let src = canon(&w.p("elsewhere/link/proj"));
    assert!(src.starts_with(w.p("ws")));
    let m = bind(&src, "/p", Access::Rw);
    assert_eq!(sandbox_writable_check(&[m], &writable).len(), 1);
    let sibling = w.mkdir("ws2");
    let m = bind(&canon(&sibling), "/p", Access::Rw);
    assert!(sandbox_writable_check(&[m], &writable).is_empty());
}

#[test]
fn sandbox_writable_dirs_from_config() {
    let w = World::new();
    let text = format!(
        r#"{{
          agents: {{
            defaults: {{ workspace: "{root}/main-ws", sandbox: {{ mode: "all", workspaceRoot: "{root}/sbx" }} }},
            list: [
              {{ id: "rw-agent", workspace: "{root}/rw-ws", sandbox: {{ workspaceAccess: "rw" }} }},
              {{ id: "ro-agent", workspace: "{root}/ro-ws", sandbox: {{ workspaceAccess: "ro", workspaceRoot: "{root}/x/../sbx2" }} }},
            ],
          }},
        }}"#,
        root = w.root.display()
    );
    let file = crate::config::parse_config(&text, "test").expect("config");
    let cfg = LoadedConfigForTest::one(file);
    let env = crate::config::Env {
        clawden_home: Some(w.p("state")),
        ..Default::default()
    };
    let dirs = sandbox_writable_dirs(&cfg, &env);
    assert!(dirs.contains(&w.p("sbx")), "{dirs:?}");
    assert!(dirs.contains(&w.p("sbx2")), "`..` normalised: {dirs:?}");
    assert!(dirs.contains(&w.p("rw-ws")), "{dirs:?}");
    assert!(
        !dirs.contains(&w.p("ro-ws")),
        "ro workspaces are not writable: {dirs:?}"
    );
    assert!(!dirs.contains(&w.p("main-ws")), "access none: {dirs:?}");
}

/// A `LoadedConfig` of one layer.
struct LoadedConfigForTest;

impl LoadedConfigForTest {
    fn one(file: crate::config::schema::FileConfig) -> crate::config::LoadedConfig {
        crate::config::LoadedConfig {
            layers: vec![crate::config::load::ConfigLayer {
                origin: "test".into(),
                file,
            }],
            config_path: None,
            profile: None,
        }
    }
}

#[test]
fn doctor_lines_say_what_is_lost_without_root() {
    use crate::doctor::Status;
    let items = doctor_items(false, None);
    let names: Vec<_> = items.iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        ["staged mounts", "mount pinning", "submounts", "setuid"]
    );
    assert!(
        items
            .iter()
            .all(|i| i.status == Status::Warn && i.fix.is_some())
    );
    assert!(items[2].detail.contains("socket"));
    let ok = doctor_items(true, Some(Ok(())));
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].status, Status::Pass);
    let bad = doctor_items(true, Some(Err("open_tree: EPERM".into())));
    assert_eq!(bad[0].status, Status::Fail);
    assert!(bad[0].detail.contains("EPERM"));
    // As root here, the probe works.
    let live = doctor_report();
    assert_eq!(live[0].status, Status::Pass, "{live:?}");
}
