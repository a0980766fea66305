//! The race of issue 4, host-only: a "container" thread swaps a real directory `root/sub` with a
//! symlink `root/sub_link` (pointing out of the root) as fast as it can with
//! `renameat2(RENAME_EXCHANGE)`, while clawden reads and writes `sub/file` 1,000 times each.
//! No file outside the root may ever be read, created or changed; every call either works on
//! the real file or is refused with a structured error.

use clawden::fileio::{FileError, WriteOptions, open_root, read_file, write_file};
use clawden::validate::RefusalCode;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

const CANARY: &[u8] = b"CANARY: host file outside the mount root - must never be read\n";
const ROUNDS: usize = 1000;
/// The kernel's lookup restarts bias a fast swapper towards the refused (symlink) state, so a
/// run of ROUNDS may see very few successes; rounds continue (up to this many) until both a read
/// and a write have succeeded, so every run also proves the real file was reachable.
const MAX_ROUNDS: usize = 50 * ROUNDS;

type Snapshot = BTreeMap<PathBuf, (Option<Vec<u8>>, SystemTime)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                stack.push(e.path());
            }
            let content = md.is_file().then(|| std::fs::read(e.path()).unwrap());
            out.insert(e.path(), (content, md.modified().unwrap()));
        }
    }
    out
}

fn temps_under(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".clawden-tmp-"))
        })
        .collect()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The hostile container: swap `a` and `b` atomically until told to stop.
fn spawn_swapper(
    a: PathBuf,
    b: PathBuf,
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (a, b) = (cstr(&a), cstr(&b));
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: valid NUL-terminated paths; renameat2 only reads them.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
            swaps.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Wait until the swapper is really running, so the race overlaps the calls.
fn wait_for_swaps(swaps: &AtomicU64) {
    let started = std::time::Instant::now();
    while swaps.load(Ordering::Relaxed) < 100 {
        assert!(
            started.elapsed().as_secs() < 30,
            "the swapper never started"
        );
        std::thread::yield_now();
    }
}

struct Race {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Race {
    /// `root/sub/` (real, holding `file` = "REAL-init") and `root/sub_link -> link_target`;
    /// `outside/file` is the canary.
    fn new(link_target: impl FnOnce(&Path) -> PathBuf) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("sub/file"), b"REAL-init").unwrap();
        std::fs::write(outside.join("file"), CANARY).unwrap();
        symlink(link_target(&outside), root.join("sub_link")).unwrap();
        Race {
            _tmp: tmp,
            root,
            outside,
        }
    }

    /// Whichever of `sub` / `sub_link` is the real directory right now (swapper stopped).
    fn real_dir(&self) -> PathBuf {
        for n in ["sub", "sub_link"] {
            let p = self.root.join(n);
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                return p;
            }
        }
        panic!("the real directory vanished");
    }
}

fn allowed_refusal(e: &FileError, what: &str) {
    let code = e.code();
    assert!(
        matches!(code, RefusalCode::EscapesRoot | RefusalCode::Busy),
        "{what}: unexpected refusal {code}: {e}"
    );
    assert!(!code.as_str().is_empty());
    assert!(!e.refusal().message.is_empty() && !e.refusal().fix.is_empty());
    let shown = format!("{e:?}");
    assert!(
        !shown.contains("CANARY"),
        "{what}: canary leaked into an error"
    );
}

