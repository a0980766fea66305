//! `make bench`: clawden against the plain `docker` equivalent, in one run, on the minimal image.
//! Prints a table with the ratio of each line (clawden / docker; below 1 is faster) and writes the
//! same as JSON to `target/bench.json`.

use clawden::config::{Env, LoadedConfig, load::ConfigLayer, parse_config};
use clawden::engine::ContainerEngine;
use clawden::engine::docker::DockerEngine;
use clawden::exec::ExecRequest;
use clawden::supervisor::Supervisor;
use serde::Serialize;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Line {
    name: String,
    unit: String,
    clawden: f64,
    docker: f64,
    ratio: f64,
    note: String,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn docker(args: &[&str]) -> std::process::Output {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

const HARDENED: &[&str] = &[
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "none",
    "--user",
    "1000:1000",
    "--memory",
    "1g",
    "--memory-swap",
    "1g",
    "--cpus",
    "1",
    "--pids-limit",
    "256",
    "--init",
    "--log-driver",
    "none",
    "--label",
    "clawden.sandbox=1",
    "--label",
    "clawden.bench=1",
];

/// Removes every container the bench made when dropped, also when the bench panics: clawden's
/// carry the bench's unique name prefix, the `docker run` ones the `clawden.bench` label.
struct Sweep {
    prefix: String,
    /// The bench's state directory: staged mounts under it are undone.
    state: std::path::PathBuf,
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let mut ids = Vec::new();
        for filter in [
            format!("name={}", self.prefix),
            "label=clawden.bench=1".to_string(),
        ] {
            if let Ok(o) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            {
                ids.extend(
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from),
                );
            }
        }
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<std::path::PathBuf> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(std::path::PathBuf::from)
                .filter(|p| p.starts_with(&self.state))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for p in points {
                let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// One `docker run --rm` of `true` with the hardening of a sandbox; its wall time in ms.
fn docker_run_hardened() -> f64 {
    let t = Instant::now();
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(HARDENED);
    args.extend_from_slice(&[
        "--tmpfs",
        "/tmp:size=64m",
        clawden::images::MINIMAL_TAG,
        "true",
    ]);
    docker(&args);
    ms(t.elapsed())
}

/// The `clawden` binary next to this one.
fn clawden_cli() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("clawden")))
        .expect("clawden next to clawden-bench")
}

/// Resident memory of a process, in MiB (`VmRSS`).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sweep = Sweep {
        prefix: format!("bench-{}-", &uuid::Uuid::new_v4().simple().to_string()[..6]),
        state: dir.path().to_path_buf(),
    };
    // `--only a,b`: run only these parts (lib-exec, cli-exec, first-call, run, files, serve,
    // parallel, memory).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only: Option<Vec<String>> = match args.as_slice() {
        [] => None,
        [flag, list] if flag == "--only" => Some(list.split(',').map(String::from).collect()),
        _ => {
            eprintln!(
                "usage: clawden-bench [--only lib-exec,cli-exec,first-call,run,files,serve,parallel,memory]"
            );
            std::process::exit(2);
        }
    };
    let lines = rt.block_on(run(&sweep.prefix, dir.path(), only.as_deref()));
    println!(
        "{:<44} {:>12} {:>12} {:>8}  unit / note",
        "line", "clawden", "docker", "ratio"
    );
    for l in &lines {
        println!(
            "{:<44} {:>12.2} {:>12.2} {:>8.2}  {} {}",
            l.name, l.clawden, l.docker, l.ratio, l.unit, l.note
        );
    }
    let _ = std::fs::create_dir_all("target");
    std::fs::write(
        "target/bench.json",
        serde_json::to_vec_pretty(&lines).unwrap(),
    )
    .unwrap();
    println!("\nwritten: target/bench.json");
}

