//! `Supervisor::ensure` against the real Docker engine: the container baseline checked on what
//! `docker inspect` and the container itself report, reuse and drift, races, cleanup.

mod common;

use clawden::engine::verify::verify;
use clawden::engine::{ContainerEngine, ContainerFacts, ExecApi, ExecSpec};
use clawden::supervisor::SupervisorError;
use common::*;
use std::collections::BTreeSet;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_access_and_scope_meets_the_baseline_and_mounts_are_the_plan() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("base");
        let world = World::new();
        for access in ["none", "ro", "rw"] {
            for scope in ["session", "agent", "shared"] {
                let prefix = format!("{}{}{}-", sw.prefix, &access[..1], &scope[..2]);
                let cfg = world.config(
                    &prefix,
                    &format!(r#"workspaceAccess: "{access}", scope: "{scope}","#),
                    "",
                );
                let sup = world.supervisor(engine.clone(), cfg);
                let ens = sup
                    .ensure(Some("group:x"), None)
                    .await
                    .unwrap_or_else(|e| panic!("{access}/{scope}: {e}"));
                assert!(ens.created);
                let (_, plan) = sup.plan(Some("group:x"), None).unwrap();
                let ins = docker_inspect(&ens.container_name).expect("container exists");
                assert_eq!(
                    verify(&ContainerFacts::from_docker_inspect(&ins), &plan.container),
                    vec![],
                    "{access}/{scope}"
                );
                // Spelled out for the most important items, straight from docker inspect.
                let hc = &ins["HostConfig"];
                assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
                assert_eq!(hc["Privileged"], false);
                assert_eq!(hc["ReadonlyRootfs"], true);
                assert_eq!(hc["NetworkMode"], "none");
                assert_eq!(hc["Init"], true);
                assert_eq!(hc["Memory"], hc["MemorySwap"]);
                assert!(hc["PidsLimit"].as_i64().unwrap() > 0);
                assert!(
                    hc["SecurityOpt"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|o| o == "no-new-privileges")
                );
                assert_eq!(ins["Config"]["User"], "1000:1000");
                assert_eq!(
                    ins["Config"]["Labels"]["clawden.configHash"],
                    plan.config_hash.as_str()
                );
                assert_eq!(
                    ins["Config"]["Labels"]["clawden.scopeKey"],
                    plan.scope_key.as_str()
                );
                let mounts: BTreeSet<(String, String, bool, String)> = ins["Mounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        (
                            m["Source"].as_str().unwrap().into(),
                            m["Destination"].as_str().unwrap().into(),
                            m["RW"].as_bool().unwrap(),
                            m["Propagation"].as_str().unwrap().into(),
                        )
                    })
                    .collect();
                let ws = world.path("ws").to_string_lossy().into_owned();
                let sbx = plan.sandbox_workspace.to_string_lossy().into_owned();
                // The access table, in host paths (before staging).
                let planned: BTreeSet<(String, String, bool)> = plan
                    .container
                    .mounts
                    .iter()
                    .filter(|m| m.container != "/.clawden/agent" && m.container != "/run/clawden")
                    .map(|m| {
                        (
                            m.host.to_string_lossy().into_owned(),
                            m.container.clone(),
                            !m.access.read_only(),
                        )
                    })
                    .collect();
                let table: BTreeSet<(String, String, bool)> = match access {
                    "none" => [(sbx, "/workspace".into(), true)].into(),
                    // As OpenClaw: nothing of the workspace is writable under ro, the workdir
                    // included.
                    "ro" => [
                        (sbx, "/workspace".into(), false),
                        (ws, "/agent".into(), false),
                    ]
                    .into(),
                    _ => [(ws, "/workspace".into(), true)].into(),
                };
                assert_eq!(planned, table, "{access}/{scope}");
                // What Docker mounts: the plan's mounts (staging points as root), rprivate, and
                // each staging point is the checked source's inode.
                let want: BTreeSet<(String, String, bool, String)> = plan
                    .container
                    .engine_mounts()
                    .iter()
                    .map(|m| {
                        (
                            m.host.to_string_lossy().into_owned(),
                            m.container.clone(),
                            !m.access.read_only(),
                            "rprivate".to_string(),
                        )
                    })
                    .collect();
                for (staged, host) in plan
                    .container
                    .engine_mounts()
                    .iter()
                    .zip(&plan.container.mounts)
                {
                    use std::os::unix::fs::MetadataExt;
                    let (a, b) = (
                        std::fs::metadata(&staged.host).unwrap(),
                        std::fs::metadata(&host.host).unwrap(),
                    );
                    assert_eq!(
                        (a.dev(), a.ino()),
                        (b.dev(), b.ino()),
                        "{}",
                        staged.host.display()
                    );
                }
                assert_eq!(mounts, want, "{access}/{scope}");
                sup.engine().remove(&ens.container_id).await.unwrap();
            }
        }
    });
}

