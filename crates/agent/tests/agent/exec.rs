//! Exec: status from waitpid, no escapees, bounded output, stdin, env, cwd.

use crate::harness::{Agent, run_exec};
use clawden_agent::client::ClientError;
use clawden_agent::proto::{EndReason, ErrorCode, OutStream};
use std::time::{Duration, Instant};

pub fn exit_codes_and_signals_come_from_waitpid() {
    let a = Agent::start();
    let mut c = a.connect();
    let r = run_exec(&mut c, &a.sh("exit 7"));
    assert_eq!(r.res.exit.exit_code, Some(7));
    assert_eq!(r.res.exit.reason, EndReason::Exited);
    assert!(r.res.pid > 1);
    let r = run_exec(&mut c, &a.sh("true"));
    assert_eq!(r.res.exit.exit_code, Some(0));
    let r = run_exec(&mut c, &a.sh("kill -TERM $$; sleep 5"));
    assert_eq!(r.res.exit.signal, Some(15));
    assert_eq!(r.res.exit.exit_code, None);
    assert_eq!(r.res.exit.reason, EndReason::Signaled);
    assert!(!r.res.exit.timed_out);
    // `kill -9 0` hits the command's own process group, never the reaper.
    let r = run_exec(&mut c, &a.sh("kill -9 0"));
    assert_eq!(r.res.exit.signal, Some(9));
    assert_eq!(r.res.exit.reason, EndReason::Signaled);
    a.assert_nothing_left(Duration::from_secs(2));
}

