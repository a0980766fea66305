//! Files: the sandbox user's rights, resolution beneath the mount root, regular files only,
//! atomic writes.

use crate::harness::{Agent, SANDBOX_UID};
use clawden_agent::client::{Client, ClientError};
use clawden_agent::proto::{ErrorCode, FileTarget, ReadRequest, WriteRequest};
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::time::{Duration, Instant};

fn read(c: &mut Client, t: FileTarget) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.read_file(
        &ReadRequest {
            target: t,
            offset: 0,
            length: None,
            cap: 1 << 20,
        },
        &mut out,
    )?;
    Ok(out)
}

fn write(c: &mut Client, t: FileTarget, data: &[u8]) -> Result<(), ClientError> {
    c.write_file(&wreq(t), &mut &data[..]).map(drop)
}

fn wreq(t: FileTarget) -> WriteRequest {
    WriteRequest {
        target: t,
        mkdir_parents: false,
        exclusive: false,
        expected_etag: None,
        cap: 64 << 20,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Agent(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub fn root_only_file_is_not_readable() {
    let a = Agent::start();
    let p = a.ws.join("secret");
    std::fs::write(&p, b"root only").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = a.connect();
    assert_eq!(
        code(read(&mut c, a.target("secret"))),
        ErrorCode::PermissionDenied
    );
    // …and not overwritable through a rename either? The directory is the sandbox's, so the
    // sandbox may replace the entry (as it could itself); the file's content was never read.
    let own = a.ws.join("own");
    std::fs::write(&own, b"mine").unwrap();
    chown(&own, Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
    assert_eq!(read(&mut c, a.target("own")).unwrap(), b"mine");
}

pub fn write_into_root_owned_0555_dir_is_refused() {
    let a = Agent::start();
    let d = a.ws.join("ro");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut c = a.connect();
    assert_eq!(
        code(write(&mut c, a.target("ro/new"), b"x")),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(c.mkdir(&a.target("ro/sub"), false)),
        ErrorCode::PermissionDenied
    );
    let mut w = wreq(a.target("ro/deeper/new"));
    w.mkdir_parents = true;
    assert_eq!(
        code(c.write_file(&w, &mut &b"x"[..])),
        ErrorCode::PermissionDenied
    );
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
}

pub fn symlinks_to_root_and_proc_fd_are_refused_everywhere() {
    let a = Agent::start();
    symlink("/", a.ws.join("toroot")).unwrap();
    symlink("/proc/self/fd/3", a.ws.join("fdlink")).unwrap();
    symlink("/proc/self/root", a.ws.join("procroot")).unwrap();
    symlink("../../../../../../../../etc", a.ws.join("climb")).unwrap();
    let mut c = a.connect();
    for p in [
        "toroot/etc/passwd",
        "fdlink",
        "procroot/etc/passwd",
        "climb/passwd",
        "../ws/../../etc/passwd",
    ] {
        assert_eq!(
            code(read(&mut c, a.target(p))),
            ErrorCode::EscapesRoot,
            "read {p}"
        );
        assert_eq!(
            code(c.stat(&a.target(p))),
            ErrorCode::EscapesRoot,
            "stat {p}"
        );
    }
    for p in [
        "fdlink/clawden-pwned",
        "toroot/tmp/clawden-pwned",
        "procroot/tmp/clawden-pwned",
        "climb/clawden-pwned",
    ] {
        assert_eq!(
            code(write(&mut c, a.target(p), b"x")),
            ErrorCode::EscapesRoot,
            "write {p}"
        );
    }
    assert!(!std::path::Path::new("/tmp/clawden-pwned").exists());
    for p in ["toroot", "procroot", "climb", "fdlink"] {
        let mut req = a.sh("pwd");
        req.cwd = a.ws.join(p).to_string_lossy().into_owned();
        assert_eq!(
            code(c.exec(&req, None, &mut |_, _| {})),
            ErrorCode::EscapesRoot,
            "cwd {p}"
        );
    }
    // A path outside the root it names is refused before any resolution.
    let t = FileTarget {
        root: a.ws.to_string_lossy().into_owned(),
        path: "/etc/passwd".into(),
    };
    assert_eq!(code(read(&mut c, t)), ErrorCode::NotOnMount);
    // The links themselves are untouched.
    assert_eq!(
        std::fs::read_link(a.ws.join("toroot")).unwrap(),
        std::path::Path::new("/")
    );
}

pub fn fifo_read_is_refused_without_blocking() {
    let a = Agent::start();
    let f = a.ws.join("fifo");
    nix::unistd::mkfifo(&f, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let mut c = a.connect();
    let t = Instant::now();
    assert_eq!(code(read(&mut c, a.target("fifo"))), ErrorCode::SpecialFile);
    assert_eq!(
        code(read(
            &mut c,
            FileTarget {
                root: "/dev".into(),
                path: "/dev/zero".into()
            }
        )),
        ErrorCode::SpecialFile
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(code(read(&mut c, a.target(""))), ErrorCode::IsDirectory);
}

/// A source that fails after some bytes.
struct Failing(u64);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("source broke"));
        }
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(b'n');
        self.0 -= n as u64;
        Ok(n)
    }
}

pub fn failed_write_leaves_no_half_written_file() {
    let a = Agent::start();
    let target = a.ws.join("doc.txt");
    std::fs::write(&target, b"old content").unwrap();
    chown(&target, Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
    // The source fails mid-stream: the connection is dropped, nothing is replaced.
    {
        let mut c = a.connect();
        let r = c.write_file(&wreq(a.target("doc.txt")), &mut Failing(3 << 20));
        assert!(matches!(r, Err(ClientError::Io(_))), "{r:?}");
    }
    // Over the cap: refused, nothing replaced.
    let mut c = a.connect();
    let mut w = wreq(a.target("doc.txt"));
    w.cap = 1000;
    assert_eq!(
        code(c.write_file(&w, &mut &[b'z'; 5000][..])),
        ErrorCode::TooLarge
    );
    // Wait for the first connection's handler to notice and clean up.
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let names: Vec<String> = std::fs::read_dir(&a.ws)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if names == ["doc.txt"] {
            break;
        }
        assert!(Instant::now() < end, "left behind: {names:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"old content");
    // A good write replaces it whole, mode 0644 at most, owned by the sandbox user.
    let data = vec![b'q'; 3 << 20];
    let r = c
        .write_file(&wreq(a.target("doc.txt")), &mut &data[..])
        .unwrap();
    assert_eq!(r.bytes, data.len() as u64);
    assert!(!r.created);
    assert!(std::fs::read(&target).unwrap() == data);
    let md = std::fs::metadata(&target).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o644);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), SANDBOX_UID);
}

pub fn write_over_a_final_symlink_replaces_the_link() {
    let a = Agent::start();
    let real = a.ws.join("real.txt");
    std::fs::write(&real, b"target content").unwrap();
    symlink("real.txt", a.ws.join("link")).unwrap();
    symlink("/tmp/clawden-dangling-target", a.ws.join("dangling")).unwrap();
    let mut c = a.connect();
    // Reads follow a symlink that stays beneath the root.
    assert_eq!(read(&mut c, a.target("link")).unwrap(), b"target content");
    write(&mut c, a.target("link"), b"new").unwrap();
    write(&mut c, a.target("dangling"), b"new").unwrap();
    assert_eq!(std::fs::read(&real).unwrap(), b"target content");
    for l in ["link", "dangling"] {
        let md = std::fs::symlink_metadata(a.ws.join(l)).unwrap();
        assert!(md.file_type().is_file(), "{l} is now a regular file");
        assert_eq!(std::fs::read(a.ws.join(l)).unwrap(), b"new");
    }
    assert!(!std::path::Path::new("/tmp/clawden-dangling-target").exists());
}

pub fn single_file_mount_can_be_read() {
    let a = Agent::start();
    let f = a.ws.join("single.txt");
    std::fs::write(&f, b"single").unwrap();
    let t = FileTarget {
        root: f.to_string_lossy().into_owned(),
        path: f.to_string_lossy().into_owned(),
    };
    let mut c = a.connect();
    assert_eq!(read(&mut c, t.clone()).unwrap(), b"single");
    assert_eq!(c.stat(&t).unwrap().kind, "file");
    let below = FileTarget {
        root: t.root.clone(),
        path: format!("{}/x", t.path),
    };
    assert_eq!(code(read(&mut c, below)), ErrorCode::NotDirectory);
}

pub fn read_write_stat_list_mkdir_remove_rename() {
    let a = Agent::start();
    let mut c = a.connect();
    let mut w = wreq(a.target("a/b/c.txt"));
    assert_eq!(code(c.write_file(&w, &mut &b"x"[..])), ErrorCode::NotFound);
    w.mkdir_parents = true;
    let r = c.write_file(&w, &mut &b"hello world"[..]).unwrap();
    assert!(r.created);
    // Exclusive and etag checks.
    w.exclusive = true;
    assert_eq!(
        code(c.write_file(&w, &mut &b"x"[..])),
        ErrorCode::AlreadyExists
    );
    w.exclusive = false;
    w.expected_etag = Some("stale".into());
    assert_eq!(
        code(c.write_file(&w, &mut &b"x"[..])),
        ErrorCode::EtagMismatch
    );
    let st = c.stat(&a.target("a/b/c.txt")).unwrap();
    assert_eq!(st.etag, r.etag);
    assert_eq!(
        (st.size, st.kind.as_str(), st.uid),
        (11, "file", SANDBOX_UID)
    );
    w.expected_etag = Some(st.etag);
    c.write_file(&w, &mut &b"hello again"[..]).unwrap();
    // Partial reads with offset, length and cap.
    let mut out = Vec::new();
    let rr = c
        .read_file(
            &ReadRequest {
                target: a.target("a/b/c.txt"),
                offset: 6,
                length: Some(3),
                cap: 100,
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(out, b"aga");
    assert!(!rr.truncated);
    out.clear();
    let rr = c
        .read_file(
            &ReadRequest {
                target: a.target("a/b/c.txt"),
                offset: 0,
                length: None,
                cap: 5,
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(out, b"hello");
    assert!(rr.truncated);
    assert_eq!(rr.size, 11);
    // list, mkdir, rename, remove.
    c.mkdir(&a.target("a/d"), false).unwrap();
    assert_eq!(
        code(c.mkdir(&a.target("a/d"), false)),
        ErrorCode::AlreadyExists
    );
    c.mkdir(&a.target("a/d/e/f"), true).unwrap();
    let (entries, truncated) = c.list(&a.target("a"), 100).unwrap();
    let names: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(names, [("b", "dir"), ("d", "dir")]);
    assert!(!truncated);
    assert!(c.list(&a.target("a"), 1).unwrap().1);
    c.rename(&a.target("a/b/c.txt"), &a.target("a/d/c2.txt"), false)
        .unwrap();
    c.write_file(&wreq(a.target("a/x")), &mut &b"1"[..])
        .unwrap();
    assert_eq!(
        code(c.rename(&a.target("a/x"), &a.target("a/d/c2.txt"), true)),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        std::fs::read(a.ws.join("a/d/c2.txt")).unwrap(),
        b"hello again"
    );
    assert_eq!(code(c.remove(&a.target("a/d"))), ErrorCode::NotEmpty);
    c.remove(&a.target("a/d/c2.txt")).unwrap();
    assert_eq!(code(c.remove(&a.target("a/d/c2.txt"))), ErrorCode::NotFound);
    assert_eq!(code(c.remove(&a.target(""))), ErrorCode::InvalidPath);
    assert_eq!(
        code(write(&mut c, a.target("a/.."), b"x")),
        ErrorCode::InvalidPath
    );
}
