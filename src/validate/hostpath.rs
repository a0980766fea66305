//! Host paths: lexical normalisation (for the deny-check only) and canonicalisation through the
//! deepest existing ancestor (what the kernel will actually reach).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up with `ELOOP` (Linux `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

/// Lexical normalisation of a HOST path used ONLY for the deny-check (never for use).
///
/// Collapses `//` and `.`, resolves `..` against the preceding component (never above `/`),
/// strips a trailing `/`. A relative path stays relative (leading `..` are kept); an empty
/// relative result is `.`.
pub fn lexical_normalize(p: &Path) -> PathBuf {
    let mut absolute = false;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                absolute = true;
                parts.clear();
            }
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(last) if *last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push("..".as_ref()),
            },
            Component::Normal(name) => parts.push(name),
        }
    }
    let mut out = if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    for part in parts {
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Canonicalise through the deepest existing ancestor: realpath of the deepest existing prefix + the remaining components appended (a remaining ".." after a missing component is resolved lexically — the path does not exist anyway). Symlink loops → error.
///
/// Implemented as a kernel-like walk: each component is `lstat`ed in turn and symlinks are
/// followed (relative targets against the link's directory). Once a component is missing
/// (or a non-directory is walked into) the rest is appended without touching the filesystem,
/// except that a `..` which pops the missing part puts the walk back on real ground, where
/// symlinks are again followed. That is stricter than "append lexically": the result is
/// what `mkdir -p` of the path would reach.
///
/// Only absolute paths are accepted (`InvalidInput` otherwise).
pub fn canonicalize_through_ancestor(p: &Path) -> io::Result<PathBuf> {
    if !p.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an absolute path: {}", p.display()),
        ));
    }
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front_components(&mut pending, p);
    let mut resolved = PathBuf::from("/");
    // Number of components of `resolved` that are known to exist on disk; `None` while every
    // component exists.
    let mut existing_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut hops = 0usize;

    while let Some(part) = pending.pop_front() {
        if part == "/" {
            resolved = PathBuf::from("/");
            depth = 0;
            existing_depth = None;
            continue;
        }
        if part == ".." {
            if resolved.pop() {
                depth -= 1;
            }
            if existing_depth.is_some_and(|d| depth <= d) {
                existing_depth = None;
            }
            continue;
        }
        let candidate = resolved.join(&part);
        if existing_depth.is_some() {
            resolved = candidate;
            depth += 1;
            continue;
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                push_front_components(&mut pending, &target);
            }
            Ok(_) => {
                resolved = candidate;
                depth += 1;
            }
            Err(e) if is_missing(&e) => {
                existing_depth = Some(depth);
                resolved = candidate;
                depth += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

/// `ENOENT`, or `ENOTDIR` (walking into a regular file): the path cannot exist.
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Queue `p`'s components at the front of `pending`, in order; an absolute `p` starts with
/// a "/" marker that resets the walk to the root.
fn push_front_components(pending: &mut VecDeque<OsString>, p: &Path) {
    let mut parts: Vec<OsString> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => parts.push(OsString::from("/")),
            Component::CurDir => {}
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::Normal(n) => parts.push(n.to_os_string()),
        }
    }
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lexical_table() {
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("//etc//passwd", "/etc/passwd"),
            ("/etc/", "/etc"),
            ("/./etc/.", "/etc"),
            ("/home/u/proj/../../../etc", "/etc"),
            ("/a/../../../b/", "/b"),
            ("/proc/self/cwd", "/proc/self/cwd"),
            ("a/./b/..", "a"),
            ("a/..", "."),
            ("../a/../..", "../.."),
            ("", "."),
            (".", "."),
        ];
        for (input, want) in cases {
            assert_eq!(
                lexical_normalize(Path::new(input)),
                PathBuf::from(want),
                "input {input:?}"
            );
        }
    }

    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        // The tempdir itself may sit behind a symlink (e.g. /tmp -> /private/tmp).
        let real = std::fs::canonicalize(dir.path()).unwrap();
        (dir, real)
    }

    #[test]
    fn existing_paths_match_std_canonicalize() {
        let (_d, root) = tmp();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("a/b", root.join("rel")).unwrap();
        symlink(root.join("a"), root.join("abs")).unwrap();
        symlink("../a/b", root.join("a/up")).unwrap();
        for p in [
            root.join("a/b"),
            root.join("rel"),
            root.join("abs/b"),
            root.join("a/up"),
            root.join("a/b/../b/."),
            root.join("abs/../rel"),
        ] {
            assert_eq!(
                canonicalize_through_ancestor(&p).unwrap(),
                std::fs::canonicalize(&p).unwrap(),
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn symlink_to_etc_resolves_to_etc() {
        let (_d, root) = tmp();
        symlink("/etc", root.join("etc-link")).unwrap();
        assert_eq!(
            canonicalize_through_ancestor(&root.join("etc-link")).unwrap(),
            std::fs::canonicalize("/etc").unwrap()
        );
        assert_eq!(
            canonicalize_through_ancestor(&root.join("etc-link/not-there/x")).unwrap(),
            std::fs::canonicalize("/etc").unwrap().join("not-there/x")
        );
    }

    #[test]
    fn relative_symlink_climbing_out() {
        let (_d, root) = tmp();
        std::fs::create_dir(root.join("ws")).unwrap();
        let depth = root.components().count();
        let climb = "../".repeat(depth + 3) + "etc";
        symlink(&climb, root.join("ws/out")).unwrap();
        assert_eq!(
            canonicalize_through_ancestor(&root.join("ws/out/passwd")).unwrap(),
            std::fs::canonicalize("/etc").unwrap().join("passwd")
        );
    }

    #[test]
    fn missing_leaf_behind_symlinked_parent() {
        let (_d, root) = tmp();
        symlink("/var/run", root.join("run-link")).unwrap();
        let got = canonicalize_through_ancestor(&root.join("run-link/new-leaf/deeper")).unwrap();
        assert_eq!(
            got,
            std::fs::canonicalize("/var/run")
                .unwrap()
                .join("new-leaf/deeper")
        );
    }

    #[test]
    fn missing_components_then_dotdot_are_lexical() {
        let (_d, root) = tmp();
        let got = canonicalize_through_ancestor(&root.join("missing/x/../y")).unwrap();
        assert_eq!(got, root.join("missing/y"));
    }

    #[test]
    fn dotdot_back_out_of_missing_part_follows_symlinks_again() {
        // `ws/missing/../link` — mkdir -p would reach /etc through `link`.
        let (_d, root) = tmp();
        symlink("/etc", root.join("link")).unwrap();
        let got = canonicalize_through_ancestor(&root.join("missing/../link/x")).unwrap();
        assert_eq!(got, std::fs::canonicalize("/etc").unwrap().join("x"));
    }

    #[test]
    fn walking_into_a_regular_file_counts_as_missing() {
        let (_d, root) = tmp();
        std::fs::write(root.join("f"), b"x").unwrap();
        let got = canonicalize_through_ancestor(&root.join("f/sub")).unwrap();
        assert_eq!(got, root.join("f/sub"));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let (_d, root) = tmp();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        symlink("self", root.join("self")).unwrap();
        for p in [root.join("a"), root.join("b/x"), root.join("self")] {
            let err = canonicalize_through_ancestor(&p).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{}", p.display());
        }
    }

    #[test]
    fn relative_input_is_rejected() {
        let err = canonicalize_through_ancestor(Path::new("etc")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn proc_self_cwd_canonicalises_to_cwd() {
        // Why the lexical check matters: the canonical form of /proc/self/cwd looks harmless.
        let got = canonicalize_through_ancestor(Path::new("/proc/self/cwd")).unwrap();
        assert_eq!(
            got,
            std::fs::canonicalize(std::env::current_dir().unwrap()).unwrap()
        );
    }

    fn host_segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(".".to_string()),
            Just("..".to_string()),
            Just(String::new()),
            "[a-z.]{1,4}",
        ]
    }

    proptest! {
        #[test]
        fn lexical_normalize_is_idempotent(abs in any::<bool>(), segs in prop::collection::vec(host_segment(), 0..16), trailing in any::<bool>()) {
            let mut p = segs.join("/");
            if abs { p.insert(0, '/'); }
            if trailing { p.push('/'); }
            // A leading empty segment also makes the path absolute.
            let abs = p.starts_with('/');
            let once = lexical_normalize(Path::new(&p));
            let twice = lexical_normalize(&once);
            prop_assert_eq!(&once, &twice);
            prop_assert_eq!(once.is_absolute(), abs);
            let s = once.to_str().unwrap();
            prop_assert!(!s.contains("//") && !s.contains("/./"), "{}", s);
            prop_assert!(s == "/" || !s.ends_with('/'), "{}", s);
            if abs {
                prop_assert!(!s.split('/').any(|c| c == ".." || c == "."), "{}", s);
            }
        }
    }
}