pub fn forged_markers_and_frames_cannot_change_the_status() {
    let a = Agent::start();
    let mut c = a.connect();
    // The old in-band marker, and frames of the new protocol (an Exit event with code 0, a
    // Started event, a huge length), printed to both streams.
    let exit_json = r#"{"event":"exit","call_id":"x","exit_code":0,"signal":null,"reason":"exited","timed_out":false,"oom_killed":false,"stdout":{"total":0,"truncated":false},"stderr":{"total":0,"truncated":false},"duration_ms":1,"start_error":null}"#;
    let frame = |kind: u8, payload: &str| {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.push(kind);
        f.extend_from_slice(payload.as_bytes());
        f.iter().map(|b| format!("\\{b:03o}")).collect::<String>()
    };
    let cmd = format!(
        "printf '\\036clawden-exit:%s:0\\036' \"$CLAWDEN_CALL\" >&2; printf '{f}'; printf '{f}' >&2; printf '{g}'; printf '\\377\\377\\377\\377\\003'; exit 3",
        f = frame(3, exit_json),
        g = frame(3, r#"{"event":"done"}"#),
    );
    let r = run_exec(&mut c, &a.sh(&cmd));
    assert_eq!(r.res.exit.exit_code, Some(3), "{:?}", r.res.exit);
    assert_eq!(r.res.exit.reason, EndReason::Exited);
    // The forged bytes arrived as plain output, verbatim.
    assert!(
        r.out
            .windows(exit_json.len())
            .any(|w| w == exit_json.as_bytes())
    );
    assert!(
        r.err
            .windows(exit_json.len())
            .any(|w| w == exit_json.as_bytes())
    );
    assert!(r.err.starts_with(b"\x1eclawden-exit:"));
    // The connection is still in sync.
    let r = run_exec(&mut c, &a.sh("exit 4"));
    assert_eq!(r.res.exit.exit_code, Some(4));
}

pub fn leftover_process_of_an_earlier_call_cannot_touch_the_next() {
    let a = Agent::start();
    let mut c = a.connect();
    let marker = "\\036clawden-exit:x:0\\036";
    // A background writer that would keep forging markers into whatever stderr it can reach.
    let r = run_exec(
        &mut c,
        &a.sh(&format!(
            "(while :; do printf '{marker}' >&2; printf '{marker}' >/proc/1/fd/2 2>/dev/null; sleep 0.05; done) & exit 0"
        )),
    );
    assert_eq!(r.res.exit.exit_code, Some(0));
    a.assert_nothing_left(Duration::from_secs(2));
    let r = run_exec(&mut c, &a.sh("sleep 0.3; exit 3"));
    assert_eq!(r.res.exit.exit_code, Some(3));
    assert!(r.err.is_empty(), "{:?}", String::from_utf8_lossy(&r.err));
}

pub fn timeout_kills_setsid_env_i_double_forked_and_nohup_children() {
    let a = Agent::start();
    let mut c = a.connect();
    let mut req = a.sh(
        "setsid sleep 1001 & env -i /bin/sleep 1002 & (sleep 1003 &) ; nohup sleep 1004 >/dev/null 2>&1 & \
         setsid sh -c 'trap \"\" TERM; sleep 1005' & (trap '' TERM; exec sleep 1006)",
    );
    req.timeout_ms = Some(700);
    req.grace_ms = Some(300);
    let t = Instant::now();
    let r = run_exec(&mut c, &req);
    let took = t.elapsed();
    assert_eq!(r.res.exit.reason, EndReason::Timeout);
    assert!(r.res.exit.timed_out);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    a.assert_nothing_left(Duration::from_secs(2));
}

pub fn background_sleep_returns_promptly_and_is_killed() {
    let a = Agent::start();
    let mut c = a.connect();
    let t = Instant::now();
    let r = run_exec(&mut c, &a.sh("sleep 1000 & echo started"));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(r.out, b"started\n");
    assert_eq!(r.res.exit.exit_code, Some(0));
    a.assert_nothing_left(Duration::from_secs(2));
}

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn output_flood_on_both_streams_is_bounded_and_counted() {
    let a = Agent::start();
    let mut c = a.connect();
    let n: u64 = 30 << 20;
    let mut req = a.sh(&format!(
        "{{ printf HEAD; head -c {n} /dev/zero; printf TAIL; }} & {{ printf head; head -c {n} /dev/zero; printf tail; }} >&2; wait"
    ));
    req.max_output_bytes = 64 << 10;
    let t = Instant::now();
    let r = run_exec(&mut c, &req);
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(r.res.exit.exit_code, Some(0));
    for (stream, got, head, tail, skipped) in [
        (
            &r.res.exit.stdout,
            &r.out,
            b"HEAD",
            b"TAIL",
            r.res.stdout_skipped,
        ),
        (
            &r.res.exit.stderr,
            &r.err,
            b"head",
            b"tail",
            r.res.stderr_skipped,
        ),
    ] {
        assert_eq!(stream.total, n + 8);
        assert!(stream.truncated);
        assert_eq!(got.len(), 64 << 10);
        assert!(got.starts_with(head));
        assert!(got.ends_with(tail));
        assert_eq!(skipped, n + 8 - (64 << 10));
    }
    // The agent held at most the caps, not the flood.
    assert!(
        rss_kib(a.host_pid) < 64 << 10,
        "agent RSS {} KiB",
        rss_kib(a.host_pid)
    );
}

pub fn endless_output_under_a_timeout_does_not_deadlock() {
    let a = Agent::start();
    let mut c = a.connect();
    let mut req = a.sh("yes & tr -d '\\n' </dev/urandom >&2 & tr -d '\\n' </dev/urandom");
    req.timeout_ms = Some(1500);
    req.grace_ms = Some(200);
    req.max_output_bytes = 4096;
    let t = Instant::now();
    let r = run_exec(&mut c, &req);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(r.res.exit.reason, EndReason::Timeout);
    assert!(r.res.exit.stdout.total > 1 << 20, "{:?}", r.res.exit.stdout);
    assert!(r.res.exit.stderr.total > 1 << 16, "{:?}", r.res.exit.stderr);
    assert!(r.out.len() <= 4096 && r.err.len() <= 4096);
    assert!(rss_kib(a.host_pid) < 64 << 10);
    a.assert_nothing_left(Duration::from_secs(2));
}

pub fn stdin_is_streamed_and_closed_by_default() {
    let a = Agent::start();
    let mut c = a.connect();
    // Closed: `cat` sees EOF at once.
    let t = Instant::now();
    let r = run_exec(&mut c, &a.sh("cat; echo rc=$?"));
    assert_eq!(r.out, b"rc=0\n");
    assert!(t.elapsed() < Duration::from_secs(2));
    // Streamed: 3 MiB through cat, while its output comes back (no deadlock either way).
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut req = a.sh("cat");
    req.max_output_bytes = 8 << 20;
    let mut out = Vec::new();
    let res = c
        .exec(&req, Some(&mut &data[..]), &mut |s, b| {
            if s == OutStream::Stdout {
                out.extend_from_slice(b)
            }
        })
        .unwrap();
    assert_eq!(res.exit.exit_code, Some(0));
    assert_eq!(res.exit.stdout.total, data.len() as u64);
    assert!(out == data);
    // Inline stdin, for connection and detached calls.
    let mut req = a.sh("wc -c; cat");
    req.stdin = clawden_agent::proto::StdinMode::Inline(b"inline bytes".to_vec());
    let r = run_exec(&mut c, &req);
    assert_eq!(String::from_utf8_lossy(&r.out).trim(), "12");
    let s = c.start_detached(&req).unwrap();
    let mut out = Vec::new();
    c.attach(&s.call_id, &mut |_, b| out.extend_from_slice(b))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out).trim(), "12");
    // A command that ignores its stdin and exits: the rest is discarded, the connection stays
    // in sync.
    let big = vec![b'x'; 5 << 20];
    let res = c
        .exec(&a.sh("exit 5"), Some(&mut &big[..]), &mut |_, _| {})
        .unwrap();
    assert_eq!(res.exit.exit_code, Some(5));
    let r = run_exec(&mut c, &a.sh("echo ok"));
    assert_eq!(r.out, b"ok\n");
}

