//! Checks shared by every host-side mount source: bind sources from `docker.binds` and the
//! clawden-managed sources (workspaces) from operator config.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::blocked::{BlockedTable, HostContext, Relation};
use super::code::{Refusal, RefusalCode, quote, quote_path};
use super::hostpath::{canonicalize_through_ancestor, lexical_normalize};

/// Where a host source comes from; decides the wording of messages and fixes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SourceUse<'a> {
    /// An entry of `docker.binds`, as written.
    Bind { spec: &'a str },
    /// A clawden-managed source; `what` names the config key.
    Managed { what: &'a str, value: &'a str },
}

impl SourceUse<'_> {
    /// The offending value reported in the refusal.
    pub fn value(&self) -> String {
        match self {
            SourceUse::Bind { spec } => spec.to_string(),
            SourceUse::Managed { value, .. } => value.to_string(),
        }
    }

    /// `bind mount "/a:/b"` or `workspaceRoot "/a"`.
    pub fn subject(&self) -> String {
        match self {
            SourceUse::Bind { spec } => format!("bind mount {}", quote(spec)),
            SourceUse::Managed { what, value } => format!("{what} {}", quote(value)),
        }
    }

    fn refuse(&self, code: RefusalCode, message: String, fix: String) -> Refusal {
        Refusal::new(code, self.value(), message, fix)
    }
}

/// What the shared source checks found out about an acceptable source.
#[derive(Debug)]
pub(crate) struct CheckedSource {
    pub canonical: PathBuf,
    pub exists: bool,
}

/// NonAbsolute → blocked (lexical) → blocked (canonical) → special file. A missing source is
/// reported through `exists`, not refused: binds refuse it, managed sources do not.
pub(crate) fn check_source(
    source: &Path,
    use_: SourceUse<'_>,
    table: &BlockedTable,
) -> Result<CheckedSource, Refusal> {
    check_absolute(source, use_)?;

    let lexical = lexical_normalize(source);
    check_blocked(&lexical, None, use_, table)?;

    let canonical = canonicalize_through_ancestor(source).map_err(|e| {
        use_.refuse(
            RefusalCode::MissingSource,
            format!(
                "{}: host source {} cannot be resolved: {e}",
                use_.subject(),
                quote_path(source)
            ),
            "fix the symlinks along the path (a loop or an unreadable directory), or use another path"
                .to_string(),
        )
    })?;
    check_blocked(&canonical, Some(source), use_, table)?;

    let meta = match std::fs::symlink_metadata(&canonical) {
        Ok(m) => Some(m),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            None
        }
        Err(e) => {
            return Err(use_.refuse(
                RefusalCode::MissingSource,
                format!(
                    "{}: host source {} cannot be inspected: {e}",
                    use_.subject(),
                    quote_path(&canonical)
                ),
                "make the path readable by clawden, or use another path".to_string(),
            ));
        }
    };
    if let Some(meta) = &meta {
        let ft = meta.file_type();
        if !(ft.is_dir() || ft.is_file()) {
            let kind = if ft.is_socket() {
                "a socket"
            } else if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_char_device() {
                "a character device"
            } else if ft.is_block_device() {
                "a block device"
            } else {
                "not a directory or regular file"
            };
            return Err(use_.refuse(
                RefusalCode::SpecialFile,
                format!(
                    "{}: host source {} is {kind}; only directories and regular files can be mounted",
                    use_.subject(),
                    quote_path(&canonical)
                ),
                "remove this entry: sockets, FIFOs and device nodes are never mounted into a sandbox"
                    .to_string(),
            ));
        }
    }
    Ok(CheckedSource {
        canonical,
        exists: meta.is_some(),
    })
}

fn check_absolute(source: &Path, use_: SourceUse<'_>) -> Result<(), Refusal> {
    let bytes = source.as_os_str().as_bytes();
    let subject = use_.subject();
    let shown = quote_path(source);
    let problem = if bytes.is_empty() {
        "host source is empty".to_string()
    } else if bytes.contains(&0) || bytes.contains(&b'\n') {
        format!("host source {shown} contains a NUL or newline character")
    } else if bytes[0] == b'~' {
        format!("host source {shown} starts with '~', which is never expanded")
    } else if bytes[0] == b'$' {
        format!("host source {shown} starts with '$': variables are never expanded")
    } else if bytes[0] != b'/' {
        format!("host source {shown} is a relative path or a named volume")
    } else {
        return Ok(());
    };
    let fix = match use_ {
        SourceUse::Bind { .. } => {
            "use an absolute host path, written out in full, e.g. \"/srv/projects/data:/mnt/data:ro\""
                .to_string()
        }
        SourceUse::Managed { what, .. } => {
            format!("set {what} to an absolute host path, written out in full")
        }
    };
    Err(use_.refuse(
        RefusalCode::NonAbsolute,
        format!("{subject}: {problem}; use an absolute host path"),
        fix,
    ))
}

