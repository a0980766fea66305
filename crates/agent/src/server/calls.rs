//! Calls: validation, start through the zygote, the registry of calls, attach, signal, kill.
//! Each started call is then driven by its [`super::pump`].

use super::pump::{Pump, StatusReader, oom_kills};
use super::zygote::{self, SpawnSpec, Zygote};
use super::{Writer, files, tree};
use crate::capture::HeadTail;
use crate::proto::{
    AgentError, CHUNK, CallInfo, EndReason, ErrorCode, Event, ExecRequest, ExitInfo, FrameType,
    Lifetime, OutStream, StdinMode, StreamInfo,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most bytes kept per output stream of a `connection` call. The agent's memory is charged to
/// the sandbox's cgroup, so these caps keep a flood from OOM-killing the agent itself.
pub const MAX_KEEP: u64 = 16 << 20;
/// Most bytes kept per output stream of a `detached` call (kept until listed away).
pub const MAX_KEEP_DETACHED: u64 = 1 << 20;
/// Default grace between SIGTERM and SIGKILL after a deadline.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// Finished detached calls are kept this long for `ListCalls` / `Attach`.
const KEEP_FINISHED: Duration = Duration::from_secs(600);
/// At most this many detached calls (running or kept).
const MAX_DETACHED: usize = 64;
/// Largest argv + env accepted, in bytes.
const MAX_SPEC_BYTES: usize = 1 << 20;

/// A subscriber: the connection output is forwarded to.
pub(super) struct Sub {
    pub(super) writer: Arc<Writer>,
    generation: u64,
}

/// What the pump updates and connection handlers read.
pub(super) struct CallState {
    pub(super) out: [HeadTail; 2],
    pub(super) exit: Option<ExitInfo>,
    pub(super) sub: Option<Sub>,
    pub(super) finished_at: Option<Instant>,
}

/// One call.
pub struct Call {
    pub(super) id: String,
    pid: i32,
    pub(super) reaper: i32,
    pub(super) argv: Vec<String>,
    pub(super) lifetime: Lifetime,
    pub(super) started: Instant,
    pub(super) ctl: Mutex<Option<OwnedFd>>,
    state: Mutex<CallState>,
    pub(super) cond: Condvar,
}

impl Call {
    pub(super) fn lock(&self) -> MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask the pump to kill the whole tree.
    pub fn request_kill(&self) {
        let ctl = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = ctl.as_ref() {
            let _ = nix::unistd::write(fd, b"K");
        }
    }

    /// A `detached` call.
    pub fn is_detached(&self) -> bool {
        self.lifetime == Lifetime::Detached
    }

    /// Wait (bounded) until the call has ended.
    pub fn wait_finished(&self, limit: Duration) {
        let end = Instant::now() + limit;
        let mut st = self.lock();
        while st.exit.is_none() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = self
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn info(&self) -> CallInfo {
        let st = self.lock();
        CallInfo {
            call_id: self.id.clone(),
            pid: self.pid,
            argv: self.argv.clone(),
            running: st.exit.is_none(),
            age_ms: self.started.elapsed().as_millis() as u64,
            exit: st.exit.clone(),
        }
    }
}

/// Every call the agent runs.
pub struct Registry {
    calls: Mutex<HashMap<String, Arc<Call>>>,
    seq: AtomicU64,
    generation: AtomicU64,
    boot: u32,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry with a random boot id, so call ids of a restarted agent (same pid in
    /// a recreated container) never collide with old ones.
    pub fn new() -> Self {
        let mut b = [0u8; 4];
        // SAFETY: getrandom writes at most `b.len()` bytes into a valid buffer.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let boot = if n == 4 {
            u32::from_le_bytes(b)
        } else {
            // No entropy: time-based is still distinct across restarts.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32)
        };
        Registry {
            calls: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            boot,
        }
    }

    fn next_id(&self) -> String {
        format!(
            "c{:08x}-{}",
            self.boot,
            self.seq.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    pub(super) fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Call>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call by id.
    pub fn get(&self, id: &str) -> Option<Arc<Call>> {
        self.map().get(id).cloned()
    }

    fn prune(&self) {
        let mut m = self.map();
        m.retain(|_, c| {
            // A call whose pump is busy (writing to a slow client) is running: keep it, and
            // never block every new call behind one slow connection.
            let Ok(st) = c.state.try_lock() else {
                return true;
            };
            match st.finished_at {
                None => true,
                Some(t) => c.lifetime == Lifetime::Detached && t.elapsed() < KEEP_FINISHED,
            }
        });
    }

    /// Below [`MAX_DETACHED`] detached calls, forgetting the oldest finished ones if needed;
    /// refused (`too_large`) when that many are still running.
    fn make_room_for_detached(&self) -> Result<(), AgentError> {
        let mut m = self.map();
        loop {
            let detached: Vec<(String, Option<Instant>)> = m
                .values()
                .filter(|c| c.lifetime == Lifetime::Detached)
                .map(|c| {
                    let finished = c.state.try_lock().ok().and_then(|st| st.finished_at);
                    (c.id.clone(), finished)
                })
                .collect();
            if detached.len() < MAX_DETACHED {
                return Ok(());
            }
            let oldest = detached
                .iter()
                .filter_map(|(id, f)| f.map(|t| (t, id)))
                .min_by_key(|(t, _)| *t)
                .map(|(_, id)| id.clone());
            match oldest {
                Some(id) => {
                    m.remove(&id);
                }
                None => {
                    return Err(refuse(
                        ErrorCode::TooLarge,
                        format!("{} detached calls are running already", detached.len()),
                    ));
                }
            }
        }
    }

    /// Running and recently finished detached calls.
    pub fn list(&self) -> Vec<CallInfo> {
        self.prune();
        let calls: Vec<Arc<Call>> = self
            .map()
            .values()
            .filter(|c| c.lifetime == Lifetime::Detached)
            .cloned()
            .collect();
        let mut out: Vec<CallInfo> = calls.iter().map(|c| c.info()).collect();
        out.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        out
    }
}

pub(super) fn refuse(code: ErrorCode, msg: impl Into<String>) -> AgentError {
    AgentError::new(code, msg)
}

fn validate(req: &ExecRequest) -> Result<(), AgentError> {
    if req.argv.is_empty() || req.argv[0].is_empty() {
        return Err(refuse(ErrorCode::BadRequest, "argv is empty"));
    }
    let mut size = 0;
    for a in &req.argv {
        if a.contains('\0') {
            return Err(refuse(
                ErrorCode::BadRequest,
                "an argument holds a NUL byte",
            ));
        }
        size += a.len() + 1;
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("invalid environment entry {k:?}"),
            ));
        }
        size += k.len() + v.len() + 2;
    }
    if size > MAX_SPEC_BYTES {
        return Err(refuse(
            ErrorCode::TooLarge,
            format!("argv and env are {size} bytes, over {MAX_SPEC_BYTES}"),
        ));
    }
    if let StdinMode::Inline(d) = &req.stdin
        && d.len() > crate::proto::MAX_INLINE_STDIN
    {
        return Err(refuse(
            ErrorCode::TooLarge,
            format!(
                "inline stdin of {} bytes is over {}; stream it",
                d.len(),
                crate::proto::MAX_INLINE_STDIN
            ),
        ));
    }
    if req.lifetime == Lifetime::Detached && req.stdin == StdinMode::Stream {
        return Err(refuse(
            ErrorCode::BadRequest,
            "a detached call cannot stream stdin",
        ));
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), AgentError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| refuse(ErrorCode::Internal, format!("pipe: {}", e.desc())))
}