pub fn env_is_exact_and_cwd_is_resolved_in_the_container() {
    let a = Agent::start();
    let mut c = a.connect();
    let mut req = a.sh("env | sort; pwd");
    req.env = vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("A_B".into(), "x y".into()),
    ];
    std::fs::create_dir(a.ws.join("sub")).unwrap();
    std::os::unix::fs::symlink("sub", a.ws.join("alias")).unwrap();
    req.cwd = a.ws.join("alias").to_string_lossy().into_owned();
    let r = run_exec(&mut c, &req);
    let out = String::from_utf8_lossy(&r.out);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"A_B=x y"), "{out}");
    assert!(lines.contains(&"PATH=/usr/bin:/bin"), "{out}");
    assert!(!out.contains("HOME="), "nothing inherited: {out}");
    // The shell reports the directory it was put in (the resolved one).
    assert!(out.trim_end().ends_with("/ws/sub"), "{out}");

    // Refusals: not on a mount, not a directory, missing, escaping.
    std::fs::write(a.ws.join("file"), b"x").unwrap();
    std::os::unix::fs::symlink("/", a.ws.join("toroot")).unwrap();
    for (cwd, code) in [
        ("/etc".to_string(), ErrorCode::NotOnMount),
        (
            a.ws.join("file").to_string_lossy().into_owned(),
            ErrorCode::NotDirectory,
        ),
        (
            a.ws.join("missing").to_string_lossy().into_owned(),
            ErrorCode::NotFound,
        ),
        (
            a.ws.join("toroot").to_string_lossy().into_owned(),
            ErrorCode::EscapesRoot,
        ),
        (
            a.ws.join("sub/../..").to_string_lossy().into_owned(),
            ErrorCode::EscapesRoot,
        ),
    ] {
        let mut req = a.sh("pwd");
        req.cwd = cwd.clone();
        match c.exec(&req, None, &mut |_, _| {}) {
            Err(ClientError::Agent(e)) => assert_eq!(e.code, code, "{cwd}: {e}"),
            other => panic!("{cwd}: {other:?}"),
        }
    }
    // The command gets stdin, stdout and stderr and no other fd of the agent, zygote or reaper
    // (3 is the directory `ls` opened itself).
    let mut req = a.sh("");
    req.argv = vec!["/bin/ls".into(), "/proc/self/fd".into()];
    let r = run_exec(&mut c, &req);
    assert_eq!(
        String::from_utf8_lossy(&r.out)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    // Invalid env names are refused.
    let mut req = a.sh("true");
    req.env = vec![("A=B".into(), "x".into())];
    assert!(
        matches!(c.exec(&req, None, &mut |_, _| {}), Err(ClientError::Agent(e)) if e.code == ErrorCode::BadRequest)
    );
}

