//! Commands that talk to the engine: `ensure`, `image build`.

use super::{Context, GlobalArgs, config_error, out, out_json, report_error};
use crate::engine::ContainerEngine;
use crate::engine::docker::DockerEngine;
use crate::exit_codes;
use crate::supervisor::{Supervisor, SupervisorError};
use clap::{Args, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct EnsureArgs {
    /// Session key or short name (default: the agent's main session).
    #[arg(long, value_name = "KEY")]
    pub session: Option<String>,
    /// Agent id.
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a sandbox image locally through the Engine build API (no registry).
    Build {
        #[arg(value_enum, default_value = "minimal")]
        name: ImageName,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImageName {
    Minimal,
    /// Debian rootfs (mmdebstrap, needs root and the Debian mirror) + images/toolbox/Dockerfile.
    Toolbox,
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(super) fn supervisor_error(json: bool, e: &SupervisorError) -> ExitCode {
    report_error(json, e.code(), &e.to_string(), &e.fix());
    let code = match e {
        SupervisorError::Session(_) => exit_codes::USAGE,
        SupervisorError::Problems(_) => exit_codes::CONFIG_PROBLEMS,
        SupervisorError::NotSandboxed(_)
        | SupervisorError::Drift { .. }
        | SupervisorError::Foreign(_) => exit_codes::REFUSED,
        SupervisorError::Engine(_)
        | SupervisorError::Mismatch { .. }
        | SupervisorError::SetupFailed { .. } => exit_codes::ENGINE,
        SupervisorError::Io(_) => exit_codes::FAILURE,
    };
    ExitCode::from(code)
}

pub fn ensure(g: &GlobalArgs, a: EnsureArgs) -> ExitCode {
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(a.json, &e),
    };
    runtime().block_on(async {
        let engine = match DockerEngine::connect().await {
            Ok(e) => Arc::new(e),
            Err(e) => return supervisor_error(a.json, &e.into()),
        };
        let sup = Supervisor::new(engine, ctx.config, ctx.env);
        match sup.ensure(a.session.as_deref(), a.agent.as_deref()).await {
            Ok(ens) => {
                if a.json {
                    out_json(&ens);
                } else {
                    let verb = if ens.created { "created" } else { "reused" };
                    out(&format!(
                        "{} {} ({}) for scope {} [{}]\n",
                        verb,
                        ens.container_name,
                        &ens.container_id[..12.min(ens.container_id.len())],
                        ens.scope_key,
                        ens.image
                    ));
                }
                ExitCode::SUCCESS
            }
            Err(e) => supervisor_error(a.json, &e),
        }
    })
}

pub fn image(_g: &GlobalArgs, cmd: ImageCommand) -> ExitCode {
    let ImageCommand::Build { name, json } = cmd;
    if let ImageName::Toolbox = name {
        return super::ops::image_toolbox(json);
    }
    let context = match crate::images::minimal_context() {
        Ok(c) => c,
        Err(e) => {
            report_error(json, "image_context", &e.to_string(), e.fix());
            return ExitCode::from(exit_codes::FAILURE);
        }
    };
    let show = std::io::stderr().is_terminal() && !json;
    runtime().block_on(async {
        let engine = match DockerEngine::connect().await {
            Ok(e) => e,
            Err(e) => return supervisor_error(json, &e.into()),
        };
        let progress = move |line: &str| {
            if show {
                eprintln!("  {line}");
            }
        };
        match engine
            .build_image(crate::images::MINIMAL_TAG, context, &progress)
            .await
        {
            Ok(id) => {
                if json {
                    out_json(&serde_json::json!({"image": crate::images::MINIMAL_TAG, "id": id}));
                } else {
                    out(&format!("built {} ({id})\n", crate::images::MINIMAL_TAG));
                }
                ExitCode::SUCCESS
            }
            Err(e) => supervisor_error(json, &e.into()),
        }
    })
}
