//! Running a wrapped call in a container through the engine's exec API.

use super::CallEnd;
use super::capture::{HeadTail, MarkerScanner};
use super::kill::{IN_CONTAINER_KILL, kill_marked, oom_kill_count};
use super::{
    CallLimits, ExecOutcome, ExecRequest, OutputSink, new_call_id, split_status, wrapped_argv,
};
use crate::engine::{ContainerEngine, EngineError, ExecChunk, ExecSpec};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// After the exit marker, output already on its way is still collected for this long.
const DRAIN_GRACE: Duration = Duration::from_millis(150);
const KILL_BUDGET: Duration = Duration::from_millis(1500);

pub struct Target<'a> {
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub user: &'a str,
    pub workdir: &'a str,
    pub env: Vec<String>,
}

pub async fn run(
    engine: &dyn ContainerEngine,
    t: &Target<'_>,
    req: &ExecRequest,
    limits: CallLimits,
    sink: Option<&OutputSink>,
) -> Result<ExecOutcome, EngineError> {
    let call_id = new_call_id();
    let oom_before = oom_kill_count(t.container_id);
    let started = Instant::now();
    let spec = ExecSpec {
        cmd: wrapped_argv(&call_id, &req.command, req.stdin.as_deref()),
        user: Some(t.user.to_string()),
        workdir: Some(t.workdir.to_string()),
        // The marker is in the wrapper's own initial environment too, so the scan recognises it
        // as the leader of the call's session.
        env: t
            .env
            .iter()
            .cloned()
            .chain(std::iter::once(format!("CLAWDEN_CALL={call_id}")))
            .collect(),
    };
    let mut stream = engine.exec_stream(t.container_id, &spec).await?;
    let mut out = HeadTail::new(limits.max_output_bytes);
    let mut err = HeadTail::new(limits.max_output_bytes);
    let mut scanner = MarkerScanner::new(&call_id);
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut timed_out = false;
    let mut ended = false;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let until = drain_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, stream.output.next()).await {
            Ok(Some(Ok(ExecChunk::Stdout(b)))) => {
                if let Some(f) = sink {
                    f(false, &b);
                }
                out.push(&b)
            }
            Ok(Some(Ok(ExecChunk::Stderr(b)))) => {
                let plain = scanner.feed(&b);
                if let Some(f) = sink {
                    f(true, &plain);
                }
                err.push(&plain);
                if scanner.found().is_some() && drain_until.is_none() {
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                }
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => {
                ended = true;
                break;
            }
            Err(_) if drain_until.is_some() => break,
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    if scanner.found().is_none() {
        err.push(&scanner.finish());
    }
    if timed_out {
        let id = call_id.clone();
        let report = tokio::task::spawn_blocking(move || kill_marked(&id, KILL_BUDGET))
            .await
            .unwrap_or_default();
        if report.killed == 0 {
            // Not visible from here (remote engine, other user): kill from inside.
            let kill = ExecSpec {
                cmd: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    IN_CONTAINER_KILL.into(),
                    "clawden-kill".into(),
                    call_id.clone(),
                ],
                user: Some(t.user.to_string()),
                ..Default::default()
            };
            let _ = tokio::time::timeout(
                KILL_BUDGET,
                engine.exec_collect(t.container_id, &kill, 4096),
            )
            .await;
        }
    }
    let mut code = scanner.found();
    if code.is_none() && ended && !timed_out {
        // The wrapper itself ended without its marker (killed, or the container died).
        code = engine
            .exec_exit_code(&stream.exec_id)
            .await
            .ok()
            .flatten()
            .map(|c| c as i32);
    }
    let mut container_died = false;
    // No marker, or death by a signal (the wrapper may outlive its command by a moment when the
    // container's init dies): is the container still there?
    if (scanner.found().is_none() || code.is_some_and(|c| c > 128)) && !timed_out {
        // A SIGKILL may be the namespace teardown of a dying container, which the engine reports
        // a moment later: look again for up to a second before calling it alive.
        let polls = if code == Some(137) || scanner.found().is_none() {
            10
        } else {
            1
        };
        for i in 0..polls {
            let running = engine
                .inspect(t.container_id)
                .await?
                .and_then(|i| i.pointer("/State/Running").and_then(|v| v.as_bool()));
            container_died = running != Some(true);
            if container_died || i + 1 == polls {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if container_died {
            code = None;
        }
    }
    let oom_killed = match (oom_before, oom_kill_count(t.container_id)) {
        (Some(b), Some(a)) => a > b,
        _ => false,
    };
    let (exit_code, signal) = if timed_out {
        (None, Some(9))
    } else {
        code.map(split_status).unwrap_or((None, None))
    };
    Ok(ExecOutcome::from_capture(
        out,
        err,
        (exit_code, signal),
        started,
        CallEnd {
            timed_out,
            oom_killed,
            container_died,
            container_name: Some(t.container_name.to_string()),
        },
    ))
}
