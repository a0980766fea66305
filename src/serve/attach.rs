//! `POST /v1/calls/{id}/attach`: the connection becomes a framed two-way stream to one call.
//!
//! The request carries the call's one-time attach token (`Clawden-Attach-Token`, from the 201 of
//! `mode: "start"`) and `Upgrade: clawden-attach/1`; the answer is `101 Switching Protocols`.
//! Then both sides send frames: a 4-byte little-endian payload length, a type byte, the payload
//! (at most [`MAX_FRAME`] bytes).
//!
//! - client → service: [`STDIN`] bytes, [`STDIN_EOF`], [`SIGNAL`] (4-byte LE signal number, sent
//!   to the call's whole tree);
//! - service → client: [`STDOUT`], [`STDERR`] bytes (everything since the call started, then
//!   live), [`HEARTBEAT`] on silence, and last one [`EXIT`] (the stream's `exit` event as JSON)
//!   or [`ERROR`] (an error envelope).
//!
//! The attached connection owns a `connection` call: when it drops before the call ended, the
//! call's whole tree is killed (the shim `clawden attach` dies → the call dies).

use super::App;
use super::calls::{Call, KillOnDrop};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PROTOCOL: &str = "clawden-attach/1";
pub const TOKEN_HEADER: &str = "clawden-attach-token";
pub const MAX_FRAME: usize = 1 << 20;

pub const STDIN: u8 = 1;
pub const STDIN_EOF: u8 = 2;
pub const SIGNAL: u8 = 3;
pub const STDOUT: u8 = 16;
pub const STDERR: u8 = 17;
pub const HEARTBEAT: u8 = 18;
pub const EXIT: u8 = 19;
pub const ERROR: u8 = 20;

/// One frame's bytes.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.push(kind);
    b.extend_from_slice(payload);
    b
}

/// Read one frame; `None` at a clean end of stream before a frame began.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).await?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[4], payload)))
}

/// Frames for one event of the call's log (`None`: not sent on an attach stream).
fn frames_of(ev: &Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let ty = ev.get("type")?.as_str()?;
    let bytes = |v: &Value| -> Vec<u8> {
        match (
            v.get("text").and_then(Value::as_str),
            v.get("b64").and_then(Value::as_str),
        ) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    };
    match ty {
        "stdout" => Some(frame(STDOUT, &bytes(ev))),
        "stderr" => Some(frame(STDERR, &bytes(ev))),
        "exit" => Some(frame(EXIT, ev.to_string().as_bytes())),
        "error" => Some(frame(ERROR, ev.to_string().as_bytes())),
        _ => None,
    }
}

/// Serve an attached connection until the call ends or the client goes.
pub async fn pump<S>(app: Arc<App>, call: Arc<Call>, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    // The connection owns the call from now on.
    let mut guard = KillOnDrop {
        call: Some(call.clone()),
        app: app.clone(),
    };
    let heartbeat = app.settings.heartbeat;
    let reader = {
        let (app, call) = (app.clone(), call.clone());
        async move {
            loop {
                match read_frame(&mut rd).await {
                    Ok(Some((STDIN, data))) => {
                        if call.write_stdin(&data, false).await.is_err() {
                            // Nowhere to put it (stdin not streamed, or closed): dropped.
                        }
                    }
                    Ok(Some((STDIN_EOF, _))) => {
                        let _ = call.write_stdin(&[], true).await;
                    }
                    Ok(Some((SIGNAL, p))) if p.len() == 4 => {
                        let sig = i32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                        let _ = call.signal(&app, sig, true).await;
                    }
                    Ok(Some(_)) => {} // unknown frames are ignored (forward compatible)
                    Ok(None) | Err(_) => return,
                }
            }
        }
    };
    let writer = {
        let call = call.clone();
        async move {
            let mut seq = 0;
            loop {
                let b = call.log.wait_after(seq, heartbeat).await;
                let mut out = Vec::new();
                let mut ended = false;
                for ev in &b.events {
                    seq = ev["seq"].as_u64().unwrap_or(seq);
                    if let Some(f) = frames_of(ev) {
                        out.extend_from_slice(&f);
                    }
                    if matches!(
                        ev.get("type").and_then(Value::as_str),
                        Some("exit" | "error")
                    ) {
                        ended = true;
                    }
                }
                if b.events.is_empty() && !b.closed {
                    out.extend_from_slice(&frame(HEARTBEAT, &[]));
                }
                if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                    return false;
                }
                if ended || (b.closed && seq >= b.last_seq) {
                    let _ = wr.shutdown().await;
                    return true;
                }
            }
        }
    };
    tokio::select! {
        // The client went away (EOF or a broken connection): the guard kills a running call.
        _ = reader => {}
        finished = writer => {
            if finished {
                guard.disarm();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut bytes = frame(STDIN, b"hello");
        bytes.extend(frame(STDIN_EOF, &[]));
        bytes.extend(frame(SIGNAL, &15i32.to_le_bytes()));
        let mut r = &bytes[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((STDIN, b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut r).await.unwrap(), Some((STDIN_EOF, vec![])));
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((SIGNAL, 15i32.to_le_bytes().to_vec()))
        );
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        let mut big = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        big.push(STDIN);
        assert!(read_frame(&mut &big[..]).await.is_err());
        let cut = &frame(STDOUT, b"abc")[..6];
        assert!(read_frame(&mut &cut[..]).await.is_err());
    }

    #[test]
    fn events_become_frames() {
        let f = frames_of(&serde_json::json!({"type": "stdout", "text": "hi"})).unwrap();
        assert_eq!(f, frame(STDOUT, b"hi"));
        let f = frames_of(&serde_json::json!({"type": "stderr", "b64": "/wA="})).unwrap();
        assert_eq!(f, frame(STDERR, &[0xff, 0]));
        assert!(frames_of(&serde_json::json!({"type": "started"})).is_none());
        let exit = serde_json::json!({"type": "exit", "exitCode": 3});
        assert_eq!(frames_of(&exit).unwrap()[4], EXIT);
    }
}