/// Reads and writes `sub/file` ROUNDS times each under the swap race; returns (ok, refused).
fn run_file_race(race: &Race, file: &str, write: bool) -> (usize, usize) {
    let outside_before = snapshot(&race.outside);
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = spawn_swapper(
        race.root.join("sub"),
        race.root.join("sub_link"),
        stop.clone(),
        swaps.clone(),
    );
    wait_for_swaps(&swaps);
    let root = open_root(&race.root).unwrap();
    let rel = Path::new("sub").join(file);
    let (mut ok, mut refused) = (0, 0);
    let (mut read_ok, mut write_ok) = (0, 0);
    let mut last_written: Option<Vec<u8>> = None;
    let mut i = 0;
    // Past ROUNDS, keep going (bounded) until both sides of the race were seen: under load the
    // swapper may get little CPU, and a race that never hit proves nothing.
    while i < ROUNDS
        || (i < MAX_ROUNDS && (read_ok == 0 || (write && write_ok == 0) || refused == 0))
    {
        i += 1;
        if write {
            let content = format!("REAL-{i}").into_bytes();
            match write_file(&root, &rel, &content, WriteOptions::default()) {
                Ok(out) => {
                    assert_eq!(out.bytes_written, content.len() as u64);
                    last_written = Some(content);
                    ok += 1;
                    write_ok += 1;
                }
                Err(e) => {
                    allowed_refusal(&e, "write");
                    refused += 1;
                }
            }
        }
        match read_file(&root, &rel, 0, None, 1 << 20) {
            Ok(out) => {
                assert_ne!(out.content, CANARY, "read the host canary through the race");
                assert!(
                    out.content.starts_with(b"REAL-"),
                    "read something that is not the real file: {:?}",
                    String::from_utf8_lossy(&out.content)
                );
                ok += 1;
                read_ok += 1;
            }
            Err(e) => {
                allowed_refusal(&e, "read");
                refused += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "race {file}: {i} rounds, {ok} ok ({read_ok} reads, {write_ok} writes), {refused} refused, {swaps} swaps"
    );
    assert!(swaps > 100, "the swapper barely ran ({swaps} swaps)");
    assert!(read_ok > 0, "no read ever reached the real file");
    assert!(
        !write || write_ok > 0,
        "no write ever reached the real file"
    );

    assert_eq!(
        snapshot(&race.outside),
        outside_before,
        "a file outside the root was created or changed"
    );
    assert_eq!(std::fs::read(race.outside.join("file")).unwrap(), CANARY);
    assert!(temps_under(&race.root).is_empty(), "temp files left behind");
    if let Some(last) = last_written {
        assert_eq!(std::fs::read(race.real_dir().join(file)).unwrap(), last);
    }
    (ok, refused)
}

#[test]
fn swap_with_absolute_symlink_to_outside_dir() {
    let race = Race::new(|outside| outside.to_path_buf());
    let (ok, refused) = run_file_race(&race, "file", true);
    assert!(refused > 0, "the race never hit (no refusal in {ok} calls)");
}

#[test]
fn swap_with_relative_symlink_climbing_out() {
    // `..`-based escapes go through the kernel's rename-seqcount check (EAGAIN → retried).
    let race = Race::new(|_| PathBuf::from("../outside"));
    let (ok, refused) = run_file_race(&race, "file", true);
    assert!(refused > 0, "the race never hit (no refusal in {ok} calls)");
}

#[test]
fn swap_with_symlink_to_host_root() {
    // sub_link -> "/": reads of sub/etc/passwd must only ever see the real tree's copy; writes
    // use a unique name, so "/<name>" would show up on the host if one ever escaped.
    let race = Race::new(|_| PathBuf::from("/"));
    std::fs::create_dir_all(race.root.join("sub/etc")).unwrap();
    std::fs::write(race.root.join("sub/etc/passwd"), b"REAL-passwd").unwrap();
    let unique = format!("clawden-race-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(race.root.join("sub").join(&unique), b"REAL-init").unwrap();
    let host_probe = Path::new("/").join(&unique);
    let (ok, refused) = run_file_race(&race, "etc/passwd", false);
    assert!(refused > 0, "the race never hit (no refusal in {ok} calls)");
    run_file_race(&race, &unique, true);
    assert!(!host_probe.exists(), "created a file in the host's /");
    assert!(temps_under(&race.root).is_empty());
}

#[test]
fn swap_during_mkdir_parents_creates_nothing_outside() {
    let race = Race::new(|outside| outside.to_path_buf());
    let outside_before = snapshot(&race.outside);
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = spawn_swapper(
        race.root.join("sub"),
        race.root.join("sub_link"),
        stop.clone(),
        swaps.clone(),
    );
    wait_for_swaps(&swaps);
    let root = open_root(&race.root).unwrap();
    let opts = WriteOptions {
        mkdir_parents: true,
        ..WriteOptions::default()
    };
    let mut written = Vec::new();
    let mut i = 0;
    while i < ROUNDS / 2 || (written.is_empty() && i < MAX_ROUNDS) {
        i += 1;
        let rel = PathBuf::from(format!("sub/d{i}/e{i}/f"));
        match write_file(&root, &rel, b"REAL", opts) {
            Ok(_) => written.push(i),
            Err(e) => allowed_refusal(&e, "mkdir write"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(snapshot(&race.outside), outside_before);
    let real = race.real_dir();
    for i in &written {
        assert_eq!(
            std::fs::read(real.join(format!("d{i}/e{i}/f"))).unwrap(),
            b"REAL"
        );
    }
    assert!(!written.is_empty());
    assert!(temps_under(&race.root).is_empty());
}

/// Control: the same race against a plain path-based open does reach the canary, so the
/// harness above really exercises an escape that `openat2` + `RESOLVE_BENEATH` stops.
#[test]
fn control_plain_open_is_fooled_by_the_same_race() {
    let race = Race::new(|outside| outside.to_path_buf());
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = spawn_swapper(
        race.root.join("sub"),
        race.root.join("sub_link"),
        stop.clone(),
        swaps.clone(),
    );
    wait_for_swaps(&swaps);
    let path = race.root.join("sub/file");
    let mut escaped = false;
    for _ in 0..MAX_ROUNDS {
        if std::fs::read(&path).is_ok_and(|c| c == CANARY) {
            escaped = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        escaped,
        "a plain open never followed the swapped-in symlink"
    );
}