/// `original` is the path as written when `path` is its canonical form.
fn check_blocked(
    path: &Path,
    original: Option<&Path>,
    use_: SourceUse<'_>,
    table: &BlockedTable,
) -> Result<(), Refusal> {
    let Some((relation, entry)) = table.check(path) else {
        return Ok(());
    };
    let blocked = entry.describe();
    let name = quote(&entry.shown);
    let verb = match relation {
        Relation::Equal => "mounts blocked path",
        Relation::Under => "mounts a path under blocked path",
        Relation::Covers => "covers blocked path",
    };
    let resolved = match original {
        Some(orig) if lexical_normalize(orig) != path => {
            format!(" (its host source resolves to {})", quote_path(path))
        }
        _ => String::new(),
    };
    let message = format!("{} {verb} {blocked}{resolved}", use_.subject());
    let (code, fix) = match (relation, use_) {
        (Relation::Covers, SourceUse::Bind { .. }) => (
            RefusalCode::CoversBlockedPath,
            format!(
                "bind a narrower directory that does not contain {name}, e.g. {}",
                quote_path(&path.join("<project>"))
            ),
        ),
        (Relation::Covers, SourceUse::Managed { what, .. }) => (
            RefusalCode::CoversBlockedPath,
            format!("set {what} to a dedicated directory that does not contain {name}"),
        ),
        (_, SourceUse::Bind { .. }) => (
            RefusalCode::BlockedPath,
            format!(
                "remove this entry from docker.binds: {name} is never mounted into a sandbox \
                 (no dangerously* setting lifts this)"
            ),
        ),
        (_, SourceUse::Managed { what, .. }) => (
            RefusalCode::BlockedPath,
            format!("set {what} to a dedicated directory outside {name}"),
        ),
    };
    Err(use_.refuse(code, message, fix))
}

/// For clawden-managed mount sources (agent workspace, sandbox workspace dirs) that come from operator config:
/// absolute, not blocked (lexical AND canonical), not a special file; a missing path is allowed (clawden creates it)
/// Returns the canonical path (through the deepest existing ancestor). `what` names the config key for the message.
pub fn check_managed_source(
    path: &Path,
    what: &str,
    ctx: &HostContext,
) -> Result<PathBuf, Refusal> {
    let value = path.to_string_lossy();
    let use_ = SourceUse::Managed {
        what,
        value: &value,
    };
    check_source(path, use_, &ctx.table()).map(|c| c.canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ctx() -> HostContext {
        HostContext::for_tests(vec![PathBuf::from("/home/tester")])
    }

    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        (d, real)
    }

    #[test]
    fn managed_source_refusal_table() {
        let cases: &[(&str, RefusalCode)] = &[
            ("", RefusalCode::NonAbsolute),
            ("relative/ws", RefusalCode::NonAbsolute),
            ("~/.openclaw/sandboxes", RefusalCode::NonAbsolute),
            ("$HOME/ws", RefusalCode::NonAbsolute),
            ("/srv/ws\n", RefusalCode::NonAbsolute),
            ("/", RefusalCode::BlockedPath),
            ("/etc/clawden", RefusalCode::BlockedPath),
            ("/proc/self/cwd", RefusalCode::BlockedPath),
            ("/home/u/proj/../../../etc", RefusalCode::BlockedPath),
            ("/home/tester/.config/clawden", RefusalCode::BlockedPath),
            ("/home", RefusalCode::CoversBlockedPath),
            ("/home/tester", RefusalCode::CoversBlockedPath),
            ("/var", RefusalCode::CoversBlockedPath),
            // What a path is (issue 7): system directories and host-user files.
            ("/usr/local", RefusalCode::BlockedPath),
            ("/usr/local/", RefusalCode::BlockedPath),
            ("/usr/share/ws", RefusalCode::BlockedPath),
            ("/opt/agents", RefusalCode::BlockedPath),
            ("/var/log/ws", RefusalCode::BlockedPath),
            ("/lib/ws", RefusalCode::BlockedPath),
            ("/home/tester/.local/bin", RefusalCode::BlockedPath),
            ("/home/tester/.local", RefusalCode::CoversBlockedPath),
            ("/home/tester/.profile", RefusalCode::BlockedPath),
            ("/home/other/.bashrc", RefusalCode::BlockedPath),
        ];
        for (path, code) in cases {
            let r =
                check_managed_source(Path::new(path), "sandbox.workspaceRoot", &ctx()).unwrap_err();
            assert_eq!(r.code, *code, "{path:?}: {r:?}");
            assert_eq!(r.value, *path);
            assert!(
                r.message.starts_with("sandbox.workspaceRoot "),
                "{}",
                r.message
            );
            assert!(r.fix.contains("sandbox.workspaceRoot"), "{}", r.fix);
        }
    }

    #[test]
    fn managed_source_missing_is_allowed_and_canonical() {
        let (_d, root) = tmp();
        std::fs::create_dir(root.join("real")).unwrap();
        symlink(root.join("real"), root.join("link")).unwrap();
        let got = check_managed_source(&root.join("link/agents/a1"), "agentWorkspace", &ctx());
        assert_eq!(got, Ok(root.join("real/agents/a1")));
        let got = check_managed_source(&root.join("link"), "agentWorkspace", &ctx());
        assert_eq!(got, Ok(root.join("real")));
    }

    #[test]
    fn managed_source_through_symlinks_into_blocked_paths() {
        let (_d, root) = tmp();
        symlink("/etc", root.join("etc-link")).unwrap();
        symlink("/var/run", root.join("run-link")).unwrap();
        for p in [
            root.join("etc-link"),
            root.join("etc-link/not-yet"),
            root.join("run-link/new"),
            // What `mkdir -p` would reach: the missing part is popped, then the link followed.
            root.join("missing/../etc-link/x"),
        ] {
            let r = check_managed_source(&p, "workspaceRoot", &ctx()).unwrap_err();
            assert_eq!(r.code, RefusalCode::BlockedPath, "{}: {r:?}", p.display());
        }
    }

    #[test]
    fn managed_source_special_files_and_loops() {
        let (_d, root) = tmp();
        let _l = std::os::unix::net::UnixListener::bind(root.join("s.sock")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let code = |p: PathBuf| check_managed_source(&p, "w", &ctx()).unwrap_err().code;
        assert_eq!(code(root.join("s.sock")), RefusalCode::SpecialFile);
        assert_eq!(code(root.join("fifo")), RefusalCode::SpecialFile);
        assert_eq!(code(root.join("loop/x")), RefusalCode::MissingSource);
    }
}
