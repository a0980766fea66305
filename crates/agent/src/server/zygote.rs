//! The zygote and the per-call reapers.
//!
//! The agent is multi-threaded, and forking a multi-threaded process without exec is unsafe
//! (another thread may hold a lock the child then waits on forever). So before any thread
//! exists the agent forks one single-threaded **zygote**. For each call the agent sends it a
//! spawn spec plus five fds (stdin, stdout, stderr, status pipe, cwd directory) over a Unix
//! socket (`SCM_RIGHTS`); the zygote forks a **reaper** R and answers with R's pid.
//!
//! R (never exec'd, dumpable 0 inherited, so sandbox processes can neither ptrace it nor open
//! `/proc/R/fd`): `setsid`, `PR_SET_CHILD_SUBREAPER`, blocks every catchable signal, forks the
//! command C, then loops on a signalfd (SIGCHLD, SIGTERM, SIGUSR1) reaping everything. TERM
//! and USR1 are obeyed only from the agent's pid: TERM signals the whole tree, USR1 kills it.
//! When C has exited R writes C's status to the status pipe (which only R holds: it is
//! `O_CLOEXEC`, so C never has it after exec), SIGKILLs every remaining descendant, reaps them
//! and exits. The status pipe's EOF therefore means "the whole tree is gone".
//!
//! The zygote is a subreaper too: an orphan that reparents to it (a reaper was SIGKILLed from
//! inside the sandbox) is killed with its whole tree.

use super::tree;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

/// Status record kinds written by a reaper (8 bytes each: kind u32 LE, value i32 LE).
pub const REC_STARTED: u32 = 1;
/// exec failed; value = errno.
pub const REC_START_FAILED: u32 = 2;
/// C exited; value = exit code.
pub const REC_EXITED: u32 = 3;
/// C was killed by a signal; value = signal number.
pub const REC_SIGNALED: u32 = 4;

/// Largest spawn spec accepted on the zygote channel.
const MAX_SPEC: usize = 4 << 20;

/// How long the zygote may take to answer a spawn request.
const SPAWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Number of fds passed with each spawn: stdin, stdout, stderr, status, cwd.
const NFDS: usize = 5;

/// What the reaper runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnSpec {
    /// argv; `argv[0]` is a path or a name looked up in `path`.
    pub argv: Vec<String>,
    /// `NAME=value` entries, exactly.
    pub env: Vec<String>,
    /// Directories searched when `argv[0]` has no `/`.
    pub path: Vec<String>,
}

/// The agent's handle on its zygote.
#[derive(Debug)]
pub struct Zygote {
    chan: Mutex<UnixStream>,
    pid: i32,
}

