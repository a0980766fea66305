//! The policy in force: each section from the highest config layer that sets it (a `--policy`
//! file pushed last wins), plus OpenClaw's sandbox tool policy, already resolved per agent.

use super::schema::*;
use crate::config::LoadedConfig;
use crate::config::resolve::{EffectiveSandbox, Source};

/// A section and the layer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromLayer<T> {
    pub value: T,
    pub origin: String,
}

/// A list and the key it came from (`tools.sandbox.tools.allow`, or the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedList {
    pub key: String,
    pub origin: String,
    pub value: Vec<String>,
}

/// The policy one agent's calls are judged by. Unset sections get the smart defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectivePolicy {
    pub tools: Option<FromLayer<ToolRules>>,
    pub exec: Option<FromLayer<ExecRules>>,
    pub files: Option<FromLayer<FileRules>>,
    pub flags: Option<FromLayer<FlagRules>>,
    pub approvals: Option<FromLayer<ApprovalSettings>>,
    pub users: Option<FromLayer<UsersSection>>,
    /// OpenClaw's `tools.sandbox.tools.allow` (enforced for exec/read/write in sandboxes).
    pub sandbox_allow: Option<KeyedList>,
    /// OpenClaw's `tools.sandbox.tools.deny`.
    pub sandbox_deny: Option<KeyedList>,
}

fn keyed(s: &crate::config::Sourced<Vec<String>>, name: &str) -> KeyedList {
    match &s.source {
        Source::Default => KeyedList {
            key: format!("defaults.tools.sandbox.tools.{name}"),
            origin: "default".into(),
            value: s.value.clone(),
        },
        Source::Key { key, origin } => KeyedList {
            key: key.clone(),
            origin: origin.clone(),
            value: s.value.clone(),
        },
    }
}

fn take<T: Clone>(origin: &str, v: &Option<T>) -> Option<FromLayer<T>> {
    v.as_ref().map(|v| FromLayer {
        value: v.clone(),
        origin: origin.to_string(),
    })
}

impl EffectivePolicy {
    /// Resolve from the loaded layers and the agent's resolved sandbox (for its tool policy).
    pub fn from_config(cfg: &LoadedConfig, sandbox: &EffectiveSandbox) -> Self {
        let mut p = Self::from_layers(cfg);
        p.sandbox_allow = Some(keyed(&sandbox.tool_allow, "allow"));
        p.sandbox_deny = Some(keyed(&sandbox.tool_deny, "deny"));
        p
    }

    /// Only the `policy` and `users` sections of the layers (no sandbox tool policy).
    pub fn from_layers(cfg: &LoadedConfig) -> Self {
        let mut p = EffectivePolicy::default();
        // Highest layer first: the first that sets a section wins.
        for layer in cfg.layers.iter().rev() {
            let origin = &layer.origin;
            if let Some(pol) = &layer.file.policy {
                p.tools = p.tools.or_else(|| take(origin, &pol.tools));
                p.exec = p.exec.or_else(|| take(origin, &pol.exec));
                p.files = p.files.or_else(|| take(origin, &pol.files));
                p.flags = p.flags.or_else(|| take(origin, &pol.flags));
                p.approvals = p.approvals.or_else(|| take(origin, &pol.approvals));
            }
            p.users = p.users.or_else(|| take(origin, &layer.file.users));
        }
        p
    }
}
