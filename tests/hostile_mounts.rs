//! Attacks on "what is mounted is what was checked" (issue 7, classes 2 and 3), as an attacker
//! would run them: a co-tenant sandbox swapping a bind source for a symlink to `/etc` in a tight
//! loop while new sandboxes are created; a tmpfs and Docker's own socket mounted below a
//! read-only workspace on the host; setuid files a sandbox plants.

mod common;

use clawden::exec::ExecRequest;
use clawden::supervisor::Supervisor;
use clawden::supervisor::calls::CallError;
use common::*;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

async fn sh(s: &Supervisor, session: &str, cmd: &str) -> (Option<i32>, String) {
    let o = s
        .exec(ExecRequest {
            session: Some(session.into()),
            command: cmd.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        o.exit_code,
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Undo a host mount made by a test, also when the test fails.
struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_co_tenant_swapping_a_bind_source_never_gets_a_host_path_into_a_new_sandbox() {
    rt().block_on(async {
        let sw = sweep("swapbind");
        let w = World::new();
        let data = w.path("ws/data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("marker"), "the real data\n").unwrap();
        std::os::unix::fs::symlink("/etc", w.path("ws/data_link")).unwrap();
        // The attacker is another agent whose sandboxes get the same workspace writable; new
        // sandboxes of agent main bind `ws/data` read-only at /data.
        let cfg = loaded(&format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", scope: "session", workspaceAccess: "rw", workspaceRoot: "{root}", docker: {{ containerPrefix: "{prefix}" }} }} }},
                 list: [ {{ id: "main", sandbox: {{ docker: {{ binds: ["{data}:/data:ro"] }} }} }},
                         {{ id: "attacker", workspace: "{ws}" }} ] }} }}"#,
            ws = w.path("ws").display(),
            root = w.path("sandboxes").display(),
            prefix = sw.prefix,
            data = data.display(),
        ))
        .unwrap();
        let s = Arc::new(w.supervisor(engine().await, cfg));
        // The attacker's swapper, compiled here, run from the workspace by the co-tenant.
        let bin = w.path("ws/swap");
        let cc = Command::new("gcc")
            .args(["-static", "-O2", "-o", bin.to_str().unwrap(), concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/swap.c")])
            .output()
            .expect("gcc");
        assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
        let attacker = {
            let s = s.clone();
            tokio::spawn(async move {
                s.exec(ExecRequest {
                    session: Some("agent:attacker:group:x".into()),
                    command: "exec ./swap data data_link".into(),
                    timeout: Some(std::time::Duration::from_secs(600)),
                    ..Default::default()
                })
                .await
            })
        };
        let (_, up) = sh(&s, "agent:attacker:group:x", "for i in $(seq 100); do pidof swap >/dev/null && break; sleep 0.05; done; pidof swap >/dev/null && echo running").await;
        assert!(up.contains("running"), "{up}");
        let (mut made, mut refused) = (0, 0);
        for i in 0..24 {
            let session = format!("group:victim{i}");
            match s
                .exec(ExecRequest {
                    session: Some(session.clone()),
                    command: "ls /data; test -e /data/passwd && echo HOST-ETC".into(),
                    ..Default::default()
                })
                .await
            {
                Ok(o) => {
                    let out = String::from_utf8_lossy(&o.stdout).into_owned();
                    assert!(!out.contains("HOST-ETC") && !out.contains("passwd"), "{session} sees host /etc: {out}");
                    assert!(out.contains("marker"), "{session}: {out}");
                    made += 1;
                }
                // Refused with a structured code (the validator saw the symlink, staging saw the
                // swap, or the post-start inode check caught it) — never a panic or a hang.
                Err(CallError::Refused(r)) => {
                    eprintln!("{session}: refused {}", r.code.as_str());
                    refused += 1;
                }
                Err(CallError::Failed(e)) => {
                    assert!(
                        ["config_problems", "source_changed", "mount_mismatch"].contains(&e.code()),
                        "{session}: unexpected {}: {e}",
                        e.code()
                    );
                    refused += 1;
                }
            }
        }
        let _ = s
            .exec(ExecRequest {
                session: Some("agent:attacker:group:x".into()),
                command: "kill -9 $(pidof swap) 2>/dev/null; true".into(),
                ..Default::default()
            })
            .await;
        let _ = attacker.await;
        eprintln!("sandboxes made {made}, refused {refused}");
        assert!(made + refused == 24);
        // Stopped swapper: the source is back as a directory or a symlink; either way the host
        // /etc was never touched.
        assert!(Path::new("/etc/passwd").exists());
    });
}

#[test]
fn submounts_and_sockets_below_a_workspace_do_not_cross_and_ro_holds_all_the_way_down() {
    if !is_root() {
        // Without root there is no staging and no host mount to plant: the plan-level refusal
        // of sandbox-writable sources is unit-tested in `mounts`.
        return;
    }
    rt().block_on(async {
        let sw = sweep("submnt");
        let w = World::new();
        let ws = w.path("ws");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::write(ws.join("docker.sock"), "").unwrap();
        // On the host, below the agent workspace: a writable tmpfs and Docker's own socket.
        assert!(Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(ws.join("sub")).status().unwrap().success());
        let _u1 = Unmount(ws.join("sub"));
        std::fs::write(ws.join("sub/host-only"), "tmpfs content").unwrap();
        assert!(Command::new("mount").args(["--bind", "/var/run/docker.sock"]).arg(ws.join("docker.sock")).status().unwrap().success());
        let _u2 = Unmount(ws.join("docker.sock"));
        let s = w.supervisor(engine().await, w.config(&sw.prefix, r#"workspaceAccess: "ro","#, ""));
        let (_, out) = sh(&s, "g", "ls -la /agent/sub; [ -S /agent/docker.sock ] && echo SOCKET; touch /agent/sub/x 2>&1; touch /agent/new 2>&1; echo done").await;
        assert!(!out.contains("host-only"), "the host's tmpfs crossed into the sandbox: {out}");
        assert!(!out.contains("SOCKET"), "the docker socket crossed into the sandbox: {out}");
        assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
        assert!(!ws.join("sub/x").exists() && !ws.join("new").exists());
    });
}

#[test]
fn setuid_files_a_sandbox_plants_are_inert_in_the_sandbox_and_on_the_host() {
    rt().block_on(async {
        let sw = sweep("suid");
        let w = World::new();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, r#"workspaceAccess: "rw","#, ""));
        // A static helper that prints its uids, put in the workspace (the attacker could
        // download or write one just as well).
        let ids = w.path("ws/ids");
        let cc = Command::new("gcc")
            .args(["-static", "-O2", "-o", ids.to_str().unwrap(), concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ids.c")])
            .output()
            .expect("gcc");
        assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
        // The sandbox makes a setuid copy of it in its writable workspace.
        let (_, out) = sh(&s, "g", "cp ./ids ./suid && chmod 4755 ./suid && ls -l ./suid && grep -E ' /workspace ' /proc/self/mounts").await;
        assert!(out.contains("rws"), "{out}");
        if !is_root() {
            return; // no staging, no in-place nosuid without root (doctor says so)
        }
        // Staged: the workspace is mounted nosuid,nodev in the sandbox.
        let line = out.lines().find(|l| l.contains(" /workspace ")).unwrap_or("");
        assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
        let run_as_nobody = |file: &Path| {
            let o = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(file)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        // On the host: another user runs the planted file through the workspace's own host
        // path — and stays who they are, although the bits are on disk.
        let suid = w.path("ws/suid");
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&suid).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o4000), (1000, 0o4000), "the bits are on disk");
        assert_eq!(run_as_nobody(&suid), "uid=65534 euid=65534");
        // The control: the same file outside the workspace does take effect, so the check
        // above could fail.
        let outside = w.path("suid-control");
        std::fs::copy(&suid, &outside).unwrap();
        std::os::unix::fs::chown(&outside, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&outside, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        assert_eq!(run_as_nobody(&outside), "uid=65534 euid=1000");
    });
}

fn staged_under(dir: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .count()
}

#[test]
fn staging_of_a_sandbox_removed_behind_clawdens_back_is_swept_and_nothing_is_lost() {
    if !is_root() {
        return; // nothing is staged without root
    }
    rt().block_on(async {
        let sw = sweep("sweep");
        let w = World::new();
        let s = w.supervisor(
            engine().await,
            w.config(
                &sw.prefix,
                r#"scope: "session", workspaceAccess: "rw","#,
                "",
            ),
        );
        std::fs::write(w.path("ws/keep.txt"), "user data").unwrap();
        let e = s.ensure(Some("g"), None).await.unwrap();
        let staging = w.path("state/staging").join(&e.container_name);
        assert!(staged_under(&staging) > 0, "nothing was staged");
        // Removed behind clawden's back: its staged mounts are left over...
        docker(&["rm", "-f", &e.container_name]);
        assert!(staged_under(&staging) > 0);
        // ...until prune sweeps them; a live sandbox's staging is never touched.
        let live = s.ensure(Some("other"), None).await.unwrap();
        let live_staging = w.path("state/staging").join(&live.container_name);
        s.prune(clawden::supervisor::now_ms(), false).await.unwrap();
        assert_eq!(
            staged_under(&staging),
            0,
            "the dead sandbox's staging is still mounted"
        );
        assert!(!staging.exists());
        assert!(
            staged_under(&live_staging) > 0,
            "a live sandbox was unstaged"
        );
        // Unmounted, never deleted through: the workspace still has everything.
        assert_eq!(
            std::fs::read_to_string(w.path("ws/keep.txt")).unwrap(),
            "user data"
        );
    });
}
