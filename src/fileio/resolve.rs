//! Container path → bind mount + components beneath its host root. Pure: no filesystem access.
//!
//! Lexical normalisation is right here and only here: the path is a *container* path, and the
//! mount table is the container's view (security.md principle 2). Everything beneath the host
//! root is resolved later by the kernel (`openat2`), never lexically.

use crate::decide::mounts::PlannedMount;
use crate::validate::{Refusal, RefusalCode, normalize_container_path};
use std::path::PathBuf;

/// Where a container path lands on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedPath {
    /// Index of the winning mount in the slice given to [`map_container_path`].
    pub mount_index: usize,
    /// The mount's host directory (open it with [`super::open_root`]).
    pub host_root: PathBuf,
    /// Normal components beneath the root; no `.`/`..`; empty means the root itself.
    pub relative: PathBuf,
    /// Whether the mount is read-only (writes are refused before any syscall).
    pub read_only: bool,
    /// The normalised absolute container path.
    pub container_path: String,
}

/// Map a tool-call path to a bind mount.
///
/// A relative `path` is relative to `workdir`. The result is normalised lexically (`..` never
/// climbs above `/`); the mount whose container target is the longest component-wise prefix
/// wins (`/workspace2` is not under `/workspace`). Refusals: those of
/// [`normalize_container_path`] (`invalid_path` for NUL, newline, over PATH_MAX, too many
/// components; `non_absolute` for a relative workdir), `invalid_path` for an empty path, and
/// `not_on_mount` when no mount carries the path.
pub fn map_container_path(
    path: &str,
    workdir: &str,
    mounts: &[PlannedMount],
) -> Result<MappedPath, Refusal> {
    if path.is_empty() {
        return Err(Refusal::new(
            RefusalCode::InvalidPath,
            path,
            "the file path is empty",
            "name a file, e.g. \"notes.txt\" or \"/workspace/notes.txt\"",
        ));
    }
    let absolute = if path.starts_with('/') {
        path.to_string()
    } else {
        let wd = normalize_container_path(workdir)?;
        format!("{wd}/{path}")
    };
    let normal = normalize_container_path(&absolute).map_err(|mut r| {
        // The offending value is what the caller sent, not the workdir-joined form.
        r.value = path.to_string();
        r
    })?;

    let mut best: Option<(usize, usize, &PlannedMount)> = None;
    for (i, m) in mounts.iter().enumerate() {
        let Ok(target) = normalize_container_path(&m.container) else {
            continue; // a malformed target carries nothing (the validator refuses it earlier)
        };
        if !is_same_or_under(&normal, &target) {
            continue;
        }
        if best.is_none_or(|(_, len, _)| target.len() > len) {
            best = Some((i, target.len(), m));
        }
    }
    let Some((mount_index, target_len, mount)) = best else {
        return Err(Refusal::new(
            RefusalCode::NotOnMount,
            path,
            format!(
                "container path {normal:?} is not on any bind mount; only mounted paths can be read or written"
            ),
            format!("use a path under one of the mounts: {}", mount_list(mounts)),
        ));
    };
    let rest = if target_len == 1 {
        &normal[1..] // mount at "/": everything is beneath it
    } else {
        normal[target_len..].trim_start_matches('/')
    };
    let relative: PathBuf = rest.split('/').filter(|s| !s.is_empty()).collect();
    Ok(MappedPath {
        mount_index,
        host_root: mount.host.clone(),
        relative,
        read_only: mount.access.read_only(),
        container_path: normal,
    })
}

/// Whether normalised `inner` equals `outer` or lies below it, component-wise.
fn is_same_or_under(inner: &str, outer: &str) -> bool {
    if outer == "/" {
        return true;
    }
    inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'/')
}

