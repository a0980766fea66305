//! The host side of a sandbox's agent channel: find the agent's host pid, connect to its socket,
//! verify the peer **before sending a byte** (`SO_PEERCRED` uid is the sandbox uid and pid is the
//! agent's exact host pid), keep idle connections for reuse, and run calls and file operations
//! over them. Blocking socket work runs off the async runtime; a call whose future is dropped has
//! its connection shut down, and the agent then kills the call's whole tree.

use super::capture::HeadTail;
use super::{CallEnd, CallLimits, ExecOutcome, ExecRequest, OutputSink, Via};
use crate::decide::plan::AgentPlan;
use crate::validate::{Refusal, RefusalCode};
use clawden_agent::client::{Client, ClientError, peer_cred};
use clawden_agent::proto::{self, ErrorCode, OutStream};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a freshly started agent gets to create its socket.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// Idle connections kept per sandbox.
const POOL_PER_SANDBOX: usize = 8;
/// The default `PATH` of calls (nothing is inherited from the image's config).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the agent could not be used (the call then falls back to the Engine API path).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    #[error("the sandbox has no agent")]
    NoAgent,
    #[error("the agent process could not be found: {0}")]
    NotFound(String),
    #[error("cannot connect to the agent socket: {0}")]
    Connect(String),
    #[error(
        "the agent socket's peer is pid {pid} uid {uid}, expected the agent (pid {want_pid}, uid {want_uid}): refused before sending a byte"
    )]
    PeerMismatch {
        pid: i32,
        uid: u32,
        want_pid: i32,
        want_uid: u32,
    },
    #[error("the agent's hello failed: {0}")]
    Hello(String),
}

impl Unavailable {
    pub fn code(&self) -> &'static str {
        match self {
            Unavailable::PeerMismatch { .. } => "agent_peer_mismatch",
            _ => "agent_unavailable",
        }
    }
}

/// What went wrong with a call over the agent, once connected.
#[derive(Debug, thiserror::Error)]
pub enum AgentCallError {
    #[error("{0}")]
    Unavailable(#[from] Unavailable),
    #[error("{0}")]
    Refused(Refusal),
    /// The connection broke mid-call (the agent or its container died).
    #[error("the agent connection broke: {0}")]
    Broken(String),
}

/// Where a sandbox's agent is: its container's init pid, and the plan's channel.
#[derive(Debug, Clone)]
pub struct AgentTarget {
    pub container_id: String,
    pub init_pid: u32,
    pub agent: AgentPlan,
    /// The sandbox uid (numeric), when known.
    pub uid: Option<u32>,
}

/// Idle, verified connections per container, and the agent pid found for each.
#[derive(Default)]
pub struct AgentPool {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
}

/// The real uid of a host process.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The agent's host pid: the only child of the container's init (Docker's `--init`).
fn agent_pid(init_pid: u32) -> Result<u32, Unavailable> {
    clawden_agent::client::agent_host_pid(init_pid as i32)
        .map(|p| p as u32)
        .ok_or_else(|| {
            Unavailable::NotFound(format!(
                "the container's init (pid {init_pid}) does not have exactly one child"
            ))
        })
}

/// A verified connection and a second handle on its socket (to shut it down from outside).
pub struct Conn {
    client: Client,
    socket: UnixStream,
}

/// Connect and verify the peer, then say hello. Nothing is sent before the peer check.
fn connect(t: &AgentTarget) -> Result<Conn, Unavailable> {
    // Right after a start, init may not have forked the agent yet: wait for it, within the
    // same patience as for its socket.
    let started = Instant::now();
    let want_pid = loop {
        match agent_pid(t.init_pid) {
            Ok(p) => break p,
            Err(_) if started.elapsed() < CONNECT_PATIENCE => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    };
    let want_uid = match (t.uid, uid_of(want_pid)) {
        (Some(u), _) => u,
        (None, Some(u)) => u,
        (None, None) => return Err(Unavailable::NotFound("the agent's uid is unknown".into())),
    };
    // The channel directory is opened without following symlinks and the socket reached
    // through it (short path, no symlinked directory); the socket itself may be anything the
    // sandbox put there — the peer check decides.
    let dir = nix::fcntl::open(
        &t.agent.channel_dir,
        nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Unavailable::Connect(format!("{}: {e}", t.agent.channel_dir.display())))?;
    let path = format!(
        "/proc/self/fd/{}/{}",
        dir.as_raw_fd(),
        crate::decide::plan::AGENT_SOCKET
    );
    let stream = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e)
                if started.elapsed() < CONNECT_PATIENCE
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Unavailable::Connect(e.to_string())),
        }
    };
    let (pid, uid, _) = peer_cred(&stream).map_err(|e| Unavailable::Connect(e.to_string()))?;
    if pid != want_pid as i32 || uid != want_uid {
        return Err(Unavailable::PeerMismatch {
            pid,
            uid,
            want_pid: want_pid as i32,
            want_uid,
        });
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let socket = stream
        .try_clone()
        .map_err(|e| Unavailable::Connect(e.to_string()))?;
    let client = Client::handshake(stream).map_err(|e| Unavailable::Hello(e.to_string()))?;
    let _ = socket.set_read_timeout(None);
    Ok(Conn { client, socket })
}

