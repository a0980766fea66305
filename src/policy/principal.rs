//! Principals → trust levels, and what each level may use.

use super::effective::EffectivePolicy;
use super::schema::TrustLevel;
use super::types::{Principal, ResolvedPrincipal};

/// Tools that change settings or act on the operator's behalf: owners only.
pub const OPERATOR_TOOLS: &[&str] = &["gateway", "settings", "config", "cron", "nodes", "elevated"];
/// Tools that run commands.
pub const EXEC_TOOLS: &[&str] = &["exec", "process", "bash", "shell"];
/// Tools that touch files.
pub const FILE_TOOLS: &[&str] = &["read", "write", "edit", "apply_patch", "delete"];
/// Tools that reach outside (messages, browsers, the web).
pub const INTEGRATION_TOOLS: &[&str] = &[
    "browser",
    "canvas",
    "web_fetch",
    "web_search",
    "send_email",
    "message",
    "sessions_send",
    "sessions_spawn",
];

/// Look a principal up in `users`. Unknown principals are blocked.
pub fn resolve_principal(p: &Principal, policy: &EffectivePolicy) -> ResolvedPrincipal {
    let users = policy.users.as_ref().map(|u| &u.value);
    let blocked = |id: Option<String>, rule: &str| ResolvedPrincipal {
        id,
        trust_level: TrustLevel::Blocked,
        tools: None,
        rule: rule.into(),
    };
    match p {
        Principal::Anonymous => blocked(None, "no principal"),
        Principal::LocalOwner => ResolvedPrincipal {
            id: users.and_then(|u| u.owner.as_ref()).map(|o| o.id.clone()),
            trust_level: TrustLevel::Owner,
            tools: None,
            rule: "local owner".into(),
        },
        Principal::Id(id) => {
            if users
                .and_then(|u| u.owner.as_ref())
                .is_some_and(|o| &o.id == id)
            {
                return ResolvedPrincipal {
                    id: Some(id.clone()),
                    trust_level: TrustLevel::Owner,
                    tools: None,
                    rule: "users.owner".into(),
                };
            }
            let found = users
                .and_then(|u| u.list.as_ref())
                .and_then(|l| l.iter().enumerate().find(|(_, e)| &e.id == id));
            match found {
                Some((i, e)) => ResolvedPrincipal {
                    id: Some(id.clone()),
                    trust_level: e.trust_level,
                    tools: e.tools.clone(),
                    rule: format!("users.list[{i}]"),
                },
                None => blocked(Some(id.clone()), "unknown principal"),
            }
        }
    }
}

/// Why `level` may not use `tool`, if it may not.
pub fn trust_refuses(level: TrustLevel, tool: &str) -> Option<&'static str> {
    match level {
        TrustLevel::Owner => None,
        TrustLevel::Blocked => Some("blocked principals may do nothing"),
        TrustLevel::Trusted if OPERATOR_TOOLS.contains(&tool) => {
            Some("trusted principals may not use settings or operator tools")
        }
        TrustLevel::Trusted => None,
        TrustLevel::Limited if EXEC_TOOLS.contains(&tool) => {
            Some("limited principals may not run commands")
        }
        TrustLevel::Limited if FILE_TOOLS.contains(&tool) => {
            Some("limited principals may not use file tools")
        }
        TrustLevel::Limited
            if INTEGRATION_TOOLS.contains(&tool) || OPERATOR_TOOLS.contains(&tool) =>
        {
            Some("limited principals may not use external integrations or operator tools")
        }
        TrustLevel::Limited => None,
    }
}