fn mount_list(mounts: &[PlannedMount]) -> String {
    if mounts.is_empty() {
        return "(none configured)".to_string();
    }
    mounts
        .iter()
        .map(|m| m.container.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::mounts::{Access, MountSource};
    use crate::validate::{MAX_COMPONENTS, MAX_PATH_BYTES};

    fn mount(host: &str, container: &str, access: Access) -> PlannedMount {
        PlannedMount {
            host: PathBuf::from(host),
            container: container.to_string(),
            access,
            source: MountSource::Bind,
        }
    }

    fn mounts() -> Vec<PlannedMount> {
        vec![
            mount("/h/ws", "/workspace", Access::Rw),
            mount("/h/agent", "/agent", Access::Ro),
            mount("/h/data", "/workspace/data", Access::Ro),
            mount("/h/ws2", "/workspace2", Access::Rw),
        ]
    }

    #[test]
    fn mapping_table() {
        // (path, workdir, mount index, relative, read_only, container path)
        let cases: &[(&str, &str, usize, &str, bool, &str)] = &[
            (
                "notes.txt",
                "/workspace",
                0,
                "notes.txt",
                false,
                "/workspace/notes.txt",
            ),
            ("./a/./b", "/workspace", 0, "a/b", false, "/workspace/a/b"),
            ("/workspace", "/workspace", 0, "", false, "/workspace"),
            ("/workspace/", "/", 0, "", false, "/workspace"),
            ("//workspace//x//", "/", 0, "x", false, "/workspace/x"),
            ("/workspace/a/../b", "/", 0, "b", false, "/workspace/b"),
            (
                "/agent/SOUL.md",
                "/workspace",
                1,
                "SOUL.md",
                true,
                "/agent/SOUL.md",
            ),
            ("../agent/x", "/workspace", 1, "x", true, "/agent/x"),
            // nested mount: the longest target wins
            ("data/f", "/workspace", 2, "f", true, "/workspace/data/f"),
            ("/workspace/data", "/", 2, "", true, "/workspace/data"),
            (
                "/workspace/database",
                "/",
                0,
                "database",
                false,
                "/workspace/database",
            ),
            ("/workspace/data/../f", "/", 0, "f", false, "/workspace/f"),
            // component-wise prefix: /workspace2 is its own mount, not under /workspace
            ("/workspace2/f", "/", 3, "f", false, "/workspace2/f"),
            // a leading '-' is just a file name: nothing here is ever passed to a command line
            ("-rf", "/workspace", 0, "-rf", false, "/workspace/-rf"),
            (
                "--help/x",
                "/workspace",
                0,
                "--help/x",
                false,
                "/workspace/--help/x",
            ),
            (
                "a b/c:d",
                "/workspace",
                0,
                "a b/c:d",
                false,
                "/workspace/a b/c:d",
            ),
        ];
        for &(path, workdir, idx, rel, ro, cpath) in cases {
            let m = map_container_path(path, workdir, &mounts())
                .unwrap_or_else(|e| panic!("{path:?}: {e:?}"));
            assert_eq!(m.mount_index, idx, "{path:?}");
            assert_eq!(m.host_root, mounts()[idx].host, "{path:?}");
            assert_eq!(m.relative, PathBuf::from(rel), "{path:?}");
            assert_eq!(m.read_only, ro, "{path:?}");
            assert_eq!(m.container_path, cpath, "{path:?}");
        }
    }

    #[test]
    fn refusal_table() {
        let over_path_max = format!("/workspace/{}", "a".repeat(MAX_PATH_BYTES));
        let relative_over_path_max = "a".repeat(MAX_PATH_BYTES); // fits alone, not once joined
        let five_thousand = "x/".repeat(5000);
        let too_many = "/workspace".to_string() + &"/a".repeat(MAX_COMPONENTS);
        let cases: Vec<(&str, &str, RefusalCode)> = vec![
            ("../../etc/passwd", "/workspace", RefusalCode::NotOnMount),
            (
                "../../../../../../etc/passwd",
                "/workspace/a",
                RefusalCode::NotOnMount,
            ),
            ("/etc/shadow", "/workspace", RefusalCode::NotOnMount),
            (
                "/workspace/../etc/shadow",
                "/workspace",
                RefusalCode::NotOnMount,
            ),
            ("/", "/workspace", RefusalCode::NotOnMount),
            ("/workspace2x/f", "/workspace", RefusalCode::NotOnMount),
            (
                "/proc/self/root/etc/passwd",
                "/workspace",
                RefusalCode::NotOnMount,
            ),
            ("", "/workspace", RefusalCode::InvalidPath),
            ("a\nb", "/workspace", RefusalCode::InvalidPath),
            ("/workspace/a\nb", "/workspace", RefusalCode::InvalidPath),
            ("/workspace/a\0b", "/workspace", RefusalCode::InvalidPath),
            (
                five_thousand.as_str(),
                "/workspace",
                RefusalCode::InvalidPath,
            ),
            (too_many.as_str(), "/", RefusalCode::InvalidPath),
            (over_path_max.as_str(), "/", RefusalCode::InvalidPath),
            (
                relative_over_path_max.as_str(),
                "/workspace",
                RefusalCode::InvalidPath,
            ),
            ("x", "workspace", RefusalCode::NonAbsolute),
        ];
        for (path, workdir, code) in cases {
            let err = map_container_path(path, workdir, &mounts()).expect_err(path);
            assert_eq!(err.code, code, "{path:?}");
            if code != RefusalCode::NonAbsolute {
                assert_eq!(err.value, path, "the value is what the caller sent");
            }
            assert!(!err.message.is_empty() && !err.fix.is_empty());
        }
    }

    #[test]
    fn parent_escape_is_normalised_beneath_root_first() {
        // `../../etc/passwd` from /workspace is /etc/passwd, which no mount carries.
        let err = map_container_path("../../etc/passwd", "/workspace", &mounts()).unwrap_err();
        assert!(err.message.contains("\"/etc/passwd\""), "{}", err.message);
        // ...but with a mount at "/" the same path lands beneath that root, not above it.
        let root = vec![mount("/h/rootfs", "/", Access::Ro)];
        let m = map_container_path("../../etc/passwd", "/workspace", &root).unwrap();
        assert_eq!(m.relative, PathBuf::from("etc/passwd"));
        assert_eq!(m.host_root, PathBuf::from("/h/rootfs"));
        let m = map_container_path("/", "/", &root).unwrap();
        assert_eq!(m.relative, PathBuf::new());
    }

    #[test]
    fn no_mounts_means_nothing_is_mapped() {
        let err = map_container_path("/workspace/x", "/workspace", &[]).unwrap_err();
        assert_eq!(err.code, RefusalCode::NotOnMount);
        assert!(err.fix.contains("none configured"));
    }

    #[test]
    fn relative_never_contains_dot_components() {
        for p in [
            "a/./b/../c",
            "../workspace/./x/..",
            "x/../../workspace/y/./z",
        ] {
            let m = map_container_path(p, "/workspace", &mounts()).unwrap();
            assert!(
                m.relative
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
                "{p:?} -> {:?}",
                m.relative
            );
        }
    }
}