impl Zygote {
    /// Fork the zygote. Must be called while the process is still single-threaded.
    pub fn start() -> io::Result<Zygote> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let agent_pid = std::process::id() as i32;
        // SAFETY: called before any thread exists (server::main forks it first thing), so the
        // child is a copy of a single-threaded process and may do anything.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(ours);
                zygote_main(theirs, agent_pid)
            }
            ForkResult::Parent { child } => {
                drop(theirs);
                let chan = UnixStream::from(ours);
                // A zygote that does not answer (stopped by the sandbox) must not hang every
                // call: see `spawn`.
                chan.set_read_timeout(Some(SPAWN_TIMEOUT))?;
                chan.set_write_timeout(Some(SPAWN_TIMEOUT))?;
                Ok(Zygote {
                    chan: Mutex::new(chan),
                    pid: child.as_raw(),
                })
            }
        }
    }

    /// The zygote's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Ask the zygote for a reaper running `spec` with `fds` = [stdin, stdout, stderr, status,
    /// cwd]. Returns the reaper's pid.
    pub fn spawn(&self, spec: &SpawnSpec, fds: [BorrowedFd<'_>; NFDS]) -> io::Result<i32> {
        let body = serde_json::to_vec(spec).map_err(io::Error::other)?;
        if body.len() > MAX_SPEC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spawn spec too large",
            ));
        }
        let mut msg = (body.len() as u32).to_le_bytes().to_vec();
        msg.extend_from_slice(&body);
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut chan = self
            .chan
            .lock()
            .map_err(|_| io::Error::other("zygote channel poisoned"))?;
        let v = match Self::exchange(&mut chan, &msg, &raw) {
            Ok(v) => v,
            Err(e) => {
                // The channel is out of step (or the zygote is stopped or gone): no call can
                // start safely any more. Kill it; the agent's reaper thread then exits the
                // agent, and the supervisor replaces the sandbox.
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                return Err(e);
            }
        };
        // The zygote's own answer: a reaper pid, or why it could not fork one (e.g. EAGAIN at
        // the sandbox's pids limit — a refusal of this call, not a broken agent).
        if v > 0 {
            Ok(v)
        } else {
            Err(io::Error::from_raw_os_error(-v))
        }
    }

    fn exchange(chan: &mut UnixStream, msg: &[u8], raw: &[RawFd]) -> io::Result<i32> {
        let sent = loop {
            match sendmsg::<()>(
                chan.as_raw_fd(),
                &[IoSlice::new(msg)],
                &[ControlMessage::ScmRights(raw)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                r => break r?,
            }
        };
        chan.write_all(&msg[sent..])?;
        let mut reply = [0u8; 4];
        chan.read_exact(&mut reply)?;
        Ok(i32::from_le_bytes(reply))
    }
}

fn zygote_main(chan: OwnedFd, agent_pid: i32) -> ! {
    let code = match zygote_loop(chan, agent_pid) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: _exit never returns; no destructors or atexit handlers of the agent may run here.
    unsafe { libc::_exit(code) }
}

/// Move `fd` to exactly `target` (no CLOEXEC).
fn move_fd(fd: OwnedFd, target: RawFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() == target {
        return Ok(fd);
    }
    // SAFETY: dup2 onto a number we own from now on (whatever was there is replaced).
    let r = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dup2 returned `target`, a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(target) })
}

fn zygote_loop(chan: OwnedFd, agent_pid: i32) -> io::Result<()> {
    // Keep nothing of the agent's but the channel: fd 3 is the channel, 0-2 are /dev/null.
    let chan = move_fd(chan, 3)?;
    // SAFETY: plain libc call closing every fd above 3 (none is owned by Rust code here).
    if unsafe { libc::close_range(4, u32::MAX, 0) } != 0 {
        // close_range unavailable (old kernel or a seccomp profile without it): list them.
        let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 3)
            .collect();
        for fd in open {
            // SAFETY: as above; EBADF for the listing's own (already closed) fd is harmless.
            unsafe { libc::close(fd) };
        }
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: replaces stdio with /dev/null.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    drop(null);
    // CLOEXEC on the channel: never inherited past an exec.
    nix::fcntl::fcntl(
        &chan,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    nix::sys::prctl::set_child_subreaper(true)?;

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let mut chan = UnixStream::from(chan);
    let mut reapers: HashSet<i32> = HashSet::new();

    loop {
        let (chan_ready, sig_ready) = {
            let mut fds = [
                PollFd::new(chan.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(500u16)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |f: &PollFd| f.revents().is_none_or(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if sig_ready {
            while let Ok(Some(_)) = sfd.read_signal() {}
        }
        reap(&mut reapers);
        kill_orphans(&reapers);
        if chan_ready {
            match recv_spawn(&mut chan)? {
                None => return Ok(()), // the agent is gone
                Some((spec, fds)) => {
                    let reply = match spawn_reaper(spec, fds, &chan, agent_pid) {
                        Ok(pid) => {
                            reapers.insert(pid);
                            pid
                        }
                        Err(e) => -(e.raw_os_error().unwrap_or(libc::EIO)),
                    };
                    chan.write_all(&reply.to_le_bytes())?;
                }
            }
        }
    }
}

fn reap(reapers: &mut HashSet<i32>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(st) => {
                if let Some(p) = st.pid() {
                    reapers.remove(&p.as_raw());
                }
            }
        }
    }
}

/// Kill (with their trees) the zygote's children that are not its reapers: orphans of a
/// reaper that died.
fn kill_orphans(reapers: &HashSet<i32>) {
    let me = std::process::id() as i32;
    for c in tree::children(me) {
        if !reapers.contains(&c) {
            tree::kill_descendants(c);
            let _ = kill(Pid::from_raw(c), Signal::SIGKILL);
        }
    }
}

type SpawnFds = [OwnedFd; NFDS];

/// Receive one spawn request; `None` when the agent closed the channel.
fn recv_spawn(chan: &mut UnixStream) -> io::Result<Option<(SpawnSpec, SpawnFds)>> {
    let mut hdr = [0u8; 4];
    let mut cmsg = nix::cmsg_space!([RawFd; NFDS]);
    let (n, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut hdr)];
        match recvmsg::<()>(
            chan.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                let mut fds: Vec<OwnedFd> = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        for fd in raw {
                            // SAFETY: the kernel installed these fds for us.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                break (msg.bytes, fds);
            }
        }
    };
    if n == 0 {
        return Ok(None);
    }
    chan.read_exact(&mut hdr[n..])?;
    let len = u32::from_le_bytes(hdr) as usize;
    if len > MAX_SPEC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "spec too large"));
    }
    let mut body = vec![0u8; len];
    chan.read_exact(&mut body)?;
    let spec: SpawnSpec = serde_json::from_slice(&body).map_err(io::Error::other)?;
    let fds: SpawnFds = fds
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "wrong number of fds"))?;
    Ok(Some((spec, fds)))
}

