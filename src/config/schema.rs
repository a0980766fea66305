//! The on-disk schema, as written by users (every field optional; defaults live in `resolve`).
//!
//! Outside the sandbox sections unknown keys are ignored (an OpenClaw `openclaw.json` carries many
//! unrelated settings); inside them an unknown key or a wrong type is an error naming its full path.

use super::size::{ByteSize, Cpus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole config file: clawden's own or an OpenClaw `openclaw.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileConfig {
    pub agents: Option<AgentsSection>,
    pub session: Option<SessionSection>,
    pub tools: Option<ToolsSection>,
    /// `clawden serve` (clawden's own section; strict).
    pub serve: Option<ServeSection>,
    /// clawden extension: who may run what (`crate::policy`).
    pub policy: Option<crate::policy::PolicySection>,
    /// clawden extension: principals and their trust levels.
    pub users: Option<crate::policy::UsersSection>,
}

/// `serve`: who may call the service and how much it carries at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServeSection {
    /// Callers by uid (and optionally gid) and their roles. Unset: the uid that started
    /// `serve`, every role.
    pub peers: Option<Vec<ServePeer>>,
    /// Accept callers from other pid namespaces (their pid reads as 0). Default false.
    pub allow_other_pid_namespaces: Option<bool>,
    /// Calls running at once, over all sandboxes (default 64).
    pub max_calls: Option<usize>,
    /// Calls running at once in one sandbox or direct session (default 8).
    pub max_calls_per_sandbox: Option<usize>,
    /// Seconds of silence before a stream sends a heartbeat (default 15).
    pub heartbeat_seconds: Option<u64>,
    /// Seconds a finished call stays queryable (default 600).
    pub retention_seconds: Option<u64>,
}

/// One `serve.peers` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServePeer {
    pub uid: u32,
    pub gid: Option<u32>,
    /// `gateway`, `approver`, `operator`, `reader`.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentsSection {
    pub defaults: Option<AgentDefaults>,
    pub list: Option<Vec<AgentListEntry>>,
    /// The newer keyed form; when a file has both, `entries` wins and `list` is ignored (OC).
    pub entries: Option<BTreeMap<String, AgentEntry>>,
    /// The keys of `entries` in the order the file writes them ("the first entry" is the default
    /// agent when none says `default: true`); filled by `parse_config`.
    #[serde(skip)]
    pub entries_order: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDefaults {
    pub workspace: Option<String>,
    pub sandbox: Option<SandboxSection>,
}

/// `agents.list[]` entry (the OpenClaw form).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentListEntry {
    pub id: String,
    /// The default agent: the first entry with `default: true`, else the first entry. (OC)
    pub default: Option<bool>,
    pub workspace: Option<String>,
    pub sandbox: Option<SandboxSection>,
    pub tools: Option<AgentTools>,
}

/// `agents.entries.<id>` (the newer keyed form).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEntry {
    pub default: Option<bool>,
    pub workspace: Option<String>,
    pub sandbox: Option<SandboxSection>,
    pub tools: Option<AgentTools>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTools {
    pub sandbox: Option<ToolsSandbox>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSection {
    /// Ignored with a warning: the main session is always `main` (OC).
    pub main_key: Option<String>,
    pub scope: Option<SessionScope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionScope {
    PerSender,
    Global,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolsSection {
    pub sandbox: Option<ToolsSandbox>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolsSandbox {
    pub tools: Option<ToolPolicySection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolPolicySection {
    pub allow: Option<Vec<String>>,
    pub also_allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

/// `agents.defaults.sandbox`, `agents.list[].sandbox`, `agents.entries.<id>.sandbox`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SandboxSection {
    pub mode: Option<Mode>,
    pub scope: Option<Scope>,
    pub workspace_access: Option<WorkspaceAccess>,
    pub workspace_root: Option<String>,
    pub docker: Option<DockerSection>,
    pub prune: Option<PruneSection>,
    /// clawden extension: limits of individual tool calls.
    pub calls: Option<CallsSection>,
    /// clawden extension: which naming epoch new containers get (`legacy` scope keys and slugs,
    /// or `workspace`-qualified keys and `workspace-<32 hex>` names).
    pub naming: Option<Naming>,
    /// Legacy (OC): `true` → scope `session`, `false` → scope `shared`, mapped with a warning;
    /// `scope` wins when both are set.
    pub per_session: Option<bool>,
}

/// The naming epoch of the containers clawden creates (sandbox.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    /// Scope key as is; name = prefix + slug (`<readable>-<sha256[0:8]>`).
    #[default]
    Legacy,
    /// Non-shared scope keys end in `:workspace:<sha256(agent workspace)[0:32]>`; name =
    /// prefix + `workspace-<sha256(scope key)[0:32]>`.
    Workspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Off,
    NonMain,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    Session,
    Agent,
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkspaceAccess {
    None,
    Ro,
    Rw,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PruneSection {
    pub idle_hours: Option<u64>,
    pub max_age_days: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CallsSection {
    /// `uid:gid` that direct (unsandboxed) calls run as when clawden runs as root. Unset: the
    /// agent workspace's owner (never root: a root-owned workspace is refused until this is set).
    pub direct_user: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub max_output_bytes: Option<ByteSize>,
    pub max_read_bytes: Option<ByteSize>,
    pub max_write_bytes: Option<ByteSize>,
}

/// `sandbox.docker` (OpenClaw names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DockerSection {
    pub image: Option<String>,
    pub container_prefix: Option<String>,
    pub workdir: Option<String>,
    pub read_only_root: Option<bool>,
    pub tmpfs: Option<Vec<String>>,
    pub network: Option<String>,
    pub user: Option<String>,
    pub cap_drop: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub setup_command: Option<String>,
    pub pids_limit: Option<u64>,
    pub memory: Option<ByteSize>,
    pub memory_swap: Option<ByteSize>,
    pub cpus: Option<Cpus>,
    pub ulimits: Option<BTreeMap<String, UlimitValue>>,
    pub seccomp_profile: Option<String>,
    pub apparmor_profile: Option<String>,
    pub dns: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub binds: Option<Vec<String>>,
    pub dangerously_allow_reserved_container_targets: Option<bool>,
    pub dangerously_allow_external_bind_sources: Option<bool>,
    pub dangerously_allow_container_namespace_join: Option<bool>,
    /// Accept a custom seccompProfile that re-allows what Docker's default refuses.
    pub dangerously_allow_permissive_seccomp: Option<bool>,
}

/// A ulimit: one number (soft = hard) or `{ soft, hard }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UlimitValue {
    Both(i64),
    Pair(UlimitPair),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UlimitPair {
    pub soft: i64,
    pub hard: i64,
}

impl UlimitValue {
    pub fn soft_hard(self) -> (i64, i64) {
        match self {
            UlimitValue::Both(v) => (v, v),
            UlimitValue::Pair(p) => (p.soft, p.hard),
        }
    }
}
