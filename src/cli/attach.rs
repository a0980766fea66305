//! `clawden attach CALL_ID`: the shim a gateway spawns in place of `docker exec`.
//!
//! It reads the call's one-time token from `CLAWDEN_ATTACH_TOKEN` (never from argv: the
//! command and the token stay out of every host argv), attaches to the call through
//! `clawden serve`'s socket, pipes its stdin to the call and the call's stdout/stderr to its
//! own, forwards SIGINT/SIGTERM/SIGHUP to the call's whole tree, and exits with the call's exit
//! code (re-raising the signal when the call died of one; 124 after a timeout). When the shim
//! dies, its connection drops and the service kills the call's whole tree.

use crate::serve::attach::{self as proto, read_frame};
use clap::Args;
use std::io::Write;
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The call (from `POST /v1/calls` with `mode: "start"`).
    pub call_id: String,
    /// The service's socket (default: the one `clawden serve` uses).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("clawden attach: {}", crate::display::escape(message));
    ExitCode::from(code)
}

pub fn attach(a: AttachArgs) -> ExitCode {
    let Some(token) = std::env::var("CLAWDEN_ATTACH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        return fail(
            "set CLAWDEN_ATTACH_TOKEN to the call's attachToken",
            crate::exit_codes::USAGE,
        );
    };
    if !a
        .call_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail("that is not a call id", crate::exit_codes::USAGE);
    }
    let socket = match a
        .socket
        .clone()
        .map_or_else(crate::serve::socket::default_path, Ok)
    {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string(), crate::exit_codes::USAGE),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string(), crate::exit_codes::FAILURE),
    };
    rt.block_on(run(a.call_id, token, socket))
}

async fn run(id: String, token: String, socket: std::path::PathBuf) -> ExitCode {
    let stream = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            return fail(
                &format!("cannot reach the service at {}: {e}", socket.display()),
                crate::exit_codes::ENGINE,
            );
        }
    };
    let (rd, mut wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let request = format!(
        "POST /v1/calls/{id}/attach HTTP/1.1\r\nHost: clawden\r\nConnection: Upgrade\r\nUpgrade: {}\r\n{}: {token}\r\nContent-Length: 0\r\n\r\n",
        proto::PROTOCOL,
        proto::TOKEN_HEADER
    );
    if let Err(e) = wr.write_all(request.as_bytes()).await {
        return fail(&e.to_string(), crate::exit_codes::FAILURE);
    }
    // The response head, line by line (the frames follow in the same buffer).
    let mut status = 0u16;
    let mut length = 0usize;
    let mut first = true;
    loop {
        let mut line = String::new();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => {
                return fail(
                    "the service closed the connection",
                    crate::exit_codes::FAILURE,
                );
            }
            Ok(_) => {}
        }
        let line = line.trim_end();
        if first {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            first = false;
        } else if line.is_empty() {
            break;
        } else if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    if status != 101 {
        let mut body = vec![0u8; length.min(1 << 20)];
        let _ = rd.read_exact(&mut body).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the service answered {status}"));
        let code = match status {
            403 => crate::exit_codes::REFUSED,
            404 | 400 => crate::exit_codes::USAGE,
            _ => crate::exit_codes::FAILURE,
        };
        return fail(&message, code);
    }
    // Our stdin to the call.
    let (sig_tx, mut sig_rx) = tokio::sync::mpsc::channel::<i32>(8);
    let writer = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 << 10];
        let mut stdin_open = true;
        loop {
            tokio::select! {
                n = stdin.read(&mut buf), if stdin_open => {
                    let f = match n {
                        Ok(0) | Err(_) => {
                            stdin_open = false;
                            proto::frame(proto::STDIN_EOF, &[])
                        }
                        Ok(n) => proto::frame(proto::STDIN, &buf[..n]),
                    };
                    if wr.write_all(&f).await.is_err() {
                        return;
                    }
                }
                Some(sig) = sig_rx.recv() => {
                    if wr.write_all(&proto::frame(proto::SIGNAL, &sig.to_le_bytes())).await.is_err() {
                        return;
                    }
                }
                else => return,
            }
        }
    });
    // Our signals to the call's tree.
    {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, num) in [
            (SignalKind::interrupt(), libc::SIGINT),
            (SignalKind::terminate(), libc::SIGTERM),
            (SignalKind::hangup(), libc::SIGHUP),
        ] {
            if let Ok(mut s) = signal(kind) {
                let tx = sig_tx.clone();
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        let _ = tx.send(num).await;
                    }
                });
            }
        }
    }
    // The call's output to ours, until its end.
    let exit = loop {
        match read_frame(&mut rd).await {
            Ok(Some((proto::STDOUT, b))) => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(&b).and_then(|_| o.flush());
            }
            Ok(Some((proto::STDERR, b))) => {
                let _ = std::io::stderr().write_all(&b);
            }
            Ok(Some((proto::EXIT, b))) => {
                break serde_json::from_slice::<serde_json::Value>(&b).ok();
            }
            Ok(Some((proto::ERROR, b))) => {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                let m = v["error"]["message"].as_str().unwrap_or("the call failed");
                writer.abort();
                return fail(m, crate::exit_codes::EXEC_CLAWDEN_ERROR);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break None,
        }
    };
    writer.abort();
    let Some(exit) = exit else {
        return fail(
            "the connection to the service broke before the call ended",
            crate::exit_codes::EXEC_CLAWDEN_ERROR,
        );
    };
    if exit["endReason"] == "timeout" || exit["timedOut"] == true {
        return ExitCode::from(crate::exit_codes::RUN_TIMEOUT);
    }
    if let Some(code) = exit["exitCode"].as_i64()
        && exit["signal"].is_null()
    {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    if let Some(sig) = exit["signal"].as_i64() {
        // Die the way the call died.
        let _ = std::io::stdout().flush();
        if let Ok(s) = nix::sys::signal::Signal::try_from(sig as i32) {
            // SAFETY: restoring the default disposition before raising, single purpose.
            unsafe {
                let _ = nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl);
            }
            let _ = nix::sys::signal::raise(s);
        }
        return ExitCode::from((128 + sig).clamp(0, 255) as u8);
    }
    ExitCode::from(crate::exit_codes::EXEC_CLAWDEN_ERROR)
}
