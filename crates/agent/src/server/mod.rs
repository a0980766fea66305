//! The agent: `clawden-agent serve --socket PATH --supervisor-uid UID`.
//!
//! Start-up order matters: `PR_SET_DUMPABLE 0` and `PR_SET_CHILD_SUBREAPER` first, then the
//! zygote is forked while the process is still single-threaded, then the socket is bound
//! (created 0600 under a 0177 umask, so it is never briefly open to others) and served with
//! one thread per connection. A connection is served only if `SO_PEERCRED` says the peer is
//! outside the agent's pid namespace (pid 0) and has the supervisor's uid; anything else is
//! closed without a byte.

pub mod calls;
pub mod files;
mod pump;
pub mod tree;
pub mod zygote;

use crate::client::peer_cred;
use crate::proto::{
    self, AgentError, AgentHello, BUILD_ID, CHUNK, ClientHello, ErrorCode, Event, FrameType,
    Lifetime, PROTOCOL_VERSION, ProtoError, Request, StdinMode,
};
use nix::errno::Errno;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zygote::Zygote;

/// How long a client may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not read what the agent sends for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The agent's configuration (from its command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub socket: PathBuf,
    /// The only uid served.
    pub supervisor_uid: u32,
}

/// The write half of a connection, shared by its handler and the pumps forwarding to it.
pub struct Writer(Mutex<UnixStream>);

impl Writer {
    /// Send one frame.
    pub fn frame(&self, kind: FrameType, payload: &[u8]) -> io::Result<()> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        proto::write_frame(&mut *s, kind, payload)
    }

    /// Send an event.
    pub fn event(&self, ev: &Event) -> io::Result<()> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        proto::write_json(&mut *s, FrameType::Event, ev)
    }

    fn error(&self, e: AgentError) -> io::Result<()> {
        self.event(&Event::Error(e))
    }
}

struct Ctx {
    zygote: Zygote,
    registry: Arc<calls::Registry>,
    supervisor_uid: u32,
}

fn usage() -> &'static str {
    "usage: clawden-agent serve --socket PATH --supervisor-uid UID | clawden-agent --version"
}

/// Parse the command line (without argv[0]). `Ok(None)` means `--version`.
pub fn parse_args(args: &[OsString]) -> Result<Option<Config>, String> {
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().ok_or("non-UTF-8 argument"))
        .collect::<Result<_, _>>()?;
    match args.first() {
        Some(&"--version") if args.len() == 1 => return Ok(None),
        Some(&"serve") => {}
        _ => return Err(usage().into()),
    }
    let (mut socket, mut uid) = (None, None);
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match *a {
            "--socket" => socket = it.next().map(PathBuf::from),
            "--supervisor-uid" => {
                uid = Some(
                    it.next()
                        .and_then(|v| v.parse::<u32>().ok())
                        .ok_or("--supervisor-uid needs a number")?,
                )
            }
            other => return Err(format!("unknown argument {other:?}; {}", usage())),
        }
    }
    match (socket, uid) {
        (Some(socket), Some(supervisor_uid)) if socket.is_absolute() => Ok(Some(Config {
            socket,
            supervisor_uid,
        })),
        _ => Err(usage().into()),
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match parse_args(&args) {
        Ok(None) => {
            println!("{BUILD_ID} protocol {PROTOCOL_VERSION}");
            ExitCode::SUCCESS
        }
        Ok(Some(cfg)) => match serve(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("clawden-agent: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("clawden-agent: {e}");
            ExitCode::from(2)
        }
    }
}

fn bind(path: &std::path::Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            )));
        }
        // A stale socket (or whatever the sandbox put there): unlink removes the entry itself,
        // never a symlink's target.
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Created 0600 from the start (no window for a chmod race on a path the sandbox owns).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    l
}

/// Run the agent until its listener fails.
pub fn serve(cfg: Config) -> io::Result<()> {
    nix::sys::prctl::set_dumpable(false)?;
    nix::sys::prctl::set_child_subreaper(true)?;
    // No core dumps of anything the agent starts.
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    // Before any thread exists.
    let zygote = Zygote::start()?;
    let zygote_pid = zygote.pid();
    let listener = bind(&cfg.socket)?;
    std::thread::Builder::new()
        .name("reap".into())
        .spawn(move || reap_forever(zygote_pid))?;
    let ctx = Arc::new(Ctx {
        zygote,
        registry: Arc::new(calls::Registry::default()),
        supervisor_uid: cfg.supervisor_uid,
    });
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if !peer_allowed(&stream, ctx.supervisor_uid) {
                    continue; // dropped: closed without a byte
                }
                let ctx = ctx.clone();
                let spawned = std::thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || {
                        let _ = serve_conn(&ctx, stream);
                    });
                if spawned.is_err() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Ok(())
}

/// Only a peer outside our pid namespace (pid 0) with the supervisor's uid.
fn peer_allowed(stream: &UnixStream, supervisor_uid: u32) -> bool {
    matches!(peer_cred(stream), Ok((0, uid, _)) if uid == supervisor_uid)
}