async fn run(prefix: &str, dir: &std::path::Path, only: Option<&[String]>) -> Vec<Line> {
    let want = |part: &str| only.is_none_or(|o| o.iter().any(|p| p == part));
    let engine = Arc::new(DockerEngine::connect().await.expect("Docker engine"));
    if engine
        .image_id(clawden::images::MINIMAL_TAG)
        .await
        .unwrap()
        .is_none()
    {
        let ctx = clawden::images::minimal_context().expect("static busybox");
        engine
            .build_image(clawden::images::MINIMAL_TAG, ctx, &|_| {})
            .await
            .unwrap();
    }
    let text = format!(
        r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", scope: "session", calls: {{ maxReadBytes: "128m", maxWriteBytes: "128m" }}, workspaceRoot: "{root}", docker: {{ containerPrefix: "{prefix}" }} }} }} }} }}"#,
        ws = dir.join("ws").display(),
        root = dir.join("sbx").display()
    );
    std::fs::create_dir_all(dir.join("ws")).unwrap();
    let config_file = dir.join("config.json5");
    std::fs::write(&config_file, &text).unwrap();
    let cfg = LoadedConfig {
        layers: vec![ConfigLayer {
            origin: "bench".into(),
            file: parse_config(&text, "bench").unwrap(),
        }],
        ..Default::default()
    };
    let env = Env {
        clawden_home: Some(dir.join("state")),
        ..Default::default()
    };
    let sup = Arc::new(Supervisor::new(engine.clone(), cfg, env));
    let mut lines = Vec::new();

    // 1. exec round trip of `true`.
    let warm = sup
        .exec(ExecRequest {
            session: Some("b0".into()),
            command: "true".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let name = warm.container_name.clone().unwrap();
    let n = 200;
    let mut theirs = Vec::with_capacity(n);
    if want("lib-exec") || want("cli-exec") {
        for _ in 0..n {
            let t = Instant::now();
            docker(&["exec", &name, "true"]);
            theirs.push(ms(t.elapsed()));
        }
    }
    let mut ours = Vec::with_capacity(n);
    for _ in 0..if want("lib-exec") { n } else { 0 } {
        let t = Instant::now();
        let o = sup
            .exec(ExecRequest {
                session: Some("b0".into()),
                command: "true".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(o.exit_code, Some(0));
        ours.push(ms(t.elapsed()));
    }
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        if ours.is_empty() {
            break;
        }
        let (a, b) = (pct(&mut ours, p), pct(&mut theirs, p));
        lines.push(Line {
            name: format!("library exec `true` {label} (n={n})"),
            unit: "ms".into(),
            clawden: a,
            docker: b,
            ratio: a / b,
            note: "persistent agent connection vs docker exec CLI".into(),
        });
    }
    // The same through the CLI: a fresh `clawden exec` process per call (config load, plan,
    // ensure's inspect and checks, connect + peer check, the call).
    let cli = clawden_cli();
    let n_cli = if want("cli-exec") { 100 } else { 0 };
    let mut ours_cli = Vec::with_capacity(n_cli);
    for _ in 0..n_cli {
        let t = Instant::now();
        let o = Command::new(&cli)
            .args([
                "exec",
                "--config",
                config_file.to_str().unwrap(),
                "--session",
                "b0",
                "--",
                "true",
            ])
            .env("CLAWDEN_HOME", dir.join("state"))
            .output()
            .expect("clawden exec");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ours_cli.push(ms(t.elapsed()));
    }
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        if ours_cli.is_empty() {
            break;
        }
        let (a, b) = (pct(&mut ours_cli, p), pct(&mut theirs, p));
        lines.push(Line {
            name: format!("CLI exec `true` {label} (n={n_cli})"),
            unit: "ms".into(),
            clawden: a,
            docker: b,
            ratio: a / b,
            note: "a `clawden exec` process per call vs docker exec CLI".into(),
        });
    }

    // 2. first call of a new session (container create + start + call) vs docker run --rm.
    let rounds = if want("first-call") { 10 } else { 0 };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        let o = sup
            .exec(ExecRequest {
                session: Some(format!("new{i}")),
                command: "true".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        ours.push(ms(t.elapsed()));
        let _ = Command::new("docker")
            .args(["rm", "-f", o.container_name.as_deref().unwrap()])
            .output();
        theirs.push(docker_run_hardened());
    }
    if rounds > 0 {
        let (a, b) = (pct(&mut ours, 0.5), pct(&mut theirs, 0.5));
        lines.push(Line {
            name: format!("first call of a new session p50 (n={rounds})"),
            unit: "ms".into(),
            clawden: a,
            docker: b,
            ratio: a / b,
            note: "vs docker run --rm (hardened)".into(),
        });
    }

    // 2b. `clawden run -- true` (a CLI process: a new disposable sandbox, the call, teardown)
    // vs `docker run --rm` with the same hardening.
    let rounds = if want("run") { 10 } else { 0 };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let run_cfg = dir.join("run-config.json5");
    std::fs::write(
        &run_cfg,
        format!(
            r#"{{ agents: {{ defaults: {{ sandbox: {{ docker: {{ containerPrefix: "{prefix}" }} }} }} }} }}"#
        ),
    )
    .unwrap();
    for _ in 0..rounds {
        let t = Instant::now();
        let o = Command::new(&cli)
            .args(["run", "--config", run_cfg.to_str().unwrap(), "--workspace"])
            .arg(dir.join("ws"))
            .args(["--", "true"])
            .env("CLAWDEN_HOME", dir.join("state"))
            .output()
            .expect("clawden run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ours.push(ms(t.elapsed()));
        theirs.push(docker_run_hardened());
    }
    if rounds > 0 {
        let (a, b) = (pct(&mut ours, 0.5), pct(&mut theirs, 0.5));
        lines.push(Line {
            name: format!("clawden run -- true p50 (n={rounds})"),
            unit: "ms".into(),
            clawden: a,
            docker: b,
            ratio: a / b,
            note: "CLI process, sandbox created and removed, vs docker run --rm (hardened)".into(),
        });
    }

    // 3. read / write of 4 KiB, 1 MiB, 64 MiB vs docker cp.
    if want("files") {
        lines.extend(bench_files(&sup, &name).await);
    }
    if want("serve") {
        lines.extend(bench_serve(&config_file, dir, prefix).await);
    }
    if !(want("parallel") || want("memory")) {
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        return lines;
    }

    // 4. 20 parallel execs over 5 sessions (their containers made first).
    for i in 0..5 {
        let warm = sup
            .exec(ExecRequest {
                session: Some(format!("p{i}")),
                command: "true".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(warm.exit_code, Some(0));
    }
    let total = 200;
    let t = Instant::now();
    let mut handles = Vec::new();
    for w in 0..20 {
        let sup = sup.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..total / 20 {
                sup.exec(ExecRequest {
                    session: Some(format!("p{}", w % 5)),
                    command: "true".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let ours = total as f64 / t.elapsed().as_secs_f64();
    let names: Vec<String> = (0..5)
        .map(|i| {
            sup.plan(Some(&format!("p{i}")), None)
                .unwrap()
                .1
                .container
                .name
        })
        .collect();
    let t = Instant::now();
    let threads: Vec<_> = (0..20)
        .map(|w| {
            let n = names[w % 5].clone();
            std::thread::spawn(move || {
                for _ in 0..total / 20 {
                    docker(&["exec", &n, "true"]);
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let theirs = total as f64 / t.elapsed().as_secs_f64();
    lines.push(Line {
        name: "20 parallel execs over 5 sessions".into(),
        unit: "calls/s".into(),
        clawden: ours,
        docker: theirs,
        ratio: ours / theirs,
        note: "higher is better; ratio > 1 = clawden faster".into(),
    });
    // 5. Memory: the agent (with its zygote) in a sandbox, and the supervisor per live call.
    let init = engine
        .inspect(&name)
        .await
        .unwrap()
        .and_then(|f| f.pid)
        .expect("running sandbox");
    let agent_tree: Vec<u32> = children(init)
        .into_iter()
        .flat_map(|a| std::iter::once(a).chain(children(a)))
        .collect();
    let agent_rss: f64 = agent_tree.iter().map(|p| rss_mib(*p)).sum();
    let me = std::process::id();
    let idle = rss_mib(me);
    let live = 20;
    let handles: Vec<_> = (0..live)
        .map(|i| {
            let sup = sup.clone();
            tokio::spawn(async move {
                sup.exec(ExecRequest {
                    session: Some(format!("p{}", i % 5)),
                    command: "sleep 2".into(),
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let busy = rss_mib(me);
    for h in handles {
        h.await.unwrap().unwrap();
    }
    lines.push(Line {
        name: "agent RSS (agent + zygote, idle)".into(),
        unit: "MiB".into(),
        clawden: agent_rss,
        docker: 0.0,
        ratio: 0.0,
        note: format!("{} processes", agent_tree.len()),
    });
    lines.push(Line {
        name: format!("supervisor RSS per live call ({live} calls)"),
        unit: "MiB".into(),
        clawden: ((busy - idle) / live as f64).max(0.0),
        docker: 0.0,
        ratio: 0.0,
        note: format!("idle {idle:.1} MiB, with {live} calls {busy:.1} MiB"),
    });
    for n in names {
        let _ = Command::new("docker").args(["rm", "-f", &n]).output();
    }
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    lines
}

async fn bench_files(sup: &Supervisor, container: &str) -> Vec<Line> {
    use clawden::supervisor::files::{ReadRequest, WriteRequest};
    let mut lines = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    for (label, size, reps) in [
        ("4 KiB", 4usize << 10, 50),
        ("1 MiB", 1 << 20, 20),
        ("64 MiB", 64 << 20, 5),
    ] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let src = tmp.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let (mut w_ours, mut w_theirs, mut r_ours, mut r_theirs) = (vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            let t = Instant::now();
            let w = sup
                .write(WriteRequest {
                    session: Some("b0".into()),
                    path: "bench.bin".into(),
                    content: data.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            w_ours.push(ms(t.elapsed()));
            assert_eq!(w.bytes_written as usize, size);
            let t = Instant::now();
            docker(&[
                "cp",
                src.to_str().unwrap(),
                &format!("{container}:/workspace/bench-cp.bin"),
            ]);
            w_theirs.push(ms(t.elapsed()));
            let t = Instant::now();
            let r = sup
                .read(ReadRequest {
                    session: Some("b0".into()),
                    path: "bench.bin".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            r_ours.push(ms(t.elapsed()));
            assert_eq!(r.content.len(), size);
            let dst = tmp.path().join("dst");
            let t = Instant::now();
            docker(&[
                "cp",
                &format!("{container}:/workspace/bench-cp.bin"),
                dst.to_str().unwrap(),
            ]);
            r_theirs.push(ms(t.elapsed()));
            let _ = std::fs::remove_file(&dst);
        }
        let (a, b) = (pct(&mut w_ours, 0.5), pct(&mut w_theirs, 0.5));
        lines.push(Line {
            name: format!("write {label} p50 (n={reps})"),
            unit: "ms".into(),
            clawden: a,
            docker: b,
            ratio: a / b,
            note: "vs docker cp host->container".into(),
        });
        let (a, b) = (pct(&mut r_ours, 0.5), pct(&mut r_theirs, 0.5));
        lines.push(Line {
            name: format!("read {label} p50 (n={reps})"),
            unit: "ms".into(),
            clawden: a,
            docker: b,
            ratio: a / b,
            note: "vs docker cp container->host".into(),
        });
    }
    lines
}

/// One kept-alive HTTP/1.1 connection to `clawden serve` (what a gateway holds).
struct Http {
    rd: tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
    wr: tokio::net::unix::OwnedWriteHalf,
}

impl Http {
    async fn connect(sock: &std::path::Path) -> Http {
        let (rd, wr) = tokio::net::UnixStream::connect(sock)
            .await
            .expect("serve socket")
            .into_split();
        Http {
            rd: tokio::io::BufReader::new(rd),
            wr,
        }
    }

    async fn post(&mut self, path: &str, body: &str) -> (u16, serde_json::Value) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.wr.write_all(req.as_bytes()).await.unwrap();
        let (mut status, mut len, mut first) = (0u16, 0usize, true);
        loop {
            let mut line = String::new();
            assert!(
                self.rd.read_line(&mut line).await.unwrap() > 0,
                "connection closed"
            );
            let line = line.trim_end();
            if first {
                status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                first = false;
            } else if line.is_empty() {
                break;
            } else if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut b = vec![0u8; len];
        self.rd.read_exact(&mut b).await.unwrap();
        (status, serde_json::from_slice(&b).unwrap_or_default())
    }

    async fn call(&mut self, session: &str, command: &str) -> serde_json::Value {
        let body = serde_json::json!({"session": {"key": session}, "command": command});
        let (status, v) = self.post("/v1/calls", &body.to_string()).await;
        assert_eq!(status, 200, "{v}");
        v
    }
}

/// `clawden serve`: a wait call over one kept-alive connection vs `docker exec`; 50 concurrent
/// calls over 10 sessions (every output checked) vs 50 parallel `docker exec`; the service's
/// RSS with 100 live sessions each holding a sandbox; its RSS growth over 10,000 calls.
async fn bench_serve(
    config_file: &std::path::Path,
    dir: &std::path::Path,
    prefix: &str,
) -> Vec<Line> {
    let mut lines = Vec::new();
    let sock = dir.join("serve/clawden.sock");
    let cli = clawden_cli();
    struct Serve(std::process::Child);
    impl Drop for Serve {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let serve = Serve(
        Command::new(&cli)
            .arg("--config")
            .arg(config_file)
            .args(["serve", "--socket"])
            .arg(&sock)
            .env("CLAWDEN_HOME", dir.join("state"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("clawden serve"),
    );
    let t = Instant::now();
    while tokio::net::UnixStream::connect(&sock).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = serve.0.id();

    // 1. Wait calls of `true` over one kept-alive connection.
    let mut c = Http::connect(&sock).await;
    let warm = c.call("sv0", "true").await;
    assert_eq!(warm["exitCode"], 0, "{warm}");
    assert_eq!(warm["via"], "agent", "{warm}");
    let container = warm["containerName"].as_str().unwrap().to_string();
    let n = 200;
    let mut ours = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let v = c.call("sv0", "true").await;
        ours.push(ms(t.elapsed()));
        assert_eq!(v["exitCode"], 0);
    }
    let mut theirs = Vec::with_capacity(100);
    for _ in 0..100 {
        let t = Instant::now();
        docker(&["exec", &container, "true"]);
        theirs.push(ms(t.elapsed()));
    }
    let docker_p50 = pct(&mut theirs, 0.5);
    let a = pct(&mut ours, 0.5);
    lines.push(Line {
        name: format!("serve wait call `true` p50 (n={n})"),
        unit: "ms".into(),
        clawden: a,
        docker: docker_p50,
        ratio: a / docker_p50,
        note: "one kept-alive connection vs docker exec CLI".into(),
    });

    // 2. 50 concurrent callers over 10 sessions, each output checked.
    for i in 0..10 {
        c.call(&format!("sc{i}"), "true").await;
    }
    let per = 4;
    let t = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|w| {
            let sock = sock.clone();
            tokio::spawn(async move {
                let mut h = Http::connect(&sock).await;
                for k in 0..per {
                    let token = format!("w{w}k{k}");
                    let v = h
                        .call(&format!("sc{}", w % 10), &format!("echo {token}"))
                        .await;
                    assert_eq!(v["stdout"], format!("{token}\n"), "{v}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let ours = (50 * per) as f64 / t.elapsed().as_secs_f64();
    let names: Vec<String> = containers_of(prefix, "sc").await;
    assert_eq!(names.len(), 10);
    let t = Instant::now();
    let threads: Vec<_> = (0..50)
        .map(|w| {
            let n = names[w % names.len()].clone();
            std::thread::spawn(move || {
                for k in 0..2 {
                    let o = docker(&["exec", &n, "echo", &format!("w{w}k{k}")]);
                    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("w{w}k{k}\n"));
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let theirs = 100.0 / t.elapsed().as_secs_f64();
    lines.push(Line {
        name: "serve: 50 concurrent calls over 10 sessions".into(),
        unit: "calls/s".into(),
        clawden: ours,
        docker: theirs,
        ratio: ours / theirs,
        note: "every output checked; vs 50 parallel docker exec; higher is better".into(),
    });

    // 3. RSS growth over 10,000 calls on one connection, once what the service keeps is at its
    // bounds (the newest 1,024 finished calls, 1 MiB of service events): 7,500 calls first.
    for _ in 0..7500 {
        c.call("sv0", "true").await;
    }
    let before = rss_mib(pid);
    for _ in 0..10_000 {
        c.call("sv0", "true").await;
    }
    let after = rss_mib(pid);
    lines.push(Line {
        name: "serve RSS growth over 10,000 calls".into(),
        unit: "MiB".into(),
        clawden: after - before,
        docker: 0.0,
        ratio: 0.0,
        note: format!("{before:.1} MiB after 7,500 calls, {after:.1} MiB after 17,500"),
    });

    // 4. 100 live sessions, each holding a sandbox (and a pooled agent connection).
    let mut sessions = Vec::new();
    for i in 0..100 {
        let s = format!("sl{i}");
        let v = c.call(&s, "true").await;
        assert_eq!(v["exitCode"], 0, "{v}");
        sessions.push(s);
    }
    let with_100 = rss_mib(pid);
    lines.push(Line {
        name: "serve RSS with 100 live sessions".into(),
        unit: "MiB".into(),
        clawden: with_100,
        docker: 0.0,
        ratio: 0.0,
        note: "each holding a running sandbox; target < 100 MB".into(),
    });
    drop(serve);
    lines
}

/// Names of the bench's sandboxes whose session key starts with `session_prefix` (running).
async fn containers_of(prefix: &str, session_prefix: &str) -> Vec<String> {
    let o = docker(&[
        "ps",
        "--filter",
        &format!("name={prefix}"),
        "--filter",
        "label=clawden.sandbox=1",
        "--format",
        "{{.Names}}\t{{.Label \"clawden.scopeKey\"}}",
    ]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, key)| key.contains(&format!(":{session_prefix}")))
        .map(|(n, _)| n.to_string())
        .collect()
}
