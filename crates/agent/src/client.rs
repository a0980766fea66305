//! The blocking host-side client (run it from `spawn_blocking`).
//!
//! The caller connects the socket and verifies the peer itself (with [`peer_cred`]: the uid
//! must be the sandbox uid and the pid the agent's host pid) **before** calling
//! [`Client::handshake`], which is the first byte sent. Everything the agent sends is treated
//! as untrusted: frames are bounded ([`crate::proto::MAX_FRAME`]), events are typed, and any
//! protocol violation makes the connection unusable ([`ClientError::Protocol`]).

use crate::proto::{
    self, AgentError, AgentHello, AgentMessage, CHUNK, CallInfo, CallRef, ClientHello, DirEntry,
    Event, ExecRequest, ExitInfo, FileStat, FileTarget, FrameDecoder, FrameType, Lifetime,
    ListRequest, MkdirRequest, OutStream, PROTOCOL_VERSION, ProtoError, ReadRequest, RemoveRequest,
    RenameRequest, Request, SignalRequest, StdinMode, WriteRequest,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// What can go wrong talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed or closed (the agent or container died, or the connection is broken
    /// after an earlier error).
    #[error("agent transport: {0}")]
    Io(#[from] io::Error),
    /// The agent sent something malformed or out of place; the connection is unusable.
    #[error("agent protocol: {0}")]
    Protocol(#[from] ProtoError),
    /// The agent refused or failed the request (a structured error with a stable code).
    #[error("agent refused: {0}")]
    Agent(AgentError),
}

/// Result of the client's calls.
pub type Result<T> = std::result::Result<T, ClientError>;

/// `SO_PEERCRED` of a connected Unix socket: (pid, uid, gid) as seen from the caller's pid
/// namespace (pid 0 when the peer lives outside it).
pub fn peer_cred(s: &UnixStream) -> io::Result<(i32, u32, u32)> {
    let c = getsockopt(s, PeerCredentials)?;
    Ok((c.pid(), c.uid(), c.gid()))
}

/// The agent's host pid, given the container's init pid (`State.Pid` of a container run with
/// `--init`): its only child, read from `/proc/<pid>/task/*/children`. `None` unless there is
/// exactly one. Remember it at container start; compare it with [`peer_cred`] before sending
/// a byte.
pub fn agent_host_pid(container_init_pid: i32) -> Option<i32> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{container_init_pid}/task"))
        .ok()?
        .flatten()
    {
        let s = std::fs::read_to_string(task.path().join("children")).ok()?;
        kids.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    match kids[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// A finished exec or attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// The call's id.
    pub call_id: String,
    /// The command's pid in the container.
    pub pid: i32,
    /// How it ended (from `waitpid` in the container).
    pub exit: ExitInfo,
    /// Bytes dropped between head and tail of stdout (the tail followed the gap).
    pub stdout_skipped: u64,
    /// Same for stderr.
    pub stderr_skipped: u64,
}

/// A detached call that started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCall {
    /// Its id (for attach, signal, kill).
    pub call_id: String,
    /// The command's pid in the container.
    pub pid: i32,
}

/// A finished read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// The file's size.
    pub size: u64,
    /// Bytes written to the sink.
    pub length: u64,
    /// The cap cut the read short.
    pub truncated: bool,
    /// The file's etag.
    pub etag: String,
}

/// A finished write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// Bytes written.
    pub bytes: u64,
    /// Nothing existed at the path before.
    pub created: bool,
    /// The new file's etag.
    pub etag: String,
}

/// Ends a [`Client`]'s connection from any thread.
#[derive(Debug)]
pub struct Canceller(UnixStream);

