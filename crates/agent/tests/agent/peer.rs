//! The agent serves only peers outside its pid namespace with the supervisor's uid.

use crate::harness::{Agent, SANDBOX_UID, run_exec};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Helper process: connect and report whether the agent closed the connection without a byte
/// ("refused") or kept it open waiting for our hello ("accepted").
pub fn probe_connect(args: &[String]) -> ExitCode {
    let Some(sock) = args.first() else {
        return ExitCode::from(2);
    };
    let mut s = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(e) => {
            println!("connect-failed {e}");
            return ExitCode::SUCCESS;
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => println!("refused"),
        Ok(_) => println!("got-bytes"),
        Err(_) => println!("accepted"),
    }
    ExitCode::SUCCESS
}

fn probe(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run probe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn client_inside_the_pid_namespace_is_refused() {
    let a = Agent::start();
    let exe = std::env::current_exe().unwrap();
    // Control: the same probe from outside (root = the supervisor uid) is accepted.
    assert_eq!(
        probe(Command::new(&exe).arg("probe-connect").arg(&a.sock)),
        "accepted"
    );
    // Root, but inside the agent's pid namespace: refused.
    let inside = probe(
        Command::new("nsenter")
            .arg(format!("--target={}", a.host_pid))
            .args(["--pid", "--"])
            .arg(&exe)
            .arg("probe-connect")
            .arg(&a.sock),
    );
    assert_eq!(inside, "refused");
    // A process of the sandbox itself (a call) connecting to its own agent: refused.
    let mut c = a.connect();
    let r = run_exec(
        &mut c,
        &a.sh(&format!(
            "{} probe-connect {}",
            exe.display(),
            a.sock.display()
        )),
    );
    assert_eq!(String::from_utf8_lossy(&r.out).trim(), "refused");
}

pub fn wrong_uid_outside_is_refused() {
    let a = Agent::start();
    let exe = std::env::current_exe().unwrap();
    // Outside the namespace but not the supervisor's uid (root can still connect to the 0600
    // socket only as root; the sandbox uid owns it).
    let out = probe(
        Command::new("setpriv")
            .arg(format!("--reuid={SANDBOX_UID}"))
            .arg(format!("--regid={SANDBOX_UID}"))
            .args(["--clear-groups", "--"])
            .arg(&exe)
            .arg("probe-connect")
            .arg(&a.sock),
    );
    assert_eq!(out, "refused");
    // The socket is 0600.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&a.sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

/// Raw frames to the agent: a wrong version, frames out of place, an oversized length and
/// junk are answered (or not) and the connection closed; the agent keeps serving others.
pub fn malformed_conversations_are_closed_and_the_agent_survives() {
    use clawden_agent::proto::{self, AgentMessage, Event, FrameType};
    use std::io::Write;
    let a = Agent::start();
    let raw = || {
        let s = UnixStream::connect(&a.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let frames = |s: &mut UnixStream| {
        let mut out = Vec::new();
        while let Ok(Some(f)) = proto::read_frame(s) {
            out.push(AgentMessage::decode(f).unwrap());
        }
        out
    };
    // Another protocol version: our hello (so the host sees the version), an error, closed.
    let mut s = raw();
    proto::write_frame(
        &mut s,
        FrameType::Hello,
        br#"{"protocol":999,"client":"x"}"#,
    )
    .unwrap();
    let got = frames(&mut s);
    assert!(
        matches!(&got[..], [AgentMessage::Hello(h), AgentMessage::Event(Event::Error(_))] if h.protocol == proto::PROTOCOL_VERSION),
        "{got:?}"
    );
    // A request before the hello, an oversized frame, an unknown type, junk: closed at once.
    for bytes in [
        {
            let mut v = Vec::new();
            proto::write_frame(&mut v, FrameType::Request, br#"{"op":"list_calls"}"#).unwrap();
            v
        },
        vec![0xff, 0xff, 0xff, 0xff, 1],
        vec![1, 0, 0, 0, 99, b'x'],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let mut s = raw();
        s.write_all(&bytes).unwrap();
        assert!(frames(&mut s).is_empty());
    }
    // After a good hello: unknown ops and fields are refused, the connection stays usable;
    // a data frame out of place closes it.
    let mut s = raw();
    proto::write_frame(&mut s, FrameType::Hello, br#"{"protocol":1,"client":"x"}"#).unwrap();
    assert!(matches!(
        AgentMessage::decode(proto::read_frame(&mut s).unwrap().unwrap()).unwrap(),
        AgentMessage::Hello(_)
    ));
    for bad in [
        &br#"{"op":"format_disk"}"#[..],
        br#"{"op":"kill","args":{"call_id":"x","extra":1}}"#,
        b"not json",
    ] {
        proto::write_frame(&mut s, FrameType::Request, bad).unwrap();
        let f = AgentMessage::decode(proto::read_frame(&mut s).unwrap().unwrap()).unwrap();
        assert!(
            matches!(f, AgentMessage::Event(Event::Error(ref e)) if e.code == clawden_agent::proto::ErrorCode::BadRequest),
            "{f:?}"
        );
    }
    proto::write_frame(&mut s, FrameType::Data, b"x").unwrap();
    let got = frames(&mut s);
    assert!(
        matches!(&got[..], [AgentMessage::Event(Event::Error(_))]),
        "{got:?}"
    );
    // The agent still serves.
    let mut c = a.connect();
    assert_eq!(
        run_exec(&mut c, &a.sh("exit 1")).res.exit.exit_code,
        Some(1)
    );
}
