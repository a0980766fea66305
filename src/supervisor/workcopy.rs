//! `clawden run --copy`: a private copy of a workspace, and bringing back what the job changed.
//!
//! The copy keeps each entry's owner and mode bits (not setuid/setgid), copies symlinks as
//! symlinks and skips sockets, FIFOs and devices. Bringing back happens only after the sandbox
//! is gone (nothing can change the copy any more), and only for regular files: a file that is
//! new or whose bytes differ is written into the workspace atomically, beneath it, never through
//! a symlink in it (the host-side `openat2` writer). Symlinks the job made or changed, files it
//! deleted, and files whose place in the workspace is no longer a regular file are reported,
//! not applied: a job never removes anything of the checkout and never plants a link in it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What bringing back did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyBack {
    /// Regular files written into the workspace (new or changed).
    pub written: Vec<PathBuf>,
    /// Present in the workspace, gone from the copy: left in place.
    pub deleted_in_copy: Vec<PathBuf>,
    /// Not brought back: symlinks, special files, or a workspace entry of another kind.
    pub skipped: Vec<PathBuf>,
}

/// Every entry under `root` (relative paths, parents before children), never following a
/// symlink.
fn walk(root: &Path) -> std::io::Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names.into_iter().rev() {
            let r = rel.join(&name);
            let m = std::fs::symlink_metadata(root.join(&r))?;
            if m.is_dir() {
                stack.push(r.clone());
            }
            out.push((r, m));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn keep_owner(path: &Path, m: &std::fs::Metadata) -> std::io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()))?;
    }
    Ok(())
}

/// Copy the workspace `src` into the new directory `dst`.
pub fn copy_in(src: &Path, dst: &Path) -> std::io::Result<()> {
    let top = std::fs::metadata(src)?;
    std::fs::create_dir(dst)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(top.mode() & 0o777))?;
    keep_owner(dst, &top)?;
    for (rel, m) in walk(src)? {
        let (from, to) = (src.join(&rel), dst.join(&rel));
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            continue;
        }
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o777))?;
        }
        keep_owner(&to, &m)?;
    }
    Ok(())
}

/// Bring the job's changes in `copy` back into the workspace `dst`.
pub fn copy_back(copy: &Path, dst: &Path) -> std::io::Result<CopyBack> {
    let root = crate::fileio::open_root(dst)
        .map_err(|e| std::io::Error::other(e.refusal().message.clone()))?;
    let mut report = CopyBack::default();
    let copied = walk(copy)?;
    for (rel, m) in &copied {
        let ft = m.file_type();
        if ft.is_dir() {
            continue;
        }
        let theirs = std::fs::symlink_metadata(dst.join(rel)).ok();
        if ft.is_symlink() {
            let same = theirs.as_ref().is_some_and(|t| t.file_type().is_symlink())
                && std::fs::read_link(dst.join(rel)).ok()
                    == std::fs::read_link(copy.join(rel)).ok();
            if !same {
                report.skipped.push(rel.clone());
            }
            continue;
        }
        if !ft.is_file() {
            report.skipped.push(rel.clone());
            continue;
        }
        let content = std::fs::read(copy.join(rel))?;
        match &theirs {
            Some(t) if !t.is_file() => {
                report.skipped.push(rel.clone());
                continue;
            }
            Some(t)
                if t.len() == content.len() as u64
                    && std::fs::read(dst.join(rel)).ok().as_deref() == Some(&content[..]) =>
            {
                continue;
            }
            _ => {}
        }
        let owner = theirs
            .as_ref()
            .map(|t| (t.uid(), t.gid()))
            .or_else(|| std::fs::metadata(dst).ok().map(|t| (t.uid(), t.gid())));
        crate::fileio::write_file(
            &root,
            rel,
            &content,
            crate::fileio::WriteOptions {
                mkdir_parents: true,
                owner,
                cap: u64::MAX,
                read_only_mount: false,
            },
        )
        .map_err(|e| std::io::Error::other(e.refusal().message.clone()))?;
        // The job's mode bits (never setuid/setgid/sticky), set on what was just written.
        let fd = crate::fileio::openat::openat2(
            root.raw(),
            rel,
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )
        .map_err(std::io::Error::from)?;
        nix::sys::stat::fchmod(
            &fd,
            nix::sys::stat::Mode::from_bits_truncate(m.mode() & 0o777),
        )
        .map_err(std::io::Error::from)?;
        report.written.push(rel.clone());
    }
    let in_copy: std::collections::HashSet<&PathBuf> = copied.iter().map(|(r, _)| r).collect();
    for (rel, _) in walk(dst)? {
        if !in_copy.contains(&rel)
            && rel
                .parent()
                .is_none_or(|p| p.as_os_str().is_empty() || in_copy.contains(&p.to_path_buf()))
        {
            report.deleted_in_copy.push(rel);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_back_as_regular_files_only_and_nothing_is_deleted() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let (ws, copy) = (base.join("ws"), base.join("copy"));
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::write(ws.join("src/a.txt"), "a").unwrap();
        std::fs::write(ws.join("keep.txt"), "keep").unwrap();
        std::fs::write(ws.join("same.txt"), "same").unwrap();
        std::os::unix::fs::symlink("src/a.txt", ws.join("link")).unwrap();
        copy_in(&ws, &copy).unwrap();
        assert_eq!(
            std::fs::read_link(copy.join("link")).unwrap(),
            Path::new("src/a.txt")
        );
        // The job: changes a file, adds an executable one in a new directory, deletes one,
        // plants a symlink to /etc and replaces a file with a link.
        std::fs::write(copy.join("src/a.txt"), "changed").unwrap();
        std::fs::create_dir(copy.join("out")).unwrap();
        std::fs::write(copy.join("out/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            copy.join("out/run.sh"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::remove_file(copy.join("keep.txt")).unwrap();
        std::os::unix::fs::symlink("/etc", copy.join("etc-link")).unwrap();
        std::fs::remove_file(copy.join("same.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", copy.join("same.txt")).unwrap();
        let r = copy_back(&copy, &ws).unwrap();
        assert_eq!(
            r.written,
            vec![PathBuf::from("out/run.sh"), PathBuf::from("src/a.txt")]
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("src/a.txt")).unwrap(),
            "changed"
        );
        assert_eq!(
            std::fs::metadata(ws.join("out/run.sh")).unwrap().mode() & 0o7777,
            0o755,
            "exec bit kept, setuid dropped"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("keep.txt")).unwrap(),
            "keep"
        );
        assert_eq!(r.deleted_in_copy, vec![PathBuf::from("keep.txt")]);
        assert!(r.skipped.contains(&PathBuf::from("etc-link")));
        assert!(r.skipped.contains(&PathBuf::from("same.txt")));
        assert!(!ws.join("etc-link").exists());
        assert_eq!(
            std::fs::read_to_string(ws.join("same.txt")).unwrap(),
            "same"
        );
        // A second pass changes nothing.
        assert!(copy_back(&copy, &ws).unwrap().written.is_empty());
    }

    #[test]
    fn a_symlink_in_the_workspace_is_never_written_through() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let (ws, copy, outside) = (base.join("ws"), base.join("copy"), base.join("outside"));
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(ws.join("dir")).unwrap();
        copy_in(&ws, &copy).unwrap();
        // Meanwhile someone replaced the workspace's dir with a link outside.
        std::fs::remove_dir(ws.join("dir")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("dir")).unwrap();
        std::fs::write(copy.join("dir/x"), "x").unwrap();
        assert!(copy_back(&copy, &ws).is_err());
        assert!(!outside.join("x").exists());
    }
}