impl Canceller {
    /// Shut the connection down (idempotent).
    pub fn cancel(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// A connection to an agent, after the hello. Requests run one at a time.
pub struct Client {
    stream: UnixStream,
    decoder: FrameDecoder,
    hello: AgentHello,
    broken: bool,
    rbuf: Vec<u8>,
}

/// Where a call's stdin comes from: a reader, and its descriptor when it can be polled.
struct StdinSource<'a> {
    read: &'a mut dyn Read,
    fd: Option<std::os::fd::BorrowedFd<'a>>,
}

/// Tell `on_started` once, when the call's id is known.
fn announce(p: &ExecProgress, announced: &mut bool, on_started: &mut dyn FnMut(&str, i32)) {
    if !*announced && let Some((id, pid)) = &p.started {
        *announced = true;
        on_started(id, *pid);
    }
}

/// Progress of one exec/attach as its events arrive.
#[derive(Default)]
struct ExecProgress {
    started: Option<(String, i32)>,
    exit: Option<ExitInfo>,
    error: Option<AgentError>,
    skipped: [u64; 2],
}

impl ExecProgress {
    fn done(&self) -> bool {
        self.exit.is_some() || self.error.is_some()
    }

    fn on(&mut self, msg: AgentMessage, on_output: &mut dyn FnMut(OutStream, &[u8])) -> Result<()> {
        match msg {
            AgentMessage::Output(s, bytes) if !self.done() => on_output(s, &bytes),
            AgentMessage::Event(Event::Started { call_id, pid }) if self.started.is_none() => {
                self.started = Some((call_id, pid))
            }
            AgentMessage::Event(Event::Gap { stream, skipped }) => {
                self.skipped[stream as usize] =
                    self.skipped[stream as usize].saturating_add(skipped)
            }
            AgentMessage::Event(Event::Exit(e)) if !self.done() => self.exit = Some(e),
            AgentMessage::Event(Event::Error(e)) if !self.done() => self.error = Some(e),
            other => {
                return Err(ProtoError::Unexpected(format!("{other:?} during a call")).into());
            }
        }
        Ok(())
    }

    fn result(self, attach_id: Option<&str>) -> Result<ExecResult> {
        if let Some(e) = self.error {
            return Err(ClientError::Agent(e));
        }
        let Some(exit) = self.exit else {
            return Err(ProtoError::Unexpected("call ended without an exit".into()).into());
        };
        // No `Started` before the exit: the command could not be executed (`start_failed`),
        // or this is an attach.
        let (call_id, pid) = match (self.started, attach_id) {
            (Some(s), _) => s,
            (None, Some(id)) => (id.to_string(), 0),
            (None, None) => (exit.call_id.clone(), 0),
        };
        Ok(ExecResult {
            call_id,
            pid,
            exit,
            stdout_skipped: self.skipped[0],
            stderr_skipped: self.skipped[1],
        })
    }
}

impl Client {
    /// Send the hello and check the agent's (same [`PROTOCOL_VERSION`]). The peer must have
    /// been verified already.
    pub fn handshake(stream: UnixStream) -> Result<Client> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Client {
            stream,
            decoder: FrameDecoder::new(),
            hello: AgentHello {
                protocol: 0,
                build: String::new(),
                pid: 0,
            },
            broken: false,
            rbuf: vec![0u8; CHUNK],
        };
        let hello = ClientHello {
            protocol: PROTOCOL_VERSION,
            client: concat!("clawden/", env!("CARGO_PKG_VERSION")).into(),
        };
        proto::write_json(&mut c.stream, FrameType::Hello, &hello)?;
        match c.recv()? {
            AgentMessage::Hello(h) if h.protocol == PROTOCOL_VERSION => c.hello = h,
            AgentMessage::Hello(h) => {
                return Err(ProtoError::Version { theirs: h.protocol }.into());
            }
            other => {
                return Err(ProtoError::Unexpected(format!("{other:?} before the hello")).into());
            }
        }
        c.stream.set_read_timeout(None)?;
        Ok(c)
    }

    /// A handle that can end this connection from another thread (e.g. the drop guard of an
    /// async call): the agent then kills a `connection` call's whole tree, and the blocked
    /// client method returns a transport error.
    pub fn canceller(&self) -> io::Result<Canceller> {
        Ok(Canceller(self.stream.try_clone()?))
    }

