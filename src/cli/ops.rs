//! Operator commands on existing sandboxes — `list`, `recreate`, `prune` — and
//! `image build toolbox`.

use super::engine_cmds::{runtime, supervisor_error};
use super::{Context, GlobalArgs, config_error, out, out_json};
use crate::display::escape;
use crate::engine::docker::DockerEngine;
use crate::supervisor::ops::{Removed, SandboxInfo, Selector, human_duration};
use crate::supervisor::{Supervisor, now_ms};
use clap::{ArgGroup, Args};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["all", "session", "agent"])))]
pub struct RecreateArgs {
    /// Every sandbox on the engine.
    #[arg(long)]
    pub all: bool,
    /// The sandbox with this scope key (as `clawden list` shows it), else the one serving this
    /// session under the current config.
    #[arg(long, value_name = "KEY")]
    pub session: Option<String>,
    /// Every sandbox of this agent.
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// Do not ask. (Without a terminal on stdin clawden never asks.)
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only show what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

/// Load the config, connect, and run `f` with a supervisor.
fn with_supervisor<F>(g: &GlobalArgs, json: bool, f: F) -> ExitCode
where
    F: AsyncFnOnce(Supervisor) -> ExitCode,
{
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(json, &e),
    };
    runtime().block_on(async {
        let engine = match DockerEngine::connect().await {
            Ok(e) => Arc::new(e),
            Err(e) => return supervisor_error(json, &e.into()),
        };
        f(Supervisor::new(engine, ctx.config, ctx.env)).await
    })
}

pub fn list(g: &GlobalArgs, a: ListArgs) -> ExitCode {
    with_supervisor(g, a.json, async |sup| match sup.list().await {
        Ok(list) => {
            if a.json {
                out_json(&serde_json::json!({ "sandboxes": list }));
            } else {
                out(&render_list(&list));
            }
            ExitCode::SUCCESS
        }
        Err(e) => supervisor_error(a.json, &e),
    })
}

/// The human table of `clawden list`, hints below it.
pub fn render_list(list: &[SandboxInfo]) -> String {
    if list.is_empty() {
        return "no sandboxes\n".into();
    }
    let header = [
        "NAME",
        "SCOPE KEY",
        "AGENT",
        "STATE",
        "IMAGE",
        "CONFIG",
        "AGE",
        "IDLE",
    ];
    // Names, keys and images come from container labels: escaped (security.md, principle 8).
    let esc = |s: &str| escape(s).into_owned();
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|s| {
            [
                esc(&s.name),
                esc(&s.scope_key),
                esc(&s.agent_id),
                if s.running { "running" } else { "stopped" }.into(),
                if s.image_matches {
                    esc(&s.image)
                } else {
                    format!("{} (outdated)", esc(&s.image))
                },
                if s.config_current { "current" } else { "stale" }.into(),
                human_duration(s.age_seconds),
                human_duration(s.idle_seconds),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut s = line(&header.map(String::from));
    for r in &rows {
        s.push_str(&line(r));
    }
    let hints: Vec<String> = list
        .iter()
        .filter_map(|i| {
            i.hint
                .as_ref()
                .map(|h| format!("  {}: {}\n", esc(&i.name), escape(h)))
        })
        .collect();
    if !hints.is_empty() {
        s.push_str("\nhints:\n");
        s.extend(hints);
    }
    s
}

pub fn recreate(g: &GlobalArgs, a: RecreateArgs) -> ExitCode {
    let selector = match (&a.session, &a.agent) {
        (Some(s), _) => Selector::Session(s.clone()),
        (_, Some(id)) => Selector::Agent(id.clone()),
        _ => Selector::All,
    };
    let ask = !a.force && std::io::stdin().is_terminal();
    with_supervisor(g, a.json, async |sup| {
        let targets = match sup.select(&selector).await {
            Ok(t) => t,
            Err(e) => return supervisor_error(a.json, &e),
        };
        if targets.is_empty() {
            if a.json {
                out_json(&serde_json::json!({ "removed": [] }));
            } else {
                out("no sandbox matches\n");
            }
            return ExitCode::SUCCESS;
        }
        if ask {
            for t in &targets {
                eprintln!("  {}", escape(&t.name));
            }
            if !confirm(&format!("Remove {} sandbox(es)? [y/N] ", targets.len())) {
                return super::errors::fail(
                    a.json,
                    &super::errors::CliFailure {
                        class: crate::exit_codes::ErrorClass::Declined,
                        code: "declined",
                        message: "nothing was removed".into(),
                        fix: String::new(),
                    },
                );
            }
        }
        match sup.remove_sandboxes(&targets).await {
            Ok(removed) => {
                print_removed(a.json, None, &removed);
                ExitCode::SUCCESS
            }
            Err(e) => supervisor_error(a.json, &e),
        }
    })
}

/// Ask on stderr, read one line from stdin: only `y`/`yes` agrees.
fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `prune`: `Some(dry_run)`; `recreate`: `None`.
fn print_removed(json: bool, prune: Option<bool>, removed: &[Removed]) {
    let dry_run = prune == Some(true);
    if json {
        match prune {
            Some(d) => out_json(&serde_json::json!({ "dryRun": d, "removed": removed })),
            None => out_json(&serde_json::json!({ "removed": removed })),
        }
        return;
    }
    if removed.is_empty() {
        out("nothing to remove\n");
        return;
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut s = String::new();
    for r in removed {
        s.push_str(&format!(
            "{verb} {} (scope {})",
            escape(&r.name),
            escape(&r.scope_key)
        ));
        if let Some(reason) = &r.reason {
            s.push_str(&format!(": {reason}"));
        }
        s.push('\n');
    }
    if !dry_run {
        s.push_str("(recreated on next use)\n");
    }
    out(&s);
}

pub fn prune(g: &GlobalArgs, a: PruneArgs) -> ExitCode {
    with_supervisor(g, a.json, async |sup| {
        match sup.prune(now_ms(), a.dry_run).await {
            Ok(removed) => {
                print_removed(a.json, Some(a.dry_run), &removed);
                ExitCode::SUCCESS
            }
            Err(e) => supervisor_error(a.json, &e),
        }
    })
}

/// `clawden image build toolbox`: rootfs, import, Dockerfile — all through the Engine API.
pub fn image_toolbox(json: bool) -> ExitCode {
    let verbose = std::io::stderr().is_terminal() && !json;
    runtime().block_on(async {
        let engine = match DockerEngine::connect().await {
            Ok(e) => e,
            Err(e) => return supervisor_error(json, &e.into()),
        };
        let progress = move |line: &str| {
            if line.starts_with("step ") {
                eprintln!("{line}");
            } else if verbose {
                eprintln!("  {line}");
            }
        };
        let started = std::time::Instant::now();
        match crate::images::build_toolbox(&engine, &progress).await {
            Ok(id) => {
                let tag = crate::images::TOOLBOX_TAG;
                if json {
                    out_json(&serde_json::json!({"image": tag, "id": id}));
                } else {
                    out(&format!(
                        "built {tag} ({id}) in {}s\n",
                        started.elapsed().as_secs()
                    ));
                }
                ExitCode::SUCCESS
            }
            Err(crate::images::ToolboxError::Engine(e)) => supervisor_error(json, &e.into()),
            Err(crate::images::ToolboxError::Image(e)) => super::errors::fail(
                json,
                &super::errors::CliFailure {
                    class: crate::exit_codes::ErrorClass::Failure,
                    code: "image_build",
                    message: e.to_string(),
                    fix: e.fix().to_string(),
                },
            ),
        }
    })
}
