//! Direct calls (mode "off", or the main session under "non-main") on the host. Nothing a sandbox
//! wrote runs by itself: `/bin/sh -c` (never a login shell), a clean environment from an explicit
//! allowlist, a fresh private `HOME` outside every workspace, and — when clawden runs as root —
//! the agent workspace's owner as the user (never root unless configured). Every process of the
//! call lives under a one-shot reaper ([`super::reaper`]), so the call's whole tree dies when the
//! command exits, on timeout, and when clawden itself is killed.

use super::CallEnd;
use super::capture::HeadTail;
use super::{CallLimits, ExecOutcome, ExecRequest, OutputSink, Via};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `PATH` of a direct call (nothing of clawden's own environment reaches a call: its
/// environment is exactly [`host_env`]'s).
pub const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment of a host call: `PATH`, `HOME` (a private directory outside the workspace),
/// then config env, then call env — nothing inherited from clawden's own environment.
pub fn host_env(
    home: &Path,
    config_env: &BTreeMap<String, String>,
    call_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), SAFE_PATH.to_string());
    env.insert("HOME".to_string(), home.to_string_lossy().into_owned());
    env.extend(config_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(call_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// The `clawden` binary (for its reaper): `$CLAWDEN_BIN`, the running executable when it is
/// `clawden`, else next to it or one directory up (test binaries live in `target/*/deps`).
pub fn clawden_binary() -> std::io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CLAWDEN_BIN").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    if exe.file_name().is_some_and(|n| n == "clawden") {
        return Ok(exe);
    }
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("clawden"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the clawden binary (its reaper runs direct calls) was not found; set CLAWDEN_BIN",
            )
        })
}

/// Who a direct call runs as: `None` to stay as clawden's own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Who a direct call runs as — pure. Not root: clawden's own user (`None`). Root:
/// `calls.directUser` when set, else the agent workspace's owner, and never root by default (a
/// root-owned workspace is refused until `calls.directUser` says so).
pub fn decide_direct_user(
    configured: Option<&str>,
    workspace: &Path,
    owner: Option<(u32, u32)>,
    clawden_is_root: bool,
) -> Result<Option<RunAs>, crate::validate::Refusal> {
    use crate::validate::{Refusal, RefusalCode};
    if !clawden_is_root {
        return Ok(None);
    }
    if let Some(u) = configured {
        let parsed = u
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        return match parsed {
            Some((uid, gid)) => Ok(Some(RunAs { uid, gid })),
            None => Err(Refusal {
                code: RefusalCode::InvalidValue,
                value: u.to_string(),
                message: format!("calls.directUser {u:?} is not uid:gid"),
                fix: "set calls.directUser to numeric uid:gid, e.g. \"1000:1000\"".into(),
            }),
        };
    }
    match owner {
        Some((0, _)) => Err(Refusal {
            code: RefusalCode::PrivilegeRequested,
            value: workspace.display().to_string(),
            message: format!(
                "direct calls run as the agent workspace's owner, and {} is owned by root",
                workspace.display()
            ),
            fix: "chown the agent workspace to the user direct calls should run as, or set calls.directUser (\"0:0\" runs them as root)".into(),
        }),
        Some((uid, gid)) => Ok(Some(RunAs { uid, gid })),
        None => Err(Refusal {
            code: RefusalCode::MissingSource,
            value: workspace.display().to_string(),
            message: format!("agent workspace {} does not exist yet", workspace.display()),
            fix: "create the agent workspace directory, owned by the user direct calls should run as".into(),
        }),
    }
}

/// How `explain` shows who direct calls run as.
pub fn describe_direct_user(
    configured: Option<&str>,
    workspace: &Path,
    owner: Option<(u32, u32)>,
    clawden_is_root: bool,
) -> String {
    match decide_direct_user(configured, workspace, owner, clawden_is_root) {
        Ok(None) => "clawden's own user".to_string(),
        Ok(Some(r)) if configured.is_some() && r.uid == 0 => {
            format!("{}:{} (calls.directUser) — ROOT", r.uid, r.gid)
        }
        Ok(Some(r)) if configured.is_some() => format!("{}:{} (calls.directUser)", r.uid, r.gid),
        Ok(Some(r)) => format!("{}:{} (the agent workspace's owner)", r.uid, r.gid),
        Err(e) => format!("refused: {}", e.message),
    }
}

