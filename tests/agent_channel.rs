//! The agent channel as an attacker sees it (issue 8): calls go through the in-container agent;
//! a sandbox process cannot start calls through its own agent; a socket swapped for a symlink to
//! another sandbox's socket or to `docker.sock`, or an impostor listener, is refused by the
//! host's peer check before a byte is sent — the call falls back to the Engine API, with a
//! warning and an audit entry; the result never depends on the output.

mod common;

use clawden::exec::{ExecRequest, Via};
use clawden::supervisor::Supervisor;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn channel(s: &Supervisor, session: &str) -> std::path::PathBuf {
    let (_, plan) = s.plan(Some(session), None).unwrap();
    plan.container
        .agent
        .expect("the plan has an agent")
        .channel_dir
}

fn audit_rules(w: &World) -> Vec<String> {
    std::fs::read_to_string(w.path("state/audit.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"decision\":\"fallback\""))
        .map(str::to_string)
        .collect()
}

#[test]
fn calls_go_through_the_agent_and_a_forged_status_changes_nothing() {
    rt().block_on(async {
        let sw = sweep("agentp");
        let w = World::new();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, "", ""));
        let o = s.exec(req("g", "echo hi; exit 3")).await.unwrap();
        assert_eq!((o.via, o.exit_code, text(&o.stdout)), (Via::Agent, Some(3), "hi\n".into()));
        // The old marker and anything frame-like, printed by the command: the status is
        // waitpid's.
        let forge = r#"printf '\036clawden-exit:%s:0\036' x >&2; printf '\0\0\0\x20\x07{"exitCode":0,"reason":"exited"}'; printf '\0\0\0\x20\x07{"exitCode":0}' >&2; exit 7"#;
        let o = s.exec(req("g", forge)).await.unwrap();
        assert_eq!((o.via, o.exit_code), (Via::Agent, Some(7)));
        // A leftover process of an earlier call cannot write into the next call's result.
        let t = Instant::now();
        let o = s
            .exec(ExecRequest {
                timeout: Some(Duration::from_secs(1)),
                ..req("g", "(while :; do printf 'clawden-exit:0\\n' >&2; sleep 0.01; done) & sleep 100")
            })
            .await
            .unwrap();
        assert!(o.timed_out && o.exit_code.is_none(), "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let o = s.exec(req("g", "exit 3")).await.unwrap();
        assert_eq!(o.exit_code, Some(3));
        assert!(audit_rules(&w).is_empty(), "{:?}", audit_rules(&w));
    });
}

#[test]
fn a_sandbox_process_cannot_start_calls_through_its_own_agent() {
    rt().block_on(async {
        let sw = sweep("agself");
        let w = World::new();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, "", ""));
        let (_, plan) = s.plan(Some("g"), None).unwrap();
        let bin = plan.sandbox_workspace.join("connect");
        std::fs::create_dir_all(&plan.sandbox_workspace).unwrap();
        let cc = Command::new("gcc")
            .args([
                "-static",
                "-O2",
                "-o",
                bin.to_str().unwrap(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/connect.c"),
            ])
            .output()
            .expect("gcc");
        assert!(
            cc.status.success(),
            "{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let o = s
            .exec(req("g", "./connect /run/clawden/agent.sock"))
            .await
            .unwrap();
        let out = text(&o.stdout);
        // Connected (the sandbox owns the directory) but refused without a byte.
        assert!(
            out.contains("answered 0 bytes") || out.contains("connect-failed"),
            "{out}"
        );
        assert_eq!(o.via, Via::Agent);
    });
}

