//! Process trees through `/proc/<pid>/task/<tid>/children`.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::HashSet;

/// Direct children of `pid` (all its threads' children).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let mut path = task.path();
        path.push("children");
        if let Ok(s) = std::fs::read_to_string(&path) {
            out.extend(
                s.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Every descendant of `pid` (not `pid` itself), parents before their children.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut stack = children(pid);
    while let Some(p) = stack.pop() {
        if p <= 1 || !seen.insert(p) {
            continue;
        }
        out.push(p);
        stack.extend(children(p));
    }
    out
}

/// A zombie (dead, waiting to be reaped), or gone.
pub fn is_dead(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // "pid (comm) S ...": comm may hold anything, so look after the last ')'.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_ascii_whitespace().next());
    matches!(state, Some("Z") | Some("X") | None)
}

/// Send `sig` to every live descendant of `pid`; returns how many live ones were found.
pub fn signal_descendants(pid: i32, sig: Signal) -> usize {
    let mut live = 0;
    for p in descendants(pid) {
        if !is_dead(p) {
            live += 1;
            let _ = kill(Pid::from_raw(p), sig);
        }
    }
    live
}

/// SIGKILL every descendant of `pid`, repeating until none is found (a process forking while
/// we walk is caught on the next round). Does not reap: the caller (or their reaper) does.
/// Bounded to a number of rounds so that an unkillable tree cannot hang the caller.
pub fn kill_descendants(pid: i32) {
    for _ in 0..200 {
        if signal_descendants(pid, Signal::SIGKILL) == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
