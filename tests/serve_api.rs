//! `clawden serve` end to end: the real binary on a real socket, the real engine, curl as the
//! client (as the README shows). Every container is swept by prefix; every server is killed
//! on drop.

mod common;

use common::{World, containers_with_prefix, sweep};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Option<Child>,
    sock: PathBuf,
    config: PathBuf,
    state: PathBuf,
}

impl Server {
    fn start(world: &World, prefix: &str, serve_extra: &str) -> Server {
        let config = world.path("config.json5");
        let text = format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", workspaceRoot: "{root}", docker: {{ containerPrefix: "{prefix}" }} }} }} }}, serve: {{ heartbeatSeconds: 1, {serve_extra} }} }}"#,
            ws = world.path("ws").display(),
            root = world.path("sandboxes").display(),
        );
        std::fs::write(&config, text).unwrap();
        let sock = world.path("run/clawden.sock");
        let mut s = Server {
            child: None,
            sock,
            config,
            state: world.path("state"),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_clawden"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .arg("--socket")
            .arg(&self.sock)
            .env("CLAWDEN_HOME", &self.state)
            .env_remove("CLAWDEN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if self.curl(&["http://x/_ping"]).1 == "OK" {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not come up");
    }

    /// curl over the socket: (HTTP status, body).
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let o = Command::new("curl")
            .args(["-s", "-m", "60", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn json(&self, args: &[&str]) -> (u16, Value) {
        let (c, b) = self.curl(args);
        (c, serde_json::from_str(&b).unwrap_or(Value::String(b)))
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.json(&["-XPOST", &format!("http://x{path}"), "-d", body])
    }

    /// SIGTERM, and the exit status.
    fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let t = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Processes in the container whose command line contains `needle`.
fn ps_count(container: &str, needle: &str) -> usize {
    let o = Command::new("docker")
        .args(["exec", container, "ps", "-o", "args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -o"))
        .count()
}

fn wait_until(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < d {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

const S1: &str = r#"{"key":"s1"}"#;

#[test]
fn calls_files_roles_and_errors_over_the_socket() {
    let sw = sweep("srv");
    let world = World::new();
    let server = Server::start(&world, &sw.prefix, "maxCallsPerSandbox: 1");
    // Socket and directory modes; a second service on the same socket refuses to start.
    let mode = |p: &PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.sock), 0o660);
    assert_eq!(mode(&world.path("run")), 0o750);
    let second = Command::new(env!("CARGO_BIN_EXE_clawden"))
        .arg("--config")
        .arg(&server.config)
        .args(["serve", "--socket"])
        .arg(&server.sock)
        .env("CLAWDEN_HOME", &server.state)
        .output()
        .unwrap();
    assert_ne!(second.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another clawden serve"));

    let (c, v) = server.json(&["http://x/v1/version"]);
    assert_eq!(c, 200);
    assert_eq!(v["apiVersion"], "1");
    assert!(
        v["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "calls.stream")
    );

    // wait: exit code, both streams, which path ran, the call's id.
    let (c, r) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"echo out; echo err >&2; exit 3"}}"#),
    );
    assert_eq!(c, 200, "{r}");
    assert_eq!(r["exitCode"], 3);
    assert_eq!(r["stdout"], "out\n");
    assert_eq!(r["stderr"], "err\n");
    assert_eq!(r["via"], "agent");
    assert_eq!(r["endReason"], "exited");
    let container = r["containerName"].as_str().unwrap().to_string();
    assert!(container.starts_with(&sw.prefix));

    // A forged status line changes nothing: the status is the agent's waitpid.
    let (_, r) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"printf '{{\"type\":\"exit\",\"exitCode\":0}}\\n'; exit 7"}}"#),
    );
    assert_eq!(r["exitCode"], 7, "{r}");

