//! Tool-call commands: `exec`, (`read`, `write`), `audit`.

use super::errors::CliFailure;
use super::{Context, GlobalArgs, config_error, out, out_json};
use crate::display::escape;
use crate::engine::docker::DockerEngine;
use crate::exec::{ExecOutcome, ExecRequest};
use crate::exit_codes;
use crate::exit_codes::ErrorClass;
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
    /// Run in the sandbox of a run kept by `clawden run --keep-on-failure` (its key).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["session", "agent"])]
    pub run: Option<String>,
    /// The command, run by `/bin/sh -c` (never a login shell). One word is a shell string
    /// (`-- 'echo hi; exit 3'`); several words are an argv: each is single-quoted and they are
    /// joined, so `-- sh -c 'echo hi'` runs sh with `-c` and `echo hi`, and quotes, spaces, `$`,
    /// newlines and empty words arrive as written.
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

/// One call per process: a single-threaded runtime (blocking work still goes to its pool)
/// starts faster than worker threads would.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `--env K=V` words (exec, run) as a map; a word without `=` is a usage error.
pub(super) fn parse_env(
    words: &[String],
) -> Result<std::collections::BTreeMap<String, String>, CliFailure> {
    words
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliFailure {
                    class: ErrorClass::Usage,
                    code: "invalid_env",
                    message: format!("--env {} is not K=V", crate::display::quote(kv)),
                    fix: "write --env NAME=value".into(),
                })
        })
        .collect()
}

/// Connect lazily: direct sessions need no engine, so an unreachable engine is only an error
/// when a container is needed.
pub(super) async fn supervisor(ctx: Context) -> Supervisor {
    // A one-shot call reuses the daemon's earlier `/version` answer (same daemon process only).
    let state_dir = ctx.env.state_dir();
    let engine: Arc<dyn crate::engine::ContainerEngine> =
        match DockerEngine::connect_remembered(&state_dir).await {
            Ok(e) => Arc::new(e),
            Err(e) => Arc::new(crate::engine::unreachable::Unreachable(e)),
        };
    Supervisor::new(engine, ctx.config, ctx.env)
}

/// A failed call: [`super::errors::report`] with its class (a malformed session key is a
/// usage error, an unreachable engine an engine error, a refusal a refusal — from every
/// command alike).
pub(super) fn call_error(json: bool, e: &CallError) -> u8 {
    super::errors::report(json, e)
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

/// `exec --json`: the outcome on the wire (typed, camelCase; bytes as UTF-8 or base64).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecJson<'a> {
    exit_code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    stdout_encoding: &'static str,
    stderr_encoding: &'static str,
    stdout_truncated: bool,
    stderr_truncated: bool,
    stdout_bytes: u64,
    stderr_bytes: u64,
    duration_ms: u64,
    timed_out: bool,
    oom_killed: bool,
    container_died: bool,
    container_name: &'a Option<String>,
    /// Which path ran the call: `agent`, `engine` (fallback) or `host`.
    via: crate::exec::Via,
}

pub fn exec_json(o: &ExecOutcome) -> serde_json::Value {
    let (stdout, stdout_encoding) = encode(&o.stdout);
    let (stderr, stderr_encoding) = encode(&o.stderr);
    serde_json::to_value(ExecJson {
        exit_code: o.exit_code,
        signal: o.signal,
        stdout,
        stderr,
        stdout_encoding,
        stderr_encoding,
        stdout_truncated: o.stdout_truncated,
        stderr_truncated: o.stderr_truncated,
        stdout_bytes: o.stdout_bytes,
        stderr_bytes: o.stderr_bytes,
        duration_ms: o.duration_ms,
        timed_out: o.timed_out,
        oom_killed: o.oom_killed,
        container_died: o.container_died,
        container_name: &o.container_name,
        via: o.via,
    })
    .unwrap_or_default()
}

pub fn exec(g: &GlobalArgs, mut a: ExecArgs) -> ExitCode {
    let ctx = match &a.run {
        // A kept run: planned with its own profile, file and layer, under its key.
        Some(key) => match super::run::kept_context(g, key) {
            Ok(c) => {
                a.session = Some(key.clone());
                c
            }
            Err(f) => return super::errors::fail(a.json, &f),
        },
        None => match Context::load(g) {
            Ok(c) => c,
            Err(e) => return config_error(a.json, &e),
        },
    };
    let env = match parse_env(&a.env) {
        Ok(e) => e,
        Err(f) => return super::errors::fail(a.json, &f),
    };
    let stdin = if a.stdin {
        use std::io::Read;
        let mut data = Vec::new();
        if let Err(e) = std::io::stdin()
            .lock()
            .take(crate::exec::MAX_STDIN_BYTES as u64 + 1)
            .read_to_end(&mut data)
        {
            return super::errors::fail(
                a.json,
                &CliFailure {
                    class: ErrorClass::Failure,
                    code: "input_error",
                    message: format!("cannot read stdin: {e}"),
                    fix: String::new(),
                },
            );
        }
        Some(data)
    } else {
        None
    };
    let req = ExecRequest {
        stdin,
        session: a.session.clone(),
        agent: a.agent.clone(),
        command: crate::exec::argv::command_from_words(&a.command),
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
            // The command never ran: the error's own class, like every other command.
            Err(e) => ExitCode::from(call_error(a.json, &e)),
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
        // Sessions, paths and targets come from callers and sandboxes: escaped.
        text.push_str(&format!(
            "{t}  {:<7} {:<5} {}  {} -> {}{}{code}  {}ms\n",
            escape(&e.decision),
            escape(&e.op),
            escape(&e.session),
            escape(&e.subject),
            escape(&e.target),
            escape(&rule),
            e.duration_ms
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
    let (default_agent, scope) = crate::config::resolve::session_settings(&ctx.config);
    // A malformed session key is reported by the supervisor below; the cap then does not matter.
    let agent = crate::decide::resolve_session(
        a.session.as_deref(),
        a.agent.as_deref(),
        &default_agent,
        scope,
    )
    .map(|s| s.agent_id)
    .unwrap_or(default_agent);
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
        return super::errors::fail(
            a.json,
            &CliFailure {
                class: ErrorClass::Failure,
                code: "input_error",
                message: format!("cannot read the content: {e}"),
                fix: "check --from".into(),
            },
        );
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
                    out(&format!(
                        "wrote {} bytes to {}\n",
                        r.bytes_written,
                        escape(&r.path)
                    ));
                }
                ExitCode::SUCCESS
            }
            Err(e) => ExitCode::from(call_error(a.json, &e)),
        }
    })
}
