//! The wire protocol between clawden (host) and `clawden-agent`.
//!
//! # Frames
//!
//! Every message is one frame: `u32` little-endian payload length, `u8` [`FrameType`], payload.
//! The length is checked against [`MAX_FRAME`] *before* anything is allocated. Control frames
//! ([`FrameType::Hello`], [`FrameType::Request`], [`FrameType::Event`]) carry JSON; data frames
//! carry raw bytes.
//!
//! # Conversation
//!
//! 1. Host sends a `Hello` frame ([`ClientHello`]), the agent answers with its own
//!    ([`AgentHello`]: protocol version, build id, its pid as it sees it). Versions must match.
//! 2. Requests run one at a time; a connection can run any number in sequence.
//!    - `Exec`: agent sends [`Event::Started`], then `Stdout`/`Stderr` data frames (the head of
//!      each stream, live), then for a truncated stream an [`Event::Gap`] followed by its kept
//!      tail, then [`Event::Exit`]. With [`StdinMode::Stream`] the host sends `Stdin` frames and
//!      exactly one `StdinEof` (also after the exit, if it had not sent it yet); the request is
//!      over when both sides are done ([`StdinMode::Inline`] carries small stdin in the request
//!      itself). A `detached` exec answers `Started` only; its output is kept (bounded) for
//!      [`Request::Attach`].
//!    - `ReadFile`: [`Event::ReadStart`], `Data` frames, [`Event::ReadEnd`].
//!    - `WriteFile`: [`Event::Ready`]; host sends `Data` frames and one `DataEnd`; agent answers
//!      [`Event::Written`].
//!    - everything else: one event ([`Event::Done`], [`Event::Calls`], [`Event::Stat`],
//!      [`Event::Entries`]).
//!
//!    Any request may instead be answered by [`Event::Error`] (a structured refusal).
//!
//! Everything the agent sends is untrusted input to the host: [`read_frame`] and
//! [`FrameDecoder`] never allocate beyond [`MAX_FRAME`] and never panic on arbitrary bytes.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Version of this protocol; both hellos must carry the same.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest payload of one frame (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Bytes of a frame header: `u32` length + `u8` type.
pub const HEADER_LEN: usize = 5;

/// Size of the data chunks both sides send (well below [`MAX_FRAME`]).
pub const CHUNK: usize = 64 * 1024;

/// The agent's build id: crate version plus a hash of its own source files (build.rs), so a
/// host built from the same tree can tell whether a running agent is the one it ships.
pub const BUILD_ID: &str = concat!(
    "clawden-agent/",
    env!("CARGO_PKG_VERSION"),
    "+",
    env!("CLAWDEN_AGENT_SOURCE_HASH")
);

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// JSON [`ClientHello`] or [`AgentHello`].
    Hello = 1,
    /// JSON [`Request`] (host → agent).
    Request = 2,
    /// JSON [`Event`] (agent → host).
    Event = 3,
    /// Raw stdout bytes of a call (agent → host).
    Stdout = 4,
    /// Raw stderr bytes of a call (agent → host).
    Stderr = 5,
    /// Raw stdin bytes of a call (host → agent).
    Stdin = 6,
    /// End of a call's stdin (host → agent, empty payload).
    StdinEof = 7,
    /// File content (either direction).
    Data = 8,
    /// End of a file's content (host → agent, empty payload).
    DataEnd = 9,
}

impl FrameType {
    /// The type for a wire byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => FrameType::Hello,
            2 => FrameType::Request,
            3 => FrameType::Event,
            4 => FrameType::Stdout,
            5 => FrameType::Stderr,
            6 => FrameType::Stdin,
            7 => FrameType::StdinEof,
            8 => FrameType::Data,
            9 => FrameType::DataEnd,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its type.
    pub kind: FrameType,
    /// Its payload (at most [`MAX_FRAME`] bytes).
    pub payload: Vec<u8>,
}

/// A malformed or unexpected frame or message.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The transport failed.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    /// A frame announced more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(u64),
    /// An unknown frame type byte.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame")]
    Truncated,
    /// A control payload that is not the JSON expected.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// serde's message.
        detail: String,
    },
    /// A frame that has no place at this point of the conversation.
    #[error("unexpected {0}")]
    Unexpected(String),
    /// The peer speaks another protocol version.
    #[error("protocol version {theirs} is not ours ({PROTOCOL_VERSION})")]
    Version {
        /// The peer's version.
        theirs: u32,
    },
}

