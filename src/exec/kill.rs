//! Killing every process of one call: the processes whose environment carries the call's marker
//! (`CLAWDEN_CALL=<id>`, a fresh UUID), found by scanning `/proc` — on the host for direct calls
//! and, for a local engine, for sandboxed ones (container processes are host processes). Re-runs
//! until a scan finds none, so a process forking while it is being killed is caught too.

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

/// One pass over `/proc`: SIGKILL every process carrying the marker.
pub fn kill_marked_once(call_id: &str) -> KillReport {
    let marker = format!("CLAWDEN_CALL={call_id}").into_bytes();
    let me = std::process::id();
    let mut report = KillReport::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return report;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        match std::fs::read(entry.path().join("environ")) {
            Ok(env) if has_marker(&env, &marker) => {
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    report.killed += 1;
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => report.unreadable += 1,
            Err(_) => {}
        }
    }
    report
}

/// Kill until a pass finds nothing (or `budget` runs out). Returns the total.
pub fn kill_marked(call_id: &str, budget: Duration) -> KillReport {
    let start = Instant::now();
    let mut total = KillReport::default();
    loop {
        let r = kill_marked_once(call_id);
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
