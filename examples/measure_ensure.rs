//! How long `ensure` takes, cold (create + start + verify) and warm (reuse: inspect + verify +
//! state touch), through the library, against a comparable hardened `docker run -d` and a
//! `docker start` of a stopped container, all in the same run on the same image.
//!
//!   cargo run --release --example measure_ensure [-- N]      (N ≥ 20, default 25)
//!
//! Not a test: it prints medians (and p10/p90) in milliseconds. The docker CLI figures include
//! the CLI's own process start-up, which a caller of the Engine API does not pay.

use clawden::config::{Env, LoadedConfig, load::ConfigLayer, parse_config};
use clawden::engine::ContainerEngine;
use clawden::engine::docker::DockerEngine;
use clawden::supervisor::Supervisor;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<34} n={:<3} median {:>7.1} ms   p10 {:>7.1}   p90 {:>7.1}",
        v.len(),
        ms(at(0.5)),
        ms(at(0.1)),
        ms(at(0.9))
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(25)
        .max(20);
    let engine = Arc::new(DockerEngine::connect().await.expect("Docker engine"));
    let image = clawden::images::MINIMAL_TAG;
    if engine.image_id(image).await.unwrap().is_none() {
        let ctx = clawden::images::minimal_context().expect("static busybox");
        engine.build_image(image, ctx, &|_| {}).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let prefix = format!("cdm-{tag}-");
    let text = format!(
        r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", scope: "session", workspaceRoot: "{root}", docker: {{ containerPrefix: "{prefix}" }} }} }} }} }}"#,
        ws = dir.path().join("ws").display(),
        root = dir.path().join("sandboxes").display(),
    );
    std::fs::create_dir_all(dir.path().join("ws")).unwrap();
    let config = LoadedConfig {
        layers: vec![ConfigLayer {
            origin: "measure".into(),
            file: parse_config(&text, "measure").unwrap(),
        }],
        ..Default::default()
    };
    let env = Env {
        clawden_home: Some(dir.path().join("state")),
        ..Default::default()
    };
    let sup = Supervisor::new(engine.clone(), config, env);

    // Warm-up (first create pays image/layer caches).
    let w = sup.ensure(Some("warmup"), None).await.unwrap();
    engine.remove(&w.container_id).await.unwrap();

    let mut cold = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let e = sup.ensure(Some(&format!("cold-{i}")), None).await.unwrap();
        cold.push(t.elapsed());
        assert!(e.created);
        ids.push(e.container_id);
    }
    let mut warm = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let e = sup.ensure(Some("cold-0"), None).await.unwrap();
        warm.push(t.elapsed());
        assert!(!e.created);
    }
    // Warm but stopped: ensure starts it again.
    let mut restart = Vec::new();
    for _ in 0..n {
        docker(&["stop", "-t", "0", &ids[0]]);
        let t = Instant::now();
        sup.ensure(Some("cold-0"), None).await.unwrap();
        restart.push(t.elapsed());
    }
    for id in &ids {
        engine.remove(id).await.unwrap();
    }

    // The same hardening with the docker CLI.
    let ws = dir.path().join("run-ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mount = format!(
        "type=bind,source={},target=/workspace,bind-propagation=rprivate",
        ws.display()
    );
    let mut run = Vec::new();
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}run-{i}");
        let t = Instant::now();
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--network",
            "none",
            "--memory",
            "1g",
            "--memory-swap",
            "1g",
            "--cpus",
            "1",
            "--pids-limit",
            "256",
            "--init",
            "--restart",
            "no",
            "--log-driver",
            "none",
            "--ipc",
            "private",
            "--ulimit",
            "nofile=1024:4096",
            "--ulimit",
            "core=0:0",
            "--tmpfs",
            "/tmp:nosuid,nodev,size=64m",
            "--tmpfs",
            "/var/tmp:nosuid,nodev,size=64m",
            "--tmpfs",
            "/run:nosuid,nodev,size=16m",
            "--user",
            "1000:1000",
            "--workdir",
            "/workspace",
            "--env",
            "LANG=C.UTF-8",
            "--label",
            "clawden.sandbox=1",
            "--mount",
            &mount,
            "--entrypoint",
            "",
            image,
            "/bin/sleep",
            "2147483647",
        ]);
        run.push(t.elapsed());
        names.push(name);
    }
    let mut start = Vec::new();
    for _ in 0..n {
        docker(&["stop", "-t", "0", &names[0]]);
        let t = Instant::now();
        docker(&["start", &names[0]]);
        start.push(t.elapsed());
    }
    let mut noop = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        docker(&["start", &names[0]]);
        noop.push(t.elapsed());
    }
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    docker(&rm);

    println!(
        "engine {} / runc {}",
        engine.info().await.map(|i| i.version).unwrap_or_default(),
        engine
            .info()
            .await
            .map(|i| i.runc_version)
            .unwrap_or_default()
    );
    stats("ensure cold (create+start+verify)", cold);
    stats("ensure warm (running, reuse)", warm);
    stats("ensure warm (stopped -> start)", restart);
    stats("docker run -d (same hardening)", run);
    stats("docker start (stopped)", start);
    stats("docker start (already running)", noop);
}
