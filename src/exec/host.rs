//! Running a wrapped call directly on the host (mode "off", or the main session under
//! "non-main"): same wrapper, same marker, cwd confined to the agent workspace by the caller.

use super::CallEnd;
use super::capture::{HeadTail, MarkerScanner};
use super::kill::kill_marked;
use super::{
    CallLimits, ExecOutcome, ExecRequest, OutputSink, new_call_id, split_status, wrapped_argv,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const DRAIN_GRACE: Duration = Duration::from_millis(150);

/// The environment of a host call: a minimal base (no inherited secrets), then config env, then
/// call env.
pub fn host_env(
    workspace: &Path,
    config_env: &BTreeMap<String, String>,
    call_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        "/usr/local/bin:/usr/bin:/bin".to_string(),
    );
    env.insert("HOME".to_string(), workspace.to_string_lossy().into_owned());
    env.extend(config_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(call_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

pub async fn run(
    cwd: &Path,
    env: &BTreeMap<String, String>,
    req: &ExecRequest,
    limits: CallLimits,
    sink: Option<&OutputSink>,
) -> std::io::Result<ExecOutcome> {
    let call_id = new_call_id();
    let argv = wrapped_argv(&call_id, &req.command, req.stdin.as_deref());
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .env("CLAWDEN_CALL", &call_id)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    // The wrapper leads its own session, so a timeout can also kill children that cleared the
    // call marker from their environment (see `kill`).
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let mut out = HeadTail::new(limits.max_output_bytes);
    let mut err = HeadTail::new(limits.max_output_bytes);
    let mut scanner = MarkerScanner::new(&call_id);
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let (mut out_open, mut err_open) = (true, true);
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut timed_out = false;
    let (mut ob, mut eb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    while out_open || err_open {
        let until = drain_until.unwrap_or(deadline);
        tokio::select! {
            r = stdout.read(&mut ob), if out_open => match r {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    if let Some(f) = sink {
                        f(false, &ob[..n]);
                    }
                    out.push(&ob[..n])
                }
            },
            r = stderr.read(&mut eb), if err_open => match r {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    let plain = scanner.feed(&eb[..n]);
                    if let Some(f) = sink {
                        f(true, &plain);
                    }
                    err.push(&plain);
                    if scanner.found().is_some() && drain_until.is_none() {
                        drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                }
            },
            _ = tokio::time::sleep_until(until) => {
                if drain_until.is_none() { timed_out = true; }
                break;
            }
        }
    }
    if scanner.found().is_none() {
        err.push(&scanner.finish());
    }
    if timed_out {
        let id = call_id.clone();
        let _ = tokio::task::spawn_blocking(move || kill_marked(&id, Duration::from_millis(1500)))
            .await;
    }
    let status = tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .ok()
        .and_then(|r| r.ok());
    let code = scanner.found().or_else(|| status.and_then(|s| s.code()));
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
            ..Default::default()
        },
    ))
}
