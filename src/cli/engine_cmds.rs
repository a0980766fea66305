//! Commands that talk to the engine: `ensure`, `image build`.

use super::{Context, GlobalArgs, config_error, out, out_json};
use crate::engine::ContainerEngine;
use crate::engine::docker::DockerEngine;
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

/// A supervisor failure: [`super::errors::fail`] with its class.
pub(super) fn supervisor_error(json: bool, e: &SupervisorError) -> ExitCode {
    super::errors::fail(json, e)
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
                    use crate::display::escape;
                    out(&format!(
                        "{} {} ({}) for scope {} [{}]\n",
                        verb,
                        escape(&ens.container_name),
                        escape(ens.container_id.get(..12).unwrap_or(&ens.container_id)),
                        escape(&ens.scope_key),
                        escape(&ens.image)
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
    let (context, busybox) = match crate::images::minimal_context_and_source() {
        Ok(c) => c,
        Err(e) => {
            return super::errors::fail(
                json,
                &super::errors::CliFailure {
                    class: crate::exit_codes::ErrorClass::Failure,
                    code: "image_context",
                    message: e.to_string(),
                    fix: e.fix().to_string(),
                },
            );
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
                    out_json(&serde_json::json!({"image": crate::images::MINIMAL_TAG, "id": id, "busybox": busybox}));
                } else {
                    out(&format!(
                        "built {} ({id}) with busybox {busybox}\n",
                        crate::images::MINIMAL_TAG
                    ));
                }
                ExitCode::SUCCESS
            }
            Err(e) => supervisor_error(json, &e.into()),
        }
    })
}