/// Write one frame. Payloads over [`MAX_FRAME`] are refused (`InvalidInput`).
pub fn write_frame<W: Write + ?Sized>(
    w: &mut W,
    kind: FrameType,
    payload: &[u8],
) -> io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame payload over MAX_FRAME",
        ));
    }
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Write a JSON control frame.
pub fn write_json<W: Write + ?Sized, T: Serialize>(
    w: &mut W,
    kind: FrameType,
    value: &T,
) -> io::Result<()> {
    let payload = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_frame(w, kind, &payload)
}

/// Parse a frame header: the payload length (checked) and the type.
pub fn parse_header(h: [u8; HEADER_LEN]) -> Result<(usize, FrameType), ProtoError> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as u64;
    if len > MAX_FRAME as u64 {
        return Err(ProtoError::TooLarge(len));
    }
    let kind = FrameType::from_byte(h[4]).ok_or(ProtoError::UnknownType(h[4]))?;
    Ok((len as usize, kind))
}

/// Read one frame; `Ok(None)` on a clean end of stream before a header.
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> Result<Option<Frame>, ProtoError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ProtoError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (len, kind) = parse_header(h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ProtoError::Truncated
        } else {
            ProtoError::Io(e)
        }
    })?;
    Ok(Some(Frame { kind, payload }))
}

/// Incremental frame decoder for bytes that arrive in arbitrary pieces. Holds at most one
/// partial frame (≤ [`HEADER_LEN`] + [`MAX_FRAME`] bytes) plus what one `push` added.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an error the
    /// stream is unusable (the caller must drop the connection).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        let (len, kind) = parse_header(h)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(Frame { kind, payload }))
    }
}

/// Decode a JSON payload.
pub fn decode_json<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    payload: &[u8],
) -> Result<T, ProtoError> {
    serde_json::from_slice(payload).map_err(|e| ProtoError::Malformed {
        what,
        detail: e.to_string(),
    })
}

/// A frame from the agent, decoded and typed (host side).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentMessage {
    /// The agent's hello.
    Hello(AgentHello),
    /// A control event.
    Event(Event),
    /// Output bytes of a call.
    Output(OutStream, Vec<u8>),
    /// File content.
    Data(Vec<u8>),
}

impl AgentMessage {
    /// Type a frame received from the agent; frames only the host sends are refused.
    pub fn decode(frame: Frame) -> Result<Self, ProtoError> {
        Ok(match frame.kind {
            FrameType::Hello => AgentMessage::Hello(decode_json("agent hello", &frame.payload)?),
            FrameType::Event => AgentMessage::Event(decode_json("event", &frame.payload)?),
            FrameType::Stdout => AgentMessage::Output(OutStream::Stdout, frame.payload),
            FrameType::Stderr => AgentMessage::Output(OutStream::Stderr, frame.payload),
            FrameType::Data => AgentMessage::Data(frame.payload),
            other => {
                return Err(ProtoError::Unexpected(format!(
                    "{other:?} frame from the agent"
                )));
            }
        })
    }
}

/// The host's hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHello {
    /// [`PROTOCOL_VERSION`] of the host.
    pub protocol: u32,
    /// Free text naming the client (for logs).
    pub client: String,
}

/// The agent's hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHello {
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
    /// The agent's build id ([`BUILD_ID`]).
    pub build: String,
    /// The agent's pid in its own pid namespace.
    pub pid: i32,
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How long a call lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifetime {
    /// Killed (whole tree) as soon as the requesting connection drops.
    #[default]
    Connection,
    /// Keeps running without a connection; listed, attachable, killable.
    Detached,
}

/// Largest inline stdin (see [`StdinMode::Inline`]).
pub const MAX_INLINE_STDIN: usize = 256 * 1024;

/// Where a call's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdinMode {
    /// `/dev/null`: the command sees EOF at once.
    #[default]
    Closed,
    /// These bytes, then EOF (at most [`MAX_INLINE_STDIN`]; also for detached calls).
    Inline(Vec<u8>),
    /// The host streams `Stdin` frames and one `StdinEof` (`connection` calls only).
    Stream,
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is an absolute path or found on the request's `PATH`.
    /// The host sends `["/bin/sh", "-c", CMD]`: never a login shell.
    pub argv: Vec<String>,
    /// The exact environment (nothing is inherited from the agent).
    pub env: Vec<(String, String)>,
    /// Working directory (a container path), resolved in the container, symlinks included.
    pub cwd: String,
    /// The container mount roots a cwd may lie under.
    pub roots: Vec<String>,
    /// Deadline; `None` = no deadline.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Time between SIGTERM and SIGKILL of the tree after the deadline (default 2 s).
    #[serde(default)]
    pub grace_ms: Option<u64>,
    /// How long the call lives.
    #[serde(default)]
    pub lifetime: Lifetime,
    /// Where stdin comes from (detached calls: `closed` only).
    #[serde(default)]
    pub stdin: StdinMode,
    /// Bytes kept per output stream (head and tail halves); the agent caps it at 16 MiB
    /// (`connection`) or 1 MiB (`detached`).
    pub max_output_bytes: u64,
}