fn spawn_reaper(
    spec: SpawnSpec,
    fds: SpawnFds,
    chan: &UnixStream,
    agent_pid: i32,
) -> io::Result<i32> {
    // Everything the command needs, prepared before fork.
    let prepared = Prepared::new(&spec)?;
    // SAFETY: the zygote is single-threaded.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: closing our copy of the channel in the child; the parent keeps its own.
            unsafe { libc::close(chan.as_raw_fd()) };
            let code = reaper_main(prepared, fds, agent_pid);
            // SAFETY: leave without running anything of the zygote's.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// argv/env/path as C strings.
struct Prepared {
    argv: Vec<CString>,
    env: Vec<CString>,
    candidates: Vec<CString>,
}

impl Prepared {
    fn new(spec: &SpawnSpec) -> io::Result<Self> {
        let c = |s: &str| {
            CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in spec"))
        };
        let argv = spec
            .argv
            .iter()
            .map(|a| c(a))
            .collect::<io::Result<Vec<_>>>()?;
        let env = spec
            .env
            .iter()
            .map(|a| c(a))
            .collect::<io::Result<Vec<_>>>()?;
        let Some(prog) = spec.argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
        };
        let candidates = if prog.contains('/') {
            vec![c(prog)?]
        } else {
            spec.path
                .iter()
                .filter(|d| !d.is_empty())
                .map(|d| c(&format!("{}/{prog}", d.trim_end_matches('/'))))
                .collect::<io::Result<Vec<_>>>()?
        };
        Ok(Prepared {
            argv,
            env,
            candidates,
        })
    }
}

fn record(status: &OwnedFd, kind: u32, value: i32) {
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&kind.to_le_bytes());
    rec[4..].copy_from_slice(&value.to_le_bytes());
    // 8 bytes < PIPE_BUF: atomic. A failure (the agent closed its end) changes nothing here.
    let _ = nix::unistd::write(status, &rec);
}