/// A started call, as its connection handler sees it.
pub struct Started {
    /// The call.
    pub call: Arc<Call>,
    /// Write end of the command's stdin (stream mode).
    pub stdin: Option<OwnedFd>,
    /// The pump thread.
    pub pump: std::thread::JoinHandle<()>,
}

/// Start a call. On success the `Started` event has been sent on `writer`; for a
/// `connection` call, `writer` is subscribed and `conn` is watched for hang-up (a command that
/// cannot be executed ends with an `Exit` of reason `start_failed`). `Ok(None)`: the command
/// could not even be forked (`start_failed`) or the reaper vanished before reporting (`lost`);
/// an `Exit` was sent instead of `Started`.
/// `Err`: refused before anything ran (bad cwd, env, …).
pub fn start(
    zygote: &Zygote,
    registry: &Arc<Registry>,
    req: &ExecRequest,
    writer: &Arc<Writer>,
    conn: OwnedFd,
) -> Result<Option<Started>, AgentError> {
    validate(req)?;
    registry.prune();
    if req.lifetime == Lifetime::Detached {
        registry.make_room_for_detached()?;
    }
    let cwd = files::resolve_cwd(&req.cwd, &req.roots)?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (st_r, st_w) = pipe()?;
    let (ctl_r, ctl_w) = pipe()?;
    let (stdin_child, stdin_ours) = match &req.stdin {
        StdinMode::Closed => {
            let null = std::fs::File::open("/dev/null")
                .map_err(|e| refuse(ErrorCode::Internal, format!("/dev/null: {e}")))?;
            (OwnedFd::from(null), None)
        }
        StdinMode::Inline(data) => {
            let (r, w) = pipe()?;
            let data = data.clone();
            // A writer thread: the command may read its stdin late or never (then the write
            // fails with EPIPE once the tree is gone and the thread ends).
            std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || {
                    use std::io::Write;
                    let _ = std::fs::File::from(w).write_all(&data);
                })
                .map_err(|e| refuse(ErrorCode::Internal, format!("thread: {e}")))?;
            (r, None)
        }
        StdinMode::Stream => {
            let (r, w) = pipe()?;
            (r, Some(w))
        }
    };
    let path = req
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
    let spec = SpawnSpec {
        argv: req.argv.clone(),
        env: req.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        path: path.split(':').map(str::to_string).collect(),
    };
    let oom_before = oom_kills();
    let started = Instant::now();
    let reaper = zygote
        .spawn(
            &spec,
            [
                stdin_child.as_fd(),
                out_w.as_fd(),
                err_w.as_fd(),
                st_w.as_fd(),
                cwd.as_fd(),
            ],
        )
        .map_err(|e| refuse(ErrorCode::StartFailed, format!("spawn: {e}")))?;
    drop((stdin_child, out_w, err_w, st_w, cwd));

    // The reaper's first record: the command was forked (its pid).
    let mut status = StatusReader::new(st_r);
    let first = status.next_blocking(Duration::from_secs(10));
    let pid = match first {
        Some((zygote::REC_STARTED, pid)) => pid,
        other => {
            // The reaper could not fork the command (e.g. EAGAIN at the pids limit), or it
            // vanished before it could report (the sandbox killed it at once).
            tree::kill_descendants(reaper);
            let _ = kill(Pid::from_raw(reaper), Signal::SIGKILL);
            let (reason, why) = match other {
                Some((zygote::REC_START_FAILED, errno)) => (
                    EndReason::StartFailed,
                    format!(
                        "cannot start the command: {}",
                        Errno::from_raw(errno).desc()
                    ),
                ),
                _ => (
                    EndReason::Lost,
                    "the call's reaper vanished before the command started".to_string(),
                ),
            };
            let id = registry.next_id();
            let _ = writer.event(&Event::Exit(ExitInfo {
                call_id: id,
                exit_code: None,
                signal: None,
                reason,
                timed_out: false,
                oom_killed: false,
                stdout: StreamInfo::default(),
                stderr: StreamInfo::default(),
                duration_ms: started.elapsed().as_millis() as u64,
                start_error: Some(refuse(ErrorCode::StartFailed, why)),
            }));
            return Ok(None);
        }
    };
    let id = registry.next_id();
    let keep = match req.lifetime {
        Lifetime::Connection => req.max_output_bytes.min(MAX_KEEP),
        Lifetime::Detached => req.max_output_bytes.min(MAX_KEEP_DETACHED),
    } as usize;
    let sub = (req.lifetime == Lifetime::Connection).then(|| Sub {
        writer: writer.clone(),
        generation: registry.generation.fetch_add(1, Ordering::Relaxed),
    });
    let call = Arc::new(Call {
        id: id.clone(),
        pid,
        reaper,
        argv: req.argv.clone(),
        lifetime: req.lifetime,
        started,
        ctl: Mutex::new(Some(ctl_w)),
        state: Mutex::new(CallState {
            out: [HeadTail::new(keep), HeadTail::new(keep)],
            exit: None,
            sub,
            finished_at: None,
        }),
        cond: Condvar::new(),
    });
    registry.map().insert(id.clone(), call.clone());
    // Started goes out before any output frame: the pump does not exist yet.
    let _ = writer.event(&Event::Started { call_id: id, pid });
    let pump = Pump {
        call: call.clone(),
        registry: registry.clone(),
        stdout: Some(out_r),
        stderr: Some(err_r),
        status,
        ctl: ctl_r,
        conn: (req.lifetime == Lifetime::Connection).then_some(conn),
        deadline: req.timeout_ms.map(|ms| started + Duration::from_millis(ms)),
        grace: req.grace_ms.map_or(DEFAULT_GRACE, Duration::from_millis),
        oom_before,
    };
    let handle = std::thread::Builder::new()
        .name("pump".into())
        .spawn(move || pump.run())
        .map_err(|e| refuse(ErrorCode::Internal, format!("thread: {e}")))?;
    Ok(Some(Started {
        call,
        stdin: stdin_ours,
        pump: handle,
    }))
}