/// A running or finished call, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRef {
    /// The id from [`Event::Started`].
    pub call_id: String,
}

/// Send a signal to a call's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// The call.
    pub call_id: String,
    /// Signal number (e.g. 15).
    pub signal: i32,
    /// Signal every process of the call's tree, not just the command.
    #[serde(default)]
    pub tree: bool,
}

/// A container path and the mount root it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTarget {
    /// The container path of the mount root (a directory, or a single-file bind).
    pub root: String,
    /// The container path itself: the root or a path beneath it.
    pub path: String,
}

/// Read (part of) a regular file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// What to read.
    pub target: FileTarget,
    /// First byte.
    #[serde(default)]
    pub offset: u64,
    /// Bytes wanted (`None`: to the end).
    #[serde(default)]
    pub length: Option<u64>,
    /// Most bytes sent; more is reported as `truncated`.
    pub cap: u64,
}

/// Write a whole file atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    /// What to write.
    pub target: FileTarget,
    /// Create missing parent directories.
    #[serde(default)]
    pub mkdir_parents: bool,
    /// Refuse (`already_exists`) if anything exists at the path.
    #[serde(default)]
    pub exclusive: bool,
    /// Refuse (`etag_mismatch`) unless the current file has this etag.
    #[serde(default)]
    pub expected_etag: Option<String>,
    /// Largest content accepted.
    pub cap: u64,
}

/// Create a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkdirRequest {
    /// The directory.
    pub target: FileTarget,
    /// Create missing parents too; an existing directory is then not an error.
    #[serde(default)]
    pub parents: bool,
}

/// List a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// The directory.
    pub target: FileTarget,
    /// Most entries returned; more is reported as `truncated`.
    pub max_entries: u64,
}

/// Remove a file, symlink or empty directory (never recursively).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// What to remove.
    pub target: FileTarget,
}

/// Rename within the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// Source.
    pub from: FileTarget,
    /// Destination.
    pub to: FileTarget,
    /// Refuse (`already_exists`) if the destination exists.
    #[serde(default)]
    pub no_replace: bool,
}

/// Every request the host can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "op",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Request {
    /// Run a command.
    Exec(ExecRequest),
    /// Running and recently finished detached calls.
    ListCalls,
    /// Re-stream a detached call's kept head, then live output while the head has room, then
    /// (at the exit) the kept tail and the exit. Only one connection is attached at a time: a
    /// new attach supersedes the previous one (which gets a `busy` error).
    Attach(CallRef),
    /// Signal a call.
    Signal(SignalRequest),
    /// Kill a call's whole tree.
    Kill(CallRef),
    /// Read a file.
    ReadFile(ReadRequest),
    /// Write a file.
    WriteFile(WriteRequest),
    /// Stat a path (symlinks beneath the root followed).
    Stat(FileTarget),
    /// List a directory.
    List(ListRequest),
    /// Create a directory.
    Mkdir(MkdirRequest),
    /// Remove a path.
    Remove(RemoveRequest),
    /// Rename a path.
    Rename(RenameRequest),
}