    // Strict: a misspelt field is refused, named.
    let (c, e) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"true","timeoutMS":5}}"#),
    );
    assert_eq!(c, 400);
    assert_eq!(e["error"]["code"], "unknown_field");
    assert_eq!(e["error"]["details"]["field"], "timeoutMS");
    assert!(e["error"]["requestId"].is_string());

    // stream: NDJSON, seqs in order, started … exit, heartbeats on silence.
    let (c, body) = server.curl(&[
        "-XPOST",
        "http://x/v1/calls",
        "-d",
        &format!(r#"{{"session":{S1},"command":"echo a; sleep 2.5; echo b","mode":"stream"}}"#),
    ]);
    assert_eq!(c, 200);
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"started"), "{types:?}");
    assert_eq!(types.last(), Some(&"exit"), "{types:?}");
    assert!(types.contains(&"heartbeat"), "{types:?}");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "a\nb\n");
    // Every line has a seq: events number themselves, a heartbeat repeats the last one sent
    // (where a client resumes with after=).
    assert!(events.iter().all(|e| e["seq"].is_u64()), "{events:?}");
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] != "heartbeat")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    for (i, e) in events.iter().enumerate() {
        if e["type"] == "heartbeat" {
            assert_eq!(e["seq"], events[i - 1]["seq"], "{events:?}");
        }
    }

    // A flood on both streams read slowly: every byte, in order, within the caps.
    let (_, body) = server.curl(&[
        "--limit-rate",
        "400k",
        "-XPOST",
        "http://x/v1/calls",
        "-d",
        &format!(r#"{{"session":{S1},"command":"i=0; while [ $i -lt 3000 ]; do printf '%05d-' $i; printf 'e' >&2; i=$((i+1)); done","mode":"stream"}}"#),
    ]);
    let mut out = String::new();
    let mut err = 0;
    for l in body.lines() {
        let e: Value = serde_json::from_str(l).unwrap();
        match e["type"].as_str().unwrap() {
            "stdout" => out.push_str(e["text"].as_str().unwrap()),
            "stderr" => err += e["text"].as_str().unwrap().len(),
            "gap" => panic!("a slow reader lost events"),
            _ => {}
        }
    }
    let want: String = (0..3000).map(|i| format!("{i:05}-")).collect();
    assert_eq!(out, want);
    assert_eq!(err, 3000);

    // start: 201 at once; the per-sandbox cap (1) answers 429 with Retry-After; a signal ends it.
    let (c, s) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"sleep 300","mode":"start"}}"#),
    );
    assert_eq!(c, 201, "{s}");
    let id = s["callId"].as_str().unwrap().to_string();
    assert!(s["attachToken"].is_string());
    let (c, hdrs) = server.curl(&[
        "-i",
        "-XPOST",
        "http://x/v1/calls",
        "-d",
        &format!(r#"{{"session":{S1},"command":"true"}}"#),
    ]);
    assert_eq!(c, 429, "{hdrs}");
    assert!(hdrs.to_lowercase().contains("retry-after: 1"));
    assert!(hdrs.contains("too_many_calls"));
    assert!(wait_until(Duration::from_secs(5), || ps_count(
        &container,
        "sleep 300"
    ) == 1));
    let (c, _) = server.post(&format!("/v1/calls/{id}/signal"), r#"{"signal":"TERM"}"#);
    assert_eq!(c, 200);
    assert!(wait_until(Duration::from_secs(5), || {
        server.json(&[&format!("http://x/v1/calls/{id}")]).1["state"] == "exited"
    }));
    let (_, info) = server.json(&[&format!("http://x/v1/calls/{id}")]);
    assert_eq!(info["result"]["endReason"], "signaled", "{info}");
    assert_eq!(info["result"]["signal"], 15);
    assert_eq!(ps_count(&container, "sleep 300"), 0);
    let (c, _) = server.curl(&["-XDELETE", &format!("http://x/v1/calls/{id}")]);
    assert_eq!(c, 200);
    assert_eq!(server.json(&[&format!("http://x/v1/calls/{id}")]).0, 404);

    // stdin streamed into a started call, then EOF.
    let (_, s) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"cat","mode":"start","stdin":"stream"}}"#),
    );
    let id = s["callId"].as_str().unwrap().to_string();
    let (c, _) = server.curl(&[
        "-XPOST",
        &format!("http://x/v1/calls/{id}/stdin"),
        "--data-binary",
        "piped",
    ]);
    assert_eq!(c, 200);
    server.curl(&["-XPOST", &format!("http://x/v1/calls/{id}/stdin?eof=true")]);
    assert!(wait_until(Duration::from_secs(5), || {
        server.json(&[&format!("http://x/v1/calls/{id}")]).1["state"] == "exited"
    }));
    let (_, info) = server.json(&[&format!("http://x/v1/calls/{id}")]);
    assert_eq!(info["result"]["stdout"], "piped", "{info}");
    let (_, out) = server.curl(&[&format!(
        "http://x/v1/calls/{id}/output?stream=stdout&offset=2"
    )]);
    assert_eq!(out, "ped");

    // Idempotency: a retry gets the first response; the same key for another request conflicts.
    let key = "Idempotency-Key: k-1";
    let body = format!(r#"{{"session":{S1},"command":"echo $$"}}"#);
    let (_, a) = server.json(&["-H", key, "-XPOST", "http://x/v1/calls", "-d", &body]);
    let (_, b) = server.json(&["-H", key, "-XPOST", "http://x/v1/calls", "-d", &body]);
    assert_eq!(a["callId"], b["callId"]);
    assert_eq!(a["stdout"], b["stdout"]);
    let (c, e) = server.json(&[
        "-H",
        key,
        "-XPOST",
        "http://x/v1/calls",
        "-d",
        &format!(r#"{{"session":{S1},"command":"true"}}"#),
    ]);
    assert_eq!(c, 409);
    assert_eq!(e["error"]["code"], "idempotency_conflict");

    // Files: atomic put, exclusive create, compare-and-swap, stat, list, rename, remove.
    let f = "http://x/v1/files?session=s1&path=dir/a.txt";
    let (c, w) = server.json(&["-XPUT", &format!("{f}&mkdir=true"), "--data-binary", "one"]);
    assert_eq!(c, 201, "{w}");
    let etag = w["etag"].as_str().unwrap().to_string();
    let (c, e) = server.json(&["-XPUT", "-H", "If-None-Match: *", f, "--data-binary", "x"]);
    assert_eq!(c, 409, "{e}");
    assert_eq!(e["error"]["code"], "already_exists");
    let (c, e) = server.json(&["-XPUT", "-H", "If-Match: \"nope\"", f, "--data-binary", "x"]);
    assert_eq!(c, 412, "{e}");
    let (c, _) = server.json(&[
        "-XPUT",
        "-H",
        &format!("If-Match: \"{etag}\""),
        f,
        "--data-binary",
        "two",
    ]);
    assert_eq!(c, 200);
    assert_eq!(server.curl(&[f]).1, "two");
    // The host side of the mount holds it (the ensure answer maps container to host paths).
    let (_, sb) = server.post("/v1/sandboxes/ensure", &format!(r#"{{"session":{S1}}}"#));
    let host = sb["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["container"] == sb["workdir"])
        .map(|m| PathBuf::from(m["host"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{sb}"));
    assert_eq!(
        std::fs::read_to_string(host.join("dir/a.txt")).unwrap(),
        "two"
    );
    let (_, st) = server.json(&["http://x/v1/files/stat?session=s1&path=dir/a.txt"]);
    assert_eq!(st["size"], 3);
    assert_eq!(st["kind"], "file");
    let (_, ls) = server.json(&["http://x/v1/files/list?session=s1&path=dir"]);
    assert_eq!(ls["entries"][0]["name"], "a.txt");
    let (c, _) = server.post(
        "/v1/files/rename",
        &format!(r#"{{"session":{S1},"path":"dir/a.txt","to":"dir/b.txt"}}"#),
    );
    assert_eq!(c, 200);
    assert!(host.join("dir/b.txt").exists());
    let (c, _) = server.post(
        "/v1/files/remove",
        &format!(r#"{{"session":{S1},"path":"dir/b.txt"}}"#),
    );
    assert_eq!(c, 200);
    assert!(!host.join("dir/b.txt").exists());
    // Escapes are the sandbox's own refusals.
    let (c, e) = server.json(&["http://x/v1/files?session=s1&path=/etc/../../etc/shadow"]);
    assert!(c == 403 || c == 404, "{c} {e}");
    let (c, e) = server.json(&["http://x/v1/files?session=s1&path=x&bogus=1"]);
    assert_eq!(c, 400);
    assert_eq!(e["error"]["code"], "unknown_field");

    // Every audit line carries the peer (this test's uid and a real pid).
    let (_, a) = server.json(&["http://x/v1/audit"]);
    let entries = a["entries"].as_array().unwrap();
    let me = nix::unistd::geteuid().as_raw();
    let execs: Vec<&Value> = entries.iter().filter(|e| e["op"] == "exec").collect();
    assert!(!execs.is_empty());
    for e in execs.iter().chain(
        entries
            .iter()
            .filter(|e| e["op"] == "write")
            .collect::<Vec<_>>()
            .iter(),
    ) {
        assert_eq!(e["peerUid"], me, "{e}");
        assert!(e["peerPid"].as_i64().unwrap() > 0, "{e}");
    }

    // Sandboxes: listed, and removed through the API.
    let (_, l) = server.json(&["http://x/v1/sandboxes"]);
    assert!(
        l["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == container.as_str())
    );
    let (c, _) = server.curl(&["-XDELETE", &format!("http://x/v1/sandboxes/{container}")]);
    assert_eq!(c, 200);
    assert!(containers_with_prefix(&sw.prefix).is_empty());
}

#[test]
fn killing_a_waiting_client_or_the_service_ends_connection_calls() {
    let sw = sweep("srvk");
    let world = World::new();
    let mut server = Server::start(&world, &sw.prefix, "");
    let (_, r) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"true"}}"#),
    );
    let container = r["containerName"].as_str().unwrap().to_string();

    // kill -9 of a client mid-wait: the call's whole tree is gone within 2 s.
    let mut client = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&server.sock)
        .args([
            "-XPOST",
            "http://x/v1/calls",
            "-d",
            &format!(r#"{{"session":{S1},"command":"sleep 301 & setsid sleep 302 & sleep 303"}}"#),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || ps_count(
        &container, "sleep 30"
    ) == 3));
    client.kill().unwrap();
    client.wait().unwrap();
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(2), || ps_count(
        &container, "sleep 30"
    ) == 0));
    assert!(t.elapsed() <= Duration::from_millis(2500));

    // A detached call survives SIGTERM of the service (exit 0); a connection call does not.
    let (c, d) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"sleep 6; echo survived","mode":"start","lifetime":"detached"}}"#),
    );
    assert_eq!(c, 201, "{d}");
    let (c, _) = server.post(
        "/v1/calls",
        &format!(r#"{{"session":{S1},"command":"sleep 304","mode":"start"}}"#),
    );
    assert_eq!(c, 201);
    assert!(wait_until(Duration::from_secs(5), || ps_count(
        &container,
        "sleep 304"
    ) == 1));
    let t = Instant::now();
    assert_eq!(server.terminate(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(wait_until(Duration::from_secs(3), || ps_count(
        &container,
        "sleep 304"
    ) == 0));
    assert!(
        ps_count(&container, "sleep 6") >= 1,
        "the detached call runs on"
    );

    // After a restart the detached call is found again through its agent, and finishes.
    server.spawn();
    let (_, l) = server.json(&["http://x/v1/calls"]);
    let calls = l["calls"].as_array().unwrap().clone();
    let found = calls
        .iter()
        .find(|c| c["lifetime"] == "detached")
        .unwrap_or_else(|| panic!("not rediscovered: {l}"));
    let id = found["callId"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(10), || {
        server.json(&[&format!("http://x/v1/calls/{id}")]).1["state"] == "exited"
    }));
    let (_, info) = server.json(&[&format!("http://x/v1/calls/{id}")]);
    assert_eq!(info["result"]["exitCode"], 0, "{info}");
    assert_eq!(info["result"]["stdout"], "survived\n", "{info}");
}

#[test]
fn a_client_in_a_container_and_an_open_socket_directory_are_refused() {
    let sw = sweep("srvns");
    let world = World::new();
    let server = Server::start(&world, &sw.prefix, "");
    // A container handed the service's socket (same uid 0, another pid namespace): refused
    // before any route runs, and nothing was started for it.
    let bin = world.path("http");
    let cc = Command::new("gcc")
        .args(["-static", "-O2", "-o", bin.to_str().unwrap()])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/http.c"))
        .output()
        .expect("gcc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = |request: &str| {
        let o = Command::new("docker")
            .args(["run", "--rm", "--network", "none", "--user", "0"])
            .args(["--name", &format!("{}client", sw.prefix)])
            .arg("-v")
            .arg(format!("{}:/s", world.path("run").display()))
            .arg("-v")
            .arg(format!("{}:/h:ro", bin.display()))
            .args(["clawden-sandbox:minimal", "/h", "/s/clawden.sock", request])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = run("GET /v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("peer_refused"), "{out}");
    let body = r#"{"session":{"key":"s1"},"command":"touch /workspace/pwned"}"#;
    let out = run(&format!(
        "POST /v1/calls HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert!(out.contains("peer_refused"), "{out}");
    let (_, calls) = server.json(&["http://x/v1/calls"]);
    assert_eq!(calls["calls"].as_array().unwrap().len(), 0, "{calls}");
    assert!(containers_with_prefix(&format!("{}agent", sw.prefix)).is_empty());

    // A socket directory others may write is refused at start, with the fix.
    let open = world.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_clawden"))
        .arg("--config")
        .arg(&server.config)
        .args(["serve", "--socket"])
        .arg(open.join("c.sock"))
        .env("CLAWDEN_HOME", &server.state)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("writable by group or others"), "{err}");
    assert!(!open.join("c.sock").exists());
}

/// `clawden attach`: the shim a gateway spawns. Stdio piped both ways, the call's exit code,
/// a signal death re-raised, the token good once, and killing the shim kills the call's tree.
#[test]
fn the_attach_shim_pipes_stdio_exits_like_the_call_and_takes_the_call_down_with_it() {
    let sw = sweep("svatt");
    let w = World::new();
    let s = Server::start(&w, &sw.prefix, "");
    let start = |command: &str| -> (String, String) {
        let body = serde_json::json!({
            "session": {"key": "s1"}, "command": command, "mode": "start", "stdin": "stream"
        });
        let (code, v) = s.post("/v1/calls", &body.to_string());
        assert_eq!(code, 201, "{v}");
        (
            v["callId"].as_str().unwrap().to_string(),
            v["attachToken"].as_str().unwrap().to_string(),
        )
    };
    let shim = |id: &str, token: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_clawden"));
        c.args(["attach", id, "--socket"])
            .arg(&s.sock)
            .env("CLAWDEN_ATTACH_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    // Stdio both ways and the exit code; the command is in no host argv.
    let (id, token) = start("read l; echo got:$l; echo to-err >&2; exit 7");
    let mut child = shim(&id, &token).spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "got:hello\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("to-err"));
    // The token was good once.
    let o = shim(&id, &token).output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let o = shim(&id, "").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // A signal death is re-raised by the shim.
    let (id, token) = start("kill -TERM $$");
    let o = shim(&id, &token).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(15), "{o:?}");
    // SIGINT to the shim goes to the call's tree (the trap sees it, the call decides).
    let (id, token) =
        start("trap 'echo interrupted; exit 3' INT; echo ready; while :; do sleep 0.1; done");
    let mut child = shim(&id, &token).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(status.code(), Some(3), "{rest}");
    assert!(rest.contains("interrupted"));
    // kill -9 of the shim: the call's whole tree is gone within 2 s.
    let (id, token) = start("sleep 4242 & sleep 4243");
    let mut child = shim(&id, &token).spawn().unwrap();
    let container = containers_with_prefix(&sw.prefix)[0].clone();
    assert!(wait_until(Duration::from_secs(10), || ps_count(
        &container,
        "sleep 424"
    ) == 2));
    child.kill().unwrap();
    let _ = child.wait();
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(2), || ps_count(
        &container,
        "sleep 424"
    ) == 0));
    assert!(t.elapsed() <= Duration::from_millis(2500));
    let (_, v) = s.json(&[&format!("http://x/v1/calls/{id}")]);
    assert_eq!(v["state"], "exited", "{v}");
}
