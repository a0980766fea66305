//! `clawden run`: one command in a brand-new disposable sandbox, for CI.
//!
//! A run gets its own session key (`run-<12 hex>`, never reused, never shared), the `ci`
//! profile unless another is given, and the workspace (the current directory by default)
//! writable at the workdir — or, with `--copy`, a private copy whose changed files come back
//! only when the command succeeds. The output streams live; the exit status is the command's.
//! The sandbox, its staged mounts and its directory are removed on every way out: success,
//! failure, timeout, SIGINT/SIGTERM (the call's tree is killed first); after `kill -9` the next
//! `run` or `prune` removes them (the run's owner, pid and start time, is gone).

use super::errors::CliFailure;
use super::{Context, GlobalArgs, config_error, out_json};
use crate::config::load::ConfigLayer;
use crate::exec::ExecRequest;
use crate::exit_codes::{self, ErrorClass};
use crate::supervisor::SupervisorError;
use crate::supervisor::run::{self as runs, Owner, RunRecord};
use crate::supervisor::workcopy;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workspace (default: the current directory), mounted writable at the workdir.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Work on a private copy of the workspace; changed files are copied back only when the
    /// command succeeds (new and changed regular files; deletions and symlinks are reported).
    #[arg(long)]
    pub copy: bool,
    /// The sandbox image (default: the profile's).
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    /// Timeout, e.g. 10m (default: sandbox.calls.timeoutSeconds; the ci profile: 30m).
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<humantime::Duration>,
    /// Extra environment for the command, repeatable.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Network mode (default: none). `bridge` gives the job network access.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Keep the sandbox when the command fails, and print how to look inside and remove it.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Remove a run kept with --keep-on-failure (its key), then exit.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["copy", "keep_on_failure"])]
    pub remove: Option<String>,
    /// One summary document on stdout; the command's output then goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// The command: one word is a shell string (`run -- 'make test'`); several words are
    /// quoted and kept as they are (`run -- sh -c 'echo hi'`).
    #[arg(
        last = true,
        value_name = "COMMAND",
        required_unless_present = "remove"
    )]
    pub command: Vec<String>,
}

/// The config layer a run adds on top of the profile and the user's file.
fn layer(workspace: &std::path::Path, root: &std::path::Path, a: &RunArgs) -> String {
    let mut docker = serde_json::Map::new();
    if let Some(i) = &a.image {
        docker.insert("image".into(), i.clone().into());
    }
    if let Some(n) = &a.network {
        docker.insert("network".into(), n.clone().into());
    }
    serde_json::json!({
        "agents": { "defaults": {
            "workspace": workspace,
            "sandbox": {
                "mode": "all",
                "scope": "session",
                "workspaceAccess": "rw",
                "workspaceRoot": root,
                "docker": docker,
            }
        }}
    })
    .to_string()
}

/// Loads the config a run plans with: the profile (`ci` unless given), the user's file, and
/// the run's own layer.
fn run_context(
    config: Option<&std::path::Path>,
    profile: Option<&str>,
    layer_text: &str,
) -> Result<Context, crate::config::ConfigError> {
    let env = crate::config::Env::from_process();
    let mut config = crate::config::load(config, Some(profile.unwrap_or("ci")), &env)?;
    config.layers.push(ConfigLayer {
        origin: "clawden run".into(),
        file: crate::config::parse_config(layer_text, "clawden run")?,
    });
    Ok(Context { env, config })
}

fn failure(json: bool, class: ErrorClass, code: &'static str, message: String) -> ExitCode {
    super::errors::fail(
        json,
        &CliFailure {
            class,
            code,
            message,
            fix: String::new(),
        },
    )
}

/// `::group::` folding under GitHub Actions (setup and teardown lines), on stderr as the rest
/// of clawden's messages; plain lines elsewhere.
struct Log {
    github: bool,
    quiet: bool,
}

