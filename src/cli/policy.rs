//! `clawden policy check`: the policy's answer for one request, without running anything.
//! Exit 0 allow, 5 deny, 9 ask (see `crate::exit_codes`).

use super::{Context, GlobalArgs, config_error, out, out_json};
use crate::display::escape;
use crate::exit_codes;
use crate::policy::{
    CommandLine, Decision, EffectivePolicy, Evaluation, FileAccess, Principal, Request,
    SessionContext, evaluate,
};
use crate::validate::HostContext;
use clap::{ArgGroup, Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the decision (allow, deny, ask), every matched rule and every flag for a command,
    /// a tool or a path. Never runs anything. Exit 0 allow, 5 deny, 9 ask.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("request").required(true).args(["command", "tool", "path"])))]
pub struct CheckArgs {
    /// Session key (`agent:<id>:<name>`) or short name. Default: the agent's main session.
    #[arg(long, value_name = "KEY")]
    pub session: Option<String>,
    /// Agent id (default: the one in the session key, else `main`).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// The principal asking (`telegram:123`). Default: the local owner.
    #[arg(long, value_name = "ID")]
    pub principal: Option<String>,
    /// A YAML policy file (`policy:` and `users:` as in the config), above the config file.
    #[arg(long = "policy", value_name = "FILE")]
    pub policy_file: Option<PathBuf>,
    /// A tool name to check.
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// A host path to check (read, or write with --write).
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// With --path: check a write.
    #[arg(long, requires = "path")]
    pub write: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// The command, as `exec` would run it (words joined with spaces, parsed as shell).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(g: &GlobalArgs, c: PolicyCommand) -> ExitCode {
    match c {
        PolicyCommand::Check(a) => check(g, a),
    }
}

fn check(g: &GlobalArgs, a: CheckArgs) -> ExitCode {
    let mut ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    if let Some(p) = &a.policy_file {
        match crate::config::load::load_policy_file(p) {
            Ok(layer) => ctx.config.layers.push(layer),
            Err(e) => return config_error(a.json, &e),
        }
    }
    let host_ctx = HostContext::from_system(vec![ctx.env.state_dir().join("state")]);
    let decided = crate::decide::decide(
        &ctx.config,
        &ctx.env,
        &host_ctx,
        &crate::decide::RealHost,
        a.session.as_deref(),
        a.agent.as_deref(),
    );
    let (eff, plan) = match decided {
        Ok(x) => x,
        Err(e) => return super::errors::fail(a.json, &e),
    };
    let policy = EffectivePolicy::from_config(&ctx.config, &eff);
    let session = SessionContext::from_plan(&plan, ctx.env.home.clone());
    let principal = match &a.principal {
        Some(p) => Principal::Id(p.clone()),
        None => Principal::LocalOwner,
    };
    let request = if let Some(t) = a.tool {
        Request::Tool { name: t }
    } else if let Some(p) = a.path {
        Request::File {
            path: p,
            access: if a.write {
                FileAccess::Write
            } else {
                FileAccess::Read
            },
        }
    } else {
        Request::Exec {
            command: CommandLine::Shell(a.command.join(" ")),
            cwd: None,
        }
    };
    let e = evaluate(&request, &principal, &session, &policy);
    if a.json {
        out_json(&serde_json::json!({
            "sessionKey": plan.session.key,
            "sandboxed": plan.sandboxed,
            "request": request,
            "evaluation": e,
        }));
    } else {
        out(&render(&e));
    }
    ExitCode::from(match e.decision {
        Decision::Allow => exit_codes::OK,
        Decision::Deny => exit_codes::REFUSED,
        Decision::Ask => exit_codes::APPROVAL_REQUIRED,
    })
}

/// Human output; every request-derived value is escaped.
fn render(e: &Evaluation) -> String {
    let mut s = format!("decision: {}\n", e.decision.as_str());
    let who = e.principal.id.as_deref().unwrap_or("(none)");
    s.push_str(&format!(
        "principal: {} ({}, {})\n",
        escape(who),
        e.principal.trust_level.as_str(),
        e.principal.rule
    ));
    if e.matched.is_empty() {
        s.push_str("matched: none\n");
    } else {
        s.push_str("matched:\n");
        for m in &e.matched {
            s.push_str(&format!(
                "  {:<5} {} [{}]: {}\n",
                m.decision.as_str(),
                m.rule,
                escape(&m.source),
                escape(&m.detail)
            ));
        }
    }
    if !e.flags.is_empty() {
        s.push_str("flags:\n");
        for f in &e.flags {
            s.push_str(&format!(
                "  {} {:?} at byte {}: {}\n",
                f.code,
                f.severity,
                f.offset,
                escape(&f.detail)
            ));
        }
    }
    s
}
