//! ensure, drift and the verifier driven against the recording fake engine: no Docker needed.

use super::*;
use crate::config::load::ConfigLayer;
use crate::config::parse_config;
use crate::engine::fake::{Call, FakeEngine};

struct World {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("ws")).unwrap();
        World { _dir: dir, root }
    }

    fn supervisor(&self, engine: Arc<FakeEngine>, sandbox: &str, docker: &str) -> Supervisor {
        let text = format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", workspaceRoot: "{root}", {sandbox} docker: {{ containerPrefix: "fk-", {docker} }} }} }} }} }}"#,
            ws = self.root.join("ws").display(),
            root = self.root.join("sandboxes").display(),
        );
        let cfg = LoadedConfig {
            layers: vec![ConfigLayer {
                origin: "test".into(),
                file: parse_config(&text, "test").unwrap(),
            }],
            ..Default::default()
        };
        let env = Env {
            clawden_home: Some(self.root.join("state")),
            home: Some(self.root.join("home")),
            ..Default::default()
        };
        Supervisor::new(engine, cfg, env).with_host_probe(Arc::new(UnprivilegedHost))
    }
}

/// A host where clawden is not root (no staging) and has no agent binary.
struct UnprivilegedHost;

impl crate::decide::HostProbe for UnprivilegedHost {
    fn owner(&self, path: &std::path::Path) -> Option<(u32, u32)> {
        crate::decide::RealHost.owner(path)
    }
    fn identity(&self) -> (u32, u32) {
        (1000, 1000)
    }
    fn agent_binary(&self) -> Result<std::path::PathBuf, String> {
        Err("none in unit tests".into())
    }
}

fn engine() -> Arc<FakeEngine> {
    Arc::new(FakeEngine::with_images(&["clawden-sandbox:minimal"]))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn creates(e: &FakeEngine) -> usize {
    e.calls()
        .iter()
        .filter(|c| matches!(c, Call::Create(_)))
        .count()
}

#[test]
fn creates_once_then_reuses_and_restarts() {
    rt().block_on(async {
        let w = World::new();
        let e = engine();
        let s = w.supervisor(e.clone(), "", "");
        let first = s.ensure(Some("g"), None).await.unwrap();
        assert!(first.created);
        let again = s.ensure(Some("g"), None).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.container_id, first.container_id);
        assert_eq!(creates(&e), 1);
        // Stopped behind our back: started, not recreated.
        e.tamper(&first.container_name, |f| f.running = false);
        e.clear_calls();
        let started = s.ensure(Some("g"), None).await.unwrap();
        assert_eq!(started.container_id, first.container_id);
        assert!(e.calls().contains(&Call::Start(first.container_id.clone())));
        assert_eq!(creates(&e), 0);
    });
}

#[test]
fn every_reuse_checks_the_baseline() {
    // Each weakening of a current-hash container is refused, never run in, never "fixed".
    type Weaken = fn(&mut ContainerFacts);
    let weakenings: &[(&str, Weaken)] = &[
        ("HostConfig.CapAdd", |f| {
            f.cap_add = vec!["SYS_ADMIN".into()]
        }),
        ("HostConfig.Privileged", |f| f.privileged = true),
        ("HostConfig.ReadonlyRootfs", |f| f.readonly_rootfs = false),
        ("HostConfig.NetworkMode", |f| {
            f.network_mode = "bridge".into()
        }),
        ("NetworkSettings.Networks", |f| {
            f.networks.push("bridge".into())
        }),
        ("HostConfig.MaskedPaths", |f| f.masked_paths.clear()),
        ("HostConfig.ReadonlyPaths", |f| {
            f.readonly_paths.retain(|p| p != "/proc/sys")
        }),
        ("HostConfig.Runtime", |f| f.runtime = "runc-unsafe".into()),
        ("HostConfig.Sysctls", |f| {
            f.sysctls.insert("kernel.x".into(), "1".into());
        }),
        ("HostConfig.CgroupnsMode", |f| {
            f.cgroupns_mode = "host".into()
        }),
        ("HostConfig.PidMode", |f| f.pid_mode = "host".into()),
        ("HostConfig.SecurityOpt", |f| f.security_opt.clear()),
        ("HostConfig.Ulimits", |f| f.ulimits.clear()),
        ("HostConfig.Memory", |f| f.memory *= 2),
        ("Mounts", |f| f.mounts[0].rw = !f.mounts[0].rw),
        ("Mounts", |f| f.mounts[0].source = "/etc".into()),
        ("Config.User", |f| f.user = "0:0".into()),
    ];
    rt().block_on(async {
        for (field, weaken) in weakenings {
            let w = World::new();
            let e = engine();
            let s = w.supervisor(e.clone(), "", "");
            let first = s.ensure(Some("g"), None).await.unwrap();
            e.tamper(&first.container_name, weaken);
            e.clear_calls();
            match s.ensure(Some("g"), None).await {
                Err(SupervisorError::Mismatch { mismatches, .. }) => {
                    assert!(
                        mismatches.iter().any(|m| m.field == *field && m.security),
                        "{field}: {mismatches:?}"
                    );
                }
                other => panic!("{field}: expected a refusal, got {other:?}"),
            }
            // Refused means untouched: not started, not removed, nothing created.
            assert!(
                e.calls().iter().all(|c| matches!(c, Call::Inspect(_))),
                "{field}: {:?}",
                e.calls()
            );
        }
    });
}

