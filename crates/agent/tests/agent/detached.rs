//! Lifetimes: a dropped connection kills its call; detached calls survive and are re-attached.

use crate::harness::{Agent, run_exec};
use clawden_agent::client::{Client, ClientError};
use clawden_agent::proto::{EndReason, ErrorCode, ExecRequest, Lifetime, OutStream, StdinMode};
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Helper process: connect, start `sleep` children under a connection call, block forever
/// (the test SIGKILLs us, like `kill -9 clawden`).
pub fn probe_exec(args: &[String]) -> ExitCode {
    let (Some(sock), Some(ws)) = (args.first(), args.get(1)) else {
        return ExitCode::from(2);
    };
    let Ok(s) = UnixStream::connect(sock) else {
        return ExitCode::from(3);
    };
    let Ok(mut c) = Client::handshake(s) else {
        return ExitCode::from(4);
    };
    let req = ExecRequest {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "setsid sleep 1011 & sleep 1012 & echo ready; sleep 1013".into(),
        ],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: ws.clone(),
        roots: vec![ws.clone()],
        timeout_ms: None,
        grace_ms: None,
        lifetime: Lifetime::Connection,
        stdin: StdinMode::Closed,
        max_output_bytes: 1024,
    };
    let _ = c.exec(&req, None, &mut |_, b| {
        use std::io::Write;
        let _ = std::io::stdout().write_all(b);
        let _ = std::io::stdout().flush();
    });
    ExitCode::SUCCESS
}

pub fn dropped_connection_kills_the_tree_within_2s() {
    let a = Agent::start();
    for _ in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("probe-exec")
            .arg(&a.sock)
            .arg(&a.ws)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for "ready" (the tree exists).
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        assert_eq!(&buf, b"ready\n");
        assert!(a.others().len() >= 4, "{:?}", a.others());
        child.kill().unwrap(); // SIGKILL of the client process
        let _ = child.wait();
        let t = Instant::now();
        a.assert_nothing_left(Duration::from_secs(2));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    // `kill -9` at random moments: during connect, hello, the exec request, the start.
    for i in 0..8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("probe-exec")
            .arg(&a.sock)
            .arg(&a.ws)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        std::thread::sleep(Duration::from_micros((jitter + i * 7919) % 30_000));
        child.kill().unwrap();
        let _ = child.wait();
        a.assert_nothing_left(Duration::from_secs(2));
    }
    // The agent still serves.
    let mut c = a.connect();
    assert_eq!(
        run_exec(&mut c, &a.sh("exit 5")).res.exit.exit_code,
        Some(5)
    );
}

pub fn detached_call_survives_is_listed_and_reattached() {
    let a = Agent::start();
    let id = {
        let mut c = a.connect();
        let s = c
            .start_detached(&a.sh("echo one; echo err >&2; sleep 1; echo two; exit 6"))
            .unwrap();
        assert!(s.pid > 1);
        s.call_id
    }; // connection dropped
    std::thread::sleep(Duration::from_millis(200));
    let mut c = a.connect();
    let calls = c.list_calls().unwrap();
    let info = calls.iter().find(|i| i.call_id == id).expect("listed");
    assert!(info.running, "{info:?}");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let res = c
        .attach(&id, &mut |s, b| match s {
            OutStream::Stdout => out.extend_from_slice(b),
            OutStream::Stderr => err.extend_from_slice(b),
        })
        .unwrap();
    assert_eq!(out, b"one\ntwo\n");
    assert_eq!(err, b"err\n");
    assert_eq!(res.exit.exit_code, Some(6));
    // Finished calls stay listed for a while, and can be attached again (kept output + exit).
    let calls = c.list_calls().unwrap();
    let info = calls
        .iter()
        .find(|i| i.call_id == id)
        .expect("still listed");
    assert!(!info.running);
    assert_eq!(info.exit.as_ref().and_then(|e| e.exit_code), Some(6));
    let mut again = Vec::new();
    let res = c
        .attach(&id, &mut |s, b| {
            if s == OutStream::Stdout {
                again.extend_from_slice(b)
            }
        })
        .unwrap();
    assert_eq!(again, b"one\ntwo\n");
    assert_eq!(res.exit.exit_code, Some(6));
    match c.attach("nope", &mut |_, _| {}) {
        Err(ClientError::Agent(e)) => assert_eq!(e.code, ErrorCode::UnknownCall),
        other => panic!("{other:?}"),
    }
    // The connection is still usable.
    assert_eq!(
        run_exec(&mut c, &a.sh("exit 2")).res.exit.exit_code,
        Some(2)
    );
}

pub fn kill_and_signal_a_detached_call() {
    let a = Agent::start();
    let mut c = a.connect();
    let s = c
        .start_detached(
            &a.sh("setsid sleep 1021 & trap 'echo got-usr1' USR1; while :; do sleep 0.05; done"),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.signal(&s.call_id, libc::SIGUSR1, false).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.kill(&s.call_id).unwrap();
    a.assert_nothing_left(Duration::from_secs(2));
    let calls = c.list_calls().unwrap();
    let info = calls.iter().find(|i| i.call_id == s.call_id).unwrap();
    let exit = info.exit.as_ref().expect("finished");
    assert_eq!(exit.reason, EndReason::Killed);
    let mut out = Vec::new();
    c.attach(&s.call_id, &mut |_, b| out.extend_from_slice(b))
        .unwrap();
    assert!(String::from_utf8_lossy(&out).contains("got-usr1"));
    // A detached call outlives its timeout? No: the deadline holds for detached calls too.
    let mut req = a.sh("sleep 1022");
    req.timeout_ms = Some(300);
    req.grace_ms = Some(100);
    let s = c.start_detached(&req).unwrap();
    let res = c.attach(&s.call_id, &mut |_, _| {}).unwrap();
    assert_eq!(res.exit.reason, EndReason::Timeout);
    a.assert_nothing_left(Duration::from_secs(2));
}

/// The lead's cancellation guard: `Canceller::cancel` from another thread ends the connection,
/// the blocked exec returns a transport error and the call's tree is killed.
pub fn canceller_ends_a_blocked_exec_and_its_tree() {
    let a = Agent::start();
    let mut c = a.connect();
    let cancel = c.canceller().unwrap();
    let t = Instant::now();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let r = c.exec(
        &a.sh("setsid sleep 1051 & sleep 1052"),
        None,
        &mut |_, _| {},
    );
    killer.join().unwrap();
    assert!(matches!(r, Err(ClientError::Io(_))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    a.assert_nothing_left(Duration::from_secs(2));
    // The client is unusable afterwards; a new one works.
    assert!(c.list_calls().is_err());
    let mut c = a.connect();
    assert_eq!(
        run_exec(&mut c, &a.sh("exit 3")).res.exit.exit_code,
        Some(3)
    );
}

/// Finished detached calls are forgotten oldest-first to make room; the kept set is bounded.
pub fn finished_detached_calls_are_bounded() {
    let a = Agent::start();
    let mut c = a.connect();
    let mut ids = Vec::new();
    for i in 0..70 {
        let s = c.start_detached(&a.sh(&format!("exit {}", i % 3))).unwrap();
        // Let it finish so it can be evicted.
        let r = c.attach(&s.call_id, &mut |_, _| {}).unwrap();
        assert_eq!(r.exit.exit_code, Some(i % 3));
        ids.push(s.call_id);
    }
    let listed = c.list_calls().unwrap();
    assert!(listed.len() <= 64, "{}", listed.len());
    assert!(listed.iter().any(|i| &i.call_id == ids.last().unwrap()));
    assert!(!listed.iter().any(|i| i.call_id == ids[0]));
}
