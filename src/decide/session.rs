//! Session keys (sandbox.md §2): parsing, main-key canonicalisation, and the off / non-main / all
//! decision.

use crate::config::resolve::{DEFAULT_MAIN_KEY, normalize_agent_id};
use crate::config::{Mode, SessionScope};
use serde::Serialize;

/// Longest session key accepted from a caller.
pub const MAX_SESSION_KEY_LEN: usize = 512;

/// A session key in canonical form, with the agent it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRef {
    pub key: String,
    pub agent_id: String,
    pub main_key: String,
    pub is_main: bool,
    /// The `:workspace:<32 hex>` qualifier a gateway of the newer naming epoch appended to the
    /// key (stripped from `key`; the plan checks it against the agent workspace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_qualifier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session key is empty")]
    Empty,
    #[error("session key is longer than {MAX_SESSION_KEY_LEN} bytes")]
    TooLong,
    #[error("session key {0:?} contains control characters")]
    ControlChars(String),
    #[error(
        "session key {key:?} has no session name after the agent id (expected agent:<agentId>:<name>)"
    )]
    MissingRest { key: String },
    #[error(
        "session key {key:?} belongs to agent {session_agent:?} but --agent {agent:?} was given"
    )]
    AgentMismatch {
        key: String,
        session_agent: String,
        agent: String,
    },
}

impl SessionError {
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::AgentMismatch { .. } => "agent_mismatch",
            _ => "invalid_session_key",
        }
    }
}

/// The main session key of an agent: `agent:<id>:main`, or `global` under `session.scope:
/// "global"`. `session.mainKey` plays no part: OpenClaw ignores it. (OC)
pub fn main_session_key(agent_id: &str, scope: SessionScope) -> String {
    match scope {
        SessionScope::Global => "global".to_string(),
        SessionScope::PerSender => format!("agent:{agent_id}:{DEFAULT_MAIN_KEY}"),
    }
}

/// Parse what a caller gave (`--session`, `--agent`) into a canonical session.
///
/// - no session: the agent's main session (the default agent's without `--agent`);
/// - `main`, `agent:<id>:main` (and `global` under global scope): the main session;
/// - a short name `x`: `agent:<agent>:x` (`<agent>`: `--agent`, else the default agent);
/// - `agent:<id>:<rest>`: the agent id is normalised, the rest kept.
///
/// Keys are case-insensitive (lowercased), as OpenClaw stores them.
pub fn resolve_session(
    input: Option<&str>,
    agent: Option<&str>,
    default_agent: &str,
    scope: SessionScope,
) -> Result<SessionRef, SessionError> {
    let agent_arg = agent.map(normalize_agent_id);
    let raw = match input {
        None => None,
        Some(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Err(SessionError::Empty);
            }
            if t.len() > MAX_SESSION_KEY_LEN {
                return Err(SessionError::TooLong);
            }
            if t.chars().any(char::is_control) {
                return Err(SessionError::ControlChars(t.escape_debug().to_string()));
            }
            Some(t.to_lowercase())
        }
    };
    // A workspace-qualified key (newer OpenClaw's scope keys): the session is what precedes it.
    let (raw, workspace_qualifier) = match raw {
        Some(k) => match super::naming::split_workspace_qualifier(&k) {
            (base, Some(h)) => (Some(base.to_string()), Some(h.to_string())),
            (_, None) => (Some(k), None),
        },
        None => (None, None),
    };
    let (agent_id, rest) = match raw.as_deref() {
        None => (agent_arg.unwrap_or_else(|| default_agent.into()), None),
        Some(k) => match k.strip_prefix("agent:") {
            Some(after) => {
                let (id, rest) = after.split_once(':').unwrap_or((after, ""));
                if rest.is_empty() {
                    return Err(SessionError::MissingRest { key: k.to_string() });
                }
                let id = normalize_agent_id(id);
                if let Some(a) = agent_arg.as_ref().filter(|a| **a != id) {
                    return Err(SessionError::AgentMismatch {
                        key: k.to_string(),
                        session_agent: id,
                        agent: a.clone(),
                    });
                }
                (id, Some(rest.to_string()))
            }
            None => (
                agent_arg.unwrap_or_else(|| default_agent.into()),
                Some(k.to_string()),
            ),
        },
    };
    let main = main_session_key(&agent_id, scope);
    let is_main_alias =
        |r: &str| r == DEFAULT_MAIN_KEY || (scope == SessionScope::Global && r == "global");
    let (key, is_main) = match (&raw, &rest) {
        (None, _) => (main.clone(), true),
        (Some(k), _) if scope == SessionScope::Global && k == "global" => (main.clone(), true),
        (Some(_), Some(r)) if is_main_alias(r) => (main.clone(), true),
        (Some(k), Some(r)) if k.starts_with("agent:") => (format!("agent:{agent_id}:{r}"), false),
        (Some(_), Some(r)) => (format!("agent:{agent_id}:{r}"), false),
        (Some(k), None) => (k.clone(), false),
    };
    Ok(SessionRef {
        is_main: is_main || key == main,
        key,
        agent_id,
        main_key: main,
        workspace_qualifier,
    })
}