/// Send the kept tails (after a `Gap` when bytes were dropped).
pub(super) fn send_tails(w: &Writer, out: &[HeadTail; 2]) -> std::io::Result<()> {
    for (i, h) in out.iter().enumerate() {
        let tail = h.tail();
        if tail.is_empty() {
            continue;
        }
        let (stream, kind) = if i == 0 {
            (OutStream::Stdout, FrameType::Stdout)
        } else {
            (OutStream::Stderr, FrameType::Stderr)
        };
        if h.dropped() > 0 {
            w.event(&Event::Gap {
                stream,
                skipped: h.dropped(),
            })?;
        }
        for c in tail.chunks(CHUNK) {
            w.frame(kind, c)?;
        }
    }
    Ok(())
}

/// Send the kept heads.
fn send_heads(w: &Writer, out: &[HeadTail; 2]) -> std::io::Result<()> {
    for (i, h) in out.iter().enumerate() {
        let kind = if i == 0 {
            FrameType::Stdout
        } else {
            FrameType::Stderr
        };
        for c in h.head().chunks(CHUNK) {
            w.frame(kind, c)?;
        }
    }
    Ok(())
}

/// What an attach ended with.
pub enum AttachEnd {
    /// The exit was sent; the connection can go on.
    Finished,
    /// Another connection attached; an error was sent.
    Superseded,
    /// This client hung up.
    HungUp,
}

