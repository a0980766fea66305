//! exec through the supervisor against the real engine: every exec case of security.md, mode
//! routing and scopes, timeouts checked from inside the container, concurrency.

mod common;

use clawden::exec::ExecRequest;
use clawden::supervisor::Supervisor;
use clawden::supervisor::calls::CallError;
use common::*;
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn req(session: &str, cmd: &str) -> ExecRequest {
    ExecRequest {
        session: Some(session.into()),
        command: cmd.into(),
        ..Default::default()
    }
}

fn with_timeout(session: &str, cmd: &str, secs: f64) -> ExecRequest {
    ExecRequest {
        timeout: Some(Duration::from_secs_f64(secs)),
        ..req(session, cmd)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn sup(world: &World, prefix: &str, sandbox: &str, docker: &str) -> Supervisor {
    world.supervisor(engine().await, world.config(prefix, sandbox, docker))
}

/// Processes of the sandbox other than init, its idle sleep and the `ps` itself.
async fn leftovers(s: &Supervisor, session: &str) -> Vec<String> {
    let o = s.exec(req(session, "ps -o pid,args")).await.unwrap();
    text(&o.stdout)
        .lines()
        .skip(1)
        .filter(|l| {
            !l.contains("docker-init")
                && !l.contains("sleep 2147483647")
                && !l.contains("/.clawden/agent")
                && !l.contains("ps -o pid,args")
                && !l.contains("clawden-exit")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn exit_codes_output_and_stdin() {
    rt().block_on(async {
        let sw = sweep("basic");
        let w = World::new();
        let s = sup(&w, &sw.prefix, "", "").await;
        let o = s
            .exec(req("g", "echo out; echo err >&2; exit 3"))
            .await
            .unwrap();
        assert_eq!((o.exit_code, o.signal), (Some(3), None));
        assert_eq!(text(&o.stdout), "out\n");
        assert_eq!(text(&o.stderr), "err\n");
        assert!(o.container_name.is_some());
        // Binary output preserved byte for byte.
        let o = s.exec(req("g", r"printf '\000\377\001abc'")).await.unwrap();
        assert_eq!(o.stdout, b"\x00\xff\x01abc");
        // cat waiting on stdin gets EOF at once; given data, it gets the data.
        let t = Instant::now();
        let o = s.exec(req("g", "cat")).await.unwrap();
        assert_eq!((o.exit_code, o.stdout.len()), (Some(0), 0));
        assert!(t.elapsed() < Duration::from_secs(5));
        let o = s
            .exec(ExecRequest {
                stdin: Some(b"in\x00put".to_vec()),
                ..req("g", "cat")
            })
            .await
            .unwrap();
        assert_eq!(o.stdout, b"in\x00put");
        // Env: configured plus call env; the working directory defaults to the workdir.
        let o = s
            .exec(ExecRequest {
                env: [("FOO".to_string(), "bar baz".to_string())].into(),
                ..req("g", "echo \"$FOO $LANG\"; pwd; id -u")
            })
            .await
            .unwrap();
        assert_eq!(text(&o.stdout), "bar baz C.UTF-8\n/workspace\n1000\n");
        // Death by signal: 128+N and the signal.
        let o = s.exec(req("g", "kill -TERM $$")).await.unwrap();
        assert_eq!((o.exit_code, o.signal), (Some(143), Some(15)));
        // Filling /tmp stops at its tmpfs cap (64m by default).
        let o = s
            .exec(req(
                "g",
                "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; echo rc=$?; rm /tmp/fill",
            ))
            .await
            .unwrap();
        assert!(
            text(&o.stdout).contains("No space left"),
            "{}",
            text(&o.stdout)
        );
        assert!(!text(&o.stdout).contains("rc=0"), "{}", text(&o.stdout));
        // No core dumps.
        let o = s.exec(req("g", "ulimit -c")).await.unwrap();
        assert_eq!(text(&o.stdout).trim(), "0");
    });
}

#[test]
fn background_children_do_not_hold_the_call_and_timeouts_kill_everything() {
    rt().block_on(async {
        let sw = sweep("bg");
        let w = World::new();
        let s = sup(&w, &sw.prefix, "", "").await;
        let t = Instant::now();
        let o = s.exec(req("g", "sleep 1000 & echo started")).await.unwrap();
        assert_eq!(text(&o.stdout), "started\n");
        assert_eq!(o.exit_code, Some(0));
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "returned after {:?}",
            t.elapsed()
        );

        // A timeout kills the call's processes: the main one, a background one and a re-parented
        // (double-forked, new session) one — and not the earlier call's background sleep.
        let t = Instant::now();
        let o = s
            .exec(with_timeout(
                "g",
                "sleep 777 & (setsid sleep 778 &); env -i sleep 776 & sleep 779",
                1.0,
            ))
            .await
            .unwrap();
        assert!(o.timed_out);
        assert_eq!(o.exit_code, None);
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        let left = leftovers(&s, "g").await;
        assert!(left.iter().all(|l| !l.contains("sleep 77")), "{left:?}");
        // Every process a call starts is the call's until it is dead: the earlier call's
        // background sleep ended with that call.
        assert!(
            left.iter().all(|l| !l.contains("sleep 1000")),
            "a background child outlived its call: {left:?}"
        );

        // CPU spinner: stopped by the timeout, nothing left.
        let o = s
            .exec(with_timeout("g", "while :; do :; done", 1.0))
            .await
            .unwrap();
        assert!(o.timed_out);
        assert!(
            leftovers(&s, "g")
                .await
                .iter()
                .all(|l| !l.contains("while"))
        );
        // The container is still there and usable.
        assert_eq!(
            s.exec(req("g", "echo alive")).await.unwrap().exit_code,
            Some(0)
        );
    });
}

#[test]
fn concurrent_calls_and_a_timeout_do_not_disturb_each_other() {
    rt().block_on(async {
        let sw = sweep("conc");
        let w = World::new();
        let s = std::sync::Arc::new(sup(&w, &sw.prefix, "", "").await);
        s.exec(req("g", "true")).await.unwrap();
        let slow = {
            let s = s.clone();
            tokio::spawn(async move { s.exec(req("g", "sleep 2; echo done")).await })
        };
        let killed = {
            let s = s.clone();
            tokio::spawn(async move { s.exec(with_timeout("g", "sleep 100", 0.5)).await })
        };
        let many: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.exec(req("g", &format!("echo {i}"))).await })
            })
            .collect();
        assert!(killed.await.unwrap().unwrap().timed_out);
        for (i, m) in many.into_iter().enumerate() {
            assert_eq!(text(&m.await.unwrap().unwrap().stdout), format!("{i}\n"));
        }
        let o = slow.await.unwrap().unwrap();
        assert_eq!(
            (o.exit_code, text(&o.stdout)),
            (Some(0), "done\n".to_string())
        );
    });
}

