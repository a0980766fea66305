//! `clawden serve`: the service on a Unix socket (see [`crate::serve`]).

use super::{Context, GlobalArgs, config_error, report_error};
use crate::engine::docker::DockerEngine;
use crate::exit_codes;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Socket path. Default: /run/clawden/clawden.sock as root, else
    /// $XDG_RUNTIME_DIR/clawden/clawden.sock. Systemd socket activation (LISTEN_FDS) wins.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

pub fn run(g: &GlobalArgs, a: ServeArgs) -> ExitCode {
    let ctx = match Context::load(g) {
        Ok(c) => c,
        Err(e) => return config_error(false, &e),
    };
    let uid = nix::unistd::geteuid().as_raw();
    let settings = match crate::serve::Settings::from_config(&ctx.config, uid) {
        Ok(s) => s,
        Err(e) => {
            report_error(false, "config_error", &e, "correct the serve section");
            return ExitCode::from(exit_codes::CONFIG_ERROR);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let entered = rt.enter();
    let bound = match crate::serve::socket::bind(a.socket.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            report_error(false, "socket_unusable", &e.to_string(), &e.fix());
            return ExitCode::from(exit_codes::FAILURE);
        }
    };
    drop(entered);
    let r = rt.block_on(async move {
        let (engine, info): (Arc<dyn crate::engine::ContainerEngine>, serde_json::Value) =
            match DockerEngine::connect().await {
                Ok(e) => {
                    let info = crate::engine::ContainerEngine::info(&e)
                        .await
                        .ok()
                        .map(|i| serde_json::json!({"version": i.version, "apiVersion": i.api_version, "runtime": i.default_runtime, "runcVersion": i.runc_version}))
                        .unwrap_or(serde_json::Value::Null);
                    (Arc::new(e), info)
                }
                Err(e) => {
                    tracing::warn!("engine unreachable: {e}; sandboxed calls fail until it is up");
                    (
                        Arc::new(crate::engine::unreachable::Unreachable(e)),
                        serde_json::Value::Null,
                    )
                }
            };
        let sup = crate::supervisor::Supervisor::new(engine, ctx.config, ctx.env);
        let path = bound.path.clone();
        let r = crate::serve::run(sup, settings, bound, info).await;
        // The socket is ours (we held its lock): remove it on the way out.
        if path.is_absolute() {
            let _ = std::fs::remove_file(&path);
        }
        r
    });
    // Blocking agent connections of detached calls' attaches must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(false, "serve_failed", &e.to_string(), "");
            ExitCode::from(exit_codes::FAILURE)
        }
    }
}
