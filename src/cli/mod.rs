//! The command line: parse raw args (clap), turn them into a request, run it, map the outcome to
//! an exit code from [`crate::exit_codes`]. Human output on stdout, logs on stderr, `--json` gives
//! one JSON document on stdout.

mod attach;
mod calls;
mod doctor;
mod engine_cmds;
pub mod errors;
mod explain;
mod generate;
mod ops;
mod policy;
mod run;
mod serve;

use crate::config::{ConfigError, Env, LoadedConfig};
use crate::exit_codes;
use clap::{Args, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "clawden",
    version,
    about = "Sandbox supervisor for AI-agent tool calls: hardened Docker containers per session, agent or shared scope.",
    after_help = exit_code_help()
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Config file (JSON5; clawden's own or an OpenClaw openclaw.json). Default: $CLAWDEN_CONFIG,
    /// then $XDG_CONFIG_HOME/clawden/config.json5.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Layer a profile under the config: a built-in name (default, strict, ci) or a .json5 path.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a session gets: sandboxed or not, container, mounts, limits, tool policy, problems.
    Explain(explain::ExplainArgs),
    /// Return the session's sandbox container, creating or starting it if needed.
    Ensure(engine_cmds::EnsureArgs),
    /// Run a command for a session: in its sandbox, or on the host for direct sessions.
    Exec(calls::ExecArgs),
    /// Read a file of a session (through a bind mount; race-free on the host side).
    Read(calls::ReadArgs),
    /// Write a file of a session atomically (content from stdin or --from).
    Write(calls::WriteArgs),
    /// Show recent audit-log entries (one per tool-call decision).
    Audit(calls::AuditArgs),
    /// Build sandbox images locally.
    #[command(subcommand)]
    Image(engine_cmds::ImageCommand),
    /// List every sandbox container, and whether it matches the current config and image.
    List(ops::ListArgs),
    /// Remove sandboxes so they are recreated (with the current config) on next use.
    Recreate(ops::RecreateArgs),
    /// Remove sandboxes idle longer than idleHours or older than maxAgeDays (per agent).
    Prune(ops::PruneArgs),
    /// Check the engine, runtime, images and state dir, then a live hardened sandbox.
    Doctor(doctor::DoctorArgs),
    /// Serve the HTTP/1.1 + JSON API on a Unix socket for a gateway (see api/openapi.yaml).
    Serve(serve::ServeArgs),
    /// Attach to a call started through `clawden serve` (the shim a gateway spawns instead of
    /// `docker exec`; the token comes from CLAWDEN_ATTACH_TOKEN).
    Attach(attach::AttachArgs),
    /// Run one command in a brand-new disposable sandbox on a workspace (for CI): output
    /// streamed, the command's exit status, nothing left behind.
    Run(run::RunArgs),
    /// Ask the policy whether a command, tool or path would be allowed (never runs anything).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Print shell completions (bash, zsh or fish) generated from this command line.
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) generated from this command line.
    Man(generate::ManArgs),
}

fn exit_code_help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, meaning) in exit_codes::TABLE {
        s.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    s
}

/// Everything a command needs from the environment, loaded once.
pub struct Context {
    pub env: Env,
    pub config: LoadedConfig,
}

impl Context {
    pub fn load(g: &GlobalArgs) -> Result<Self, ConfigError> {
        let env = Env::from_process();
        let config = crate::config::load(g.config.as_deref(), g.profile.as_deref(), &env)?;
        Ok(Context { env, config })
    }

    pub fn config_files(&self) -> Vec<String> {
        self.config
            .layers
            .iter()
            .map(|l| l.origin.clone())
            .collect()
    }
}

/// An exec outcome as `exec --json` prints it (the service's wait-mode result too).
pub fn calls_json(o: &crate::exec::ExecOutcome) -> serde_json::Value {
    calls::exec_json(o)
}

/// Print to stdout; a closed pipe (`clawden list | head`) is not an error.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
}

/// Print one JSON document on stdout.
pub fn out_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => out(&(s + "\n")),
        Err(e) => eprintln!("clawden: cannot encode JSON: {e}"),
    }
}

/// An error as `{"error": {code, message, fix}}` (with --json, exact) or one line on stderr
/// with control characters escaped (messages quote sandbox-chosen keys and paths).
pub fn report_error(json: bool, code: &str, message: &str, fix: &str) {
    use crate::display::escape;
    if json {
        out_json(&serde_json::json!({"error": {"code": code, "message": message, "fix": fix}}));
    } else if fix.is_empty() {
        eprintln!("clawden: {}", escape(message));
    } else {
        eprintln!("clawden: {}\n  fix: {}", escape(message), escape(fix));
    }
}

/// A config that cannot be loaded: [`errors::fail`] with its class.
pub fn config_error(json: bool, e: &ConfigError) -> ExitCode {
    errors::fail(json, e)
}

pub fn run() -> ExitCode {
    // Parsed through `generate::command()` so `--version` names the agent protocol too.
    let parsed = generate::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    match cli.command {
        Command::Explain(a) => explain::run(&cli.global, a),
        Command::Ensure(a) => engine_cmds::ensure(&cli.global, a),
        Command::Image(c) => engine_cmds::image(&cli.global, c),
        Command::Exec(a) => calls::exec(&cli.global, a),
        Command::Audit(a) => calls::audit(&cli.global, a),
        Command::Read(a) => calls::read(&cli.global, a),
        Command::Write(a) => calls::write(&cli.global, a),
        Command::List(a) => ops::list(&cli.global, a),
        Command::Recreate(a) => ops::recreate(&cli.global, a),
        Command::Prune(a) => ops::prune(&cli.global, a),
        Command::Doctor(a) => doctor::run(&cli.global, a),
        Command::Serve(a) => serve::run(&cli.global, a),
        Command::Policy(c) => policy::run(&cli.global, c),
        Command::Run(a) => run::run(&cli.global, a),
        Command::Attach(a) => attach::attach(a),
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAWDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