impl Log {
    fn group(&self, title: &str) {
        if self.github && !self.quiet {
            println!("::group::{title}");
        }
    }
    fn end(&self) {
        if self.github && !self.quiet {
            println!("::endgroup::");
        }
    }
    fn line(&self, s: &str) {
        if !self.quiet {
            eprintln!("clawden: {}", crate::display::escape(s));
        }
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    key: String,
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    duration_ms: u64,
    stdout_bytes: u64,
    stderr_bytes: u64,
    container: String,
    image: String,
    /// Which path ran the command (`agent`, or `engine` when the agent was unavailable).
    via: Option<crate::exec::Via>,
    kept: bool,
    copied_back: Option<workcopy::CopyBack>,
    timings: Timings,
}

#[derive(serde::Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Timings {
    create_ms: u64,
    first_call_ms: u64,
    teardown_ms: u64,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub fn run(g: &GlobalArgs, a: RunArgs) -> ExitCode {
    let log = Log {
        github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        quiet: a.json,
    };
    if let Some(key) = &a.remove {
        return remove(g, &a, key);
    }
    let env = match super::calls::parse_env(&a.env) {
        Ok(e) => e,
        Err(f) => return super::errors::fail(a.json, &f),
    };
    let dir = match a
        .workspace
        .clone()
        .map_or_else(std::env::current_dir, Ok)
        .and_then(|d| d.canonicalize())
    {
        Ok(d) if d.is_dir() => d,
        Ok(d) => {
            return failure(
                a.json,
                ErrorClass::Usage,
                "invalid_workspace",
                format!("{} is not a directory", d.display()),
            );
        }
        Err(e) => {
            return failure(
                a.json,
                ErrorClass::Usage,
                "invalid_workspace",
                format!("the workspace: {e}"),
            );
        }
    };
    let owner = Owner::current();
    let key = runs::new_key();
    // The state directory is the user's (a profile or file cannot move it), so a first load
    // without the run layer finds it.
    let state_dir = crate::config::Env::from_process().state_dir();
    let run_dir = runs::run_dir(&state_dir, &key);
    let workspace = if a.copy {
        run_dir.join("work")
    } else {
        dir.clone()
    };
    let layer_text = layer(&workspace, &run_dir.join("sandboxes"), &a);
    let ctx = match run_context(g.config.as_deref(), g.profile.as_deref(), &layer_text) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    let mut record = RunRecord {
        key: key.clone(),
        owner: owner.clone(),
        container: None,
        kept: false,
        config: g.config.clone(),
        profile: Some(g.profile.clone().unwrap_or_else(|| "ci".into())),
        layer: layer_text.clone(),
    };
    if let Err(e) = runs::write_record(&state_dir, &record) {
        return failure(
            a.json,
            ErrorClass::Failure,
            "io_error",
            format!("cannot make {}: {e}", run_dir.display()),
        );
    }
    let timeout = a.timeout.map(Duration::from);
    let command = crate::exec::argv::command_from_words(&a.command);
    super::calls::runtime().block_on(async move {
        let sup = super::calls::supervisor(ctx).await;
        log.group("clawden: setup");
        // Leftovers of runs whose clawden was killed.
        if let Ok(gone) = sup.sweep_runs().await
            && !gone.is_empty()
        {
            log.line(&format!("removed {} run(s) whose clawden was gone", gone.len()));
        }
        let started = Instant::now();
        let mut timings = Timings::default();
        // From here on every way out removes the run.
        let outcome = async {
            if a.copy {
                let (d, w) = (dir.clone(), workspace.clone());
                tokio::task::spawn_blocking(move || workcopy::copy_in(&d, &w))
                    .await
                    .map_err(|e| SupervisorError::Io(e.to_string()))?
                    .map_err(|e| {
                        SupervisorError::Io(format!("cannot copy the workspace: {e}"))
                    })?;
            }
            let (_, mut plan) = sup.plan(Some(&key), None)?;
            if !plan.problems.is_empty() {
                return Err(SupervisorError::Problems(plan.problems.clone()));
            }
            plan.container
                .labels
                .insert(runs::OWNER_LABEL.into(), owner.label());
            record.container = Some(plan.container.name.clone());
            runs::write_record(sup.env().state_dir().as_path(), &record)
                .map_err(|e| SupervisorError::Io(e.to_string()))?;
            let t = Instant::now();
            let ensured = sup.ensure_plan(&plan).await?;
            timings.create_ms = ms(t.elapsed());
            log.line(&format!(
                "sandbox {} ({}), workspace {}{}",
                ensured.container_name,
                plan.container.image,
                dir.display(),
                if a.copy { " (a private copy)" } else { "" }
            ));
            Ok::<_, SupervisorError>((plan, ensured))
        }
        .await;
        log.end();
        let (plan, ensured) = match outcome {
            Ok(x) => x,
            Err(e) => {
                let _ = sup.remove_run(&key).await;
                return ExitCode::from(super::errors::report(a.json, &e));
            }
        };
        let req = ExecRequest {
            session: Some(key.clone()),
            command,
            env,
            timeout,
            ..Default::default()
        };
        let json = a.json;
        let sink = move |is_err: bool, data: &[u8]| {
            if is_err || json {
                let _ = std::io::stderr().write_all(data);
            } else {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(data).and_then(|_| o.flush());
            }
        };
        let t = Instant::now();
        let signal = async {
            use tokio::signal::unix::{SignalKind, signal};
            let (mut int, mut term) = (
                signal(SignalKind::interrupt()).ok()?,
                signal(SignalKind::terminate()).ok()?,
            );
            tokio::select! {
                _ = int.recv() => Some(2),
                _ = term.recv() => Some(15),
            }
        };
        // A signal drops the call: the agent connection closes and the agent kills the tree.
        let result = tokio::select! {
            r = sup.exec_streaming(req, Some(&sink)) => Ok(r),
            Some(sig) = signal => Err(sig),
        };
        timings.first_call_ms = ms(t.elapsed());
        let (code, o) = match result {
            Err(sig) => {
                log.line(&format!("stopped by signal {sig}; the command's processes were killed"));
                (128 + sig, None)
            }
            Ok(Err(e)) => {
                let _ = sup.remove_run(&key).await;
                return ExitCode::from(super::calls::call_error(a.json, &e));
            }
            Ok(Ok(o)) => {
                let code = match (o.exit_code, o.timed_out, o.container_died) {
                    (_, true, _) => exit_codes::RUN_TIMEOUT as i32,
                    (_, _, true) | (None, _, _) => exit_codes::EXEC_CLAWDEN_ERROR as i32,
                    (Some(c), _, _) => c,
                };
                if o.timed_out {
                    log.line(&format!(
                        "timed out after {} ms; every process of the command was killed",
                        o.duration_ms
                    ));
                }
                if o.container_died {
                    log.line("the sandbox died during the command");
                }
                (code, Some(o))
            }
        };
        let keep = a.keep_on_failure && code != 0;
        log.group("clawden: teardown");
        let t = Instant::now();
        let mut copied_back = None;
        let mut code = code;
        if keep {
            record.kept = true;
            let _ = runs::write_record(sup.env().state_dir().as_path(), &record);
            log.line(&format!(
                "kept sandbox {} (the command failed). Look inside: clawden exec --run {key} -- sh. Remove it: clawden run --remove {key}",
                ensured.container_name
            ));
        } else {
            // The sandbox goes first: nothing can change the copy while it is brought back.
            if let Err(e) = sup
                .remove_sandbox(&ensured.container_id, &ensured.container_name)
                .await
            {
                log.line(&format!("cannot remove the sandbox: {e}"));
            }
            if a.copy && code == 0 {
                let (w, d) = (workspace.clone(), dir.clone());
                match tokio::task::spawn_blocking(move || workcopy::copy_back(&w, &d)).await {
                    Ok(Ok(r)) => {
                        log.line(&format!(
                            "copied back {} changed file(s){}{}",
                            r.written.len(),
                            if r.deleted_in_copy.is_empty() {
                                String::new()
                            } else {
                                format!("; {} deletion(s) not applied", r.deleted_in_copy.len())
                            },
                            if r.skipped.is_empty() {
                                String::new()
                            } else {
                                format!("; {} symlink(s) or special file(s) not brought back", r.skipped.len())
                            },
                        ));
                        copied_back = Some(r);
                    }
                    Ok(Err(e)) => {
                        log.line(&format!("cannot copy the changes back: {e}"));
                        code = exit_codes::FAILURE as i32;
                    }
                    Err(e) => {
                        log.line(&format!("cannot copy the changes back: {e}"));
                        code = exit_codes::FAILURE as i32;
                    }
                }
            }
            if let Err(e) = sup.remove_run(&key).await {
                log.line(&format!("cannot remove the run's files: {e}"));
            }
        }
        timings.teardown_ms = ms(t.elapsed());
        log.end();
        if a.json {
            out_json(&Summary {
                key: key.clone(),
                exit_code: o.as_ref().and_then(|o| o.exit_code),
                signal: o.as_ref().and_then(|o| o.signal),
                timed_out: o.as_ref().is_some_and(|o| o.timed_out),
                duration_ms: ms(started.elapsed()),
                stdout_bytes: o.as_ref().map_or(0, |o| o.stdout_bytes),
                stderr_bytes: o.as_ref().map_or(0, |o| o.stderr_bytes),
                container: ensured.container_name.clone(),
                image: plan.container.image.clone(),
                via: o.as_ref().map(|o| o.via),
                kept: keep,
                copied_back,
                timings,
            });
        }
        ExitCode::from(code.clamp(0, 255) as u8)
    })
}

/// `run --remove KEY`: remove a kept run.
fn remove(g: &GlobalArgs, a: &RunArgs, key: &str) -> ExitCode {
    let ctx = match kept_context(g, key) {
        Ok(c) => c,
        Err(f) => return super::errors::fail(a.json, &f),
    };
    super::calls::runtime().block_on(async {
        let sup = super::calls::supervisor(ctx).await;
        match sup.remove_run(key).await {
            Ok(()) => {
                if a.json {
                    out_json(&serde_json::json!({"removed": key}));
                } else {
                    eprintln!("clawden: removed run {key}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => ExitCode::from(super::errors::report(a.json, &e)),
        }
    })
}

/// The config of a kept run (`clawden exec --run`, `run --remove`): its profile, file and layer
/// (`--config`/`--profile` given now win).
pub fn kept_context(g: &GlobalArgs, key: &str) -> Result<Context, CliFailure> {
    let usage = |code: &'static str, message: String| CliFailure {
        class: ErrorClass::Usage,
        code,
        message,
        fix: "a run key is run-<12 hex digits>, as `run --keep-on-failure` printed it".into(),
    };
    if !runs::valid_key(key) {
        return Err(usage(
            "invalid_run",
            format!("{} is not a run key", crate::display::quote(key)),
        ));
    }
    let env = crate::config::Env::from_process();
    let record = runs::read_record(&env.state_dir(), key)
        .ok_or_else(|| usage("unknown_run", format!("no run {key}")))?;
    let config = g.config.clone().or(record.config.clone());
    let profile = g.profile.clone().or(record.profile.clone());
    run_context(config.as_deref(), profile.as_deref(), &record.layer).map_err(|e| CliFailure {
        class: ErrorClass::Config,
        code: "config_error",
        message: e.to_string(),
        fix: String::new(),
    })
}
