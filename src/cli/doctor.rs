//! `clawden doctor [--json] [--agent ID]`: the checks of [`crate::doctor`] as a table or JSON;
//! exit code `DOCTOR_FAILED` when a check fails (warnings do not fail).

use super::engine_cmds::runtime;
use super::{Context, GlobalArgs, config_error, out, out_json};
use crate::engine::ContainerEngine;
use crate::engine::docker::DockerEngine;
use crate::exit_codes;
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Whose effective settings the live self-check uses (default: main).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, a: DoctorArgs) -> ExitCode {
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    let report = runtime().block_on(async {
        let engine = DockerEngine::connect()
            .await
            .map(|e| Arc::new(e) as Arc<dyn ContainerEngine>);
        crate::doctor::run(engine, ctx.config, ctx.env, a.agent.as_deref()).await
    });
    if a.json {
        out_json(&report);
    } else {
        out(&report.render());
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit_codes::DOCTOR_FAILED)
    }
}
