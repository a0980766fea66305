//! The pump: one thread per call that moves output, enforces the deadline and kills, and
//! reports the exit.
//!
//! It polls the command's stdout and stderr pipes, the reaper's status pipe, a control pipe
//! (kill requests) and — for a `connection` call — the client socket for hang-up. Output goes
//! into the call's head/tail captures; bytes that land in a head are forwarded live to the
//! subscribed connection, the kept tails at the end. The call is over when the status pipe
//! reaches EOF: only the reaper holds its write end and it exits after the whole tree is dead.

use super::calls::{Call, Registry, refuse, send_tails};
use super::{tree, zygote};
use crate::capture::HeadTail;
use crate::proto::{CHUNK, EndReason, ErrorCode, Event, ExitInfo, FrameType, Lifetime, StreamInfo};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After a kill request, how long the reaper gets before the agent kills the tree itself.
const REAPER_GRACE: Duration = Duration::from_secs(1);
/// After the tree is gone, how long output pipes are drained (an fd smuggled out of the tree
/// must not keep the call open).
const DRAIN: Duration = Duration::from_millis(500);

/// The container memory cgroup's OOM-kill counter (v2 `memory.events`, v1 `memory.oom_control`).
pub fn oom_kills() -> Option<u64> {
    for path in [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
    ] {
        if let Ok(s) = std::fs::read_to_string(path) {
            for line in s.lines() {
                if let Some(n) = line.strip_prefix("oom_kill ") {
                    return n.trim().parse().ok();
                }
            }
        }
    }
    None
}

fn set_nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{FcntlArg, fcntl};
    if let Ok(fl) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK),
        );
    }
}

/// Reads 8-byte status records from a reaper.
pub(super) struct StatusReader {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl StatusReader {
    pub(super) fn new(fd: OwnedFd) -> Self {
        StatusReader {
            fd: Some(fd),
            buf: Vec::new(),
        }
    }

    fn pop(&mut self) -> Option<(u32, i32)> {
        if self.buf.len() < 8 {
            return None;
        }
        let k = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let v = i32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        self.buf.drain(..8);
        Some((k, v))
    }

    /// Read what is available; false at EOF (the reaper is gone).
    fn fill(&mut self) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut b = [0u8; 64];
        match nix::unistd::read(fd, &mut b) {
            Ok(0) => {
                self.fd = None;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => true,
            Err(_) => {
                self.fd = None;
                false
            }
        }
    }

    pub(super) fn next_blocking(&mut self, limit: Duration) -> Option<(u32, i32)> {
        let end = Instant::now() + limit;
        loop {
            if let Some(r) = self.pop() {
                return Some(r);
            }
            let fd = self.fd.as_ref()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut p, timeout(left)) {
                Ok(0) | Err(Errno::EINTR) => continue, // re-check the time left
                Ok(_) => {}
                Err(_) => return None,
            }
            if !self.fill() && self.buf.len() < 8 {
                return None;
            }
        }
    }
}

fn timeout(d: Duration) -> PollTimeout {
    PollTimeout::try_from(d.as_millis().min(60_000) as u32 + 1).unwrap_or(PollTimeout::MAX)
}

enum Phase {
    Running,
    Terminating { kill_at: Instant },
    Killing { hard_at: Instant },
    HardKilled,
}

/// One call's pump (run it on its own thread with [`Pump::run`]).
pub(super) struct Pump {
    pub(super) call: Arc<Call>,
    pub(super) registry: Arc<Registry>,
    pub(super) stdout: Option<OwnedFd>,
    pub(super) stderr: Option<OwnedFd>,
    pub(super) status: StatusReader,
    pub(super) ctl: OwnedFd,
    pub(super) conn: Option<OwnedFd>,
    pub(super) deadline: Option<Instant>,
    pub(super) grace: Duration,
    pub(super) oom_before: Option<u64>,
}

