//! Tool-call commands: `exec`, (`read`, `write`), `audit`.

use super::{Context, GlobalArgs, config_error, out, out_json, report_error};
use crate::engine::docker::DockerEngine;
use crate::exec::{ExecOutcome, ExecRequest};
use crate::exit_codes;
use crate::supervisor::Supervisor;
use crate::supervisor::calls::CallError;
use base64::Engine as _;
use clap::Args;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(long, value_name = "KEY")]
    pub session: Option<String>,
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// Working directory (container path; relative to the workdir).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Extra environment, repeatable.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Timeout, e.g. 30s, 5m (default: sandbox.calls.timeoutSeconds).
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<humantime::Duration>,
    /// Pass clawden's own stdin to the command (at most 64 KiB); without it the command's stdin
    /// is closed.
    #[arg(long)]
    pub stdin: bool,
    /// One JSON document on stdout instead of streaming the output.
    #[arg(long)]
    pub json: bool,
    /// The command; its words are joined with spaces and run by `/bin/sh -lc`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries newer than this, e.g. 10m, 2h (default: 24h).
    #[arg(long, value_name = "DUR", default_value = "24h")]
    pub since: humantime::Duration,
    #[arg(long)]
    pub json: bool,
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Connect lazily: direct sessions need no engine, so an unreachable engine is only an error
/// when a container is needed.
pub(super) async fn supervisor(ctx: Context) -> Supervisor {
    let engine: Arc<dyn crate::engine::ContainerEngine> = match DockerEngine::connect().await {
        Ok(e) => Arc::new(e),
        Err(e) => Arc::new(crate::engine::unreachable::Unreachable(e)),
    };
    Supervisor::new(engine, ctx.config, ctx.env)
}

pub(super) fn call_error(json: bool, e: &CallError) -> u8 {
    report_error(json, e.code(), &e.to_string(), &e.fix());
    match e {
        CallError::Refused(_) => exit_codes::REFUSED,
        CallError::Failed(_) => exit_codes::ENGINE,
    }
}

/// Bytes as JSON: UTF-8 text when valid, base64 otherwise.
pub fn encode(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64",
        ),
    }
}

pub fn exec_json(o: &ExecOutcome) -> serde_json::Value {
    let (stdout, so) = encode(&o.stdout);
    let (stderr, se) = encode(&o.stderr);
    serde_json::json!({
        "exitCode": o.exit_code, "signal": o.signal,
        "stdout": stdout, "stderr": stderr, "stdoutEncoding": so, "stderrEncoding": se,
        "stdoutTruncated": o.stdout_truncated, "stderrTruncated": o.stderr_truncated,
        "stdoutBytes": o.stdout_bytes, "stderrBytes": o.stderr_bytes,
        "durationMs": o.duration_ms, "timedOut": o.timed_out, "oomKilled": o.oom_killed,
        "containerDied": o.container_died, "containerName": o.container_name,
    })
}

pub fn exec(g: &GlobalArgs, a: ExecArgs) -> ExitCode {
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    let mut env = std::collections::BTreeMap::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            report_error(
                a.json,
                "invalid_env_name",
                &format!("--env {kv:?} is not K=V"),
                "write --env NAME=value",
            );
            return ExitCode::from(exit_codes::EXEC_CLAWDEN_ERROR);
        };
        env.insert(k.to_string(), v.to_string());
    }
    let stdin = if a.stdin {
        use std::io::Read;
        let mut data = Vec::new();
        if let Err(e) = std::io::stdin()
            .lock()
            .take(crate::exec::MAX_STDIN_BYTES as u64 + 1)
            .read_to_end(&mut data)
        {
            report_error(
                a.json,
                "input_error",
                &format!("cannot read stdin: {e}"),
                "",
            );
            return ExitCode::from(exit_codes::EXEC_CLAWDEN_ERROR);
        }
        Some(data)
    } else {
        None
    };
    let req = ExecRequest {
        stdin,
        session: a.session.clone(),
        agent: a.agent.clone(),
        command: a.command.join(" "),
        workdir: a.workdir.clone(),
        env,
        timeout: a.timeout.map(Duration::from),
        ..Default::default()
    };
    let stream = !a.json && std::io::stdout().is_terminal();
    runtime().block_on(async {
        let sup = supervisor(ctx).await;
        let sink = |is_err: bool, data: &[u8]| {
            if is_err {
                let _ = std::io::stderr().write_all(data);
            } else {
                let _ = std::io::stdout().write_all(data).and_then(|_| std::io::stdout().flush());
            }
        };
        let result = sup.exec_streaming(req, if stream { Some(&sink) } else { None }).await;
        match result {
            Ok(o) => {
                if a.json {
                    out_json(&exec_json(&o));
                } else if !stream {
                    let _ = std::io::stdout().write_all(&o.stdout);
                    let _ = std::io::stderr().write_all(&o.stderr);
                }
                if !a.json {
                    if o.stdout_truncated || o.stderr_truncated {
                        eprintln!("clawden: output truncated (stdout {} bytes, stderr {} bytes in all)", o.stdout_bytes, o.stderr_bytes);
                    }
                    if o.timed_out {
                        eprintln!("clawden: timed out after {} ms; every process of the call was killed", o.duration_ms);
                    }
                    if o.oom_killed {
                        eprintln!("clawden: killed by the out-of-memory killer (docker.memory)");
                    }
                    if o.container_died {
                        eprintln!("clawden: the sandbox container died during the call; the next call gets a fresh one");
                    }
                }
                let code = match (o.exit_code, o.timed_out, o.container_died) {
                    (_, true, _) => 128 + 9,
                    (_, _, true) => exit_codes::EXEC_CLAWDEN_ERROR as i32,
                    (Some(c), _, _) => c,
                    (None, _, _) => exit_codes::EXEC_CLAWDEN_ERROR as i32,
                };
                ExitCode::from(code.clamp(0, 255) as u8)
            }
            Err(e) => {
                call_error(a.json, &e);
                ExitCode::from(exit_codes::EXEC_CLAWDEN_ERROR)
            }
        }
    })
}

