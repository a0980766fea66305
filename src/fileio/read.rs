//! Capped reads of regular files beneath a mount root.

use super::openat::{self, BENEATH, RootDir};
use super::{FileError, check_relative};
use crate::validate::RefusalCode;
use std::os::fd::AsFd;
use std::path::Path;

/// The default read cap (issue 4: 16 MiB, configurable).
pub const DEFAULT_READ_CAP: u64 = 16 * 1024 * 1024;

/// Bytes read per `pread`: the buffer grows with what was actually read, never with what the
/// file claims.
const CHUNK: usize = 1024 * 1024;

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The bytes read (at most `min(length, cap)`).
    pub content: Vec<u8>,
    /// The file size from `fstat` at open time.
    pub size: u64,
    /// Whether the cap cut the requested range short (there is more the caller asked for).
    pub truncated: bool,
}

/// Read a regular file beneath `root`: at most `min(length, cap)` bytes from `offset`.
///
/// The file is opened with `openat2(O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)` and
/// `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: symlinks (the final one included) are followed
/// only while they stay beneath the root (`escapes_root` otherwise). `O_NONBLOCK` makes
/// opening a FIFO return at once; the fd is then `fstat`ed and anything but a regular file is
/// refused before a byte is read (`is_directory`, `special_file`). Memory stays bounded by
/// `cap` whatever size the file claims (a 100 GB sparse file costs `cap` bytes).
/// `length: None` means "to the end of the file".
pub fn read_file(
    root: &RootDir,
    relative: &Path,
    offset: u64,
    length: Option<u64>,
    cap: u64,
) -> Result<ReadOutcome, FileError> {
    check_relative(relative)?;
    if offset > i64::MAX as u64 {
        return Err(FileError::refused(
            RefusalCode::InvalidValue,
            offset.to_string(),
            format!("read offset {offset} is beyond the largest possible file offset"),
            "use an offset below 2^63",
        ));
    }
    let fd = openat::openat2(
        root.raw(),
        relative,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
        BENEATH,
    )
    .map_err(|e| FileError::from_errno(e, "read", relative))?;
    let st = openat::fstat(fd.as_fd()).map_err(|e| FileError::from_errno(e, "read", relative))?;
    match openat::file_type(&st) {
        libc::S_IFREG => {}
        libc::S_IFDIR => {
            return Err(FileError::from_errno(
                nix::errno::Errno::EISDIR,
                "read",
                relative,
            ));
        }
        _ => {
            return Err(FileError::refused(
                RefusalCode::SpecialFile,
                relative.to_string_lossy(),
                format!(
                    "read {:?}: path is a {}; only regular files are read",
                    relative.to_string_lossy(),
                    openat::type_name(&st)
                ),
                "name a regular file",
            ));
        }
    }
    let size = st.st_size.max(0) as u64;
    // The requested range, as far as the file's size says, and what the cap lets through.
    let want = length.unwrap_or(u64::MAX).min(size.saturating_sub(offset));
    let limit = want.min(cap);

    let mut content: Vec<u8> = Vec::with_capacity(limit.min(CHUNK as u64) as usize);
    while (content.len() as u64) < limit {
        let left = limit - content.len() as u64;
        let step = left.min(CHUNK as u64) as usize;
        let start = content.len();
        content.resize(start + step, 0);
        let n = openat::pread(fd.as_fd(), &mut content[start..], offset + start as u64)
            .map_err(|e| FileError::from_errno(e, "read", relative))?;
        content.truncate(start + n);
        if n == 0 {
            break; // the file shrank under us: return what there is
        }
    }
    let truncated = want > cap && content.len() as u64 == cap;
    Ok(ReadOutcome {
        content,
        size,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileio::open_root;
    use crate::fileio::test_support::{CANARY, Fixture};
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    fn read(fx: &Fixture, rel: &str) -> Result<ReadOutcome, FileError> {
        let root = open_root(&fx.root).unwrap();
        read_file(&root, Path::new(rel), 0, None, DEFAULT_READ_CAP)
    }

    #[test]
    fn reads_a_regular_file() {
        let fx = Fixture::new();
        std::fs::create_dir(fx.root.join("d")).unwrap();
        std::fs::write(fx.root.join("d/f.txt"), b"hello\n").unwrap();
        let out = read(&fx, "d/f.txt").unwrap();
        assert_eq!(out.content, b"hello\n");
        assert_eq!(out.size, 6);
        assert!(!out.truncated);
    }

    #[test]
    fn offset_length_and_cap() {
        let fx = Fixture::new();
        std::fs::write(fx.root.join("f"), b"0123456789").unwrap();
        let root = open_root(&fx.root).unwrap();
        let r = |off, len, cap| read_file(&root, Path::new("f"), off, len, cap).unwrap();
        let o = r(2, Some(3), 100);
        assert_eq!(
            (o.content.as_slice(), o.size, o.truncated),
            (&b"234"[..], 10, false)
        );
        let o = r(8, None, 100);
        assert_eq!((o.content.as_slice(), o.truncated), (&b"89"[..], false));
        let o = r(10, None, 100);
        assert_eq!((o.content.as_slice(), o.truncated), (&b""[..], false));
        let o = r(50, Some(5), 100);
        assert_eq!((o.content.as_slice(), o.truncated), (&b""[..], false));
        let o = r(0, None, 4);
        assert_eq!((o.content.as_slice(), o.truncated), (&b"0123"[..], true));
        let o = r(0, Some(4), 4);
        assert_eq!((o.content.as_slice(), o.truncated), (&b"0123"[..], false));
        let o = r(0, Some(0), 4);
        assert_eq!((o.content.as_slice(), o.truncated), (&b""[..], false));
        let o = r(3, Some(100), 5);
        assert_eq!((o.content.as_slice(), o.truncated), (&b"34567"[..], true));
        let e = read_file(&root, Path::new("f"), u64::MAX, None, 4).unwrap_err();
        assert_eq!(e.code(), RefusalCode::InvalidValue);
    }

    #[test]
    fn binary_and_invalid_utf8_are_returned_verbatim() {
        let fx = Fixture::new();
        let bytes: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, 0xc3, 0x28, 0, 0]).collect();
        std::fs::write(fx.root.join("bin"), &bytes).unwrap();
        assert_eq!(read(&fx, "bin").unwrap().content, bytes);
    }

    #[test]
    fn sparse_100_gb_file_is_capped_fast_and_bounded() {
        let fx = Fixture::new();
        let f = std::fs::File::create(fx.root.join("huge")).unwrap();
        f.set_len(100 * 1024 * 1024 * 1024).unwrap(); // ftruncate: sparse
        drop(f);
        let root = open_root(&fx.root).unwrap();
        let started = Instant::now();
        let out = read_file(&root, Path::new("huge"), 0, None, 1024 * 1024).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(out.size, 100 * 1024 * 1024 * 1024);
        assert_eq!(out.content.len(), 1024 * 1024);
        assert!(
            out.content.capacity() <= 1024 * 1024,
            "memory bounded by the cap"
        );
        assert!(out.truncated);
        // Even "read everything" with a small cap costs the cap, not the claimed size.
        let out = read_file(&root, Path::new("huge"), 1 << 36, Some(u64::MAX), 10).unwrap();
        assert_eq!(out.content, vec![0; 10]);
        assert!(out.truncated);
    }

    #[test]
    fn absolute_symlink_to_host_file_is_refused() {
        // inside the container: ln -s /etc/shadow /workspace/l
        let fx = Fixture::new();
        symlink("/etc/shadow", fx.root.join("l")).unwrap();
        symlink(fx.outside.join("canary"), fx.root.join("c")).unwrap();
        for name in ["l", "c"] {
            let e = read(&fx, name).unwrap_err();
            assert_eq!(e.code(), RefusalCode::EscapesRoot, "{name}: {e}");
            assert_eq!(e.refusal().value, name);
        }
    }

    #[test]
    fn relative_symlink_climbing_out_is_refused() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.root.join("a/b")).unwrap();
        symlink("../../../outside/canary", fx.root.join("a/b/up")).unwrap();
        symlink("../outside", fx.root.join("updir")).unwrap();
        for name in ["a/b/up", "updir/canary"] {
            let e = read(&fx, name).unwrap_err();
            assert_eq!(e.code(), RefusalCode::EscapesRoot, "{name}: {e}");
        }
    }

    #[test]
    fn symlinks_staying_beneath_the_root_are_followed() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.root.join("v2")).unwrap();
        std::fs::write(fx.root.join("v2/real.txt"), b"real").unwrap();
        symlink("v2/real.txt", fx.root.join("alias")).unwrap();
        symlink("v2", fx.root.join("current")).unwrap();
        std::fs::create_dir(fx.root.join("x")).unwrap();
        symlink("../v2/real.txt", fx.root.join("x/up-but-inside")).unwrap();
        for name in ["alias", "current/real.txt", "x/up-but-inside"] {
            assert_eq!(read(&fx, name).unwrap().content, b"real", "{name}");
        }
    }

    #[test]
    fn symlink_loop_is_a_structured_refusal() {
        let fx = Fixture::new();
        symlink("loop2", fx.root.join("loop1")).unwrap();
        symlink("loop1", fx.root.join("loop2")).unwrap();
        symlink("self", fx.root.join("self")).unwrap();
        for name in ["loop1", "self", "self/x"] {
            let e = read(&fx, name).unwrap_err();
            assert_eq!(e.code(), RefusalCode::SymlinkLoop, "{name}");
        }
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let fx = Fixture::new();
        nix::unistd::mkfifo(&fx.root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let root = fx.root.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = open_root(&root).unwrap();
            let _ = tx.send(read_file(&r, Path::new("fifo"), 0, None, 1024).map(|_| ()));
        });
        let res = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("reading a FIFO must not block");
        let e = res.unwrap_err();
        assert_eq!(e.code(), RefusalCode::SpecialFile);
        assert!(e.refusal().message.contains("FIFO"), "{e}");
    }

    #[test]
    fn unix_socket_is_refused() {
        let fx = Fixture::new();
        let _l = std::os::unix::net::UnixListener::bind(fx.root.join("sock")).unwrap();
        let e = read(&fx, "sock").unwrap_err();
        assert_eq!(e.code(), RefusalCode::SpecialFile, "{e}");
    }

    #[test]
    fn device_node_is_refused_when_one_can_be_made() {
        let fx = Fixture::new();
        let dev = fx.root.join("null");
        let made = nix::sys::stat::mknod(
            &dev,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            nix::sys::stat::makedev(1, 3),
        );
        if made.is_err() {
            return; // unprivileged: cannot create a device node (neither can the container)
        }
        let e = read(&fx, "null").unwrap_err();
        assert_eq!(e.code(), RefusalCode::SpecialFile, "{e}");
    }

    #[test]
    fn directories_and_missing_files() {
        let fx = Fixture::new();
        std::fs::create_dir(fx.root.join("d")).unwrap();
        std::fs::write(fx.root.join("f"), b"x").unwrap();
        assert_eq!(read(&fx, "d").unwrap_err().code(), RefusalCode::IsDirectory);
        assert_eq!(read(&fx, "").unwrap_err().code(), RefusalCode::IsDirectory);
        assert_eq!(read(&fx, "nope").unwrap_err().code(), RefusalCode::NotFound);
        assert_eq!(
            read(&fx, "f/x").unwrap_err().code(),
            RefusalCode::NotDirectory
        );
    }

    #[test]
    fn hostile_relative_paths_are_refused_structurally() {
        let fx = Fixture::new();
        let long_component = "a".repeat(300);
        let over_path_max = "a/".repeat(3000);
        let five_thousand = vec!["x"; 5000].join("/");
        let cases = [
            ("../outside/canary", RefusalCode::InvalidPath),
            ("/etc/passwd", RefusalCode::InvalidPath),
            ("a/../../outside/canary", RefusalCode::InvalidPath),
            (long_component.as_str(), RefusalCode::NameTooLong),
            (over_path_max.as_str(), RefusalCode::NameTooLong),
            (five_thousand.as_str(), RefusalCode::NameTooLong),
        ];
        for (p, code) in cases {
            let e = read(&fx, p).unwrap_err();
            assert_eq!(e.code(), code, "{p:.40}");
        }
        // A newline or leading '-' is a legal name: read literally, nothing interprets it.
        std::fs::write(fx.root.join("-rf"), b"dash").unwrap();
        std::fs::write(fx.root.join("a\nb"), b"nl").unwrap();
        assert_eq!(read(&fx, "-rf").unwrap().content, b"dash");
        assert_eq!(read(&fx, "a\nb").unwrap().content, b"nl");
    }

    #[test]
    fn outside_is_never_read() {
        let fx = Fixture::new();
        symlink(&fx.outside, fx.root.join("d")).unwrap();
        let e = read(&fx, "d/canary").unwrap_err();
        assert_eq!(e.code(), RefusalCode::EscapesRoot);
        assert!(!format!("{e:?}").contains(std::str::from_utf8(CANARY).unwrap()));
    }
}