#[test]
fn inside_the_sandbox_nothing_is_granted() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("probe");
        let world = World::new();
        let sup = world.supervisor(engine.clone(), world.config(&sw.prefix, "", ""));
        let ens = sup.ensure(Some("g"), None).await.unwrap();
        let run = |script: &str| {
            let engine = engine.clone();
            let id = ens.container_id.clone();
            let script = script.to_string();
            async move {
                let r = engine
                    .exec_collect(
                        &id,
                        &ExecSpec {
                            cmd: vec!["/bin/sh".into(), "-c".into(), script],
                            ..Default::default()
                        },
                        1 << 16,
                    )
                    .await
                    .unwrap();
                (
                    r.exit_code,
                    String::from_utf8_lossy(&r.stdout).into_owned()
                        + &String::from_utf8_lossy(&r.stderr),
                )
            }
        };
        let (_, status) = run("cat /proc/self/status").await;
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            let line = status
                .lines()
                .find(|l| l.starts_with(cap))
                .unwrap_or_else(|| panic!("{cap} in {status}"));
            assert!(line.ends_with("0000000000000000"), "{line}");
        }
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "1"]),
            "{status}"
        );
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
            "{status}"
        );
        let (_, ifaces) = run("ls /sys/class/net").await;
        assert_eq!(ifaces.split_whitespace().collect::<Vec<_>>(), ["lo"]);
        let (code, out) = run("touch /x").await;
        assert_ne!(code, 0);
        assert!(out.contains("Read-only file system"), "{out}");
        let (code, _) = run("touch /etc/x").await;
        assert_ne!(code, 0);
        let (code, _) = run("mount -t tmpfs none /tmp").await;
        assert_ne!(code, 0);
        let (code, _) = run("mknod /tmp/dev c 1 3").await;
        assert_ne!(code, 0);
        let (code, out) = run(
            "id -u; echo ok > /workspace/f && cat /workspace/f && echo t > /tmp/t && cat /tmp/t",
        )
        .await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["1000", "ok", "t"]
        );
        // The sandbox workspace on the host belongs to the sandbox user.
        use std::os::unix::fs::MetadataExt;
        let (_, plan) = sup.plan(Some("g"), None).unwrap();
        assert_eq!(
            std::fs::metadata(&plan.sandbox_workspace).unwrap().uid(),
            if nix::unistd::geteuid().is_root() {
                1000
            } else {
                nix::unistd::geteuid().as_raw()
            }
        );
    });
}

