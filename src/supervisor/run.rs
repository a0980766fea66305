//! Disposable sandboxes (`clawden run`): who owns one, where its files live, and how what is
//! left by a run whose owner died is found and removed.
//!
//! A run keeps everything under `<state>/runs/<key>/`: a `run.json` record (the owning
//! process, the container's name, whether it was kept), the private copy of the workspace
//! (`work/`, with `--copy`) and the sandbox workspace root. Its container carries the owner in
//! a label too. The owner is a process on this boot: pid and start time, so a recycled pid is
//! never mistaken for it. `clawden prune` and every `clawden run` remove the runs whose owner is
//! gone (unless kept on failure): container, staged mounts and directory.

use super::{Supervisor, SupervisorError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The label naming a disposable sandbox's owner (`<boot id>/<pid>/<start time>`).
pub const OWNER_LABEL: &str = "clawden.run.owner";

/// A process on this host's current boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub boot_id: String,
    pub pid: i32,
    pub start: u64,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            boot_id: boot_id(),
            pid,
            start: crate::engine::remembered::start_time(pid).unwrap_or(0),
        }
    }

    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.boot_id, self.pid, self.start)
    }

    pub fn parse(label: &str) -> Option<Owner> {
        let mut it = label.split('/');
        let (boot_id, pid, start) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        Some(Owner {
            boot_id: boot_id.to_string(),
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    /// Is this process still running (same boot, same pid, same start time)?
    pub fn alive(&self) -> bool {
        !self.boot_id.is_empty()
            && self.boot_id == boot_id()
            && crate::engine::remembered::start_time(self.pid) == Some(self.start)
    }
}

/// What `<state>/runs/<key>/run.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub key: String,
    pub owner: Owner,
    /// Known once the sandbox is planned.
    pub container: Option<String>,
    /// Kept after a failure (`--keep-on-failure`): removed only on request.
    pub kept: bool,
    /// How to plan it again (`clawden exec --run`): the config and profile of the run, and
    /// its own layer.
    pub config: Option<PathBuf>,
    pub profile: Option<String>,
    pub layer: String,
}

/// The directory of run `key` under a state directory.
pub fn run_dir(state_dir: &Path, key: &str) -> PathBuf {
    state_dir.join("runs").join(key)
}

/// Is `key` a run key clawden makes (`run-` and 12 lowercase hex digits)? Keeps a key given on
/// the command line from naming any other directory.
pub fn valid_key(key: &str) -> bool {
    key.strip_prefix("run-").is_some_and(|h| {
        h.len() == 12
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A new run key.
pub fn new_key() -> String {
    format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub fn write_record(state_dir: &Path, r: &RunRecord) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = run_dir(state_dir, &r.key);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".run-").tempfile_in(&dir)?;
    serde_json::to_writer_pretty(&mut tmp, r)?;
    tmp.persist(dir.join("run.json")).map_err(|e| e.error)?;
    Ok(())
}

pub fn read_record(state_dir: &Path, key: &str) -> Option<RunRecord> {
    let text = std::fs::read_to_string(run_dir(state_dir, key).join("run.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Remove a run's directory (after its container is gone). Staged mounts never live here,
/// but a bind mount someone made under it is unmounted first rather than deleted through.
pub fn remove_dir(state_dir: &Path, key: &str) -> std::io::Result<()> {
    let dir = run_dir(state_dir, key);
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut points: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Supervisor {
    /// Remove run `key`: its sandbox (if it is a disposable one), its staged mounts and agent
    /// channel, its state entry and its directory.
    pub async fn remove_run(&self, key: &str) -> Result<(), SupervisorError> {
        let state_dir = self.state.dir().to_path_buf();
        if let Some(name) = read_record(&state_dir, key).and_then(|r| r.container)
            && let Some(found) = self.engine.inspect(&name).await?
            && found.label(OWNER_LABEL).is_some()
        {
            self.remove_sandbox(&found.id, &name).await?;
            let _ = self.state.forget(&name);
        }
        let key = key.to_string();
        tokio::task::spawn_blocking(move || remove_dir(&state_dir, &key))
            .await
            .map_err(|e| SupervisorError::Io(e.to_string()))?
            .map_err(|e| SupervisorError::Io(e.to_string()))
    }

    /// Remove every run of this state directory whose owner is gone and that was not kept.
    /// Returns their keys and container names.
    pub async fn sweep_runs(&self) -> Result<Vec<(String, Option<String>)>, SupervisorError> {
        let runs = self.state.dir().join("runs");
        let keys: Vec<String> = match std::fs::read_dir(&runs) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|k| valid_key(k))
                .collect(),
            Err(_) => return Ok(vec![]),
        };
        let mut removed = Vec::new();
        for key in keys {
            let record = read_record(self.state.dir(), &key);
            let dead = match &record {
                Some(r) => !r.kept && !r.owner.alive(),
                // No record: a run killed while making its directory (or a stray one).
                None => std::fs::metadata(runs.join(&key))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(60)),
            };
            if dead {
                self.remove_run(&key).await?;
                removed.push((key, record.and_then(|r| r.container)));
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_this_process_on_this_boot_only() {
        let me = Owner::current();
        assert!(me.alive());
        assert_eq!(Owner::parse(&me.label()), Some(me.clone()));
        for other in [
            Owner {
                start: me.start + 1,
                ..me.clone()
            },
            Owner {
                boot_id: "another-boot".into(),
                ..me.clone()
            },
            Owner {
                pid: i32::MAX,
                ..me.clone()
            },
        ] {
            assert!(!other.alive(), "{other:?}");
        }
        for bad in ["", "a/b", "b/1/2/3", "b/x/2", "b/1/-2"] {
            assert_eq!(Owner::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn run_keys_name_only_run_directories() {
        let k = new_key();
        assert!(valid_key(&k), "{k}");
        for bad in [
            "run-",
            "run-../../etc",
            "run-0123456789AB",
            "x-0123456789ab",
            "run-0123456789abc",
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
        let d = tempfile::tempdir().unwrap();
        let r = RunRecord {
            key: k.clone(),
            owner: Owner::current(),
            container: Some("c".into()),
            kept: false,
            config: None,
            profile: Some("ci".into()),
            layer: "{}".into(),
        };
        write_record(d.path(), &r).unwrap();
        assert_eq!(read_record(d.path(), &k), Some(r));
        remove_dir(d.path(), &k).unwrap();
        assert!(!run_dir(d.path(), &k).exists());
        remove_dir(d.path(), &k).unwrap();
    }
}
