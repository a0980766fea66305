//! read / write through the supervisor against real sandboxes: hostile containers, read-only
//! mounts, routing, and the rename-exchange race run from inside the container.

mod common;

use clawden::exec::ExecRequest;
use clawden::supervisor::Supervisor;
use clawden::supervisor::calls::CallError;
use clawden::supervisor::files::{ReadRequest, WriteRequest};
use common::*;
use std::path::Path;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn read(path: &str) -> ReadRequest {
    ReadRequest {
        session: Some("g".into()),
        path: path.into(),
        ..Default::default()
    }
}

fn write(path: &str, content: &[u8]) -> WriteRequest {
    WriteRequest {
        session: Some("g".into()),
        path: path.into(),
        content: content.to_vec(),
        ..Default::default()
    }
}

async fn sh(s: &Supervisor, cmd: &str) -> String {
    let o = s
        .exec(ExecRequest {
            session: Some("g".into()),
            command: cmd.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        o.exit_code,
        Some(0),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code<T: std::fmt::Debug>(r: Result<T, CallError>) -> String {
    match r {
        Err(e) => e.code().to_string(),
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

#[test]
fn files_round_trip_and_hostile_paths_are_refused() {
    rt().block_on(async {
        let sw = sweep("files");
        let w = World::new();
        std::fs::write(w.path("ws/agent-note"), "from the agent workspace").unwrap();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, "", ""));
        // Written by clawden, seen by the container, owned by the sandbox user.
        let r = s.write(write("dir/hello.txt", b"hi\x00\xff")).await;
        assert_eq!(code(r), "not_found", "parent missing and no mkdir");
        let r = s.write(WriteRequest { mkdir: true, ..write("dir/hello.txt", b"hi\x00\xff") }).await.unwrap();
        assert_eq!((r.bytes_written, r.path.as_str()), (4, "/workspace/dir/hello.txt"));
        assert_eq!(sh(&s, "od -An -c dir/hello.txt | tr -s ' '").await.trim(), "h i \\0 377");
        assert_eq!(sh(&s, "stat -c %u:%g:%a dir/hello.txt").await.trim(), "1000:1000:644");
        let got = s.read(read("/workspace/dir/hello.txt")).await.unwrap();
        assert_eq!((got.content.as_slice(), got.size, got.truncated), (&b"hi\x00\xff"[..], 4, false));
        let got = s.read(ReadRequest { offset: 1, length: Some(2), ..read("dir/hello.txt") }).await.unwrap();
        assert_eq!(got.content, b"i\x00");
        // workspaceAccess "ro" (its own session-scoped sandbox): the agent workspace is readable at
        // /agent, and nothing of the workspace is writable, the workdir included (OC).
        let ro = w.supervisor(engine().await, w.config(&sw.prefix, r#"workspaceAccess: "ro", scope: "session","#, ""));
        assert_eq!(ro.read(read("/agent/agent-note")).await.unwrap().content, b"from the agent workspace");
        assert_eq!(code(ro.write(write("/agent/agent-note", b"x")).await), "read_only_mount");
        assert_eq!(code(ro.write(write("new.txt", b"x")).await), "read_only_mount");
        assert_eq!(code(ro.write(write("/workspace/new.txt", b"x")).await), "read_only_mount");
        assert_eq!(std::fs::read_to_string(w.path("ws/agent-note")).unwrap(), "from the agent workspace");
        // Not on a mount.
        for p in ["/etc/shadow", "../../etc/passwd", "/tmp/x", "/proc/self/environ", "/"] {
            assert_eq!(code(s.read(read(p)).await), "not_on_mount", "{p}");
        }
        // Symlinks made inside the container never lead out.
        sh(&s, "ln -sf /etc/shadow l; ln -sf ../../../../../etc/passwd rel; ln -sfn /etc d; ln -sf /etc/cron.d/clawden-x dangling; mkfifo fifo").await;
        for p in ["l", "rel", "d/passwd"] {
            let c = code(s.read(read(p)).await);
            assert!(["symlink_refused", "escapes_root", "not_found"].contains(&c.as_str()), "{p}: {c}");
        }
        assert_eq!(code(s.write(write("d/x", b"x")).await), "escapes_root");
        assert!(!Path::new("/etc/x").exists());
        // Writing over a dangling symlink never creates its target; the link is replaced.
        let _ = s.write(write("dangling", b"data")).await;
        assert!(!Path::new("/etc/cron.d/clawden-x").exists());
        // A FIFO is refused without blocking.
        let t = std::time::Instant::now();
        assert_eq!(code(s.read(read("fifo")).await), "special_file");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        // Over the write cap.
        let big = w.supervisor(engine().await, w.config(&sw.prefix, r#"calls: { maxWriteBytes: "1k" },"#, ""));
        assert_eq!(code(big.write(write("big", &[0u8; 2048])).await), "too_large");
        // The audit log names paths, never contents.
        let log = std::fs::read_to_string(w.path("state/audit.log")).unwrap();
        assert!(log.contains("\"op\":\"write\"") && log.contains("\"op\":\"read\""));
        assert!(!log.contains("from the agent workspace"));
    });
}

#[test]
fn direct_sessions_read_and_write_the_agent_workspace_only() {
    rt().block_on(async {
        let sw = sweep("fdir");
        let w = World::new();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, r#"mode: "off","#, ""));
        s.write(write("note.txt", b"direct")).await.unwrap();
        assert_eq!(std::fs::read(w.path("ws/note.txt")).unwrap(), b"direct");
        assert_eq!(s.read(read("note.txt")).await.unwrap().content, b"direct");
        let abs = w.path("ws/note.txt");
        assert_eq!(
            s.read(read(abs.to_str().unwrap())).await.unwrap().content,
            b"direct"
        );
        assert_eq!(code(s.read(read("/etc/passwd")).await), "not_on_mount");
        assert_eq!(code(s.read(read("../outside")).await), "not_on_mount");
        std::os::unix::fs::symlink("/etc/passwd", w.path("ws/link")).unwrap();
        assert_ne!(
            s.read(read("link"))
                .await
                .map(|r| r.content)
                .unwrap_or_default(),
            std::fs::read("/etc/passwd").unwrap()
        );
    });
}

/// Inside the container a loop swaps a directory with a symlink to `/` (rename exchange) while
/// clawden reads and writes files under it 1,000 times each: no host file is read or changed,
/// every call is either correct or refused.
#[test]
fn rename_exchange_race_from_inside_the_container() {
    rt().block_on(async {
        let sw = sweep("race");
        let w = World::new();
        let s = std::sync::Arc::new(w.supervisor(engine().await, w.config(&sw.prefix, "", "")));
        let (_, plan) = s.plan(Some("g"), None).unwrap();
        // The hostile helper: a static binary compiled here, run from the workspace.
        sh(&s, "mkdir -p sub && echo inside > sub/file").await;
        let bin = plan.sandbox_workspace.join("swap");
        let cc = std::process::Command::new("gcc")
            .args(["-static", "-O2", "-o", bin.to_str().unwrap(), concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/swap.c")])
            .output()
            .expect("gcc");
        assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&bin).unwrap().permissions(), 0o755);
        // Two link targets: "/" (the container's root inside, the host's root to a careless host
        // side), and a host-only canary directory (dangling inside the container, real on the host).
        let canary_dir = tempfile::tempdir_in("/tmp").unwrap();
        let canary = canary_dir.path().join("file");
        std::fs::write(&canary, "HOST CANARY").unwrap();
        let before = std::fs::metadata(&canary).unwrap().modified().unwrap();
        let host_file_existed = Path::new("/file").exists();
        for target in ["/".to_string(), canary_dir.path().display().to_string()] {
            sh(&s, &format!("rm -f sub_link; ln -s '{target}' sub_link; test -d sub")).await;
            // The attacker's swapper runs as its own long call (a call's processes end with it).
            let swapper = {
                let s = s.clone();
                tokio::spawn(async move {
                    s.exec(ExecRequest { session: Some("g".into()), command: "exec ./swap sub sub_link >/dev/null 2>&1".into(), timeout: Some(std::time::Duration::from_secs(600)), ..Default::default() }).await
                })
            };
            sh(&s, "for i in $(seq 50); do pidof swap >/dev/null && break; sleep 0.1; done; pidof swap").await;
            let (mut ok_reads, mut refused_reads, mut ok_writes, mut refused_writes) = (0, 0, 0, 0);
            for i in 0..1000 {
                match s.read(read("sub/file")).await {
                    Ok(r) => {
                        assert!(r.content == b"inside\n" || r.content.starts_with(b"w"), "read something else: {:?}", String::from_utf8_lossy(&r.content));
                        ok_reads += 1;
                    }
                    Err(CallError::Refused(_)) => refused_reads += 1,
                    Err(e) => panic!("not a structured refusal: {e}"),
                }
                match s.write(write("sub/file", format!("w{i}").as_bytes())).await {
                    Ok(_) => ok_writes += 1,
                    Err(CallError::Refused(_)) => refused_writes += 1,
                    Err(e) => panic!("not a structured refusal: {e}"),
                }
            }
            sh(&s, "kill -9 $(pidof swap) 2>/dev/null; sleep 0.2; [ -L sub ] && { mv sub sub_x; mv sub_link sub; mv sub_x sub_link; }; true").await;
            let _ = swapper.await;
            eprintln!("race via {target}: reads ok {ok_reads} refused {refused_reads}; writes ok {ok_writes} refused {refused_writes}");
            assert!(ok_reads + ok_writes > 0, "the race made every call fail");
            assert!(refused_reads + refused_writes > 0, "the swapper never won a race: the test did not exercise anything");
        }
        assert_eq!(Path::new("/file").exists(), host_file_existed, "a file appeared at the host's /file");
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "HOST CANARY");
        assert_eq!(std::fs::metadata(&canary).unwrap().modified().unwrap(), before);
        assert_eq!(std::fs::read_dir(canary_dir.path()).unwrap().count(), 1, "nothing was created in the canary dir");
        // No temp files left in the real directory.
        let leftovers: Vec<_> = std::fs::read_dir(plan.sandbox_workspace.join("sub")).into_iter().flatten().flatten().filter(|e| e.file_name().to_string_lossy().contains("clawden-tmp")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    });
}