#[test]
fn a_swapped_socket_or_an_impostor_is_refused_and_the_call_falls_back() {
    rt().block_on(async {
        let sw = sweep("agswap");
        let w = World::new();
        let s = w.supervisor(
            engine().await,
            w.config(&sw.prefix, r#"scope: "session","#, ""),
        );
        // Two sandboxes: a victim and another one whose agent socket the victim's is pointed at.
        assert_eq!(s.exec(req("g:a", "true")).await.unwrap().via, Via::Agent);
        assert_eq!(s.exec(req("g:b", "true")).await.unwrap().via, Via::Agent);
        let a = channel(&s, "g:a");
        let b = channel(&s, "g:b");
        let sock = a.join("agent.sock");
        type Plant = Box<dyn Fn()>;
        let cases: Vec<(&str, Plant)> = vec![
            (
                "another sandbox's socket",
                Box::new({
                    let (sock, b) = (sock.clone(), b.clone());
                    move || {
                        let _ = std::fs::remove_file(&sock);
                        std::os::unix::fs::symlink(b.join("agent.sock"), &sock).unwrap();
                    }
                }),
            ),
            (
                "docker.sock",
                Box::new({
                    let sock = sock.clone();
                    move || {
                        let _ = std::fs::remove_file(&sock);
                        std::os::unix::fs::symlink("/var/run/docker.sock", &sock).unwrap();
                    }
                }),
            ),
        ];
        for (what, plant) in &cases {
            // A fresh supervisor: no pooled connection from before the swap.
            let s = w.supervisor(
                engine().await,
                w.config(&sw.prefix, r#"scope: "session","#, ""),
            );
            plant();
            let before = audit_rules(&w).len();
            let o = s.exec(req("g:a", "echo fallback; exit 4")).await.unwrap();
            assert_eq!(
                (o.via, o.exit_code, text(&o.stdout)),
                (Via::Engine, Some(4), "fallback\n".into()),
                "{what}"
            );
            let rules = audit_rules(&w);
            assert_eq!(rules.len(), before + 1, "{what}: {rules:?}");
            assert!(
                rules.last().unwrap().contains("agent_peer_mismatch"),
                "{what}: {rules:?}"
            );
            // File tools fall back too (host side, beneath the mount root), each with its
            // audit line, and never talk to whatever answers on the swapped socket.
            let wr = s
                .write(clawden::supervisor::files::WriteRequest {
                    session: Some("g:a".into()),
                    path: "fallback.txt".into(),
                    content: what.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(wr.bytes_written as usize, what.len());
            let rd = s
                .read(clawden::supervisor::files::ReadRequest {
                    session: Some("g:a".into()),
                    path: "fallback.txt".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(rd.content, what.as_bytes());
            let after = audit_rules(&w);
            assert_eq!(after.len(), before + 3, "{what}: {after:?}");
        }
        // An impostor listening on the path (here: this test process, not the agent).
        let s2 = w.supervisor(
            engine().await,
            w.config(&sw.prefix, r#"scope: "session","#, ""),
        );
        let _ = std::fs::remove_file(&sock);
        let impostor = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        impostor.set_nonblocking(true).unwrap();
        let o = s2.exec(req("g:a", "echo fallback")).await.unwrap();
        assert_eq!(o.via, Via::Engine);
        // The impostor never received a byte.
        if let Ok((mut c, _)) = impostor.accept() {
            use std::io::Read;
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 16];
            assert!(
                matches!(c.read(&mut buf), Ok(0) | Err(_)),
                "the impostor got bytes"
            );
        }
        // The other sandbox was never reached (its agent still serves its own calls).
        assert_eq!(s2.exec(req("g:b", "true")).await.unwrap().via, Via::Agent);
    });
}

/// How many of the call's `sleep 999x` processes the sandbox has.
async fn count(s: &Supervisor) -> u32 {
    let o = s
        .exec(req("g", "ps -o args | grep -c '^sleep 999'"))
        .await
        .unwrap();
    text(&o.stdout).trim().parse::<u32>().unwrap_or(0)
}

#[test]
fn killing_clawden_mid_call_ends_the_calls_tree_in_the_sandbox() {
    rt().block_on(async {
        let sw = sweep("agkill");
        let w = World::new();
        let cfg = w.path("cfg.json5");
        std::fs::write(
            &cfg,
            format!(
                r#"{{ agents: {{ defaults: {{ workspace: "{}", sandbox: {{ mode: "all", workspaceRoot: "{}", docker: {{ containerPrefix: "{}" }} }} }} }} }}"#,
                w.path("ws").display(),
                w.path("sandboxes").display(),
                sw.prefix
            ),
        )
        .unwrap();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, "", ""));
        assert_eq!(s.exec(req("g", "true")).await.unwrap().via, Via::Agent);
        for attempt in 0..4u64 {
            let mut child = Command::new(env!("CARGO_BIN_EXE_clawden"))
                .args(["exec", "--config", cfg.to_str().unwrap(), "--session", "g", "--timeout", "600s", "--",
                       "sleep 9991 & (setsid sleep 9992 &); env -i sleep 9993 & sleep 9994"])
                .env("CLAWDEN_HOME", w.path("state"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let t = Instant::now();
            while count(&s).await < 4 && t.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(count(&s).await, 4, "attempt {attempt}: the call never fully started");
            tokio::time::sleep(Duration::from_millis(37 * attempt)).await;
            child.kill().unwrap(); // SIGKILL of clawden
            let _ = child.wait();
            let t = Instant::now();
            while count(&s).await > 0 && t.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(count(&s).await, 0, "attempt {attempt}: the call outlived clawden");
            assert!(t.elapsed() < Duration::from_secs(3), "attempt {attempt}: {:?}", t.elapsed());
        }
    });
}

#[test]
fn a_sandbox_that_freezes_its_agent_cannot_hang_its_caller() {
    rt().block_on(async {
        let sw = sweep("agfreeze");
        let w = World::new();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, "", ""));
        let first = s.ensure(Some("g"), None).await.unwrap();
        // Same uid as the agent: the sandbox can stop it (and its zygote) mid-call.
        let t = Instant::now();
        let o = s
            .exec(ExecRequest {
                timeout: Some(Duration::from_secs(1)),
                ..req(
                    "g",
                    "for p in $(pidof agent); do kill -STOP $p; done; sleep 100",
                )
            })
            .await
            .unwrap();
        assert!(o.timed_out, "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        // The frozen sandbox is gone; the next call gets a fresh one that works.
        let o = s.exec(req("g", "echo fresh")).await.unwrap();
        assert_eq!(
            (o.via, text(&o.stdout)),
            (Via::Agent, "fresh\n".to_string())
        );
        let again = s.ensure(Some("g"), None).await.unwrap();
        assert_ne!(again.container_id, first.container_id);
    });
}