#[test]
fn reuse_restart_recreate_and_drift() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("reuse");
        let world = World::new();
        let sup = world.supervisor(engine.clone(), world.config(&sw.prefix, "", ""));
        let first = sup.ensure(Some("g"), None).await.unwrap();
        assert!(first.created);
        let again = sup.ensure(Some("g"), None).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.container_id, first.container_id);

        // Stopped behind clawden's back: started again, same container.
        docker(&["stop", "-t", "0", &first.container_name]);
        let started = sup.ensure(Some("g"), None).await.unwrap();
        assert_eq!(started.container_id, first.container_id);
        assert_eq!(
            docker_inspect(&first.container_name).unwrap()["State"]["Running"],
            true
        );

        // Removed behind clawden's back: recreated.
        docker(&["rm", "-f", &first.container_name]);
        let recreated = sup.ensure(Some("g"), None).await.unwrap();
        assert!(recreated.created);
        assert_ne!(recreated.container_id, first.container_id);

        // Config changed while hot (just used) in a way that is not security (env): kept, with
        // a warning naming the fix.
        let changed = world.supervisor(
            engine.clone(),
            world.config(&sw.prefix, "", r#"env: { NEWVAR: "1" },"#),
        );
        let kept = changed.ensure(Some("g"), None).await.unwrap();
        assert_eq!(kept.container_id, recreated.container_id);
        assert!(
            kept.warnings
                .iter()
                .any(|w| w.contains("clawden recreate --session agent:main:g")),
            "{:?}",
            kept.warnings
        );

        // Hot, but a security setting was tightened (memory): never kept while in use — the
        // baseline is checked on every use. Refused with the recreate command.
        let tightened = world.supervisor(
            engine.clone(),
            world.config(&sw.prefix, "", r#"memory: "512m","#),
        );
        match tightened.ensure(Some("g"), None).await {
            Err(SupervisorError::Drift { message, fix }) => {
                assert!(message.contains("HostConfig.Memory"), "{message}");
                assert!(fix.contains("clawden recreate"), "{fix}")
            }
            other => panic!("expected drift refusal, got {other:?}"),
        }

        // Hot, but mounts changed (workspace access none → rw): refused with the recreate command.
        let remount = world.supervisor(
            engine.clone(),
            world.config(&sw.prefix, r#"workspaceAccess: "rw","#, ""),
        );
        match remount.ensure(Some("g"), None).await {
            Err(SupervisorError::Drift { fix, .. }) => {
                assert!(fix.contains("clawden recreate"), "{fix}")
            }
            other => panic!("expected drift refusal, got {other:?}"),
        }

        // Cold (last use long ago): removed and recreated with the new settings.
        changed.state().touch(&kept.container_name, 1).unwrap();
        let fresh = tightened.ensure(Some("g"), None).await.unwrap();
        assert!(fresh.created);
        assert_ne!(fresh.container_id, kept.container_id);
        assert_eq!(
            docker_inspect(&fresh.container_name).unwrap()["HostConfig"]["Memory"],
            512i64 << 20
        );
        assert_eq!(containers_with_prefix(&sw.prefix).len(), 1);
    });
}

#[test]
fn sixteen_concurrent_ensures_make_one_container() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("race");
        let world = World::new();
        let sup =
            std::sync::Arc::new(world.supervisor(engine.clone(), world.config(&sw.prefix, "", "")));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let sup = sup.clone();
                // Different sessions of one agent: one scope key under scope "agent".
                tokio::spawn(async move { sup.ensure(Some(&format!("s{i}")), None).await })
            })
            .collect();
        let mut ids = BTreeSet::new();
        let mut created = 0;
        for t in tasks {
            let e = t.await.unwrap().unwrap();
            created += e.created as usize;
            ids.insert(e.container_id);
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(created, 1);
        assert_eq!(containers_with_prefix(&sw.prefix).len(), 1);
    });
}

#[test]
fn setup_command_runs_once_and_a_failing_one_leaves_nothing() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("setup");
        let world = World::new();
        let ok = world.supervisor(
            engine.clone(),
            world.config(
                &sw.prefix,
                "",
                r#"setupCommand: "echo x >> /workspace/setup-ran","#,
            ),
        );
        let e = ok.ensure(Some("g"), None).await.unwrap();
        ok.ensure(Some("g"), None).await.unwrap();
        let (_, plan) = ok.plan(Some("g"), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(plan.sandbox_workspace.join("setup-ran")).unwrap(),
            "x\n"
        );
        engine.remove(&e.container_id).await.unwrap();

        let bad = world.supervisor(
            engine.clone(),
            world.config(
                &sw.prefix,
                "",
                r#"setupCommand: "echo broken >&2; exit 3","#,
            ),
        );
        match bad.ensure(Some("g"), None).await {
            Err(SupervisorError::SetupFailed { status, output }) => {
                assert_eq!(status, "exit code 3");
                assert!(output.contains("broken"), "{output}");
            }
            other => panic!("expected setup failure, got {other:?}"),
        }
        assert_eq!(containers_with_prefix(&sw.prefix), Vec::<String>::new());
    });
}

