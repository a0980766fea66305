//! Last-used times, persisted in the state directory. Docker labels are the truth about which
//! sandboxes exist; this file only remembers when each was last used. Written atomically (temp
//! file, fsync, rename) under a lock; a corrupt or truncated file is reported and rebuilt.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    pub version: u32,
    /// container name → last use, ms since the epoch.
    pub last_used_ms: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: &Path) -> Self {
        StateStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn ensure_dir(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }

    fn lock(&self) -> io::Result<Flock<File>> {
        self.ensure_dir()?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("state.lock"))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))
    }

    /// Read the state. A missing file is empty; a corrupt one is empty plus a warning.
    pub fn load(&self) -> (StateFile, Option<String>) {
        match std::fs::read(self.path()) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(s) => (s, None),
                Err(e) => (
                    StateFile {
                        version: STATE_VERSION,
                        ..Default::default()
                    },
                    Some(format!(
                        "state file {} is corrupt ({e}); rebuilt from container labels",
                        self.path().display()
                    )),
                ),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                StateFile {
                    version: STATE_VERSION,
                    ..Default::default()
                },
                None,
            ),
            Err(e) => (
                StateFile {
                    version: STATE_VERSION,
                    ..Default::default()
                },
                Some(format!(
                    "state file {} unreadable ({e}); using container labels",
                    self.path().display()
                )),
            ),
        }
    }

    /// Atomic (temp file + rename), not synced: last-use times are advisory (idle pruning, the
    /// hot window), so a crash may lose the latest updates but never leaves a torn file — and a
    /// call does not pay for two fsyncs. A file that still reads as corrupt is rebuilt.
    fn write(&self, s: &StateFile) -> io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&serde_json::to_vec_pretty(s).map_err(io::Error::other)?)?;
        tmp.persist(self.path()).map_err(|e| e.error)?;
        Ok(())
    }

    /// Apply `f` to the state under the lock and write it back atomically.
    pub fn update(&self, f: impl FnOnce(&mut StateFile)) -> io::Result<Option<String>> {
        let _guard = self.lock()?;
        let (mut s, warning) = self.load();
        s.version = STATE_VERSION;
        f(&mut s);
        self.write(&s)?;
        Ok(warning)
    }

    pub fn touch(&self, name: &str, now_ms: u64) -> io::Result<Option<String>> {
        self.update(|s| {
            s.last_used_ms.insert(name.to_string(), now_ms);
        })
    }

    pub fn forget(&self, name: &str) -> io::Result<Option<String>> {
        self.update(|s| {
            s.last_used_ms.remove(name);
        })
    }
}

/// A per-name exclusive lock across threads and processes (flock on its own open file
/// description; released by the kernel if the holder is killed).
pub fn lock_name(dir: &Path, name: &str) -> io::Result<Flock<File>> {
    use std::os::unix::fs::DirBuilderExt;
    let locks = dir.join("locks");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&locks)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join(format!("{name}.lock")))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_recovery() {
        let d = tempfile::tempdir().unwrap();
        let st = StateStore::new(d.path());
        assert_eq!(st.load().0.last_used_ms.len(), 0);
        st.touch("a", 5).unwrap();
        st.touch("b", 7).unwrap();
        assert_eq!(st.load().0.last_used_ms.get("a"), Some(&5));
        st.forget("a").unwrap();
        assert_eq!(st.load().0.last_used_ms.keys().collect::<Vec<_>>(), ["b"]);
        // Truncated file: reported, then rebuilt on the next update.
        let full = std::fs::read(d.path().join("state.json")).unwrap();
        std::fs::write(d.path().join("state.json"), &full[..full.len() / 2]).unwrap();
        let (s, warn) = st.load();
        assert!(s.last_used_ms.is_empty());
        assert!(warn.unwrap().contains("corrupt"));
        let warn = st.touch("c", 9).unwrap();
        assert!(warn.is_some());
        assert_eq!(
            st.load(),
            (
                StateFile {
                    version: 1,
                    last_used_ms: [("c".to_string(), 9)].into()
                },
                None
            )
        );
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let d = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let st = StateStore::new(d.path());
                std::thread::spawn(move || {
                    for j in 0..10 {
                        st.touch(&format!("c{i}-{j}"), j).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(StateStore::new(d.path()).load().0.last_used_ms.len(), 80);
    }
}