#[test]
fn output_is_capped_head_and_tail_kept() {
    rt().block_on(async {
        let sw = sweep("cap");
        let w = World::new();
        let s = sup(&w, &sw.prefix, r#"calls: { maxOutputBytes: "64k" },"#, "").await;
        let o = s
            .exec(req("g", "yes | head -c 20000000; echo END"))
            .await
            .unwrap();
        assert_eq!(o.exit_code, Some(0));
        assert!(o.stdout_truncated);
        assert_eq!(o.stdout_bytes, 20_000_004);
        assert_eq!(o.stdout.len(), 64 * 1024);
        assert!(o.stdout.starts_with(b"y\ny\n") && o.stdout.ends_with(b"y\nEND\n"));
        let o = s
            .exec(req("g", "head -c 5000000 /dev/urandom"))
            .await
            .unwrap();
        assert!(o.stdout_truncated);
        assert_eq!(o.stdout_bytes, 5_000_000);
        // Endless output is bounded by the cap and ended by the timeout.
        let o = s.exec(with_timeout("g", "yes", 2.0)).await.unwrap();
        assert!(o.timed_out && o.stdout_truncated);
        assert_eq!(o.stdout.len(), 64 * 1024);
    });
}

#[test]
fn bombs_are_contained() {
    rt().block_on(async {
        let sw = sweep("bomb");
        let w = World::new();
        let s = sup(&w, &sw.prefix, "", r#"memory: "64m", pidsLimit: 64,"#).await;
        // Fork bomb: the pids limit stops it, the call returns (its timeout cleans up).
        let t = Instant::now();
        let o = s
            .exec(with_timeout("g", "f() { f | f & }; f; sleep 2", 3.0))
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let _ = o;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            s.exec(req("g", "echo recovered")).await.unwrap().exit_code,
            Some(0)
        );
        // Memory bomb: OOM-killed and reported as such.
        let o = s
            .exec(with_timeout(
                "g",
                "x=$(head -c 300000000 /dev/zero | tr '\\000' x); echo ${#x}",
                30.0,
            ))
            .await
            .unwrap();
        assert!(
            o.oom_killed || o.exit_code == Some(137) || o.container_died,
            "{o:?}"
        );
        if kill_count_readable() {
            assert!(o.oom_killed, "{o:?}");
        }
        // tmpfs pages count against the memory limit: filling /tmp here is stopped too.
        let o = s
            .exec(req(
                "g",
                "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>/dev/null; echo rc=$?",
            ))
            .await
            .unwrap();
        assert_ne!(text(&o.stdout).trim(), "rc=0", "{o:?}");
    });
}

fn kill_count_readable() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/docker").exists()
        || std::path::Path::new("/sys/fs/cgroup/system.slice").exists()
}