#[test]
fn missing_image_and_invalid_config_are_refused_before_any_container() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("refuse");
        let world = World::new();
        let sup = world.supervisor(
            engine.clone(),
            world.config(
                &sw.prefix,
                "",
                r#"image: "clawden-sandbox:nonexistent-test","#,
            ),
        );
        let err = sup.ensure(Some("g"), None).await.unwrap_err();
        assert_eq!(err.code(), "image_missing");
        assert_eq!(err.fix(), "clawden image build nonexistent-test");
        let sup = world.supervisor(
            engine.clone(),
            world.config(
                &sw.prefix,
                "",
                r#"binds: ["/var/run/docker.sock:/var/run/docker.sock"],"#,
            ),
        );
        match sup.ensure(Some("g"), None).await {
            Err(SupervisorError::Problems(p)) => assert_eq!(p[0].code.as_str(), "blocked_path"),
            other => panic!("{other:?}"),
        }
        let sup = world.supervisor(
            engine.clone(),
            world.config(&sw.prefix, "", r#"network: "host","#),
        );
        assert!(matches!(
            sup.ensure(Some("g"), None).await,
            Err(SupervisorError::Problems(_))
        ));
        assert_eq!(containers_with_prefix(&sw.prefix), Vec::<String>::new());
    });
}

#[test]
fn kill_9_mid_ensure_leaves_a_consistent_state() {
    let sw = sweep("kill");
    let world = World::new();
    let cfg_path = world.path("config.json5");
    std::fs::write(
        &cfg_path,
        format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{}", sandbox: {{ mode: "all", workspaceRoot: "{}", docker: {{ containerPrefix: "{}" }} }} }} }} }}"#,
            world.path("ws").display(),
            world.path("sandboxes").display(),
            sw.prefix
        ),
    )
    .unwrap();
    rt().block_on(async { engine().await });
    let bin = env!("CARGO_BIN_EXE_clawden");
    for delay_ms in [5u64, 40, 120, 300] {
        let mut child = std::process::Command::new(bin)
            .args([
                "ensure",
                "--config",
                cfg_path.to_str().unwrap(),
                "--session",
                "g",
                "--json",
            ])
            .env("CLAWDEN_HOME", world.path("state"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        let o = std::process::Command::new(bin)
            .args([
                "ensure",
                "--config",
                cfg_path.to_str().unwrap(),
                "--session",
                "g",
                "--json",
            ])
            .env("CLAWDEN_HOME", world.path("state"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "after kill at {delay_ms}ms: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            containers_with_prefix(&sw.prefix).len(),
            1,
            "after kill at {delay_ms}ms"
        );
        assert_eq!(
            docker_inspect(j["containerName"].as_str().unwrap()).unwrap()["State"]["Running"],
            true
        );
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(world.path("state/state.json")).unwrap())
                .unwrap();
        assert!(
            state["lastUsedMs"][j["containerName"].as_str().unwrap()]
                .as_u64()
                .is_some()
        );
    }
}

#[test]
fn a_custom_seccomp_profile_file_is_applied() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("seccmp");
        let world = World::new();
        let profile = world.path("seccomp.json");
        std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
        // Allow-by-default is permissive (issue 7): accepted only with the dangerous flag.
        let sup = world.supervisor(engine.clone(), world.config(&sw.prefix, "", &format!(r#"seccompProfile: "{}", dangerouslyAllowPermissiveSeccomp: true,"#, profile.display())));
        let ens = sup.ensure(Some("g"), None).await.unwrap();
        let run = |cmd: &str| ExecSpec { cmd: vec!["/bin/sh".into(), "-c".into(), cmd.into()], ..Default::default() };
        let r = engine.exec_collect(&ens.container_id, &run("mkdir /tmp/d"), 4096).await.unwrap();
        assert_ne!(r.exit_code, 0, "mkdir must be blocked by the custom profile");
        let r = engine.exec_collect(&ens.container_id, &run("grep Seccomp: /proc/self/status; touch /tmp/f && echo touched"), 4096).await.unwrap();
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(out.contains("touched") && out.contains('2'), "{out}");
    });
}

#[test]
fn a_planted_container_with_our_name_is_never_used() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("plant");
        let world = World::new();
        let sup = world.supervisor(engine.clone(), world.config(&sw.prefix, "", ""));
        let (_, plan) = sup.plan(Some("g"), None).unwrap();
        let name = plan.container.name.clone();
        // Someone with Docker access plants a container under our name, with our labels and the
        // current config hash, but without the hardening (writable root, capabilities, network).
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "clawden.sandbox=1",
            "--label",
            &format!("clawden.configHash={}", plan.config_hash),
            "--label",
            &format!("clawden.scopeKey={}", plan.scope_key),
            clawden::images::MINIMAL_TAG,
            "sleep",
            "1000",
        ]);
        match sup.ensure(Some("g"), None).await {
            Err(SupervisorError::Mismatch { mismatches, .. }) => {
                let fields: Vec<&str> = mismatches.iter().map(|m| m.field).collect();
                for f in [
                    "HostConfig.CapDrop",
                    "HostConfig.ReadonlyRootfs",
                    "HostConfig.NetworkMode",
                    "HostConfig.Init",
                    "Config.User",
                    "Mounts",
                ] {
                    assert!(fields.contains(&f), "{f} not reported: {fields:?}");
                }
            }
            other => panic!("expected a plan mismatch refusal, got {other:?}"),
        }
        // And nothing ran in it: exec through the supervisor is refused the same way.
        let r = sup
            .exec(clawden::exec::ExecRequest {
                session: Some("g".into()),
                command: "touch /planted-ran".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(r.unwrap_err().code(), "plan_mismatch");
        let check = std::process::Command::new("docker")
            .args(["exec", &name, "ls", "/planted-ran"])
            .output()
            .unwrap();
        assert!(
            !check.status.success(),
            "the command ran in the planted container"
        );
        docker(&["rm", "-f", &name]);
        // A container under our name without our label is someone else's: refused, left alone.
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            clawden::images::MINIMAL_TAG,
            "sleep",
            "1000",
        ]);
        let err = sup.ensure(Some("g"), None).await.unwrap_err();
        assert_eq!(err.code(), "foreign_container");
        assert!(
            docker_inspect(&name).is_some(),
            "a foreign container must not be removed"
        );
        docker(&["rm", "-f", &name]);
    });
}

