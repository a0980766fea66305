//! The engine's inputs (request, principal, session context) and its answer (evaluation).

use serde::Serialize;
use std::path::PathBuf;

/// What a caller wants to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Request {
    /// Run a command.
    Exec {
        command: CommandLine,
        /// The resolved working directory, if known (shown, not judged).
        cwd: Option<PathBuf>,
    },
    /// Use a tool a gateway asks about.
    Tool { name: String },
    /// Read or write a file; `path` is the host path (a sandbox path already mapped).
    File { path: PathBuf, access: FileAccess },
}

/// A command as a shell string (parsed) or an argv (run without a shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

impl CommandLine {
    /// The text flags are looked for in (an argv joined by spaces; offsets refer to it).
    pub fn text(&self) -> String {
        match self {
            CommandLine::Shell(s) => s.clone(),
            CommandLine::Argv(a) => a.join(" "),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAccess {
    Read,
    Write,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Principal {
    /// A principal id (`telegram:123`), as given by `--principal` or the API.
    Id(String),
    /// A local caller that said it acts as the owner (the CLI without `--principal`).
    LocalOwner,
    /// No principal: blocked.
    Anonymous,
}

/// What the engine needs to know about the session, taken from the caller (never from the
/// process environment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionContext {
    /// The session runs in a sandbox (else: directly on the host).
    pub sandboxed: bool,
    /// Host directories the session reaches without `allowedPaths`: the agent workspace for
    /// direct sessions, the mounts' host sources for sandboxed ones.
    pub roots: Vec<PathBuf>,
    /// The home directory `~` stands for in paths and commands.
    pub home: Option<PathBuf>,
}

impl SessionContext {
    /// The context of a planned session: sandboxed or not, and its roots — the agent
    /// workspace for direct sessions, the host sources of its workspace and bind mounts for
    /// sandboxed ones. `home` is what `~` means (the caller's, not the process's, choice).
    pub fn from_plan(plan: &crate::decide::SandboxPlan, home: Option<PathBuf>) -> Self {
        use crate::decide::MountSource;
        let roots = if plan.sandboxed {
            plan.container
                .mounts
                .iter()
                .filter(|m| {
                    matches!(
                        m.source,
                        MountSource::Workspace | MountSource::Agent | MountSource::Bind
                    )
                })
                .map(|m| m.host.clone())
                .collect()
        } else {
            vec![plan.agent_workspace.clone()]
        };
        SessionContext {
            sandboxed: plan.sandboxed,
            roots,
            home,
        }
    }
}

/// The outcome: allow, deny, or ask a human. Ordered by strictness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Ask,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Ask => "ask",
            Decision::Deny => "deny",
        }
    }
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// Where the rule lives: `policy.exec.deny[1]`, `users.list[0]`, `defaults.exec.deny`.
    pub rule: String,
    /// The file it came from (`profile strict`, a path) or `default`.
    pub source: String,
    /// What this rule decides.
    pub decision: Decision,
    /// What matched, in words.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// The class of a flag: its decision comes from `policy.flags.<class>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FlagClass {
    ControlCharacters,
    Injection,
}

impl FlagClass {
    pub fn key(self) -> &'static str {
        match self {
            FlagClass::ControlCharacters => "controlCharacters",
            FlagClass::Injection => "injection",
        }
    }
}

/// Something suspicious in the request text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    /// Stable code: `control_character`, `nul`, `ansi_escape`, `bidi_override`, `zero_width`,
    /// `decoded_payload_to_shell`, `ifs_expansion`, `hidden_after_spaces`, `carriage_return`.
    pub code: &'static str,
    pub class: FlagClass,
    pub severity: Severity,
    /// Byte offset in the request text.
    pub offset: usize,
    pub detail: String,
}

/// The answer: the strictest decision of every match, every match, every flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub decision: Decision,
    pub principal: ResolvedPrincipal,
    pub matched: Vec<Match>,
    pub flags: Vec<Flag>,
}

/// The principal after looking it up in `users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPrincipal {
    pub id: Option<String>,
    pub trust_level: super::TrustLevel,
    /// The per-user `tools` list, if any (narrows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// `users.owner`, `users.list[1]`, `unknown`, `local owner`.
    pub rule: String,
}
