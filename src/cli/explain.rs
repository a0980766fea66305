use super::{Context, GlobalArgs, config_error, out, out_json};
use crate::exit_codes;
use crate::validate::HostContext;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Session key (`agent:<id>:<name>`), or a short name expanded to `agent:<agent>:<name>`.
    /// Default: the agent's main session.
    #[arg(long, value_name = "KEY")]
    pub session: Option<String>,
    /// Agent id (default: the one in the session key, else `main`).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, a: ExplainArgs) -> ExitCode {
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
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
        Err(e) => {
            return super::errors::fail(a.json, &e);
        }
    };
    let ex = crate::explain::explain(&eff, &plan, ctx.config_files());
    if a.json {
        out_json(&ex);
    } else {
        out(&crate::explain::render_human(&ex));
    }
    if plan.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit_codes::CONFIG_PROBLEMS)
    }
}
