//! `clawden doctor` end to end through the binary against the real engine: it passes here (with
//! the runc warning this engine earns), fails with the fix when an image is missing or the
//! self-check cannot make its sandbox, and never leaves its throwaway container behind.

mod common;

use clawden::engine::ContainerEngine;
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config_text(world: &World, prefix: &str, docker: &str) -> String {
    format!(
        r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", workspaceRoot: "{root}", docker: {{ containerPrefix: "{prefix}", {docker} }} }} }} }} }}"#,
        ws = world.path("ws").display(),
        root = world.path("sandboxes").display(),
    )
}

fn doctor(world: &World, text: &str, json: bool) -> (i32, String) {
    let cfg = world.path("config.json5");
    std::fs::write(&cfg, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawden"));
    cmd.arg("--config").arg(&cfg).arg("doctor");
    if json {
        cmd.arg("--json");
    }
    let o = cmd
        .env("CLAWDEN_HOME", world.path("state"))
        .env("HOME", world.path("home"))
        .env_remove("CLAWDEN_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn doctor_passes_here_warns_about_runc_and_cleans_up() {
    rt().block_on(async {
        let engine = engine().await;
        let info = engine.info().await.unwrap();
        let sw = sweep("doc");
        let world = World::new();
        let text = config_text(&world, &sw.prefix, "");
        let (code, out) = doctor(&world, &text, true);
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(code, 0, "{out}");
        assert_eq!(report["ok"], true);
        for c in report["checks"].as_array().unwrap() {
            assert!(
                c["status"] == "pass" || c["status"] == "warn",
                "{c} in {out}"
            );
            assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
        }
        for name in [
            "engine",
            "oci runtime",
            "cgroup",
            "image",
            "state directory",
            "staged mounts",
            "agent",
            "sandbox create",
            "baseline",
            "capabilities",
            "no_new_privs",
            "seccomp",
            "network",
            "read-only root",
            "mount",
            "mknod",
            "cleanup",
        ] {
            check(&report, name);
        }
        // The live probes all pass on this engine.
        for name in [
            "sandbox create",
            "baseline",
            "capabilities",
            "no_new_privs",
            "seccomp",
            "network",
            "read-only root",
            "mount",
            "mknod",
            "cleanup",
        ] {
            assert_eq!(check(&report, name)["status"], "pass", "{name}: {out}");
        }
        // This engine's runc predates the fixes: a warning (not a failure) naming the CVEs.
        let advisories = clawden::doctor::runc_advisories(&info.runc_version).unwrap_or_default();
        let runtime = check(&report, "oci runtime");
        if advisories.is_empty() {
            assert_eq!(runtime["status"], "pass", "{runtime}");
        } else {
            assert_eq!(runtime["status"], "warn", "{runtime}");
            let detail = runtime["detail"].as_str().unwrap();
            if info.runc_version.starts_with("1.1.5") {
                assert!(detail.contains("CVE-2024-21626"), "{detail}");
                assert!(detail.contains("CVE-2025-31133"), "{detail}");
            }
            assert!(runtime["fix"].as_str().unwrap().contains("1.2.8"));
        }
        // The throwaway sandbox is gone, and so are its state entry and directories.
        assert_eq!(containers_with_prefix(&sw.prefix), Vec::<String>::new());
        let state = std::fs::read_to_string(world.path("state/state.json")).unwrap_or_default();
        assert!(!state.contains("doctor-"), "{state}");
        let left: Vec<_> = std::fs::read_dir(world.path("sandboxes"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");

        // The human table, same verdicts.
        let (code, out) = doctor(&world, &text, false);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("pass  capabilities"), "{out}");
        assert!(out.contains(" passed, "), "{out}");
        assert_eq!(containers_with_prefix(&sw.prefix), Vec::<String>::new());
    });
}

#[test]
fn doctor_fails_with_the_fix_and_still_cleans_up() {
    rt().block_on(async {
        let _engine = engine().await;
        let sw = sweep("docf");
        let world = World::new();

        // A missing image: a failed check with the command that builds it; no self-check.
        let missing = format!(
            "clawden-sandbox:missing-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let text = config_text(&world, &sw.prefix, &format!(r#"image: "{missing}","#));
        let (code, out) = doctor(&world, &text, true);
        assert_eq!(code, clawden::exit_codes::DOCTOR_FAILED as i32, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["ok"], false);
        let image = check(&report, "image");
        assert_eq!(image["status"], "fail");
        assert_eq!(
            image["fix"],
            format!(
                "clawden image build {}",
                missing.trim_start_matches("clawden-sandbox:")
            )
        );

        // The self-check's sandbox cannot be set up: a failure, and nothing left behind.
        let text = config_text(&world, &sw.prefix, r#"setupCommand: "exit 3","#);
        let (code, out) = doctor(&world, &text, true);
        assert_eq!(code, clawden::exit_codes::DOCTOR_FAILED as i32, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(check(&report, "sandbox create")["status"], "fail", "{out}");
        assert_eq!(check(&report, "cleanup")["status"], "pass", "{out}");
        assert_eq!(containers_with_prefix(&sw.prefix), Vec::<String>::new());
    });
}