    /// Bound every blocking read and write of this connection (`None`: no bound, the
    /// default after the hello). A call that exceeds it fails with a transport error and the
    /// connection becomes unusable.
    pub fn set_io_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)?;
        self.stream.set_write_timeout(t)
    }

    /// The agent's hello (version, build id, its pid in the container).
    pub fn agent_hello(&self) -> &AgentHello {
        &self.hello
    }

    fn check(&self) -> Result<()> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection unusable after an earlier failure",
            )
            .into());
        }
        Ok(())
    }

    /// Mark the connection broken on transport/protocol errors (never on agent refusals).
    fn guard<T>(&mut self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(ClientError::Io(_)) | Err(ClientError::Protocol(_))) {
            self.broken = true;
        }
        r
    }

    fn request(&mut self, req: &Request) -> Result<()> {
        self.check()?;
        proto::write_json(&mut self.stream, FrameType::Request, req)?;
        Ok(())
    }

    fn recv(&mut self) -> Result<AgentMessage> {
        loop {
            if let Some(f) = self.decoder.next_frame()? {
                return Ok(AgentMessage::decode(f)?);
            }
            let n = match self.stream.read(&mut self.rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "agent closed the connection",
                )
                .into());
            }
            self.decoder.push(&self.rbuf[..n]);
        }
    }

    fn recv_event(&mut self) -> Result<Event> {
        match self.recv()? {
            AgentMessage::Event(Event::Error(e)) => Err(ClientError::Agent(e)),
            AgentMessage::Event(e) => Ok(e),
            other => Err(ProtoError::Unexpected(format!("{other:?} instead of an event")).into()),
        }
    }

    fn simple(&mut self, req: Request) -> Result<Event> {
        let r = self.request(&req).and_then(|_| self.recv_event());
        self.guard(r)
    }

    fn expect_done(&mut self, req: Request) -> Result<()> {
        match self.simple(req)? {
            Event::Done => Ok(()),
            other => self.guard(Err(ProtoError::Unexpected(format!("{other:?}")).into())),
        }
    }

    /// Run a command for the lifetime of this connection and wait for its exit. With
    /// `stdin: Some`, its bytes are streamed while output is read (no deadlock either way);
    /// `None` means `req.stdin` (`closed` or `inline`; `stream` without a reader becomes
    /// `closed`). `req.lifetime` is set to `connection`.
    /// `on_output` gets each stream's head live and its tail at the end (after a gap, counted
    /// in [`ExecResult::stdout_skipped`] / `stderr_skipped`).
    pub fn exec(
        &mut self,
        req: &ExecRequest,
        stdin: Option<&mut dyn Read>,
        on_output: &mut dyn FnMut(OutStream, &[u8]),
    ) -> Result<ExecResult> {
        let src = stdin.map(|r| StdinSource { read: r, fd: None });
        self.exec_with(req, src, &mut |_, _| {}, on_output)
    }

    /// [`Client::exec`] for interactive callers: stdin comes from a non-blocking descriptor
    /// (e.g. a pipe another task writes to) that is polled with the connection, so output keeps
    /// flowing while no input arrives; `on_started` gets the call's id and pid as soon as the
    /// agent reports them (for signals and kills from another connection).
    pub fn exec_interactive(
        &mut self,
        req: &ExecRequest,
        stdin: Option<std::os::fd::OwnedFd>,
        on_started: &mut dyn FnMut(&str, i32),
        on_output: &mut dyn FnMut(OutStream, &[u8]),
    ) -> Result<ExecResult> {
        match stdin {
            Some(fd) => {
                nix::fcntl::fcntl(
                    &fd,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )
                .map_err(io::Error::from)?;
                let mut file = std::fs::File::from(fd);
                let borrowed = file.try_clone()?;
                let src = StdinSource {
                    read: &mut file,
                    fd: Some(borrowed.as_fd()),
                };
                self.exec_with(req, Some(src), on_started, on_output)
            }
            None => self.exec_with(req, None, on_started, on_output),
        }
    }

    fn exec_with(
        &mut self,
        req: &ExecRequest,
        stdin: Option<StdinSource<'_>>,
        on_started: &mut dyn FnMut(&str, i32),
        on_output: &mut dyn FnMut(OutStream, &[u8]),
    ) -> Result<ExecResult> {
        let mut req = req.clone();
        req.lifetime = Lifetime::Connection;
        if stdin.is_some() {
            req.stdin = StdinMode::Stream;
        } else if req.stdin == StdinMode::Stream {
            req.stdin = StdinMode::Closed;
        }
        let r = self.exec_inner(&req, stdin, on_started, on_output);
        self.guard(r)
    }

    fn exec_inner(
        &mut self,
        req: &ExecRequest,
        stdin: Option<StdinSource<'_>>,
        on_started: &mut dyn FnMut(&str, i32),
        on_output: &mut dyn FnMut(OutStream, &[u8]),
    ) -> Result<ExecResult> {
        self.request(&Request::Exec(req.clone()))?;
        let mut p = ExecProgress::default();
        let mut announced = false;
        // A detached start answers `Started` only; everything else ends with Exit or Error.
        match stdin {
            None => {
                while !p.done() {
                    let m = self.recv()?;
                    p.on(m, on_output)?;
                    announce(&p, &mut announced, on_started);
                }
            }
            Some(src) => {
                self.stream.set_nonblocking(true)?;
                let r = self.pump_stdin(src, &mut p, &mut announced, on_started, on_output);
                self.stream.set_nonblocking(false)?;
                r?;
            }
        }
        p.result(None)
    }

    /// Interleave sending stdin with receiving events on one thread (poll), until the call
    /// ended and our `StdinEof` went out. A source with a descriptor is read only when it is
    /// readable; one without is read whenever nothing is queued.
    fn pump_stdin(
        &mut self,
        src: StdinSource<'_>,
        p: &mut ExecProgress,
        announced: &mut bool,
        on_started: &mut dyn FnMut(&str, i32),
        on_output: &mut dyn FnMut(OutStream, &[u8]),
    ) -> Result<()> {
        let StdinSource { read: src, fd } = src;
        let mut out: Vec<u8> = Vec::new();
        let mut eof_queued = false;
        let mut chunk = vec![0u8; CHUNK];
        let mut inbuf = vec![0u8; CHUNK];
        let mut src_ready = fd.is_none();
        loop {
            while let Some(f) = self.decoder.next_frame()? {
                p.on(AgentMessage::decode(f)?, on_output)?;
                announce(p, announced, on_started);
            }
            if p.done() && !eof_queued {
                // Finish the frame in flight, then end stdin; the rest of the source is unread.
                proto::write_frame(&mut out, FrameType::StdinEof, &[])?;
                eof_queued = true;
            }
            if p.done() && eof_queued && out.is_empty() {
                return Ok(());
            }
            if !eof_queued && out.is_empty() && src_ready {
                let n = loop {
                    match src.read(&mut chunk) {
                        Ok(n) => break Some(n),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && fd.is_some() => {
                            break None;
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                match n {
                    None => src_ready = false,
                    Some(0) => {
                        proto::write_frame(&mut out, FrameType::StdinEof, &[])?;
                        eof_queued = true;
                    }
                    Some(n) => proto::write_frame(&mut out, FrameType::Stdin, &chunk[..n])?,
                }
                if fd.is_some() {
                    src_ready = false;
                }
            }
            let mut flags = PollFlags::POLLIN;
            if !out.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            let watch_src = fd.filter(|_| !eof_queued && out.is_empty());
            let (readable, writable, src_readable) = {
                let mut fds = vec![PollFd::new(self.stream.as_fd(), flags)];
                if let Some(f) = watch_src {
                    fds.push(PollFd::new(f, PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(io::Error::from(e).into()),
                }
                let r = fds[0].revents().unwrap_or(PollFlags::POLLIN);
                let s = fds.get(1).is_some_and(|f| {
                    f.revents().is_some_and(|r| {
                        r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                    })
                });
                (
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR),
                    r.contains(PollFlags::POLLOUT),
                    s,
                )
            };
            if src_readable {
                src_ready = true;
            }
            if readable {
                match self.stream.read(&mut inbuf) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "agent closed the connection",
                        )
                        .into());
                    }
                    Ok(n) => self.decoder.push(&inbuf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if writable && !out.is_empty() {
                match self.stream.write(&out) {
                    Ok(n) => {
                        out.drain(..n);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Start a `detached` call (stdin `closed` or `inline`): it keeps running without this
    /// connection.
    pub fn start_detached(&mut self, req: &ExecRequest) -> Result<StartedCall> {
        let mut req = req.clone();
        req.lifetime = Lifetime::Detached;
        if req.stdin == StdinMode::Stream {
            req.stdin = StdinMode::Closed;
        }
        match self.simple(Request::Exec(req))? {
            Event::Started { call_id, pid } => Ok(StartedCall { call_id, pid }),
            Event::Exit(ExitInfo {
                start_error: Some(e),
                ..
            }) => Err(ClientError::Agent(e)),
            other => self.guard(Err(ProtoError::Unexpected(format!("{other:?}")).into())),
        }
    }

    /// Running and recently finished detached calls.
    pub fn list_calls(&mut self) -> Result<Vec<CallInfo>> {
        match self.simple(Request::ListCalls)? {
            Event::Calls { calls } => Ok(calls),
            other => self.guard(Err(ProtoError::Unexpected(format!("{other:?}")).into())),
        }
    }

    /// Re-stream a detached call's kept output, then its live output, until it exits.
    pub fn attach(
        &mut self,
        call_id: &str,
        on_output: &mut dyn FnMut(OutStream, &[u8]),
    ) -> Result<ExecResult> {
        let r = self.request(&Request::Attach(CallRef {
            call_id: call_id.into(),
        }));
        let r = r.and_then(|_| {
            let mut p = ExecProgress::default();
            while !p.done() {
                let m = self.recv()?;
                p.on(m, on_output)?;
            }
            p.result(Some(call_id))
        });
        self.guard(r)
    }

    /// Send a signal to a call's command (`tree`: to every process of the call).
    pub fn signal(&mut self, call_id: &str, signal: i32, tree: bool) -> Result<()> {
        self.expect_done(Request::Signal(SignalRequest {
            call_id: call_id.into(),
            signal,
            tree,
        }))
    }

    /// Kill a call's whole tree; returns once it is gone (or after 5 s).
    pub fn kill(&mut self, call_id: &str) -> Result<()> {
        self.expect_done(Request::Kill(CallRef {
            call_id: call_id.into(),
        }))
    }

    /// Read a regular file into `sink`.
    pub fn read_file(&mut self, req: &ReadRequest, sink: &mut dyn Write) -> Result<ReadResult> {
        let r = self.read_inner(req, sink);
        self.guard(r)
    }

    fn read_inner(&mut self, req: &ReadRequest, sink: &mut dyn Write) -> Result<ReadResult> {
        self.request(&Request::ReadFile(req.clone()))?;
        let (size, length, truncated, etag) = match self.recv_event()? {
            Event::ReadStart {
                size,
                length,
                truncated,
                etag,
            } => (size, length, truncated, etag),
            other => return Err(ProtoError::Unexpected(format!("{other:?}")).into()),
        };
        let mut got = 0u64;
        let mut sink_err: Option<io::Error> = None;
        loop {
            match self.recv()? {
                AgentMessage::Data(d) => {
                    got += d.len() as u64;
                    if got > length {
                        return Err(
                            ProtoError::Unexpected("more data than announced".into()).into()
                        );
                    }
                    if sink_err.is_none()
                        && let Err(e) = sink.write_all(&d)
                    {
                        sink_err = Some(e);
                    }
                }
                AgentMessage::Event(Event::ReadEnd) => break,
                AgentMessage::Event(Event::Error(e)) => return Err(ClientError::Agent(e)),
                other => return Err(ProtoError::Unexpected(format!("{other:?}")).into()),
            }
        }
        if let Some(e) = sink_err {
            return Err(io::Error::new(e.kind(), format!("sink: {e}")).into());
        }
        if got != length {
            return Err(ProtoError::Unexpected("less data than announced".into()).into());
        }
        Ok(ReadResult {
            size,
            length,
            truncated,
            etag,
        })
    }

    /// Write a file atomically from `source`, streamed in chunks. If `source` fails, the
    /// connection is dropped (the agent then discards the temp file) and becomes unusable.
    pub fn write_file(&mut self, req: &WriteRequest, source: &mut dyn Read) -> Result<WriteResult> {
        let r = self.write_inner(req, source);
        self.guard(r)
    }

    fn write_inner(&mut self, req: &WriteRequest, source: &mut dyn Read) -> Result<WriteResult> {
        self.request(&Request::WriteFile(req.clone()))?;
        match self.recv_event()? {
            Event::Ready => {}
            other => return Err(ProtoError::Unexpected(format!("{other:?}")).into()),
        }
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = match source.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Never end a failed source with DataEnd (that would commit it).
                    let _ = self.stream.shutdown(std::net::Shutdown::Both);
                    self.broken = true;
                    return Err(e.into());
                }
            };
            if n == 0 {
                break;
            }
            proto::write_frame(&mut self.stream, FrameType::Data, &buf[..n])?;
            sent += n as u64;
            if sent > req.cap {
                break; // the agent refuses it anyway (too_large); stop reading the source
            }
        }
        proto::write_frame(&mut self.stream, FrameType::DataEnd, &[])?;
        match self.recv_event()? {
            Event::Written {
                bytes,
                created,
                etag,
            } => Ok(WriteResult {
                bytes,
                created,
                etag,
            }),
            other => Err(ProtoError::Unexpected(format!("{other:?}")).into()),
        }
    }

    /// Stat a path (symlinks beneath its root followed).
    pub fn stat(&mut self, target: &FileTarget) -> Result<FileStat> {
        match self.simple(Request::Stat(target.clone()))? {
            Event::Stat(s) => Ok(s),
            other => self.guard(Err(ProtoError::Unexpected(format!("{other:?}")).into())),
        }
    }

    /// List a directory: (entries sorted by name, truncated).
    pub fn list(&mut self, target: &FileTarget, max_entries: u64) -> Result<(Vec<DirEntry>, bool)> {
        match self.simple(Request::List(ListRequest {
            target: target.clone(),
            max_entries,
        }))? {
            Event::Entries { entries, truncated } => Ok((entries, truncated)),
            other => self.guard(Err(ProtoError::Unexpected(format!("{other:?}")).into())),
        }
    }

    /// Create a directory (`parents`: and missing parents; existing is then fine).
    pub fn mkdir(&mut self, target: &FileTarget, parents: bool) -> Result<()> {
        self.expect_done(Request::Mkdir(MkdirRequest {
            target: target.clone(),
            parents,
        }))
    }

    /// Remove a file, symlink or empty directory.
    pub fn remove(&mut self, target: &FileTarget) -> Result<()> {
        self.expect_done(Request::Remove(RemoveRequest {
            target: target.clone(),
        }))
    }

    /// Rename `from` to `to` (`no_replace`: refuse if `to` exists).
    pub fn rename(&mut self, from: &FileTarget, to: &FileTarget, no_replace: bool) -> Result<()> {
        self.expect_done(Request::Rename(RenameRequest {
            from: from.clone(),
            to: to.clone(),
            no_replace,
        }))
    }
}
