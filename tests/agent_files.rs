//! File tools act with the sandbox's rights, in the container's view (issue 8): a root-only file
//! cannot be read for the sandbox, a root-owned 0555 directory cannot be written into, and
//! symlinks to `/` or to `/proc/self/fd/N` are refused as read, write and working-directory
//! targets — with the sandbox's own errors.

mod common;

use clawden::exec::{ExecRequest, Via};
use clawden::supervisor::calls::CallError;
use clawden::supervisor::files::{ReadRequest, WriteRequest};
use common::*;
use std::os::unix::fs::PermissionsExt;

fn code<T: std::fmt::Debug>(r: Result<T, CallError>) -> String {
    match r {
        Err(e) => e.code().to_string(),
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

#[test]
fn file_tools_act_with_the_sandbox_rights_and_refuse_escaping_links() {
    if !nix::unistd::geteuid().is_root() {
        return; // the root-owned fixtures need root
    }
    rt().block_on(async {
        let sw = sweep("agfile");
        let w = World::new();
        let s = w.supervisor(engine().await, w.config(&sw.prefix, "", ""));
        let read = |p: &str| ReadRequest {
            session: Some("g".into()),
            path: p.into(),
            ..Default::default()
        };
        let write = |p: &str| WriteRequest {
            session: Some("g".into()),
            path: p.into(),
            content: b"x".to_vec(),
            ..Default::default()
        };
        let exec = |cmd: &str, wd: Option<&str>| ExecRequest {
            session: Some("g".into()),
            command: cmd.into(),
            workdir: wd.map(str::to_string),
            ..Default::default()
        };
        let o = s
            .exec(exec("ln -s / rootlink; ln -s /proc/self/fd/0 fdlink; ln -s /etc/shadow shadowlink; id -u", None))
            .await
            .unwrap();
        assert_eq!(o.via, Via::Agent);
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1000");
        // Root-owned fixtures in the sandbox's workspace, made on the host.
        let (_, plan) = s.plan(Some("g"), None).unwrap();
        let ws = plan.sandbox_workspace.clone();
        std::fs::write(ws.join("secret"), "root only").unwrap();
        std::fs::set_permissions(ws.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(ws.join("secret"), Some(0), Some(0)).unwrap();
        std::fs::create_dir(ws.join("locked")).unwrap();
        std::fs::set_permissions(ws.join("locked"), std::fs::Permissions::from_mode(0o555)).unwrap();
        std::os::unix::fs::chown(ws.join("locked"), Some(0), Some(0)).unwrap();

        assert_eq!(code(s.read(read("secret")).await), "permission_denied");
        assert_eq!(code(s.write(write("locked/x")).await), "permission_denied");
        assert!(!ws.join("locked/x").exists());
        // Replacing it is allowed (the directory is the sandbox's, as `mv` would be) — and the
        // new file belongs to the sandbox user, not to clawden.
        s.write(write("secret")).await.unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(ws.join("secret")).unwrap().uid(), 1000);
        for p in ["rootlink/etc/passwd", "fdlink", "shadowlink"] {
            let c = code(s.read(read(p)).await);
            assert!(["escapes_root", "symlink_loop", "not_found", "permission_denied"].contains(&c.as_str()), "{p}: {c}");
        }
        // Through a link in the middle: refused.
        let c = code(s.write(write("rootlink/tmp/x")).await);
        assert_eq!(c, "escapes_root");
        // Over a final link: the link itself is replaced by a regular file; its target untouched.
        for p in ["fdlink", "shadowlink"] {
            s.write(write(p)).await.unwrap();
            let md = std::fs::symlink_metadata(ws.join(p)).unwrap();
            assert!(md.file_type().is_file(), "{p} is still a link");
        }
        let o = s.exec(exec("ls /tmp/x 2>&1; cat /etc/shadow 2>&1 | head -c 40", None)).await.unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains("No such file"), "{out}");
        // As working directories: refused, not followed to `/`.
        for wd in ["rootlink", "rootlink/etc", "fdlink"] {
            let r = s.exec(exec("pwd", Some(wd))).await;
            match r {
                Err(CallError::Refused(r)) => assert!(
                    ["not_on_mount", "escapes_root", "not_directory", "invalid_path"].contains(&r.code.as_str()),
                    "{wd}: {}",
                    r.code.as_str()
                ),
                Ok(o) => panic!("{wd}: ran in {:?}", String::from_utf8_lossy(&o.stdout)),
                Err(e) => panic!("{wd}: {e}"),
            }
        }
    });
}
