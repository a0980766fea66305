//! The engine's `/version` answer, remembered between clawden processes.
//!
//! Every connect proves that the socket is served by a local Docker engine: the peer's
//! credentials (`SO_PEERCRED`, on every connect) and a `/version` answer (a Docker engine, on
//! this host's kernel, and its API version). On this machine `/version` takes about 6 ms of
//! dockerd's time — a quarter of a whole `clawden exec`. A one-shot CLI call therefore reuses
//! the answer that the *same daemon process* gave a previous call: the record names the socket
//! (device and inode), the serving process (pid and its start time) and the boot; any change,
//! or an age over [`MAX_AGE`], asks again. The record is clawden's own file (owner only,
//! never followed through a symlink); a record it did not write is ignored.

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The oldest answer reused.
pub const MAX_AGE_MS: u64 = 10 * 60 * 1000;

/// The record's file name in clawden's state directory.
pub const FILE: &str = "engine.json";

/// Who serves the socket, as precisely as the host can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub socket: PathBuf,
    pub socket_dev: u64,
    pub socket_ino: u64,
    pub peer_pid: i32,
    /// The peer's start time (clock ticks after boot, `/proc/<pid>/stat` field 22).
    pub peer_start: u64,
    pub boot_id: String,
}

impl Identity {
    /// The identity of `socket` served by `peer_pid`; `None` when any part cannot be read
    /// (then nothing is remembered or reused).
    pub fn of(socket: &Path, peer_pid: i32) -> Option<Identity> {
        let meta = std::fs::metadata(socket).ok()?;
        Some(Identity {
            socket: socket.to_path_buf(),
            socket_dev: meta.dev(),
            socket_ino: meta.ino(),
            peer_pid,
            peer_start: start_time(peer_pid)?,
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()?
                .trim()
                .to_string(),
        })
    }
}

/// What a `/version` answer established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    pub identity: Identity,
    /// The API version spoken with this engine (major, minor).
    pub api: (usize, usize),
    pub at_ms: u64,
}

/// `/proc/<pid>/stat` field 22, after the command name (which may hold anything).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': state is field 3, so starttime (22) is the 20th of these.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The remembered API version for `id`, if the record is ours, for this very daemon process,
/// and young enough.
pub fn recall(dir: &Path, id: &Identity, now_ms: u64) -> Option<(usize, usize)> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(FILE))
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0
    {
        return None;
    }
    let mut text = String::new();
    f.by_ref().take(4096).read_to_string(&mut text).ok()?;
    let r: Record = serde_json::from_str(&text).ok()?;
    (r.identity == *id && r.at_ms <= now_ms && now_ms - r.at_ms <= MAX_AGE_MS).then_some(r.api)
}

/// Remember an answer (atomically, owner-only). Failing to is not an error: the next process
/// asks again.
pub fn remember(dir: &Path, record: &Record) {
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".engine-")
            .tempfile_in(dir)?;
        serde_json::to_writer(&mut tmp, record)?;
        tmp.persist(dir.join(FILE)).map_err(|e| e.error)?;
        Ok(())
    };
    if dir.is_dir()
        && let Err(e) = write()
    {
        tracing::debug!(
            "cannot remember the engine's answer in {}: {e}",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id() -> Identity {
        Identity::of(Path::new("/proc/self/exe"), std::process::id() as i32).unwrap()
    }

    #[test]
    fn an_answer_is_reused_only_for_the_same_daemon_process_and_while_young() {
        let dir = tempfile::tempdir().unwrap();
        let me = id();
        assert_eq!(
            recall(dir.path(), &me, 1000),
            None,
            "nothing remembered yet"
        );
        remember(
            dir.path(),
            &Record {
                identity: me.clone(),
                api: (1, 41),
                at_ms: 1000,
            },
        );
        assert_eq!(recall(dir.path(), &me, 1000), Some((1, 41)));
        assert_eq!(
            recall(dir.path(), &me, 1000 + MAX_AGE_MS + 1),
            None,
            "too old"
        );
        assert_eq!(recall(dir.path(), &me, 999), None, "from the future");
        for change in [
            |i: &mut Identity| i.peer_pid += 1,
            |i: &mut Identity| i.peer_start += 1,
            |i: &mut Identity| i.socket_ino += 1,
            |i: &mut Identity| i.socket_dev += 1,
            |i: &mut Identity| i.boot_id.push('x'),
            |i: &mut Identity| i.socket = "/other.sock".into(),
        ] {
            let mut other = me.clone();
            change(&mut other);
            assert_eq!(recall(dir.path(), &other, 1000), None, "{other:?}");
        }
    }

    #[test]
    fn a_record_readable_by_others_or_behind_a_symlink_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let me = id();
        let rec = Record {
            identity: me.clone(),
            api: (1, 41),
            at_ms: 5,
        };
        remember(dir.path(), &rec);
        let file = dir.path().join(FILE);
        assert_eq!(
            std::fs::metadata(&file).unwrap().mode() & 0o777,
            0o600,
            "owner only"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(recall(dir.path(), &me, 5), None);
        let elsewhere = tempfile::tempdir().unwrap();
        remember(elsewhere.path(), &rec);
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join(FILE), &file).unwrap();
        assert_eq!(recall(dir.path(), &me, 5), None);
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "{not json").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(recall(dir.path(), &me, 5), None);
    }
}
