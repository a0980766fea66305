//! The one-shot reaper of a direct (host) call: `clawden __reap PARENT_PID UID GID -- ARGV…`.
//!
//! clawden's own process is multi-threaded, so it cannot fork and keep running Rust code in the
//! child; it execs this reaper instead. The reaper makes itself a child subreaper and starts the
//! command in a new session (as `UID:GID` when given) with the environment, working directory and
//! stdio it was given, so every descendant — backgrounded, double-forked, `setsid`, `env -i` —
//! reparents to it and never past it. When the command exits, the reaper kills every remaining
//! descendant and exits with the command's status (re-raising a deadly signal), so the status
//! comes from `waitpid`, never from output. SIGTERM (clawden's timeout) or the death of clawden
//! (`PR_SET_PDEATHSIG`, so `kill -9` of clawden still ends the call) makes it TERM the whole tree,
//! wait a grace period, and KILL what is left.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use std::ffi::CString;
use std::time::{Duration, Instant};

/// The hidden subcommand that runs [`main`].
pub const SUBCOMMAND: &str = "__reap";
/// How long the tree gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// Every live descendant of this process (depth-first from its children).
fn descendants() -> Vec<Pid> {
    let mut out = Vec::new();
    let mut todo = vec![std::process::id() as i32];
    while let Some(pid) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(t.path().join("children")) else {
                continue;
            };
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                out.push(Pid::from_raw(c));
                todo.push(c);
            }
        }
    }
    out
}

fn signal_all(sig: Signal) -> usize {
    let pids = descendants();
    for p in &pids {
        let _ = nix::sys::signal::kill(*p, sig);
    }
    pids.len()
}

/// Reap whatever has exited; returns the command's status when it is among them.
fn reap(cmd: Pid) -> Option<WaitStatus> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(s) => {
                if s.pid() == Some(cmd) {
                    found = Some(s);
                }
            }
        }
    }
}

/// SIGKILL the whole tree until nothing is left, reaping as it goes.
fn kill_everything(cmd: Pid, status: &mut Option<WaitStatus>) {
    for _ in 0..1000 {
        if let Some(s) = reap(cmd) {
            *status = Some(s);
        }
        if signal_all(Signal::SIGKILL) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn exit_like(status: Option<WaitStatus>) -> ! {
    match status {
        Some(WaitStatus::Exited(_, code)) => std::process::exit(code),
        Some(WaitStatus::Signaled(_, sig, _)) => {
            // Die of the same signal, so the caller's waitpid sees it.
            // SAFETY: resetting a signal to its default action is sound at any point.
            unsafe {
                let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
            }
            let _ = SigSet::all().thread_unblock();
            let _ = nix::sys::signal::raise(sig);
            std::process::exit(128 + sig as i32)
        }
        _ => std::process::exit(125),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("clawden: reaper: {msg}");
    std::process::exit(125)
}

/// Entry point: `args` are the words after [`SUBCOMMAND`].
pub fn main(args: &[String]) -> ! {
    let (parent, uid, gid, argv) = match args {
        [parent, uid, gid, dashdash, argv @ ..] if dashdash == "--" && !argv.is_empty() => {
            (parent, uid, gid, argv)
        }
        _ => fail("usage: __reap PARENT_PID UID|- GID|- -- ARGV..."),
    };
    let parent: i32 = parent.parse().unwrap_or_else(|_| fail("bad parent pid"));
    let ids = |v: &str| (v != "-").then(|| v.parse::<u32>().unwrap_or_else(|_| fail("bad id")));
    let (uid, gid) = (ids(uid), ids(gid));
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_else(|_| fail("NUL in argv")))
        .collect();

    let _ = nix::sys::prctl::set_dumpable(false);
    if nix::sys::prctl::set_child_subreaper(true).is_err() {
        fail("cannot become a child subreaper");
    }
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    let mut watched = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        watched.add(s);
    }
    if watched.thread_block().is_err() {
        fail("cannot block signals");
    }
    let sfd =
        SignalFd::with_flags(&watched, SfdFlags::SFD_CLOEXEC).unwrap_or_else(|_| fail("signalfd"));
    // clawden died before we could ask to be told: behave as if told.
    let orphaned = nix::unistd::getppid().as_raw() != parent;

    // SAFETY: this process is single-threaded (it was just exec'd), so the child may run
    // ordinary code before execve.
    let cmd = match unsafe { nix::unistd::fork() } {
        Err(_) => fail("fork"),
        Ok(ForkResult::Child) => {
            let _ = SigSet::all().thread_unblock();
            let _ = nix::unistd::setsid();
            if let Some(g) = gid
                && (nix::unistd::setgroups(&[]).is_err() || nix::unistd::setgid(g.into()).is_err())
            {
                fail("cannot set the call's group");
            }
            if let Some(u) = uid
                && nix::unistd::setuid(u.into()).is_err()
            {
                fail("cannot set the call's user");
            }
            let e = nix::unistd::execv(&argv[0], &argv);
            eprintln!("clawden: cannot run {:?}: {e:?}", argv[0]);
            // SAFETY: _exit in the forked child, without running the parent's atexit handlers.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    // The reaper holds no end of the call's pipes: they close when the last process does.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this single-threaded process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let mut status: Option<WaitStatus> = None;
    let mut term_at: Option<Instant> = orphaned.then(Instant::now);
    if orphaned {
        signal_all(Signal::SIGTERM);
    }
    loop {
        if let Some(s) = reap(cmd) {
            status = Some(s);
        }
        if status.is_some() {
            // The command is done: nothing it started outlives it.
            kill_everything(cmd, &mut status);
            exit_like(status);
        }
        if let Some(t) = term_at
            && t.elapsed() >= GRACE
        {
            kill_everything(cmd, &mut status);
            exit_like(status);
        }
        let wait_ms: u16 = match term_at {
            Some(t) => GRACE.saturating_sub(t.elapsed()).as_millis().min(1000) as u16 + 1,
            None => 1000,
        };
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&sfd),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait_ms)).unwrap_or(0) > 0
            && let Ok(Some(info)) = sfd.read_signal()
        {
            let sig = info.ssi_signo as i32;
            let from_parent = info.ssi_pid as i32 == parent || info.ssi_pid == 0;
            let stop = from_parent
                && [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]
                    .iter()
                    .any(|s| *s as i32 == sig);
            if stop && term_at.is_none() {
                term_at = Some(Instant::now());
                signal_all(Signal::SIGTERM);
            }
        }
        // PDEATHSIG arrives with the kernel as sender; a reparented reaper also means clawden
        // is gone.
        if term_at.is_none() && nix::unistd::getppid().as_raw() != parent {
            term_at = Some(Instant::now());
            signal_all(Signal::SIGTERM);
        }
    }
}