#[test]
fn stale_hash_hot_container_keeps_only_non_security_drift() {
    rt().block_on(async {
        let w = World::new();
        let e = engine();
        let s = w.supervisor(e.clone(), "", "");
        let first = s.ensure(Some("g"), None).await.unwrap();
        // A planted weakness on a hot container with a stale hash (the old bug: reused unchecked).
        let changed = w.supervisor(e.clone(), "", r#"env: { NEW: "1" },"#);
        e.tamper(&first.container_name, |f| {
            f.cap_add = vec!["SYS_ADMIN".into()]
        });
        match changed.ensure(Some("g"), None).await {
            Err(SupervisorError::Drift { message, fix }) => {
                assert!(message.contains("HostConfig.CapAdd"), "{message}");
                assert!(fix.starts_with("clawden recreate"), "{fix}");
            }
            other => panic!("expected a drift refusal, got {other:?}"),
        }
        // Without the weakness: only env changed (not security), kept with a warning.
        e.tamper(&first.container_name, |f| f.cap_add.clear());
        let kept = changed.ensure(Some("g"), None).await.unwrap();
        assert_eq!(kept.container_id, first.container_id);
        assert!(kept.warnings.iter().any(|w| w.contains("clawden recreate")));
        // A tightened limit is security drift: refused while hot.
        let tighter = w.supervisor(e.clone(), "", r#"memory: "256m","#);
        assert!(matches!(
            tighter.ensure(Some("g"), None).await,
            Err(SupervisorError::Drift { .. })
        ));
        // Cold: removed and recreated with the new settings.
        tighter.state().touch(&first.container_name, 1).unwrap();
        e.clear_calls();
        let fresh = tighter.ensure(Some("g"), None).await.unwrap();
        assert!(fresh.created);
        assert!(
            e.calls()
                .contains(&Call::Remove(first.container_id.clone()))
        );
    });
}

#[test]
fn foreign_and_planted_containers_are_refused() {
    rt().block_on(async {
        let w = World::new();
        let e = engine();
        let s = w.supervisor(e.clone(), "", "");
        let (_, plan) = s.plan(Some("g"), None).unwrap();
        // Same name, no clawden label.
        let mut foreign = FakeEngine::facts_for("f1", &plan.container, &Default::default());
        foreign.running = true;
        e.plant(foreign);
        assert!(matches!(
            s.ensure(Some("g"), None).await,
            Err(SupervisorError::Foreign(_))
        ));
        e.remove("f1").await.unwrap();
        // Our labels and the current hash, but a bridge network and a writable root.
        let mut labels = plan.container.labels.clone();
        labels.insert("clawden.configHash".into(), plan.config_hash.clone());
        let mut planted = FakeEngine::facts_for("p1", &plan.container, &labels);
        planted.running = true;
        planted.network_mode = "bridge".into();
        planted.readonly_rootfs = false;
        e.plant(planted);
        e.clear_calls();
        match s.ensure(Some("g"), None).await {
            Err(SupervisorError::Mismatch { mismatches, .. }) => {
                let fields: Vec<_> = mismatches.iter().map(|m| m.field).collect();
                assert!(fields.contains(&"HostConfig.NetworkMode"), "{fields:?}");
                assert!(fields.contains(&"HostConfig.ReadonlyRootfs"), "{fields:?}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(e.calls().iter().all(|c| matches!(c, Call::Inspect(_))));
    });
}

#[test]
fn a_failed_setup_leaves_nothing_and_a_missing_image_creates_nothing() {
    rt().block_on(async {
        let w = World::new();
        let e = engine();
        let s = w.supervisor(e.clone(), "", r#"setupCommand: "exit 3","#);
        e.set_exec_exit(3);
        match s.ensure(Some("g"), None).await {
            Err(SupervisorError::SetupFailed { status, .. }) => assert_eq!(status, "exit code 3"),
            other => panic!("expected a setup failure, got {other:?}"),
        }
        assert!(e.list_sandboxes().await.unwrap().is_empty());
        let e = Arc::new(FakeEngine::default());
        let s = w.supervisor(e.clone(), "", "");
        assert!(matches!(
            s.ensure(Some("g"), None).await,
            Err(SupervisorError::Engine(EngineError::ImageMissing { .. }))
        ));
        assert_eq!(creates(&e), 0);
    });
}

#[test]
fn the_plan_is_what_the_engine_is_told() {
    rt().block_on(async {
        let w = World::new();
        let e = engine();
        let s = w.supervisor(e.clone(), r#"workspaceAccess: "ro","#, "");
        let ens = s.ensure(Some("g"), None).await.unwrap();
        let (_, plan) = s.plan(Some("g"), None).unwrap();
        let f = e.inspect(&ens.container_id).await.unwrap().unwrap();
        assert_eq!(crate::engine::verify::verify(&f, &plan.container), vec![]);
        assert_eq!(
            f.label("clawden.configHash"),
            Some(plan.config_hash.as_str())
        );
        assert_eq!(f.cmd, plan.container.cmd);
    });
}

fn inspects(e: &FakeEngine) -> usize {
    e.calls()
        .iter()
        .filter(|c| matches!(c, Call::Inspect(_)))
        .count()
}

/// Let the watcher task run (subscribe, take in events).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn a_watched_sandbox_is_reused_without_inspect_until_the_engine_reports_a_change() {
    rt().block_on(async {
        let w = World::new();
        let e = Arc::new(FakeEngine::with_images(&["clawden-sandbox:minimal"]).with_events());
        let s = w.supervisor(e.clone(), "", "");
        let first = s.ensure(Some("g"), None).await.unwrap();
        // The first use creates; the second reuse starts the watcher, the third is remembered
        // under it; from then on nothing is asked.
        for _ in 0..3 {
            s.ensure(Some("g"), None).await.unwrap();
            settle().await;
        }
        assert!(e.calls().contains(&Call::Watch));
        e.clear_calls();
        for _ in 0..5 {
            let again = s.ensure(Some("g"), None).await.unwrap();
            assert_eq!(again.container_id, first.container_id);
        }
        assert_eq!(inspects(&e), 0, "{:?}", e.calls());
        // `docker update` behind our back: the event drops the facts, the next use inspects
        // and refuses the weakened container.
        e.tamper(&first.container_name, |f| f.pids_limit = 0);
        settle().await;
        match s.ensure(Some("g"), None).await {
            Err(SupervisorError::Mismatch { mismatches, .. }) => {
                assert!(
                    mismatches.iter().any(|m| m.field.contains("PidsLimit")),
                    "{mismatches:?}"
                )
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert_eq!(inspects(&e), 1);
        e.tamper(&first.container_name, |f| f.pids_limit = 256);
        settle().await;
        s.ensure(Some("g"), None).await.unwrap();
        s.ensure(Some("g"), None).await.unwrap();
        // The stream ends (the engine restarted): every use inspects again.
        e.end_watchers();
        settle().await;
        e.clear_calls();
        s.ensure(Some("g"), None).await.unwrap();
        s.ensure(Some("g"), None).await.unwrap();
        assert_eq!(inspects(&e), 2, "{:?}", e.calls());
    });
}

#[test]
fn without_events_every_use_inspects() {
    rt().block_on(async {
        let w = World::new();
        let e = engine();
        let s = w.supervisor(e.clone(), "", "");
        s.ensure(Some("g"), None).await.unwrap();
        e.clear_calls();
        for _ in 0..4 {
            s.ensure(Some("g"), None).await.unwrap();
            settle().await;
        }
        assert_eq!(inspects(&e), 4);
    });
}

#[test]
fn recreate_by_session_never_selects_another_configurations_sandbox() {
    rt().block_on(async {
        let w = World::new();
        let e = engine();
        let s = w.supervisor(e.clone(), "", "");
        let ours = s.ensure(Some("g"), None).await.unwrap();
        let mut theirs = e.inspect(&ours.container_name).await.unwrap().unwrap();
        theirs.id = "theirs0000".into();
        theirs.name = "other-config-sandbox".into();
        theirs.labels.insert(
            crate::decide::OWNER_LABEL.into(),
            "another-configuration".into(),
        );
        e.plant(theirs);
        let picked = s
            .select(&super::ops::Selector::Session(ours.scope_key.clone()))
            .await
            .unwrap();
        let names: Vec<&str> = picked.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec![ours.container_name.as_str()]);
        let picked = s
            .select(&super::ops::Selector::Session("g".into()))
            .await
            .unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].name, ours.container_name);
    });
}
