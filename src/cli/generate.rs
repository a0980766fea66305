//! What is generated from the clap definitions: shell completions, the man page, and the
//! version line (clawden's version and the agent protocol it speaks).

use clap::{Args, CommandFactory, ValueEnum};
use std::process::ExitCode;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {}

/// `clawden 0.1.0 (agent protocol 1)`: the protocol number tells whether a host and an agent
/// built apart can talk (both hellos must carry the same).
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{} (agent protocol {})",
            env!("CARGO_PKG_VERSION"),
            clawden_agent::proto::PROTOCOL_VERSION
        )
    })
}

/// The whole command line as clap knows it, with the version line.
pub fn command() -> clap::Command {
    super::Cli::command().version(version())
}

pub fn completions(a: CompletionsArgs) -> ExitCode {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command(), "clawden", &mut buf);
    super::out(&String::from_utf8_lossy(&buf));
    ExitCode::SUCCESS
}

pub fn man(_: ManArgs) -> ExitCode {
    let mut buf = Vec::new();
    match clap_mangen::Man::new(command()).render(&mut buf) {
        Ok(()) => {
            super::out(&String::from_utf8_lossy(&buf));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("clawden: cannot render the man page: {e}");
            ExitCode::from(crate::exit_codes::FAILURE)
        }
    }
}