impl AgentPool {
    fn take(&self, t: &AgentTarget) -> Result<Conn, Unavailable> {
        if let Some(c) = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&t.container_id)
            .and_then(Vec::pop)
        {
            return Ok(c);
        }
        connect(t)
    }

    fn give_back(&self, container_id: &str, c: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let v = idle.entry(container_id.to_string()).or_default();
        if v.len() < POOL_PER_SANDBOX {
            v.push(c);
        }
    }

    /// Forget a container's connections (it was removed).
    pub fn forget(&self, container_id: &str) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container_id);
    }

    /// Run `f` on a verified connection off the runtime. A connection that failed is dropped, a
    /// good one goes back to the pool. If the returned future is dropped, the connection is
    /// shut down (the agent then kills a running call's tree).
    pub async fn with_client<T: Send + 'static>(
        self: &Arc<Self>,
        t: &AgentTarget,
        f: impl FnOnce(&mut Client) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, AgentCallError> {
        let pool = self.clone();
        let target = t.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<UnixStream>();
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = pool.take(&target)?;
            // A handle for the drop guard of the waiting future.
            if let Ok(s) = conn.socket.try_clone() {
                let _ = tx.send(s);
            }
            match f(&mut conn.client) {
                Ok(v) => {
                    pool.give_back(&target.container_id, conn);
                    Ok(v)
                }
                Err(ClientError::Agent(e)) => {
                    pool.give_back(&target.container_id, conn);
                    Err(AgentCallError::Refused(refusal_of(&e)))
                }
                Err(e) => Err(AgentCallError::Broken(e.to_string())),
            }
        });
        struct ShutdownOnDrop(Option<tokio::sync::oneshot::Receiver<UnixStream>>, bool);
        impl Drop for ShutdownOnDrop {
            fn drop(&mut self) {
                if self.1 {
                    return;
                }
                if let Some(mut rx) = self.0.take()
                    && let Ok(s) = rx.try_recv()
                {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        let mut guard = ShutdownOnDrop(Some(rx), false);
        let r = task
            .await
            .map_err(|e| AgentCallError::Broken(e.to_string()))?;
        guard.1 = true;
        r
    }
}

/// The agent's structured error as the host's refusal (same codes as the host side).
pub fn refusal_of(e: &proto::AgentError) -> Refusal {
    let code = match e.code {
        ErrorCode::NotFound => RefusalCode::NotFound,
        ErrorCode::AlreadyExists => RefusalCode::AlreadyExists,
        ErrorCode::EtagMismatch => RefusalCode::EtagMismatch,
        ErrorCode::PermissionDenied => RefusalCode::PermissionDenied,
        ErrorCode::EscapesRoot => RefusalCode::EscapesRoot,
        ErrorCode::SpecialFile => RefusalCode::SpecialFile,
        ErrorCode::IsDirectory => RefusalCode::IsDirectory,
        ErrorCode::NotDirectory => RefusalCode::NotDirectory,
        ErrorCode::ReadOnlyMount => RefusalCode::ReadOnlyMount,
        ErrorCode::TooLarge => RefusalCode::TooLarge,
        ErrorCode::SymlinkLoop => RefusalCode::SymlinkLoop,
        ErrorCode::TooManyLinks => RefusalCode::TooManyLinks,
        ErrorCode::NameTooLong => RefusalCode::NameTooLong,
        ErrorCode::NoSpace => RefusalCode::NoSpace,
        ErrorCode::Busy => RefusalCode::Busy,
        ErrorCode::InvalidPath => RefusalCode::InvalidPath,
        ErrorCode::NotOnMount => RefusalCode::NotOnMount,
        ErrorCode::Unsupported => RefusalCode::Unsupported,
        _ => RefusalCode::IoError,
    };
    // The agent's text is untrusted: keep it as data, escaped.
    let message = e.message.escape_debug().to_string();
    Refusal {
        code,
        value: String::new(),
        message: format!("in the sandbox: {message}"),
        fix: match code {
            RefusalCode::PermissionDenied => {
                "the sandbox user cannot access it; file tools act with the sandbox's rights".into()
            }
            RefusalCode::EscapesRoot => "use a path that stays on its mount".into(),
            RefusalCode::NotOnMount => "use a directory on a mount of the sandbox".into(),
            _ => "see the message".into(),
        },
    }
}

/// One exec call through the agent. Output reaches `sink` as it arrives.
pub async fn exec(
    pool: &Arc<AgentPool>,
    t: &AgentTarget,
    container_name: &str,
    areq: proto::ExecRequest,
    req: &ExecRequest,
    limits: CallLimits,
    sink: Option<&OutputSink>,
) -> Result<ExecOutcome, AgentCallError> {
    let started = Instant::now();
    let stdin = req.stdin.clone();
    let (otx, mut orx) = tokio::sync::mpsc::channel::<(bool, Vec<u8>)>(64);
    let run = pool.with_client(t, move |c| {
        let mut on_output = |s: OutStream, b: &[u8]| {
            let _ = otx.blocking_send((s == OutStream::Stderr, b.to_vec()));
        };
        match stdin {
            Some(data) => {
                let mut r = std::io::Cursor::new(data);
                c.exec(&areq, Some(&mut r), &mut on_output)
            }
            None => c.exec(&areq, None, &mut on_output),
        }
    });
    tokio::pin!(run);
    let mut out = HeadTail::new(limits.max_output_bytes);
    let mut err = HeadTail::new(limits.max_output_bytes);
    let result = loop {
        tokio::select! {
            Some((is_err, b)) = orx.recv() => {
                if let Some(f) = sink {
                    f(is_err, &b);
                }
                let _ = if is_err { err.push(&b) } else { out.push(&b) };
            }
            r = &mut run => break r,
        }
    };
    while let Ok((is_err, b)) = orx.try_recv() {
        if let Some(f) = sink {
            f(is_err, &b);
        }
        let _ = if is_err { err.push(&b) } else { out.push(&b) };
    }
    let r = result?;
    Ok(outcome_of(out, err, &r, started, container_name))
}

/// The outcome of a call the agent reported on: status from its `waitpid` (`128+N` for a
/// signal death; none after a timeout, reported as SIGKILL), byte counts from the agent (the
/// host saw only head and tail).
pub fn outcome_of(
    out: HeadTail,
    err: HeadTail,
    r: &clawden_agent::client::ExecResult,
    started: Instant,
    container_name: &str,
) -> ExecOutcome {
    let x = &r.exit;
    let (exit_code, signal) = if x.timed_out {
        (None, Some(9))
    } else {
        match (x.exit_code, x.signal) {
            (_, Some(sig)) => (Some(128 + sig), Some(sig)),
            (Some(c), None) => (Some(c), None),
            (None, None) => (None, None),
        }
    };
    let mut o = ExecOutcome::from_capture(
        out,
        err,
        (exit_code, signal),
        started,
        CallEnd {
            timed_out: x.timed_out,
            oom_killed: x.oom_killed,
            container_died: false,
            container_name: Some(container_name.to_string()),
            via: Via::Agent,
        },
    );
    o.stdout_bytes = x.stdout.total;
    o.stderr_bytes = x.stderr.total;
    o.stdout_truncated = x.stdout.truncated || r.stdout_skipped > 0 || o.stdout_truncated;
    o.stderr_truncated = x.stderr.truncated || r.stderr_skipped > 0 || o.stderr_truncated;
    o
}
