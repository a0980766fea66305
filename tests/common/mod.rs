//! Shared helpers for tests against the real Docker engine. Every container a test makes carries
//! `clawden.sandbox=1` and the test's own name prefix; [`Sweep`] removes them on drop, also when
//! the test panics.

#![allow(dead_code)]

pub mod serve;

use clawden::config::{ConfigError, Env, LoadedConfig, load::ConfigLayer, parse_config};
use clawden::engine::ContainerEngine;
use clawden::engine::docker::DockerEngine;
use clawden::supervisor::Supervisor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub struct Sweep {
    pub prefix: String,
}

/// Detach every mount whose mount point lies under `dir` (deepest first): the staged mounts of
/// sandboxes a test made and left for the sweep.
pub fn unmount_under(dir: &Path) {
    // Repeated until none is left: a point can carry stacked mounts (a staged clone of an
    // in-place over-mount, a mount propagated back).
    for _ in 0..16 {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(p.replace("\\040", " ")))
            .filter(|p| p.starts_with(dir))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let out = Command::new("docker")
            // By the test's unique name prefix alone: this also catches containers a test planted
            // without clawden's label.
            .args(["ps", "-aq", "--filter", &format!("name={}", self.prefix)])
            .output();
        if let Ok(o) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// A unique prefix (Docker name chars, ≤ 22) and its sweeper.
pub fn sweep(tag: &str) -> Sweep {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Sweep {
        prefix: format!("cdt-{}-{}-", &tag[..tag.len().min(6)], &id[..6]),
    }
}

pub async fn engine() -> Arc<DockerEngine> {
    let e = DockerEngine::connect()
        .await
        .expect("Docker engine (run scripts/ensure-docker.sh)");
    ensure_minimal_image(&e).await;
    Arc::new(e)
}

static IMAGE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn ensure_minimal_image(e: &DockerEngine) {
    let _g = IMAGE_LOCK.lock().await;
    if e.image_id(clawden::images::MINIMAL_TAG)
        .await
        .unwrap()
        .is_none()
    {
        let ctx = clawden::images::minimal_context()
            .expect("static busybox (apt-get install busybox-static)");
        e.build_image(clawden::images::MINIMAL_TAG, ctx, &|_| {})
            .await
            .expect("build minimal image");
    }
}

/// A two-worker runtime for tests that drive the supervisor.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An exec request of `cmd` for `session`.
pub fn req(session: &str, cmd: &str) -> clawden::exec::ExecRequest {
    clawden::exec::ExecRequest {
        session: Some(session.into()),
        command: cmd.into(),
        ..Default::default()
    }
}

/// Output bytes as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A test world: temp dirs for workspace, sandboxes and state, and a config text.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        // Staged mounts of sandboxes still standing, and the in-place nosuid over-mounts of
        // writable workspaces, are undone before the directory goes.
        unmount_under(self.dir.path());
    }
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        // As on a real host: the agent workspace belongs to a regular user (direct calls run as
        // its owner, never as root) and its parents are traversable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(dir.path().join("ws"), Some(1000), Some(1000)).unwrap();
        }
        World { dir }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn env(&self) -> Env {
        Env {
            clawden_home: Some(self.path("state")),
            home: Some(self.path("home")),
            ..Default::default()
        }
    }
    /// The sandbox section's docker object gets the prefix; `extra` is more JSON5 for `sandbox`.
    pub fn config(&self, prefix: &str, sandbox: &str, docker: &str) -> LoadedConfig {
        let text = format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", workspaceRoot: "{root}", {sandbox} docker: {{ containerPrefix: "{prefix}", {docker} }} }} }} }} }}"#,
            ws = self.path("ws").display(),
            root = self.path("sandboxes").display(),
        );
        loaded(&text).unwrap()
    }
    pub fn supervisor(&self, engine: Arc<DockerEngine>, cfg: LoadedConfig) -> Supervisor {
        Supervisor::new(engine, cfg, self.env())
    }
}

pub fn loaded(text: &str) -> Result<LoadedConfig, ConfigError> {
    Ok(LoadedConfig {
        layers: vec![ConfigLayer {
            origin: "test".into(),
            file: parse_config(text, "test")?,
        }],
        ..Default::default()
    })
}

/// `docker inspect NAME` through the CLI: what an operator would see.
pub fn docker_inspect(name: &str) -> Option<serde_json::Value> {
    let o = Command::new("docker")
        .args(["inspect", name])
        .output()
        .unwrap();
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().and_then(|a| a.first().cloned())
}

pub fn containers_with_prefix(prefix: &str) -> Vec<String> {
    let o = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            "label=clawden.sandbox=1",
            "--filter",
            &format!("name={prefix}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn docker(args: &[&str]) {
    let o = Command::new("docker").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
