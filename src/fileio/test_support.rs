//! Test fixture: a temp dir holding `root/` (the "mount root" the container controls) and
//! `outside/` (host files that must stay untouched), with a canary in `outside/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(crate) const CANARY: &[u8] = b"CANARY: host secret outside the mount root\n";

pub(crate) struct Fixture {
    _tmp: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
    pub outside: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        // Canonical, as the mount plan's host paths are (open_root refuses symlinks).
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("canary"), CANARY).unwrap();
        Fixture {
            _tmp: tmp,
            base,
            root,
            outside,
        }
    }

    /// Every entry under `outside/` with its content (files) and mtime.
    pub fn outside_snapshot(&self) -> BTreeMap<PathBuf, (Option<Vec<u8>>, SystemTime)> {
        snapshot(&self.outside)
    }

    /// Names of temp files left anywhere under the root.
    pub fn leftover_temps(&self) -> Vec<PathBuf> {
        snapshot(&self.root)
            .into_keys()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".clawden-tmp-"))
            })
            .collect()
    }
}

pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Option<Vec<u8>>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if md.is_file() {
                Some(std::fs::read(e.path()).unwrap())
            } else {
                None
            };
            if md.is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path(), (content, md.modified().unwrap()));
        }
    }
    out
}