/// Whether a session's calls run in a container. (OC)
pub fn is_sandboxed(mode: Mode, session: &SessionRef) -> bool {
    match mode {
        Mode::Off => false,
        Mode::All => true,
        Mode::NonMain => !session.is_main,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionScope::*;

    fn r(input: Option<&str>, agent: Option<&str>) -> SessionRef {
        resolve_session(input, agent, "main", PerSender).unwrap()
    }

    #[test]
    fn the_default_agent_owns_keys_without_an_agent() {
        // (input, --agent, default agent) → (key, agent, is main)
        let table = [
            (None, None, "work", "agent:work:main", "work", true),
            (Some("main"), None, "work", "agent:work:main", "work", true),
            (
                Some("group:x"),
                None,
                "work",
                "agent:work:group:x",
                "work",
                false,
            ),
            (
                Some("group:x"),
                Some("other"),
                "work",
                "agent:other:group:x",
                "other",
                false,
            ),
            (
                Some("agent:main:main"),
                None,
                "work",
                "agent:main:main",
                "main",
                true,
            ),
        ];
        for (input, agent, default, key, id, main) in table {
            let s = resolve_session(input, agent, default, PerSender).unwrap();
            assert_eq!(
                (s.key.as_str(), s.agent_id.as_str(), s.is_main),
                (key, id, main),
                "{input:?} {agent:?} {default}"
            );
        }
    }

    #[test]
    fn main_aliases_canonicalise() {
        for input in [
            None,
            Some("main"),
            Some("agent:main:main"),
            Some("AGENT:Main:MAIN"),
            Some(" main "),
        ] {
            let s = r(input, None);
            assert_eq!(s.key, "agent:main:main", "{input:?}");
            assert!(s.is_main);
        }
        let s = r(Some("main"), Some("Work"));
        assert_eq!(
            (s.key.as_str(), s.agent_id.as_str(), s.is_main),
            ("agent:work:main", "work", true)
        );
    }

    #[test]
    fn a_main_key_name_is_an_ordinary_session_and_global_scope() {
        // session.mainKey is ignored (OC): "home" is not the main session, whatever the config.
        let s = resolve_session(Some("home"), None, "main", PerSender).unwrap();
        assert_eq!((s.key.as_str(), s.is_main), ("agent:main:home", false));
        assert!(is_sandboxed(Mode::NonMain, &s));
        for input in [None, Some("global"), Some("main"), Some("agent:main:main")] {
            let s = resolve_session(input, None, "main", Global).unwrap();
            assert_eq!((s.key.as_str(), s.is_main), ("global", true), "{input:?}");
        }
        let s = resolve_session(Some("group:x"), None, "main", Global).unwrap();
        assert_eq!((s.key.as_str(), s.is_main), ("agent:main:group:x", false));
    }

    #[test]
    fn short_names_expand_and_agent_ids_normalise() {
        let s = r(Some("telegram:group:-100123"), Some("work"));
        assert_eq!(s.key, "agent:work:telegram:group:-100123");
        assert!(!s.is_main);
        let s = r(Some("agent:My Agent!:discord:chan"), None);
        assert_eq!(
            (s.agent_id.as_str(), s.key.as_str()),
            ("my-agent", "agent:my-agent:discord:chan")
        );
    }

    #[test]
    fn workspace_qualified_keys_are_understood() {
        let h = "0123456789abcdef0123456789abcdef";
        let s = r(Some(&format!("agent:work:group:x:workspace:{h}")), None);
        assert_eq!(
            (
                s.key.as_str(),
                s.agent_id.as_str(),
                s.workspace_qualifier.as_deref()
            ),
            ("agent:work:group:x", "work", Some(h))
        );
        let s = r(Some(&format!("agent:work:main:workspace:{h}")), None);
        assert!(s.is_main);
        // Not a qualifier (31 hex): an ordinary session name.
        let s = r(Some("agent:work:g:workspace:0123"), None);
        assert_eq!(
            (s.key.as_str(), s.workspace_qualifier),
            ("agent:work:g:workspace:0123", None)
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        let e =
            |i: &str, a: Option<&str>| resolve_session(Some(i), a, "main", PerSender).unwrap_err();
        assert_eq!(e("", None), SessionError::Empty);
        assert_eq!(e("   ", None), SessionError::Empty);
        assert!(matches!(e("a\nb", None), SessionError::ControlChars(_)));
        assert!(matches!(e("x\0", None), SessionError::ControlChars(_)));
        assert!(matches!(e(&"x".repeat(600), None), SessionError::TooLong));
        assert!(matches!(
            e("agent:main", None),
            SessionError::MissingRest { .. }
        ));
        assert!(matches!(
            e("agent:main:", None),
            SessionError::MissingRest { .. }
        ));
        assert!(matches!(
            e("agent:a:x", Some("b")),
            SessionError::AgentMismatch { .. }
        ));
    }

    #[test]
    fn mode_decides_sandboxing() {
        let main = r(None, None);
        let group = r(Some("group:dev"), None);
        let table = [
            (Mode::Off, false, false),
            (Mode::NonMain, false, true),
            (Mode::All, true, true),
        ];
        for (mode, main_sb, group_sb) in table {
            assert_eq!(is_sandboxed(mode, &main), main_sb, "{mode:?} main");
            assert_eq!(is_sandboxed(mode, &group), group_sb, "{mode:?} group");
        }
    }
}