/// Stable error codes (the host's file-tool codes where they exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Path does not exist.
    NotFound,
    /// The kernel refused access (as the sandbox user).
    PermissionDenied,
    /// Resolution would leave the mount root (absolute symlink, `..`, magic link).
    EscapesRoot,
    /// A FIFO, socket or device: refused without blocking.
    SpecialFile,
    /// A directory where a file was needed.
    IsDirectory,
    /// A non-directory where a directory was needed.
    NotDirectory,
    /// Read-only filesystem.
    ReadOnlyMount,
    /// Over a cap.
    TooLarge,
    /// Too many symlinks (loop).
    SymlinkLoop,
    /// Too many links.
    TooManyLinks,
    /// Name or path too long.
    NameTooLong,
    /// No space or quota.
    NoSpace,
    /// Changed concurrently or busy (e.g. a single-file bind mount cannot be replaced).
    Busy,
    /// Something already exists there.
    AlreadyExists,
    /// Directory not empty.
    NotEmpty,
    /// The file's etag is not the expected one.
    EtagMismatch,
    /// Rename across mounts.
    CrossDevice,
    /// The path is not the root or beneath it, or is malformed.
    InvalidPath,
    /// The cwd (or a path) lies on none of the given mount roots.
    NotOnMount,
    /// The kernel cannot do this safely (e.g. no `openat2`): fail closed.
    Unsupported,
    /// A malformed or out-of-place request.
    BadRequest,
    /// No such call.
    UnknownCall,
    /// The command could not be started (exec failed, bad cwd fd, …).
    StartFailed,
    /// Any other I/O error.
    IoError,
    /// The agent failed internally.
    Internal,
    /// A code this client does not know (a newer agent).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The stable wire name (`"not_found"`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::EscapesRoot => "escapes_root",
            ErrorCode::SpecialFile => "special_file",
            ErrorCode::IsDirectory => "is_directory",
            ErrorCode::NotDirectory => "not_directory",
            ErrorCode::ReadOnlyMount => "read_only_mount",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::SymlinkLoop => "symlink_loop",
            ErrorCode::TooManyLinks => "too_many_links",
            ErrorCode::NameTooLong => "name_too_long",
            ErrorCode::NoSpace => "no_space",
            ErrorCode::Busy => "busy",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::NotEmpty => "not_empty",
            ErrorCode::EtagMismatch => "etag_mismatch",
            ErrorCode::CrossDevice => "cross_device",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::NotOnMount => "not_on_mount",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCall => "unknown_call",
            ErrorCode::StartFailed => "start_failed",
            ErrorCode::IoError => "io_error",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A structured refusal from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human message (untrusted text on the host: escape before display).
    pub message: String,
}

impl AgentError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AgentError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The command exited.
    Exited,
    /// The command died of a signal (not one the agent sent).
    Signaled,
    /// The agent's deadline killed it.
    Timeout,
    /// Killed on request or because its connection dropped.
    Killed,
    /// Killed by the kernel's OOM killer.
    Oom,
    /// Never started (exec failed).
    StartFailed,
    /// Its reaper vanished (killed from inside the sandbox): status unknown, tree killed.
    Lost,
}

/// Byte counts of one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Every byte the command wrote.
    pub total: u64,
    /// Bytes were dropped between head and tail.
    pub truncated: bool,
}

/// How a call ended. Exit code and signal come only from `waitpid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The call.
    pub call_id: String,
    /// Exit code if it exited.
    pub exit_code: Option<i32>,
    /// Signal number if it was killed by one.
    pub signal: Option<i32>,
    /// Why it ended.
    pub reason: EndReason,
    /// The deadline fired.
    pub timed_out: bool,
    /// The container's memory cgroup counted an OOM kill during the call and it died of SIGKILL.
    pub oom_killed: bool,
    /// stdout counts.
    pub stdout: StreamInfo,
    /// stderr counts.
    pub stderr: StreamInfo,
    /// Wall time from start to the end of the tree.
    pub duration_ms: u64,
    /// Why it could not be executed (`reason == start_failed`; no `Started` event was sent).
    pub start_error: Option<AgentError>,
}

/// A detached call as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    /// Its id.
    pub call_id: String,
    /// The command's pid (agent's namespace).
    pub pid: i32,
    /// Its argv.
    pub argv: Vec<String>,
    /// Still running.
    pub running: bool,
    /// Milliseconds since it started.
    pub age_ms: u64,
    /// How it ended, once it did.
    pub exit: Option<ExitInfo>,
}

/// Result of a stat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// `file`, `dir`, `symlink`, `fifo`, `socket`, `char_device`, `block_device`, `other`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Changes whenever the content may have changed.
    pub etag: String,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Its name (lossy UTF-8).
    pub name: String,
    /// As [`FileStat::kind`] (not following symlinks).
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
}

