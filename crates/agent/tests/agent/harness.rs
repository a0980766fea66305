//! A small test runner (this binary is also the agent under test, so it has its own `main`)
//! and the fixture that runs a real agent in a new pid namespace as a non-root user.

use clawden_agent::client::{Client, ExecResult};
use clawden_agent::proto::{ExecRequest, FileTarget, Lifetime, OutStream, StdinMode};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The uid/gid the agent runs as (the "sandbox user").
pub const SANDBOX_UID: u32 = 1000;

/// A test: name and function.
pub type Test = (&'static str, fn());

/// Run the tests whose name contains any of the non-flag arguments (all without any), a few
/// at a time; print libtest-style lines and the closing summary (`--list`: just the names).
pub fn run(tests: &[Test], args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str())))
        .collect();
    let filtered_out = tests.len() - selected.len();
    println!("\nrunning {} tests", selected.len());
    let start = Instant::now();
    let queue = Mutex::new(selected.into_iter());
    let failed = Mutex::new(Vec::new());
    let passed = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((name, f)) = next else { break };
                    let t = Instant::now();
                    let r = std::panic::catch_unwind(f);
                    let secs = t.elapsed().as_secs_f64();
                    match r {
                        Ok(()) => {
                            println!("test {name} ... ok ({secs:.1}s)");
                            *passed.lock().unwrap() += 1;
                        }
                        Err(_) => {
                            println!("test {name} ... FAILED ({secs:.1}s)");
                            failed.lock().unwrap().push(*name);
                        }
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    let passed = passed.into_inner().unwrap();
    if !failed.is_empty() {
        println!("\nfailures:");
        for f in &failed {
            println!("    {f}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

/// A running agent: `unshare --pid --fork --mount-proc` → `setpriv` as [`SANDBOX_UID`] → this
/// binary's `serve`. The test process (root, outside the namespace) is the supervisor.
pub struct Agent {
    /// Temp base (removed on drop).
    _base: tempfile::TempDir,
    /// The socket.
    pub sock: PathBuf,
    /// A workspace directory owned by the sandbox user (a "mount root").
    pub ws: PathBuf,
    /// The agent's pid on the host.
    pub host_pid: i32,
    unshare: Child,
}

impl Agent {
    /// Start an agent and wait for its socket.
    pub fn start() -> Agent {
        let base = tempfile::Builder::new()
            .prefix("clawden-agent-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = base.path().join("run");
        let ws = base.path().join("ws");
        for (d, mode) in [(&run, 0o700), (&ws, 0o755)] {
            std::fs::create_dir(d).unwrap();
            chown(d, Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let sock = run.join("agent.sock");
        let exe = std::env::current_exe().unwrap();
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "setpriv"])
            .arg(format!("--reuid={SANDBOX_UID}"))
            .arg(format!("--regid={SANDBOX_UID}"))
            .args(["--clear-groups", "--no-new-privs", "--"])
            .arg(&exe)
            .args(["serve", "--socket"])
            .arg(&sock)
            .args(["--supervisor-uid", "0"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let upid = unshare.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut host_pid = 0;
        while Instant::now() < deadline {
            if host_pid == 0 {
                host_pid = children(upid).first().copied().unwrap_or(0);
            }
            if host_pid != 0 && sock.exists() && exe_is(host_pid, &exe) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(host_pid != 0 && sock.exists(), "agent did not come up");
        Agent {
            _base: base,
            sock,
            ws,
            host_pid,
            unshare,
        }
    }

    /// Connect and hello (the test process is root, outside the namespace: pid 0 to the agent).
    pub fn connect(&self) -> Client {
        // The socket file appears at bind(), a moment before listen(): retry a refusal briefly.
        let end = Instant::now() + Duration::from_secs(5);
        let s = loop {
            match UnixStream::connect(&self.sock) {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < end =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        Client::handshake(s).expect("handshake")
    }

    /// Every process of the agent's pid namespace except the agent and its zygote.
    pub fn others(&self) -> Vec<(i32, String)> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/pid", self.host_pid)) else {
            return Vec::new();
        };
        let keep: Vec<i32> = std::iter::once(self.host_pid)
            .chain(children(self.host_pid))
            .take(2)
            .collect();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if keep.contains(&pid) {
                continue;
            }
            if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
            {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                out.push((pid, cmd));
            }
        }
        out
    }

    /// Wait until only the agent and zygote are left in the namespace; panics with what is
    /// left after `limit`.
    pub fn assert_nothing_left(&self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let o = self.others();
            if o.is_empty() {
                return;
            }
            assert!(Instant::now() < end, "processes left in the sandbox: {o:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A target beneath the workspace.
    pub fn target(&self, rel: &str) -> FileTarget {
        FileTarget {
            root: self.ws.to_string_lossy().into_owned(),
            path: self.ws.join(rel).to_string_lossy().into_owned(),
        }
    }

    /// `/bin/sh -c cmd` in the workspace, 20 s deadline, 1 MiB kept per stream.
    pub fn sh(&self, cmd: &str) -> ExecRequest {
        ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("LC_ALL".into(), "C".into()),
            ],
            cwd: self.ws.to_string_lossy().into_owned(),
            roots: vec![self.ws.to_string_lossy().into_owned()],
            timeout_ms: Some(20_000),
            grace_ms: None,
            lifetime: Lifetime::Connection,
            stdin: StdinMode::Closed,
            max_output_bytes: 1 << 20,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // The agent is the namespace's init: killing it ends every process in the namespace
        // (setpriv's uid change cleared unshare's --kill-child death signal).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.host_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn exe_is(pid: i32, exe: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe)
}

/// Direct children of a host pid.
pub fn children(pid: i32) -> Vec<i32> {
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

/// Output of a finished exec.
pub struct Ran {
    /// The result.
    pub res: ExecResult,
    /// Bytes delivered on stdout (head + tail).
    pub out: Vec<u8>,
    /// Bytes delivered on stderr.
    pub err: Vec<u8>,
}

/// Run to completion collecting output.
pub fn run_exec(c: &mut Client, req: &ExecRequest) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let res = c
        .exec(req, None, &mut |s, b| match s {
            OutStream::Stdout => out.extend_from_slice(b),
            OutStream::Stderr => err.extend_from_slice(b),
        })
        .expect("exec");
    Ran { res, out, err }
}