/// A long-lived supervisor keeps facts it verified while Docker reports nothing about the
/// container; `docker update` (weaker limits) or `docker network connect` behind its back is
/// seen on the very next call, which is refused and runs nothing.
#[test]
fn a_hot_sandbox_changed_behind_clawdens_back_is_refused_on_the_next_call() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("watch");
        let world = World::new();
        let sup = world.supervisor(engine.clone(), world.config(&sw.prefix, "", ""));
        for _ in 0..5 {
            let o = sup.exec(req("g", "true")).await.unwrap();
            assert_eq!(o.exit_code, Some(0));
        }
        let (_, plan) = sup.plan(Some("g"), None).unwrap();
        let name = plan.container.name.clone();
        assert!(sup.relies_on_verified_facts(&plan), "hot and watched");
        docker(&["update", "--pids-limit", "100000", &name]);
        let r = sup.exec(req("g", "touch /tmp/ran-after-update")).await;
        assert_eq!(r.unwrap_err().code(), "plan_mismatch");
        let check = std::process::Command::new("docker")
            .args(["exec", &name, "ls", "/tmp/ran-after-update"])
            .output()
            .unwrap();
        assert!(
            !check.status.success(),
            "the call ran in the changed container"
        );
        // Put back as planned: used again, and kept again.
        docker(&[
            "update",
            "--pids-limit",
            &plan.container.pids_limit.to_string(),
            &name,
        ]);
        for _ in 0..3 {
            sup.exec(req("g", "true")).await.unwrap();
        }
        assert!(sup.relies_on_verified_facts(&plan));
        docker(&["network", "connect", "bridge", &name]);
        let r = sup.exec(req("g", "touch /tmp/ran-after-connect")).await;
        assert_eq!(r.unwrap_err().code(), "plan_mismatch");
        docker(&["rm", "-f", &name]);
        // Removed behind its back: the next call gets a new sandbox, not an error.
        let o = sup.exec(req("g", "true")).await.unwrap();
        assert_eq!(o.exit_code, Some(0));
        assert_ne!(
            docker_inspect(&name).unwrap()["Id"],
            serde_json::Value::Null
        );
    });
}
