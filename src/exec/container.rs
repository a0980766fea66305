//! The Engine API call path (the fallback when a sandbox's agent cannot be reached or fails the
//! peer check): a `docker exec` of `/bin/sh -c COMMAND` — never a login shell — with stdin
//! attached (never in argv). The exit status comes only from the engine's `inspect_exec`; nothing
//! the command prints can change it. A timeout kills the exec's process tree and every process
//! carrying the call's kill marker (found through `/proc` on this host).

use super::CallEnd;
use super::capture::HeadTail;
use super::kill::{IN_CONTAINER_KILL, kill_leftovers, kill_marked, oom_kill_count};
use super::{CallLimits, ExecOutcome, ExecRequest, OutputSink, Via, new_call_id, split_status};
use crate::engine::{ContainerEngine, EngineError, ExecChunk, ExecSpec};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// After the exec's process has exited (and its leftovers were killed), the rest of the output
/// stream is read for at most this long.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often the exec's state is polled while its output stream is open.
const POLL: Duration = Duration::from_millis(50);
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
    // The marker only lets a timeout find the call's processes; it decides nothing else.
    let call_id = new_call_id();
    let oom_before = oom_kill_count(t.container_id);
    let started = Instant::now();
    let spec = ExecSpec {
        cmd: vec!["/bin/sh".into(), "-c".into(), req.command.clone()],
        user: Some(t.user.to_string()),
        workdir: Some(t.workdir.to_string()),
        env: t
            .env
            .iter()
            .cloned()
            .chain(std::iter::once(format!("CLAWDEN_CALL={call_id}")))
            .collect(),
        stdin: req.stdin.clone(),
    };
    let mut stream = engine.exec_stream(t.container_id, &spec).await?;
    let mut out = HeadTail::new(limits.max_output_bytes);
    let mut err = HeadTail::new(limits.max_output_bytes);
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut timed_out = false;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut next_poll = tokio::time::Instant::now() + POLL;
    loop {
        let until = drain_until.unwrap_or(deadline).min(next_poll);
        match tokio::time::timeout_at(until, stream.output.next()).await {
            Ok(Some(Ok(ExecChunk::Stdout(b)))) => {
                if let Some(f) = sink {
                    f(false, &b);
                }
                out.push(&b);
            }
            Ok(Some(Ok(ExecChunk::Stderr(b)))) => {
                if let Some(f) = sink {
                    f(true, &b);
                }
                err.push(&b);
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => break,
            Err(_) => {
                let now = tokio::time::Instant::now();
                if drain_until.is_some_and(|d| now >= d) {
                    break;
                }
                if drain_until.is_none() && now >= deadline {
                    timed_out = true;
                    break;
                }
                if now >= next_poll {
                    next_poll = now + POLL;
                    // The shell has exited. A background child may hold the stream open: the
                    // call's processes die with it, then the stream is read to its end (bounded).
                    let st = engine.exec_state(&stream.exec_id).await?;
                    if !st.running && drain_until.is_none() {
                        let id = call_id.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || kill_leftovers(&id, KILL_BUDGET))
                                .await;
                        drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                }
            }
        }
    }
    drop(stream.output);
    let id = call_id.clone();
    // Every process of the call dies with it (background children included) — on the host, by
    // the call's marker and session; from inside the container when /proc is not ours to read.
    let report = tokio::task::spawn_blocking(move || {
        if timed_out {
            kill_marked(&id, KILL_BUDGET)
        } else {
            kill_leftovers(&id, KILL_BUDGET)
        }
    })
    .await
    .unwrap_or_default();
    if timed_out && report.killed == 0 {
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
    // The status, from the engine only (the shell may still be exiting: ask a few times).
    let mut code = None;
    if !timed_out {
        for _ in 0..20 {
            let st = engine.exec_state(&stream.exec_id).await?;
            if !st.running {
                code = st.exit_code.map(|c| c as i32);
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let mut container_died = false;
    // No status, or death by a signal: is the container itself still there?
    if (code.is_none() || code.is_some_and(|c| c > 128)) && !timed_out {
        // A SIGKILL may be the namespace teardown of a dying container, which the engine reports
        // a moment later: look again for up to a second before calling it alive.
        let polls = if code == Some(137) || code.is_none() {
            10
        } else {
            1
        };
        for i in 0..polls {
            let running = engine.inspect(t.container_id).await?.map(|f| f.running);
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
            via: Via::Engine,
        },
    ))
}