/// The agent's own children: the zygote, and orphans that reparent to the agent as a
/// subreaper. If the zygote dies, no call can start any more: exit, so the container stops
/// and the supervisor replaces it.
fn reap_forever(zygote_pid: i32) {
    loop {
        match nix::sys::wait::waitpid(None, None) {
            Ok(st) => {
                if st.pid().map(|p| p.as_raw()) == Some(zygote_pid) {
                    eprintln!("clawden-agent: the zygote died ({st:?}); exiting");
                    std::process::exit(1);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn serve_conn(ctx: &Ctx, stream: UnixStream) -> Result<(), ProtoError> {
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = stream.try_clone()?;
    let writer = Arc::new(Writer(Mutex::new(stream.try_clone()?)));

    let Some(hello) = proto::read_frame(&mut reader)? else {
        return Ok(());
    };
    if hello.kind != FrameType::Hello {
        return Err(ProtoError::Unexpected("a frame before the hello".into()));
    }
    let theirs: ClientHello = proto::decode_json("client hello", &hello.payload)?;
    {
        let mut w = writer.0.lock().unwrap_or_else(|p| p.into_inner());
        proto::write_json(
            &mut *w,
            FrameType::Hello,
            &AgentHello {
                protocol: PROTOCOL_VERSION,
                build: BUILD_ID.into(),
                pid: std::process::id() as i32,
            },
        )?;
        w.flush()?;
    }
    if theirs.protocol != PROTOCOL_VERSION {
        writer.error(AgentError::new(
            ErrorCode::BadRequest,
            format!("protocol {} is not {PROTOCOL_VERSION}", theirs.protocol),
        ))?;
        return Err(ProtoError::Version {
            theirs: theirs.protocol,
        });
    }
    reader.set_read_timeout(None)?;

    loop {
        let Some(frame) = proto::read_frame(&mut reader)? else {
            return Ok(());
        };
        if frame.kind != FrameType::Request {
            writer.error(AgentError::new(
                ErrorCode::BadRequest,
                format!("expected a request, got a {:?} frame", frame.kind),
            ))?;
            return Err(ProtoError::Unexpected(format!("{:?} frame", frame.kind)));
        }
        let req: Request = match proto::decode_json("request", &frame.payload) {
            Ok(r) => r,
            Err(e) => {
                writer.error(AgentError::new(ErrorCode::BadRequest, e.to_string()))?;
                continue;
            }
        };
        if !dispatch(ctx, req, &mut reader, &writer, &stream)? {
            return Ok(());
        }
    }
}

/// Handle one request. `Ok(false)`: the connection is over.
fn dispatch(
    ctx: &Ctx,
    req: Request,
    reader: &mut UnixStream,
    writer: &Arc<Writer>,
    stream: &UnixStream,
) -> Result<bool, ProtoError> {
    let done = |r: Result<(), AgentError>| match r {
        Ok(()) => writer.event(&Event::Done),
        Err(e) => writer.error(e),
    };
    match req {
        Request::Exec(exec) => {
            let conn = OwnedFd::from(stream.try_clone()?);
            let started = match calls::start(&ctx.zygote, &ctx.registry, &exec, writer, conn) {
                Ok(Some(s)) => s,
                other => {
                    if let Err(e) = other {
                        writer.error(e)?;
                    }
                    // The host streams stdin regardless: consume it up to its EOF.
                    if exec.stdin == StdinMode::Stream {
                        return forward_stdin(reader, None, None);
                    }
                    return Ok(true);
                }
            };
            if exec.lifetime == Lifetime::Detached {
                // (Refused above if it asked to stream stdin.)
                return Ok(true);
            }
            let mut alive = true;
            if exec.stdin == StdinMode::Stream {
                alive = forward_stdin(reader, started.stdin, Some(&started.call))?;
            }
            let _ = started.pump.join();
            Ok(alive)
        }
        Request::ListCalls => {
            writer.event(&Event::Calls {
                calls: ctx.registry.list(),
            })?;
            Ok(true)
        }
        Request::Attach(r) => {
            let Some(call) = ctx.registry.get(&r.call_id).filter(|c| c.is_detached()) else {
                writer.error(unknown_call(&r.call_id))?;
                return Ok(true);
            };
            let conn = OwnedFd::from(stream.try_clone()?);
            match calls::attach(&ctx.registry, &call, writer, &conn)? {
                calls::AttachEnd::HungUp => Ok(false),
                _ => Ok(true),
            }
        }
        Request::Signal(s) => {
            match ctx.registry.get(&s.call_id) {
                Some(call) => done(calls::signal(&call, s.signal, s.tree))?,
                None => writer.error(unknown_call(&s.call_id))?,
            }
            Ok(true)
        }
        Request::Kill(r) => {
            match ctx.registry.get(&r.call_id) {
                Some(call) => {
                    call.request_kill();
                    call.wait_finished(Duration::from_secs(5));
                    done(Ok(()))?
                }
                None => writer.error(unknown_call(&r.call_id))?,
            }
            Ok(true)
        }
        Request::ReadFile(r) => {
            read_file(writer, &r)?;
            Ok(true)
        }
        Request::WriteFile(w) => write_file(reader, writer, &w),
        Request::Stat(t) => {
            match files::stat(&t) {
                Ok(s) => writer.event(&Event::Stat(s))?,
                Err(e) => writer.error(e)?,
            }
            Ok(true)
        }
        Request::List(l) => {
            match files::list(&l.target, l.max_entries) {
                Ok((entries, truncated)) => writer.event(&Event::Entries { entries, truncated })?,
                Err(e) => writer.error(e)?,
            }
            Ok(true)
        }
        Request::Mkdir(m) => {
            done(files::mkdir(&m.target, m.parents))?;
            Ok(true)
        }
        Request::Remove(r) => {
            done(files::remove(&r.target))?;
            Ok(true)
        }
        Request::Rename(r) => {
            done(files::rename(&r.from, &r.to, r.no_replace))?;
            Ok(true)
        }
    }
}

fn unknown_call(id: &str) -> AgentError {
    AgentError::new(ErrorCode::UnknownCall, format!("no detached call {id:?}"))
}

/// Forward `Stdin` frames into the command's stdin until `StdinEof`. Returns false if the
/// connection ended first (the call is then killed).
fn forward_stdin(
    reader: &mut UnixStream,
    pipe: Option<OwnedFd>,
    call: Option<&Arc<calls::Call>>,
) -> Result<bool, ProtoError> {
    let mut pipe = pipe.map(std::fs::File::from);
    loop {
        let frame = match proto::read_frame(reader) {
            Ok(Some(f)) => f,
            other => {
                if let Some(c) = call {
                    c.request_kill();
                }
                return other.map(|_| false);
            }
        };
        match frame.kind {
            FrameType::Stdin => {
                if let Some(p) = pipe.as_mut()
                    && p.write_all(&frame.payload).is_err()
                {
                    pipe = None; // the command closed its stdin: discard the rest
                }
            }
            FrameType::StdinEof => return Ok(true),
            other => {
                if let Some(c) = call {
                    c.request_kill();
                }
                return Err(ProtoError::Unexpected(format!(
                    "{other:?} frame while streaming stdin"
                )));
            }
        }
    }
}

fn read_file(writer: &Writer, r: &proto::ReadRequest) -> io::Result<()> {
    let plan = match files::open_read(&r.target, r.offset, r.length, r.cap) {
        Ok(p) => p,
        Err(e) => return writer.error(e),
    };
    writer.event(&Event::ReadStart {
        size: plan.size,
        length: plan.length,
        truncated: plan.truncated,
        etag: plan.etag.clone(),
    })?;
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < plan.length {
        let want = (plan.length - sent).min(CHUNK as u64) as usize;
        match plan.file.read_at(&mut buf[..want], plan.offset + sent) {
            Ok(0) => {
                return writer.error(AgentError::new(
                    ErrorCode::Busy,
                    format!("read {:?}: the file shrank while read", r.target.path),
                ));
            }
            Ok(n) => {
                writer.frame(FrameType::Data, &buf[..n])?;
                sent += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return writer.error(files::errno_error(
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    "read",
                    &r.target.path,
                ));
            }
        }
    }
    writer.event(&Event::ReadEnd)
}

fn write_file(
    reader: &mut UnixStream,
    writer: &Writer,
    w: &proto::WriteRequest,
) -> Result<bool, ProtoError> {
    let mut pending = match files::begin_write(
        &w.target,
        w.mkdir_parents,
        w.exclusive,
        w.expected_etag.as_deref(),
        w.cap,
    ) {
        Ok(p) => Some(p),
        Err(e) => {
            writer.error(e)?;
            return Ok(true);
        }
    };
    writer.event(&Event::Ready)?;
    let mut failure: Option<AgentError> = None;
    loop {
        // A dropped connection drops `pending`: the temp file is removed, nothing replaced.
        let Some(frame) = proto::read_frame(reader)? else {
            return Ok(false);
        };
        match frame.kind {
            FrameType::Data => {
                if let Some(p) = pending.as_mut()
                    && let Err(e) = p.append(&frame.payload)
                {
                    failure = Some(e);
                    pending = None;
                }
            }
            FrameType::DataEnd => break,
            other => {
                return Err(ProtoError::Unexpected(format!(
                    "{other:?} frame while writing a file"
                )));
            }
        }
    }
    match (failure, pending) {
        (Some(e), _) => writer.error(e)?,
        (None, Some(p)) => match p.commit() {
            Ok((bytes, created, etag)) => writer.event(&Event::Written {
                bytes,
                created,
                etag,
            })?,
            Err(e) => writer.error(e)?,
        },
        (None, None) => writer.error(AgentError::new(ErrorCode::Internal, "write lost"))?,
    }
    Ok(true)
}
