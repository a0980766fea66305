//! The on-disk policy schema (`policy` and `users` in clawden's config, or a YAML `--policy`
//! file). Strict like the sandbox sections: an unknown key or a wrong type is an error naming
//! its full path.

use serde::{Deserialize, Serialize};

/// `policy: { tools, exec, files, flags, approvals }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySection {
    pub tools: Option<ToolRules>,
    pub exec: Option<ExecRules>,
    pub files: Option<FileRules>,
    pub flags: Option<FlagRules>,
    pub approvals: Option<ApprovalSettings>,
}

/// Tool names a gateway asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolRules {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub require_approval: Option<Vec<String>>,
}

/// Programs that may run, and command patterns that never run or need a human.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecRules {
    /// Programs (argv[0], compared by basename) that may run. Unset: any program.
    pub allow: Option<Vec<String>>,
    /// Argv patterns (`rm -rf`, `sudo`) and pipeline patterns (`curl | bash`) never run.
    pub deny: Option<Vec<String>>,
    /// Patterns that need a human.
    pub require_approval: Option<Vec<String>>,
    /// What a command the parser cannot verify gets (default `ask`).
    pub unverifiable: Option<Verdict>,
}

/// `deny` or `ask`: what a class of finding gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ask,
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileRules {
    /// Host paths reachable besides the session's own roots (the workspace). `~` is the home
    /// directory given in the session context.
    pub allowed_paths: Option<Vec<String>>,
    /// Host paths never reachable; they win over everything.
    pub denied_paths: Option<Vec<String>>,
}

/// What each flag class gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlagRules {
    /// Control characters, ANSI escapes, bidi overrides, zero-width characters, NUL (default deny).
    pub control_characters: Option<Verdict>,
    /// Injection shapes: decoded payloads piped to a shell, `$IFS`, hidden commands (default ask).
    pub injection: Option<Verdict>,
}

/// Approval timing (used by the approvals store, not by the pure engine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalSettings {
    pub timeout_seconds: Option<u64>,
    pub grant_ttl_seconds: Option<u64>,
}

/// `users: { owner, list }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UsersSection {
    pub owner: Option<OwnerEntry>,
    pub list: Option<Vec<UserEntry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OwnerEntry {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserEntry {
    pub id: String,
    pub name: Option<String>,
    pub trust_level: TrustLevel,
    /// Narrows the tools this user may use (never widens them).
    pub tools: Option<Vec<String>>,
}

/// How far a principal is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    /// Every tool; may approve.
    Owner,
    /// Every tool but settings and operator actions; policy applies.
    Trusted,
    /// No exec, no file tools, no external integrations.
    Limited,
    /// Refused.
    Blocked,
}

impl TrustLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Owner => "owner",
            TrustLevel::Trusted => "trusted",
            TrustLevel::Limited => "limited",
            TrustLevel::Blocked => "blocked",
        }
    }
}

/// A whole `--policy` file: the same shape as in clawden's config, at the top level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    pub policy: Option<PolicySection>,
    pub users: Option<UsersSection>,
}
