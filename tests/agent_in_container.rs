//! The static `clawden-agent` (built by build.rs next to clawden's own binaries) runs as the
//! main process of a hardened `clawden-sandbox:minimal` container, and calls work from the
//! host through `clawden_agent::client` after the host's own peer check.

mod common;

use clawden_agent::client::{Client, peer_cred};
use clawden_agent::proto::{
    EndReason, ExecRequest, FileTarget, Lifetime, OutStream, ReadRequest, StdinMode, WriteRequest,
};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const UID: u32 = 1000;

/// Removes the container, also when the test fails.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// `target/<profile>/clawden-agent`, next to this test's `deps/` directory.
fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    dir.join("clawden-agent")
}

/// No `PT_INTERP` program header: the binary needs no dynamic loader (static or static-pie).
fn is_static(path: &Path) -> bool {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) != 3 // PT_INTERP
    })
}

fn docker_out(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

fn sh(cmd: &str, timeout_ms: u64) -> ExecRequest {
    ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        env: vec![("PATH".into(), "/bin:/sbin".into())],
        cwd: "/workspace".into(),
        roots: vec!["/workspace".into()],
        timeout_ms: Some(timeout_ms),
        grace_ms: Some(500),
        lifetime: Lifetime::Connection,
        stdin: StdinMode::Closed,
        max_output_bytes: 1 << 20,
    }
}

fn run(c: &mut Client, req: &ExecRequest) -> (clawden_agent::client::ExecResult, String) {
    let mut out = Vec::new();
    let r = c
        .exec(req, None, &mut |s, b| {
            if s == OutStream::Stdout {
                out.extend_from_slice(b)
            }
        })
        .expect("exec");
    (r, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn static_agent_serves_calls_from_a_hardened_container() {
    let bin = agent_binary();
    assert!(
        bin.exists(),
        "{} missing: build.rs did not run",
        bin.display()
    );
    assert!(
        is_static(&bin),
        "{} is not statically linked",
        bin.display()
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::engine());

    let base = tempfile::Builder::new()
        .prefix("clawden-agent-docker-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock_dir = base.path().join("run");
    let ws = base.path().join("ws");
    for (d, mode) in [(&sock_dir, 0o700), (&ws, 0o755)] {
        std::fs::create_dir(d).unwrap();
        chown(d, Some(UID), Some(UID)).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let name = format!("cdt-agent-{}", uuid::Uuid::new_v4().simple());
    let _guard = ContainerGuard(name.clone());
    docker_out(&[
        "run",
        "-d",
        "--name",
        &name,
        "--init",
        "--user",
        "1000:1000",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--network",
        "none",
        "--pids-limit",
        "128",
        "--memory",
        "96m",
        "--memory-swap",
        "96m",
        "--log-driver",
        "none",
        "-v",
        &format!("{}:/run/clawden", sock_dir.display()),
        "-v",
        &format!("{}:/.clawden/agent:ro", bin.display()),
        "-v",
        &format!("{}:/workspace", ws.display()),
        "clawden-sandbox:minimal",
        "/.clawden/agent",
        "serve",
        "--socket",
        "/run/clawden/agent.sock",
        "--supervisor-uid",
        "0",
    ]);
    let sock = sock_dir.join("agent.sock");
    let end = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        assert!(Instant::now() < end, "agent socket never came up");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The host's peer check, as the supervisor does it: uid and the agent's exact host pid
    // (the child of the container's init).
    let init: i32 = docker_out(&["inspect", "-f", "{{.State.Pid}}", &name])
        .parse()
        .unwrap();
    let (pid, uid, _) = peer_cred(&stream).unwrap();
    assert_eq!(uid, UID);
    assert_eq!(
        children(init),
        vec![pid],
        "the agent is the child of --init"
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut c = Client::handshake(stream).unwrap();
    assert!(c.agent_hello().pid > 1);

    let (r, out) = run(&mut c, &sh("echo hi; id -u; exit 3", 10_000));
    assert_eq!(r.exit.exit_code, Some(3));
    assert_eq!(out, "hi\n1000\n");

    // Latency of a trivial call on a persistent connection (informational; loose bound).
    let mut times: Vec<Duration> = (0..100)
        .map(|_| {
            let t = Instant::now();
            let (r, _) = run(&mut c, &sh("true", 10_000));
            assert_eq!(r.exit.exit_code, Some(0));
            t.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "agent call `sh -c true`: min {:?}, median {:?}, max {:?}",
        times[0], times[50], times[99]
    );
    assert!(times[50] < Duration::from_millis(100), "{times:?}");

    let t = Instant::now();
    let (r, out) = run(&mut c, &sh("sleep 1000 & echo started", 10_000));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(out, "started\n");
    assert_eq!(r.exit.exit_code, Some(0));
    let (r, _) = run(&mut c, &sh("sleep 1000", 500));
    assert_eq!(r.exit.reason, EndReason::Timeout);
    let (_, ps) = run(&mut c, &sh("ps -o comm", 10_000));
    assert!(!ps.contains("sleep"), "{ps}");

    // A fork bomb is stopped by the pids limit and killed whole by the deadline; the agent
    // keeps serving.
    let t = Instant::now();
    let (r, _) = run(&mut c, &sh("b() { b | b & }; b; sleep 100", 2_000));
    assert_eq!(r.exit.reason, EndReason::Timeout, "{:?}", r.exit);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let (r, out) = run(&mut c, &sh("echo alive", 10_000));
    assert_eq!((r.exit.exit_code, out.as_str()), (Some(0), "alive\n"));

    // A memory bomb is killed by the kernel and reported as OOM (the container's memory cgroup
    // counter), and the agent survives it.
    let (r, _) = run(&mut c, &sh("tail /dev/zero", 30_000));
    assert_eq!(r.exit.reason, EndReason::Oom, "{:?}", r.exit);
    assert!(r.exit.oom_killed);
    let (r, _) = run(&mut c, &sh("exit 0", 10_000));
    assert_eq!(r.exit.exit_code, Some(0));

    // Files through the agent: openat2 passes the engine's default seccomp profile.
    let t = |p: &str| FileTarget {
        root: "/workspace".into(),
        path: p.into(),
    };
    let w = c
        .write_file(
            &WriteRequest {
                target: t("/workspace/d/f.txt"),
                mkdir_parents: true,
                exclusive: false,
                expected_etag: None,
                cap: 1 << 20,
            },
            &mut &b"from the host"[..],
        )
        .unwrap();
    assert!(w.created);
    assert_eq!(std::fs::read(ws.join("d/f.txt")).unwrap(), b"from the host");
    let mut back = Vec::new();
    c.read_file(
        &ReadRequest {
            target: t("/workspace/d/f.txt"),
            offset: 0,
            length: None,
            cap: 1 << 20,
        },
        &mut back,
    )
    .unwrap();
    assert_eq!(back, b"from the host");
    // The read-only root is the kernel's to enforce.
    let e = c
        .write_file(
            &WriteRequest {
                target: FileTarget {
                    root: "/etc".into(),
                    path: "/etc/x".into(),
                },
                mkdir_parents: false,
                exclusive: false,
                expected_etag: None,
                cap: 10,
            },
            &mut &b"x"[..],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("read_only_mount") || e.to_string().contains("permission_denied"),
        "{e}"
    );
}