/// The reaper: returns its exit code.
fn reaper_main(prepared: Prepared, fds: SpawnFds, agent_pid: i32) -> i32 {
    let [stdin, stdout, stderr, status, cwd] = fds;
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // Every catchable signal blocked; the three we act on come through the signalfd.
    if sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None).is_err() {
        record(&status, REC_START_FAILED, libc::EIO);
        return 1;
    }
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGUSR1] {
        mask.add(s);
    }
    let Ok(sfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC) else {
        record(&status, REC_START_FAILED, libc::EIO);
        return 1;
    };
    let Ok((err_r, err_w)) = nix::unistd::pipe2(OFlag::O_CLOEXEC) else {
        record(&status, REC_START_FAILED, libc::EIO);
        return 1;
    };

    // SAFETY: the reaper is single-threaded.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => exec_command(&prepared, [&stdin, &stdout, &stderr], &cwd, err_w),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            record(&status, REC_START_FAILED, e as i32);
            return 1;
        }
    };
    drop((stdin, stdout, stderr, cwd, err_w));
    // Started first (the pid is known now); an exec failure follows as its own record.
    record(&status, REC_STARTED, child.as_raw());
    let mut errbuf = [0u8; 4];
    let mut err_file = std::fs::File::from(err_r);
    let mut got = 0;
    while got < 4 {
        match err_file.read(&mut errbuf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got == 4 {
        record(&status, REC_START_FAILED, i32::from_le_bytes(errbuf));
    }
    drop(err_file);

    let mut exit: Option<(u32, i32)> = None;
    let mut kill_all = false;
    while exit.is_none() && !kill_all {
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(_) => {
                kill_all = true;
                continue;
            }
        };
        let from_agent = info.ssi_pid as i32 == agent_pid;
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGTERM) if from_agent => {
                tree::signal_descendants(std::process::id() as i32, Signal::SIGTERM);
            }
            Ok(Signal::SIGUSR1) if from_agent => kill_all = true,
            _ => {}
        }
        reap_all(child, &mut exit);
    }
    // C is gone (or we were told to end it): report, then no descendant survives.
    if let Some((k, v)) = exit {
        record(&status, k, v);
    }
    let me = std::process::id() as i32;
    loop {
        tree::signal_descendants(me, Signal::SIGKILL);
        match waitpid(None, None) {
            Ok(st) => {
                if exit.is_none() && st.pid() == Some(child) {
                    exit = status_record(st);
                    if let Some((k, v)) = exit {
                        record(&status, k, v);
                    }
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => break, // ECHILD: nothing left
        }
    }
    0
}

fn status_record(st: WaitStatus) -> Option<(u32, i32)> {
    match st {
        WaitStatus::Exited(_, code) => Some((REC_EXITED, code)),
        WaitStatus::Signaled(_, sig, _) => Some((REC_SIGNALED, sig as i32)),
        _ => None,
    }
}

fn reap_all(child: Pid, exit: &mut Option<(u32, i32)>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(st) => {
                if st.pid() == Some(child)
                    && let Some(r) = status_record(st)
                {
                    *exit = Some(r);
                }
            }
        }
    }
}

/// The command's side of the fork: never returns.
fn exec_command(p: &Prepared, stdio: [&OwnedFd; 3], cwd: &OwnedFd, err_w: OwnedFd) -> ! {
    let fail = |errno: i32| -> ! {
        let _ = nix::unistd::write(&err_w, &errno.to_le_bytes());
        // SAFETY: leave at once.
        unsafe { libc::_exit(127) }
    };
    // Own process group: `kill -9 0` from the command cannot reach the reaper.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // Default dispositions (the agent ignores SIGPIPE; ignored signals survive exec) and an
    // empty mask.
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: resetting to SIG_DFL in a single-threaded child.
            let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
        }
    }
    if sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).is_err() {
        fail(libc::EIO);
    }
    for (i, fd) in stdio.iter().enumerate() {
        // SAFETY: dup2 onto stdio; dup2 clears CLOEXEC on the new fd.
        if unsafe { libc::dup2(fd.as_raw_fd(), i as RawFd) } < 0 {
            fail(Errno::last() as i32);
        }
    }
    if let Err(e) = nix::unistd::fchdir(cwd) {
        fail(e as i32);
    }
    let mut last = Errno::ENOENT;
    for prog in &p.candidates {
        match nix::unistd::execve(prog, &p.argv, &p.env) {
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
            Err(e) => last = e,
            Ok(never) => match never {},
        }
    }
    fail(last as i32)
}