/// Everything the agent sends as a control frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A call started.
    Started {
        /// Its id.
        call_id: String,
        /// The command's pid (agent's namespace).
        pid: i32,
    },
    /// `skipped` bytes of `stream` were dropped; its kept tail follows.
    Gap {
        /// Which stream.
        stream: OutStream,
        /// Bytes dropped.
        skipped: u64,
    },
    /// A call ended (last event of an exec or attach).
    Exit(ExitInfo),
    /// A structured refusal or failure.
    Error(AgentError),
    /// Detached calls.
    Calls {
        /// Running and recently finished.
        calls: Vec<CallInfo>,
    },
    /// Success without data.
    Done,
    /// A read begins: exactly `length` bytes follow in `Data` frames, then `ReadEnd`.
    ReadStart {
        /// File size.
        size: u64,
        /// Bytes that follow.
        length: u64,
        /// More was asked for (or is there) than the cap allowed.
        truncated: bool,
        /// The file's etag.
        etag: String,
    },
    /// A read finished.
    ReadEnd,
    /// A write was accepted: send `Data` frames and `DataEnd`.
    Ready,
    /// A write finished and is in place.
    Written {
        /// Bytes written.
        bytes: u64,
        /// Nothing existed at the path before.
        created: bool,
        /// The new file's etag.
        etag: String,
    },
    /// A stat.
    Stat(FileStat),
    /// A listing.
    Entries {
        /// Entries, sorted by name.
        entries: Vec<DirEntry>,
        /// More entries existed than `max_entries`.
        truncated: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameType::Stdout, b"hello").unwrap();
        write_json(&mut buf, FrameType::Event, &Event::Done).unwrap();
        let mut r = &buf[..];
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f.kind, FrameType::Stdout);
        assert_eq!(f.payload, b"hello");
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(
            AgentMessage::decode(f).unwrap(),
            AgentMessage::Event(Event::Done)
        );
        assert!(read_frame(&mut r).unwrap().is_none());

        let big = vec![0u8; MAX_FRAME + 1];
        assert!(write_frame(&mut Vec::new(), FrameType::Data, &big).is_err());
        let mut hdr = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        hdr.push(8);
        assert!(matches!(
            read_frame(&mut &hdr[..]),
            Err(ProtoError::TooLarge(_))
        ));
        assert!(matches!(
            read_frame(&mut &[1u8, 0, 0, 0, 42][..]),
            Err(ProtoError::UnknownType(42))
        ));
        assert!(matches!(
            read_frame(&mut &[3u8, 0, 0][..]),
            Err(ProtoError::Truncated)
        ));
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let ok = r#"{"op":"kill","args":{"call_id":"c1"}}"#;
        let r: Request = serde_json::from_str(ok).unwrap();
        assert_eq!(
            r,
            Request::Kill(CallRef {
                call_id: "c1".into()
            })
        );
        let bad = r#"{"op":"kill","args":{"call_id":"c1","x":1}}"#;
        assert!(serde_json::from_str::<Request>(bad).is_err());
        let list: Request = serde_json::from_str(r#"{"op":"list_calls"}"#).unwrap();
        assert_eq!(list, Request::ListCalls);
        let code: ErrorCode = serde_json::from_str(r#""brand_new_code""#).unwrap();
        assert_eq!(code, ErrorCode::Unknown);
        // as_str is the serde name for every code.
        for c in [
            ErrorCode::NotFound,
            ErrorCode::ReadOnlyMount,
            ErrorCode::EtagMismatch,
            ErrorCode::StartFailed,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The host-side decoder survives anything the agent could send: random bytes,
        /// truncated frames, oversized lengths. It never panics and never holds more than one
        /// frame's worth beyond what was pushed.
        #[test]
        fn decoder_survives_arbitrary_bytes(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = FrameDecoder::new();
            for c in &chunks {
                d.push(c);
                while let Ok(Some(f)) = d.next_frame() {
                    prop_assert!(f.payload.len() <= MAX_FRAME);
                    let _ = AgentMessage::decode(f);
                }
            }
            let all: Vec<u8> = chunks.concat();
            let mut r = &all[..];
            while let Ok(Some(f)) = read_frame(&mut r) {
                prop_assert!(f.payload.len() <= MAX_FRAME);
                let _ = AgentMessage::decode(f);
            }
        }

        /// Well-formed frames with arbitrary (often non-JSON) payloads and any type byte.
        #[test]
        fn decoder_survives_random_frames(kind in any::<u8>(), len in any::<u32>(),
                                          payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = len.to_le_bytes().to_vec();
            bytes.push(kind);
            bytes.extend_from_slice(&payload);
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            match d.next_frame() {
                Ok(Some(f)) => { let _ = AgentMessage::decode(f); }
                Ok(None) => prop_assert!((len as usize) > payload.len()),
                Err(_) => {}
            }
            let _ = read_frame(&mut &bytes[..]);
            let _ = decode_json::<Event>("event", &payload);
        }
    }
}