pub fn audit(g: &GlobalArgs, a: AuditArgs) -> ExitCode {
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    let log = crate::audit::AuditLog::new(&ctx.env.state_dir());
    let since =
        crate::supervisor::now_ms().saturating_sub(Duration::from(a.since).as_millis() as u64);
    let entries = log.read_since(since);
    if a.json {
        out_json(&serde_json::json!({ "entries": entries }));
        return ExitCode::SUCCESS;
    }
    let mut text = String::new();
    for e in &entries {
        let t = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(e.time_ms),
        );
        let rule = if e.rule.is_empty() {
            String::new()
        } else {
            format!(" [{}]", e.rule)
        };
        let code = e
            .exit_code
            .map(|c| format!(" exit {c}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "{t}  {:<7} {:<5} {}  {} -> {}{rule}{code}  {}ms\n",
            e.decision, e.op, e.session, e.subject, e.target, e.duration_ms
        ));
    }
    if entries.is_empty() {
        text.push_str("no audit entries in that period\n");
    }
    out(&text);
    ExitCode::SUCCESS
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[arg(long, value_name = "KEY")]
    pub session: Option<String>,
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// Container path (relative paths start at the workdir); for direct sessions, a path in the
    /// agent workspace.
    pub path: String,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    #[arg(long)]
    pub length: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[arg(long, value_name = "KEY")]
    pub session: Option<String>,
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    pub path: String,
    /// Read the content from this host file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub from: Option<std::path::PathBuf>,
    /// Create missing parent directories.
    #[arg(long)]
    pub mkdir: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn read(g: &GlobalArgs, a: ReadArgs) -> ExitCode {
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    let req = crate::supervisor::files::ReadRequest {
        session: a.session.clone(),
        agent: a.agent.clone(),
        path: a.path.clone(),
        offset: a.offset,
        length: a.length,
    };
    runtime().block_on(async {
        let sup = supervisor(ctx).await;
        match sup.read(req).await {
            Ok(r) => {
                if a.json {
                    let (content, encoding) = encode(&r.content);
                    out_json(&serde_json::json!({"content": content, "encoding": encoding, "size": r.size, "truncated": r.truncated, "path": r.path}));
                } else {
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(&r.content).and_then(|_| stdout.flush());
                    if r.truncated {
                        eprintln!("clawden: truncated: {} of {} bytes shown", r.content.len(), r.size);
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => ExitCode::from(call_error(a.json, &e)),
        }
    })
}

pub fn write(g: &GlobalArgs, a: WriteArgs) -> ExitCode {
    use std::io::Read;
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    // Read at most one byte over the session's write cap: a huge input never fills memory, and
    // the supervisor refuses what is over the cap.
    let (main_key, scope) = crate::config::resolve::session_settings(&ctx.config);
    // A malformed session key is reported by the supervisor below; the cap then does not matter.
    let agent =
        crate::decide::resolve_session(a.session.as_deref(), a.agent.as_deref(), &main_key, scope)
            .map(|s| s.agent_id)
            .unwrap_or_else(|_| "main".into());
    let limit = crate::config::resolve(&ctx.config, &agent, &ctx.env)
        .calls
        .max_write_bytes
        .value
        .0;
    let mut content = Vec::new();
    let read = match &a.from {
        Some(p) => std::fs::File::open(p).and_then(|f| f.take(limit + 1).read_to_end(&mut content)),
        None => std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut content),
    };
    if let Err(e) = read {
        report_error(
            a.json,
            "input_error",
            &format!("cannot read the content: {e}"),
            "check --from",
        );
        return ExitCode::from(exit_codes::FAILURE);
    }
    let req = crate::supervisor::files::WriteRequest {
        session: a.session.clone(),
        agent: a.agent.clone(),
        path: a.path.clone(),
        content,
        mkdir: a.mkdir,
    };
    runtime().block_on(async {
        let sup = supervisor(ctx).await;
        match sup.write(req).await {
            Ok(r) => {
                if a.json {
                    out_json(&r);
                } else {
                    out(&format!("wrote {} bytes to {}\n", r.bytes_written, r.path));
                }
                ExitCode::SUCCESS
            }
            Err(e) => ExitCode::from(call_error(a.json, &e)),
        }
    })
}
