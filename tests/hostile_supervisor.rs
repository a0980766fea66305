//! Attacks on the supervisor's own bookkeeping (issue 7, class 8): an audit log that cannot be
//! written refuses the call (fail closed), and a hung setupCommand cannot wedge its scope.

mod common;

use clawden::exec::ExecRequest;
use clawden::supervisor::SupervisorError;
use clawden::supervisor::calls::CallError;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn an_unwritable_audit_log_refuses_the_call_before_it_runs() {
    rt().block_on(async {
        let sw = sweep("audit");
        let w = World::new();
        for (mode, session) in [("all", "g"), ("off", "main")] {
            let s = w.supervisor(
                engine().await,
                w.config(&sw.prefix, &format!(r#"mode: "{mode}","#), ""),
            );
            // The attacker's goal: run something without a trace. The log is made unwritable.
            let log = w.path("state/audit.log");
            let _ = std::fs::remove_file(&log);
            std::fs::create_dir_all(&log).unwrap();
            let canary = w.path(&format!("ws/ran-{mode}"));
            let cmd = if mode == "all" {
                format!("touch /workspace/ran-{mode}")
            } else {
                format!("touch ran-{mode}")
            };
            let r = s
                .exec(ExecRequest {
                    session: Some(session.into()),
                    command: cmd,
                    ..Default::default()
                })
                .await;
            match r {
                Err(CallError::Failed(SupervisorError::AuditFailed(_))) => {}
                other => panic!("{mode}: expected audit_failed, got {other:?}"),
            }
            assert!(
                !canary.exists(),
                "{mode}: the call ran without an audit entry"
            );
            // Files too.
            let r = s
                .write(clawden::supervisor::files::WriteRequest {
                    session: Some(session.into()),
                    path: "x".into(),
                    content: b"y".to_vec(),
                    ..Default::default()
                })
                .await;
            assert_eq!(r.unwrap_err().code(), "audit_failed", "{mode}");
            std::fs::remove_dir(&log).unwrap();
        }
    });
}

#[test]
fn a_hung_setup_command_is_bounded_and_does_not_wedge_its_scope() {
    rt().block_on(async {
        let sw = sweep("setup");
        let w = World::new();
        let s = w.supervisor(
            engine().await,
            w.config(
                &sw.prefix,
                r#"calls: { timeoutSeconds: 2 },"#,
                r#"setupCommand: "sleep 100000","#,
            ),
        );
        let t = Instant::now();
        match s.ensure(Some("g"), None).await {
            Err(SupervisorError::SetupFailed { status, .. }) => {
                assert!(status.contains("timed out"), "{status}")
            }
            other => panic!("expected a bounded setup failure, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        // Nothing half-made is left, and the scope's lock is free again.
        assert_eq!(containers_with_prefix(&sw.prefix), Vec::<String>::new());
        let ok = w.supervisor(engine().await, w.config(&sw.prefix, "", ""));
        let t = Instant::now();
        ok.ensure(Some("g"), None).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(20));
    });
}
