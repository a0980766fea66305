//! The audit log: one JSON line per decision (allowed, refused, failed) in the state directory.
//! Never file contents or env values: paths, a digest of the command, codes, counts. Size-capped
//! with one rotation (`audit.log` → `audit.log.1`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const DEFAULT_MAX_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub time_ms: u64,
    pub session: String,
    pub agent: String,
    /// exec | read | write
    pub op: String,
    /// `host` or `container:<name>`
    pub target: String,
    /// The path, or `sha256:<12 hex> (<n> bytes)` of a command.
    pub subject: String,
    /// allowed | refused | error
    pub decision: String,
    /// The refusal or error code; empty when allowed.
    pub rule: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The service's caller (`SO_PEERCRED`): filled from [`CALLER`] when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<i32>,
}

/// Who asked, for calls the service carries (the CLI has no peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<i32>,
}

tokio::task_local! {
    /// The peer of the request being served; every audit line written in its scope carries it.
    pub static CALLER: Caller;
}

/// A short, non-reversible identifier of a command for the log.
pub fn command_digest(command: &str) -> String {
    let d = Sha256::digest(command.as_bytes());
    format!("sha256:{} ({} bytes)", &hex::encode(d)[..12], command.len())
}

#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
}

impl AuditLog {
    pub fn new(state_dir: &Path) -> Self {
        AuditLog {
            path: state_dir.join("audit.log"),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, e: &AuditEntry) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _lock = crate::supervisor::state::lock_name(
            self.path.parent().unwrap_or(Path::new(".")),
            "audit",
        )?;
        if std::fs::metadata(&self.path)
            .map(|m| m.len() >= self.max_bytes)
            .unwrap_or(false)
        {
            std::fs::rename(&self.path, self.path.with_extension("log.1"))?;
        }
        let mut e = e.clone();
        if e.peer_uid.is_none()
            && let Ok(c) = CALLER.try_with(|c| *c)
        {
            e.peer_uid = Some(c.uid);
            e.peer_pid = c.pid;
        }
        let mut line = serde_json::to_vec(&e).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(&line)
    }

    /// Free space the log's filesystem must have for a call to be allowed.
    pub const MIN_FREE_BYTES: u64 = 64 * 1024;

    /// Can the decision about to be made be recorded? The log (and its directory) opens for
    /// appending and its filesystem has room. Checked before every call: a call whose audit
    /// entry cannot be written does not run (fail closed).
    pub fn ensure_writable(&self) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        let st = nix::sys::statvfs::fstatvfs(&f).map_err(io::Error::from)?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        if free < Self::MIN_FREE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("{free} bytes free for the audit log"),
            ));
        }
        Ok(())
    }

    /// Entries since `since_ms`, oldest first (both files, unparseable lines skipped).
    pub fn read_since(&self, since_ms: u64) -> Vec<AuditEntry> {
        let mut out = Vec::new();
        for p in [self.path.with_extension("log.1"), self.path.clone()] {
            if let Ok(text) = std::fs::read_to_string(&p) {
                out.extend(
                    text.lines()
                        .filter_map(|l| serde_json::from_str::<AuditEntry>(l).ok())
                        .filter(|e| e.time_ms >= since_ms),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_log_is_reported_before_the_call() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::new(d.path());
        log.ensure_writable().unwrap();
        // The log replaced by a directory (or any open failure): not writable.
        std::fs::remove_file(d.path().join("audit.log")).unwrap();
        std::fs::create_dir(d.path().join("audit.log")).unwrap();
        assert!(log.ensure_writable().is_err());
    }

    #[test]
    fn append_read_and_rotate() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::new(d.path()).with_max_bytes(600);
        for i in 0..20 {
            log.append(&AuditEntry {
                time_ms: i,
                op: "exec".into(),
                subject: command_digest("echo secret"),
                ..Default::default()
            })
            .unwrap();
        }
        assert!(d.path().join("audit.log.1").exists());
        // Rotation is checked before each append: the file exceeds the cap by at most one line.
        let one_line = std::fs::read_to_string(d.path().join("audit.log"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .len() as u64
            + 1;
        assert!(std::fs::metadata(d.path().join("audit.log")).unwrap().len() < 600 + one_line);
        let all = log.read_since(0);
        assert!(
            all.len() < 20 && !all.is_empty(),
            "older rotations are dropped"
        );
        assert_eq!(all.last().unwrap().time_ms, 19);
        assert_eq!(log.read_since(19).len(), 1);
        let text = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
        assert!(!text.contains("secret"));
    }
}