#[test]
fn killing_the_container_is_reported_and_the_next_call_gets_a_fresh_one() {
    rt().block_on(async {
        let sw = sweep("die");
        let w = World::new();
        let s = sup(&w, &sw.prefix, "", "").await;
        let first = s.exec(req("g", "true")).await.unwrap();
        let name = first.container_name.clone().unwrap();
        let id_before = docker_inspect(&name).unwrap()["Id"].clone();
        let t = Instant::now();
        let o = s
            .exec(with_timeout(
                "g",
                "kill -9 $(cat /proc/1/task/1/children); sleep 30",
                60.0,
            ))
            .await
            .unwrap();
        assert!(o.container_died, "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(20));
        let o = s.exec(req("g", "echo fresh")).await.unwrap();
        assert_eq!(text(&o.stdout), "fresh\n");
        assert_ne!(docker_inspect(&name).unwrap()["Id"], id_before);
    });
}

#[test]
fn hostile_requests_are_refused_before_running() {
    rt().block_on(async {
        let sw = sweep("hreq");
        let w = World::new();
        let s = sup(&w, &sw.prefix, "", "").await;
        let refused = |r: Result<_, CallError>| match r {
            Err(CallError::Refused(x)) => x.code.as_str().to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            refused(
                s.exec(ExecRequest {
                    env: [("A=B".into(), "x".into())].into(),
                    ..req("g", "true")
                })
                .await
            ),
            "invalid_env_name"
        );
        assert_eq!(
            refused(
                s.exec(ExecRequest {
                    env: [("BIG".into(), "x".repeat(100_000))].into(),
                    ..req("g", "true")
                })
                .await
            ),
            "too_large"
        );
        assert_eq!(
            refused(
                s.exec(ExecRequest {
                    user: Some("root".into()),
                    ..req("g", "true")
                })
                .await
            ),
            "privilege_requested"
        );
        assert_eq!(
            refused(
                s.exec(ExecRequest {
                    privileged: true,
                    ..req("g", "true")
                })
                .await
            ),
            "privilege_requested"
        );
        assert_eq!(
            refused(
                s.exec(ExecRequest {
                    workdir: Some("/etc".into()),
                    ..req("g", "true")
                })
                .await
            ),
            "not_on_mount"
        );
        assert_eq!(
            refused(
                s.exec(ExecRequest {
                    workdir: Some("../../etc".into()),
                    ..req("g", "true")
                })
                .await
            ),
            "not_on_mount"
        );
        // No container was made for refused calls.
        assert_eq!(containers_with_prefix(&sw.prefix), Vec::<String>::new());
        // Shell metacharacters are the container's business: nothing happens on the host.
        let canary = format!("/tmp/clawden-host-canary-{}", uuid::Uuid::new_v4().simple());
        let o = s
            .exec(req(
                "g",
                &format!("touch {canary}; echo $(id -u) && echo ';' | cat; ls {canary}"),
            ))
            .await
            .unwrap();
        assert_eq!(o.exit_code, Some(0), "{}", text(&o.stderr));
        assert!(!std::path::Path::new(&canary).exists());
        // Every decision is in the audit log, refusals with their rule, no env values.
        let log = std::fs::read_to_string(w.path("state/audit.log")).unwrap();
        assert!(log.contains("\"rule\":\"invalid_env_name\""));
        assert!(log.contains("\"decision\":\"allowed\""));
        assert!(!log.contains(&"x".repeat(100)));
    });
}

#[test]
fn modes_route_calls_and_scopes_share_or_separate() {
    rt().block_on(async {
        let sw = sweep("route");
        let w = World::new();
        // off: everything on the host, in the agent workspace.
        let off = world_sup(&w, &sw.prefix, r#"mode: "off","#).await;
        let o = off
            .exec(req("group:x", "pwd; echo host > from-host"))
            .await
            .unwrap();
        assert_eq!(o.container_name, None);
        assert_eq!(
            text(&o.stdout).trim(),
            std::fs::canonicalize(w.path("ws"))
                .unwrap()
                .to_str()
                .unwrap()
        );
        assert!(w.path("ws/from-host").exists());
        let refused = off
            .exec(ExecRequest {
                workdir: Some("/etc".into()),
                ..req("g", "true")
            })
            .await;
        assert!(matches!(refused, Err(CallError::Refused(_))));
        // non-main: the main session on the host, a group session in a container.
        let nm = world_sup(&w, &sw.prefix, r#"mode: "non-main","#).await;
        assert_eq!(
            nm.exec(req("main", "true")).await.unwrap().container_name,
            None
        );
        assert!(
            nm.exec(req("group:x", "true"))
                .await
                .unwrap()
                .container_name
                .is_some()
        );
        // all: the main session too.
        let all = world_sup(&w, &sw.prefix, r#"mode: "all","#).await;
        assert!(
            all.exec(req("main", "true"))
                .await
                .unwrap()
                .container_name
                .is_some()
        );
        // agent scope: two sessions of one agent share a container (and its workspace).
        let a = all.exec(req("s1", "echo shared > note")).await.unwrap();
        let b = all.exec(req("s2", "cat note")).await.unwrap();
        assert_eq!(a.container_name, b.container_name);
        assert_eq!(text(&b.stdout), "shared\n");
        // session scope: separate containers, files invisible across sessions.
        let per = world_sup(&w, &sw.prefix, r#"mode: "all", scope: "session","#).await;
        let a = per.exec(req("s1", "echo mine > private")).await.unwrap();
        let b = per.exec(req("s2", "cat private")).await.unwrap();
        assert_ne!(a.container_name, b.container_name);
        assert_ne!(b.exit_code, Some(0));
    });
}

async fn world_sup(w: &World, prefix: &str, sandbox: &str) -> Supervisor {
    let text = format!(
        r#"{{ agents: {{ defaults: {{ workspace: "{}", sandbox: {{ {sandbox} workspaceRoot: "{}", docker: {{ containerPrefix: "{prefix}" }} }} }} }} }}"#,
        w.path("ws").display(),
        w.path("sandboxes").display()
    );
    w.supervisor(engine().await, loaded(&text).unwrap())
}