/// Attach `writer` to a detached call: kept head, live head output, then tails and exit.
pub fn attach(
    registry: &Registry,
    call: &Arc<Call>,
    writer: &Arc<Writer>,
    conn: &OwnedFd,
) -> std::io::Result<AttachEnd> {
    let generation = registry.generation.fetch_add(1, Ordering::Relaxed);
    {
        let mut st = call.lock();
        send_heads(writer, &st.out)?;
        if let Some(exit) = st.exit.clone() {
            send_tails(writer, &st.out)?;
            writer.event(&Event::Exit(exit))?;
            return Ok(AttachEnd::Finished);
        }
        st.sub = Some(Sub {
            writer: writer.clone(),
            generation,
        });
    }
    let mut st = call.lock();
    loop {
        if st.exit.is_some() {
            return Ok(AttachEnd::Finished);
        }
        if st.sub.as_ref().map(|s| s.generation) != Some(generation) {
            drop(st);
            writer.event(&Event::Error(AgentError::new(
                ErrorCode::Busy,
                "another connection attached to this call",
            )))?;
            return Ok(AttachEnd::Superseded);
        }
        let mut p = [PollFd::new(
            conn.as_fd(),
            PollFlags::from_bits_retain(libc::POLLRDHUP),
        )];
        if poll(&mut p, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
            st.sub = None;
            return Ok(AttachEnd::HungUp);
        }
        st = call
            .cond
            .wait_timeout(st, Duration::from_millis(250))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Signal a running call's command (or its whole tree).
pub fn signal(call: &Call, sig: i32, whole_tree: bool) -> Result<(), AgentError> {
    let sig = Signal::try_from(sig)
        .map_err(|_| refuse(ErrorCode::BadRequest, format!("invalid signal {sig}")))?;
    let st = call.lock();
    if st.exit.is_some() {
        return Ok(());
    }
    if whole_tree {
        tree::signal_descendants(call.reaper, sig);
    } else {
        let _ = kill(Pid::from_raw(call.pid), sig);
    }
    Ok(())
}
