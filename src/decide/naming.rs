//! Scope keys, slugs, container names and sandbox workspace directories (sandbox.md §3). (OC)

use crate::config::Scope;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Docker's limit for container names that clawden keeps to.
pub const MAX_CONTAINER_NAME: usize = 63;
const SLUG_READABLE_MAX: usize = 32;

/// `shared` → `shared`; `session` → the session key; `agent` → `agent:<agentId>`.
pub fn scope_key(scope: Scope, session_key: &str, agent_id: &str) -> String {
    match scope {
        Scope::Shared => "shared".to_string(),
        Scope::Session => session_key.to_string(),
        Scope::Agent => format!("agent:{agent_id}"),
    }
}

/// First 8 hex digits of sha256(key).
pub fn short_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..4])
}

/// Lowercase, runs of `[^a-z0-9._-]` → `-`, trim `-`, cut to 32 (`session` if empty), then `-` and
/// the first 8 hex of sha256(key).
pub fn slug(key: &str) -> String {
    let lower = key.to_lowercase();
    let mut readable = String::with_capacity(lower.len());
    let mut in_run = false;
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
            readable.push(c);
            in_run = false;
        } else if !in_run {
            readable.push('-');
            in_run = true;
        }
    }
    let trimmed = readable.trim_matches('-');
    let mut cut: String = trimmed.chars().take(SLUG_READABLE_MAX).collect();
    if cut.is_empty() {
        cut = "session".to_string();
    }
    format!("{cut}-{}", short_hash(key))
}

/// The name part after the prefix: `shared` for shared scope, else the slug of the scope key.
pub fn name_part(scope: Scope, scope_key: &str) -> String {
    match scope {
        Scope::Shared => "shared".to_string(),
        _ => slug(scope_key),
    }
}

/// prefix + name part, never longer than 63: a long prefix shortens the readable part of the
/// slug, never the hash that keeps names distinct.
pub fn container_name(prefix: &str, scope: Scope, scope_key: &str) -> String {
    let part = name_part(scope, scope_key);
    let name = format!("{prefix}{part}");
    if name.len() <= MAX_CONTAINER_NAME {
        return name;
    }
    // Keep "-<hash8>" (or the whole part for "shared") and as much of the rest as fits.
    let (readable, tail) = match part.rsplit_once('-') {
        Some((r, h)) if scope != Scope::Shared => (r.to_string(), format!("-{h}")),
        _ => (part.clone(), String::new()),
    };
    let room = MAX_CONTAINER_NAME.saturating_sub(tail.len());
    let head: String = format!("{prefix}{readable}").chars().take(room).collect();
    format!("{head}{tail}")
}

/// `<workspaceRoot>/<slug>`, or `<workspaceRoot>` itself for shared scope.
pub fn sandbox_workspace_dir(root: &Path, scope: Scope, scope_key: &str) -> PathBuf {
    match scope {
        Scope::Shared => root.to_path_buf(),
        _ => root.join(slug(scope_key)),
    }
}

/// Whether a container name prefix is usable: Docker's name characters, short enough that the
/// slug keeps its readable part.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let mut chars = prefix.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "container prefix {prefix:?} must start with a letter or digit and use only [a-zA-Z0-9_.-]"
        ));
    }
    if prefix.len() > 22 {
        return Err(format!(
            "container prefix {prefix:?} is {} characters; at most 22 leave room for the 41-character slug in Docker's 63",
            prefix.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scope_keys() {
        assert_eq!(scope_key(Scope::Shared, "agent:a:x", "a"), "shared");
        assert_eq!(scope_key(Scope::Session, "agent:a:x", "a"), "agent:a:x");
        assert_eq!(scope_key(Scope::Agent, "agent:a:x", "a"), "agent:a");
    }

    #[test]
    fn slugs_follow_the_openclaw_recipe() {
        // sha256("agent:main") begins with the hex below (checked against sha256sum).
        let h = short_hash("agent:main");
        assert_eq!(h.len(), 8);
        assert_eq!(slug("agent:main"), format!("agent-main-{h}"));
        assert_eq!(
            slug("Agent:Work:Telegram:Group:-100"),
            format!(
                "agent-work-telegram-group--100-{}",
                short_hash("Agent:Work:Telegram:Group:-100")
            )
        );
        assert_eq!(slug(":::"), format!("session-{}", short_hash(":::")));
        let long = "agent:main:".to_string() + &"x".repeat(100);
        let s = slug(&long);
        assert_eq!(s.len(), 32 + 1 + 8);
    }

    #[test]
    fn short_hash_matches_sha256sum() {
        // printf 'agent:main' | sha256sum
        let full = hex::encode(Sha256::digest(b"agent:main"));
        assert_eq!(short_hash("agent:main"), &full[..8]);
        assert_ne!(short_hash("agent:main"), short_hash("agent:mai"));
    }

    #[test]
    fn container_names() {
        assert_eq!(
            container_name("clawden-sbx-", Scope::Shared, "shared"),
            "clawden-sbx-shared"
        );
        assert_eq!(
            container_name("p-", Scope::Agent, "agent:main"),
            format!("p-{}", slug("agent:main"))
        );
        let long_prefix = "p".repeat(40);
        let key = format!("agent:main:{}", "x".repeat(30));
        let n = container_name(&long_prefix, Scope::Session, &key);
        assert_eq!(n.len(), MAX_CONTAINER_NAME);
        assert!(n.starts_with(&long_prefix));
        assert!(n.ends_with(&format!("-{}", short_hash(&key))));
    }

    #[test]
    fn workspace_dirs() {
        let root = Path::new("/s");
        assert_eq!(
            sandbox_workspace_dir(root, Scope::Shared, "shared"),
            PathBuf::from("/s")
        );
        assert_eq!(
            sandbox_workspace_dir(root, Scope::Agent, "agent:a"),
            root.join(slug("agent:a"))
        );
    }

    #[test]
    fn prefixes() {
        assert!(check_prefix("clawden-sbx-").is_ok());
        for bad in ["", "-x", "a b", "a/b", "x".repeat(23).as_str()] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn slugs_are_docker_safe(key in "\\PC{0,200}") {
            let s = slug(&key);
            prop_assert!(s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')), "{}", s);
            prop_assert!(s.len() <= 41);
            prop_assert!(!s.starts_with('-'));
        }

        #[test]
        fn names_fit_docker(key in "\\PC{0,200}", prefix in "[a-z0-9][a-z0-9_.-]{0,60}", scope_i in 0usize..3) {
            let scope = [Scope::Session, Scope::Agent, Scope::Shared][scope_i];
            let n = container_name(&prefix, scope, &key);
            prop_assert!(n.len() <= MAX_CONTAINER_NAME, "{}", n);
            prop_assert!(n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
        }

        #[test]
        fn distinct_keys_distinct_slugs_in_practice(a in "[a-z:]{1,40}", b in "[a-z:]{1,40}") {
            prop_assume!(a != b);
            // Same readable part can collide only through the hash; 32 bits make it vanishingly rare.
            prop_assert_ne!(slug(&a), slug(&b));
        }
    }
}