impl Pump {
    fn signal_reaper(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.call.reaper), sig);
    }

    pub(super) fn run(mut self) {
        if let Some(fd) = &self.stdout {
            set_nonblocking(fd);
        }
        if let Some(fd) = &self.stderr {
            set_nonblocking(fd);
        }
        if let Some(fd) = &self.status.fd {
            set_nonblocking(fd);
        }
        let mut phase = Phase::Running;
        let mut forced: Option<EndReason> = None;
        let mut exit_rec: Option<(u32, i32)> = None;
        let mut tree_gone_at: Option<Instant> = None;
        let mut buf = vec![0u8; CHUNK];
        loop {
            while let Some(r) = self.status.pop() {
                if exit_rec.is_none() && r.0 != zygote::REC_STARTED {
                    exit_rec = Some(r);
                }
            }
            if self.status.fd.is_none() && tree_gone_at.is_none() {
                tree_gone_at = Some(Instant::now());
            }
            let pipes_open = self.stdout.is_some() || self.stderr.is_some();
            if let Some(t) = tree_gone_at
                && (!pipes_open || t.elapsed() >= DRAIN)
            {
                break;
            }
            let now = Instant::now();
            // Deadlines.
            let mut wake: Option<Instant> = tree_gone_at.map(|t| t + DRAIN);
            if tree_gone_at.is_none() {
                match phase {
                    Phase::Running => {
                        if let Some(d) = self.deadline {
                            if now >= d {
                                forced.get_or_insert(EndReason::Timeout);
                                self.signal_reaper(Signal::SIGTERM);
                                phase = Phase::Terminating {
                                    kill_at: now + self.grace,
                                };
                                continue;
                            }
                            wake = Some(d);
                        }
                    }
                    Phase::Terminating { kill_at } => {
                        if now >= kill_at {
                            self.signal_reaper(Signal::SIGUSR1);
                            phase = Phase::Killing {
                                hard_at: now + REAPER_GRACE,
                            };
                            continue;
                        }
                        wake = Some(kill_at);
                    }
                    Phase::Killing { hard_at } => {
                        if now >= hard_at {
                            // The reaper did not finish (stopped or stuck): kill its tree
                            // ourselves, then it.
                            tree::kill_descendants(self.call.reaper);
                            self.signal_reaper(Signal::SIGKILL);
                            phase = Phase::HardKilled;
                            continue;
                        }
                        wake = Some(hard_at);
                    }
                    Phase::HardKilled => {}
                }
            }
            let mut kill_now = false;
            {
                let mut fds: Vec<PollFd> = Vec::with_capacity(5);
                let mut which: Vec<u8> = Vec::with_capacity(5);
                if let Some(fd) = &self.stdout {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    which.push(0);
                }
                if let Some(fd) = &self.stderr {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    which.push(1);
                }
                if let Some(fd) = &self.status.fd {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    which.push(2);
                }
                fds.push(PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN));
                which.push(3);
                if let Some(fd) = &self.conn {
                    fds.push(PollFd::new(
                        fd.as_fd(),
                        PollFlags::from_bits_retain(libc::POLLRDHUP),
                    ));
                    which.push(4);
                }
                let t = wake.map_or(PollTimeout::from(1000u16), |w| {
                    timeout(w.saturating_duration_since(Instant::now()))
                });
                match poll(&mut fds, t) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                let ready: Vec<u8> = fds
                    .iter()
                    .zip(&which)
                    // `revents()` is `None` when a bit nix does not model (POLLRDHUP) is set.
                    .filter(|(f, _)| f.revents().is_none_or(|r| !r.is_empty()))
                    .map(|(_, w)| *w)
                    .collect();
                drop(fds);
                for w in ready {
                    match w {
                        0 | 1 => self.read_stream(w as usize, &mut buf),
                        2 => {
                            self.status.fill();
                        }
                        3 => {
                            let mut b = [0u8; 16];
                            match nix::unistd::read(&self.ctl, &mut b) {
                                Ok(n) if n > 0 => kill_now = true,
                                _ => {}
                            }
                        }
                        _ => {
                            // The client hung up: a connection call dies with it.
                            self.conn = None;
                            kill_now = true;
                        }
                    }
                }
            }
            if kill_now && tree_gone_at.is_none() {
                if forced.is_none() {
                    forced = Some(EndReason::Killed);
                }
                if matches!(phase, Phase::Running | Phase::Terminating { .. }) {
                    self.signal_reaper(Signal::SIGUSR1);
                    phase = Phase::Killing {
                        hard_at: Instant::now() + REAPER_GRACE,
                    };
                }
            }
        }
        self.finish(exit_rec, forced);
    }

    fn read_stream(&mut self, idx: usize, buf: &mut [u8]) {
        let slot = if idx == 0 {
            &mut self.stdout
        } else {
            &mut self.stderr
        };
        let Some(fd) = slot.as_ref() else { return };
        let n = match nix::unistd::read(fd, buf) {
            Ok(0) => {
                *slot = None;
                return;
            }
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return,
            Err(_) => {
                *slot = None;
                return;
            }
        };
        let data = &buf[..n];
        let mut st = self.call.lock();
        let to_head = st.out[idx].push(data);
        if to_head > 0
            && let Some(sub) = &st.sub
        {
            let kind = if idx == 0 {
                FrameType::Stdout
            } else {
                FrameType::Stderr
            };
            if sub.writer.frame(kind, &data[..to_head]).is_err() {
                st.sub = None;
                drop(st);
                if self.call.lifetime == Lifetime::Connection {
                    self.call.request_kill();
                }
            }
        }
    }

    fn finish(self, exit_rec: Option<(u32, i32)>, forced: Option<EndReason>) {
        let oom_grew = match (self.oom_before, oom_kills()) {
            (Some(a), Some(b)) => b > a,
            _ => false,
        };
        let (mut exit_code, mut signal, mut start_error) = (None, None, None);
        let natural = match exit_rec {
            Some((zygote::REC_START_FAILED, errno)) => {
                start_error = Some(refuse(
                    ErrorCode::StartFailed,
                    format!(
                        "cannot execute {:?}: {}",
                        self.call.argv.first().map_or("", String::as_str),
                        Errno::from_raw(errno).desc()
                    ),
                ));
                EndReason::StartFailed
            }
            Some((zygote::REC_EXITED, c)) => {
                exit_code = Some(c);
                // A shell reports a child the kernel SIGKILLed as 128 + 9.
                if c == 128 + libc::SIGKILL && oom_grew {
                    EndReason::Oom
                } else {
                    EndReason::Exited
                }
            }
            Some((zygote::REC_SIGNALED, s)) => {
                signal = Some(s);
                if s == libc::SIGKILL && oom_grew {
                    EndReason::Oom
                } else {
                    EndReason::Signaled
                }
            }
            _ => EndReason::Lost,
        };
        // A deadline or kill wins over how the command then ended (e.g. 143 after SIGTERM).
        let reason = forced.unwrap_or(natural);
        let oom_killed =
            oom_grew && (signal == Some(libc::SIGKILL) || exit_code == Some(128 + libc::SIGKILL));
        let mut st = self.call.lock();
        let stream = |h: &HeadTail| StreamInfo {
            total: h.total(),
            truncated: h.truncated(),
        };
        let info = ExitInfo {
            call_id: self.call.id.clone(),
            exit_code,
            signal,
            reason,
            timed_out: reason == EndReason::Timeout,
            oom_killed,
            stdout: stream(&st.out[0]),
            stderr: stream(&st.out[1]),
            duration_ms: self.call.started.elapsed().as_millis() as u64,
            start_error,
        };
        if let Some(sub) = st.sub.take() {
            let _ = send_tails(&sub.writer, &st.out);
            let _ = sub.writer.event(&Event::Exit(info.clone()));
        }
        st.exit = Some(info);
        st.finished_at = Some(Instant::now());
        drop(st);
        *self.call.ctl.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.call.cond.notify_all();
        if self.call.lifetime == Lifetime::Connection {
            self.registry.map().remove(&self.call.id);
        }
    }
}