pub async fn run(
    cwd: &Path,
    env: &BTreeMap<String, String>,
    run_as: Option<RunAs>,
    req: &ExecRequest,
    limits: CallLimits,
    sink: Option<&OutputSink>,
) -> std::io::Result<ExecOutcome> {
    let started = Instant::now();
    let id = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    let mut command = tokio::process::Command::new(clawden_binary()?);
    command
        .arg(super::reaper::SUBCOMMAND)
        .arg(std::process::id().to_string())
        .arg(id(run_as.map(|r| r.uid)))
        .arg(id(run_as.map(|r| r.gid)))
        .arg("--")
        .args(["/bin/sh", "-c", &req.command])
        .env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(if req.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    let mut child = command.spawn()?;
    let reaper_pid = child.id();
    if let (Some(data), Some(mut stdin)) = (req.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
            let _ = stdin.shutdown().await;
        });
    }
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let mut out = HeadTail::new(limits.max_output_bytes);
    let mut err = HeadTail::new(limits.max_output_bytes);
    let deadline = tokio::time::Instant::now() + limits.timeout;
    // After a timeout the reaper TERMs, waits its grace, then KILLs: allow for that.
    let hard_stop = deadline + super::reaper::GRACE + Duration::from_secs(2);
    let (mut out_open, mut err_open) = (true, true);
    let mut timed_out = false;
    let (mut ob, mut eb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    while out_open || err_open {
        let until = if timed_out { hard_stop } else { deadline };
        tokio::select! {
            r = stdout.read(&mut ob), if out_open => match r {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    if let Some(f) = sink {
                        f(false, &ob[..n]);
                    }
                    out.push(&ob[..n]);
                }
            },
            r = stderr.read(&mut eb), if err_open => match r {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    if let Some(f) = sink {
                        f(true, &eb[..n]);
                    }
                    err.push(&eb[..n]);
                }
            },
            _ = tokio::time::sleep_until(until) => {
                if timed_out {
                    break;
                }
                timed_out = true;
                if let Some(pid) = reaper_pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
    }
    let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(r) => r.ok(),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    let (exit_code, signal) = if timed_out {
        (None, Some(9))
    } else {
        match status {
            Some(s) => match (s.code(), s.signal()) {
                (_, Some(sig)) => (Some(128 + sig), Some(sig)),
                (Some(c), None) => (Some(c), None),
                _ => (None, None),
            },
            None => (None, None),
        }
    };
    Ok(ExecOutcome::from_capture(
        out,
        err,
        (exit_code, signal),
        started,
        CallEnd {
            timed_out,
            via: Via::Host,
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_calls_never_run_as_root_by_default() {
        let ws = Path::new("/w");
        assert_eq!(
            decide_direct_user(None, ws, Some((0, 0)), false).unwrap(),
            None
        );
        assert_eq!(
            decide_direct_user(None, ws, Some((1000, 1001)), true).unwrap(),
            Some(RunAs {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(
            decide_direct_user(None, ws, Some((0, 0)), true)
                .unwrap_err()
                .code
                .as_str(),
            "privilege_requested"
        );
        assert_eq!(
            decide_direct_user(Some("0:0"), ws, Some((0, 0)), true).unwrap(),
            Some(RunAs { uid: 0, gid: 0 })
        );
        assert_eq!(
            decide_direct_user(Some("root"), ws, None, true)
                .unwrap_err()
                .code
                .as_str(),
            "invalid_value"
        );
        assert!(describe_direct_user(Some("0:0"), ws, None, true).contains("ROOT"));
        assert!(describe_direct_user(None, ws, Some((5, 6)), true).starts_with("5:6"));
    }
}
