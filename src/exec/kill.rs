//! Killing every process of one call: the processes whose environment carries the call's marker
//! (`CLAWDEN_CALL=<id>`, a fresh UUID), and every process in the session of a marked session
//! leader (the call's wrapper leads its own session: Docker's exec does setsid, and host calls are
//! started with setsid), which catches children that cleared their environment. Found by scanning
//! `/proc` — on the host for direct calls and, for a local engine, for sandboxed ones (container
//! processes are host processes). Re-runs until a scan finds none, so a process forking while it
//! is being killed is caught too. Only a process that both clears its environment and starts a
//! new session escapes; the container's pids limit and its lifetime still bound it.

use std::collections::BTreeSet;

use std::time::{Duration, Instant};

/// What a scan-and-kill achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KillReport {
    pub killed: usize,
    /// Processes whose environment could not be read (another user, no privilege).
    pub unreadable: usize,
}

fn has_marker(environ: &[u8], marker: &[u8]) -> bool {
    environ.split(|&b| b == 0).any(|kv| kv == marker)
}

/// (process group, session) of a live process, from `/proc/<pid>/stat` (after the last `)` of
/// comm). `None` for zombies and dead processes: they are already killed, only not yet reaped.
fn pgrp_and_session(stat: &str) -> Option<(i32, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    if matches!(f.next()?, "Z" | "X" | "x") {
        return None;
    }
    let _ppid = f.next()?;
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// One pass over `/proc`: SIGKILL every process carrying the marker or living in the session of
/// a marked session leader. `sessions` remembers those sessions across passes (the leader may
/// already be dead in a later pass).
fn kill_pass(call_id: &str, sessions: &mut BTreeSet<i32>) -> KillReport {
    let marker = format!("CLAWDEN_CALL={call_id}").into_bytes();
    let me = std::process::id() as i32;
    let my_session = nix::unistd::getsid(None).map(|p| p.as_raw()).unwrap_or(-1);
    let mut report = KillReport::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return report;
    };
    let mut procs = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let session = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(pgrp_and_session)
            .map(|(_, s)| s);
        let marked = match std::fs::read(entry.path().join("environ")) {
            Ok(env) => has_marker(&env, &marker),
            Err(e) => {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    report.unreadable += 1;
                }
                false
            }
        };
        if marked && session == Some(pid) && pid != my_session {
            sessions.insert(pid);
        }
        procs.push((pid, marked, session));
    }
    for (pid, marked, session) in procs {
        let in_session = session.is_some_and(|s| sessions.contains(&s) && s != my_session);
        if (marked || in_session)
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        {
            report.killed += 1;
        }
    }
    report
}

/// One pass over `/proc` without session memory (for checks).
pub fn kill_marked_once(call_id: &str) -> KillReport {
    kill_pass(call_id, &mut BTreeSet::new())
}

/// Kill until a pass finds nothing (or `budget` runs out). Returns the total.
pub fn kill_marked(call_id: &str, budget: Duration) -> KillReport {
    let start = Instant::now();
    let mut sessions = BTreeSet::new();
    let mut total = KillReport::default();
    loop {
        let r = kill_pass(call_id, &mut sessions);
        total.killed += r.killed;
        total.unreadable = r.unreadable;
        if r.killed == 0 || start.elapsed() > budget {
            return total;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// After a call ended normally: kill what it left (marked processes and the sessions of marked
/// leaders still alive). Unlike [`kill_marked`], sessions are not remembered across passes: a
/// finished call's dead leader's pid may already be a new process of another call.
pub fn kill_leftovers(call_id: &str, budget: Duration) -> KillReport {
    let start = Instant::now();
    let mut total = KillReport::default();
    loop {
        let r = kill_pass(call_id, &mut BTreeSet::new());
        total.killed += r.killed;
        total.unreadable = r.unreadable;
        if r.killed == 0 || start.elapsed() > budget {
            return total;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The in-container fallback (remote engines, or no permission to read the processes' environ on
/// this host): the same scan run by the sandbox user inside the container.
pub const IN_CONTAINER_KILL: &str = r#"for round in 1 2 3 4 5 6 7 8; do
  found=0
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "CLAWDEN_CALL=$1"; then kill -9 "$p" 2>/dev/null && found=1; fi
  done
  [ "$found" = 0 ] && break
done"#;

/// The container's OOM-kill counter, read from its memory cgroup on this host (cgroup v1 or v2,
/// cgroupfs or systemd driver). `None` when not readable (remote engine, other layout).
pub fn oom_kill_count(container_id: &str) -> Option<u64> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{container_id}/memory.oom_control"),
        format!(
            "/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope/memory.oom_control"
        ),
        format!("/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.events"),
        format!("/sys/fs/cgroup/docker/{container_id}/memory.events"),
    ];
    candidates.iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse().ok())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        assert_eq!(
            pgrp_and_session("42 (a) b) (c) S 1 40 41 0 -1"),
            Some((40, 41))
        );
        assert_eq!(pgrp_and_session("garbage"), None);
        assert_eq!(pgrp_and_session("42 (a) Z 1 40 41 0 -1"), None);
    }

    #[test]
    fn children_that_clear_their_environment_die_with_the_session() {
        use std::os::unix::process::CommandExt;
        let id = super::super::new_call_id();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "env -i /bin/sleep 301 & sleep 300"])
            .env("CLAWDEN_CALL", &id);
        // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut leader = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let sid = leader.id() as i32;
        let r = kill_marked(&id, Duration::from_secs(2));
        assert!(r.killed >= 3, "{r:?}");
        let _ = leader.wait();
        std::thread::sleep(Duration::from_millis(100));
        let left: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .as_deref()
                    .and_then(pgrp_and_session)
                    .is_some_and(|(_, s)| s == sid)
            })
            .collect();
        assert!(left.is_empty(), "left in the session: {left:?}");
    }

    #[test]
    fn marker_matching_is_exact() {
        assert!(has_marker(
            b"A=1\0CLAWDEN_CALL=abc\0B=2",
            b"CLAWDEN_CALL=abc"
        ));
        assert!(!has_marker(b"CLAWDEN_CALL=abcd\0", b"CLAWDEN_CALL=abc"));
        assert!(!has_marker(b"XCLAWDEN_CALL=abc\0", b"CLAWDEN_CALL=abc"));
    }

    #[test]
    fn kills_marked_processes_including_reparented_ones_and_spares_others() {
        let id = super::super::new_call_id();
        // A double fork: the grandchild is re-parented away from the shell.
        let mut marked = std::process::Command::new("/bin/sh")
            .args(["-c", "(sleep 300 &) ; sleep 300"])
            .env("CLAWDEN_CALL", &id)
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("/bin/sleep")
            .arg("300")
            .env("CLAWDEN_CALL", "someone-else")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let r = kill_marked(&id, Duration::from_secs(2));
        assert!(r.killed >= 3, "{r:?}");
        let _ = marked.wait();
        assert_eq!(kill_marked_once(&id).killed, 0, "nothing marked is left");
        assert!(
            other.try_wait().unwrap().is_none(),
            "an unmarked process survives"
        );
        other.kill().unwrap();
        let _ = other.wait();
    }
}