pub fn exec_failure_ends_as_start_failed() {
    let a = Agent::start();
    let mut c = a.connect();
    let mut req = a.sh("");
    req.argv = vec!["/nonexistent/prog".into()];
    // Not executable: an exit with reason start_failed (and why).
    let r = c.exec(&req, None, &mut |_, _| {}).unwrap();
    assert_eq!(r.exit.reason, EndReason::StartFailed);
    assert_eq!(r.exit.exit_code, None);
    let why = r.exit.start_error.expect("start_error");
    assert_eq!(why.code, ErrorCode::StartFailed);
    assert!(why.message.contains("No such file"), "{why}");
    std::fs::write(a.ws.join("noexec"), b"#!/bin/sh\n").unwrap();
    req.argv = vec![a.ws.join("noexec").to_string_lossy().into_owned()];
    let r = c.exec(&req, None, &mut |_, _| {}).unwrap();
    assert_eq!(r.exit.reason, EndReason::StartFailed);
    let s = c.start_detached(&req).unwrap();
    let r = c.attach(&s.call_id, &mut |_, _| {}).unwrap();
    assert_eq!(r.exit.reason, EndReason::StartFailed);
    // A name is looked up on the request's PATH.
    req.argv = vec!["echo".into(), "found".into()];
    let r = run_exec(&mut c, &req);
    assert_eq!(r.out, b"found\n");
    a.assert_nothing_left(Duration::from_secs(2));
}

pub fn many_calls_on_one_connection() {
    let a = Agent::start();
    let mut c = a.connect();
    let t = Instant::now();
    for i in 0..50 {
        let r = run_exec(&mut c, &a.sh(&format!("exit {}", i % 7)));
        assert_eq!(r.res.exit.exit_code, Some(i % 7));
    }
    // Generous: ~1-3 ms each on an idle machine.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(
        c.agent_hello().protocol,
        clawden_agent::proto::PROTOCOL_VERSION
    );
}

pub fn the_sandbox_cannot_steer_or_free_itself_from_its_reaper() {
    let a = Agent::start();
    let mut c = a.connect();
    // TERM and USR1 from the sandbox (not the agent) are ignored by the reaper ($PPID).
    let r = run_exec(
        &mut c,
        &a.sh("kill -USR1 $PPID; kill -TERM $PPID; sleep 0.3; exit 4"),
    );
    assert_eq!(r.res.exit.exit_code, Some(4));
    assert_eq!(r.res.exit.reason, EndReason::Exited);
    // SIGKILL of the reaper: the call is lost, and the zygote kills the orphans.
    let t = Instant::now();
    let r = run_exec(
        &mut c,
        &a.sh("setsid sleep 1031 & sleep 1032 & kill -9 $PPID; sleep 1033"),
    );
    assert_eq!(r.res.exit.reason, EndReason::Lost);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    a.assert_nothing_left(Duration::from_secs(2));
    // SIGSTOP of the reaper: the agent's own deadline still kills the whole tree.
    let mut req = a.sh("setsid sleep 1041 & kill -STOP $PPID; sleep 1042");
    req.timeout_ms = Some(400);
    req.grace_ms = Some(200);
    let t = Instant::now();
    let r = run_exec(&mut c, &req);
    assert_eq!(r.res.exit.reason, EndReason::Timeout);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    a.assert_nothing_left(Duration::from_secs(2));
    // And the agent still works.
    assert_eq!(
        run_exec(&mut c, &a.sh("exit 9")).res.exit.exit_code,
        Some(9)
    );
}
