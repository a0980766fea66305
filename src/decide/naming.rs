//! Scope keys, slugs, container names and sandbox workspace directories (sandbox.md §3). (OC)
//!
//! Two naming epochs, both understood from the scope key itself:
//! - legacy: the scope key as is, name = prefix + slug (`<readable>-<sha256(key)[0:8]>`);
//! - workspace: non-shared keys end in `:workspace:<sha256(agent workspace)[0:32]>`, name =
//!   prefix + `workspace-<sha256(key)[0:32]>`.
//!
//! Which one clawden creates is the `naming` setting.

use crate::config::{Naming, Scope};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Docker's limit for container names that clawden keeps to.
pub const MAX_CONTAINER_NAME: usize = 63;
const SLUG_READABLE_MAX: usize = 32;

/// Hex digits of the workspace hash in qualified scope keys and in `workspace-` names.
pub const WORKSPACE_HASH_LEN: usize = 32;
const QUALIFIER: &str = ":workspace:";

/// `shared` → `shared`; `session` → the session key; `agent` → `agent:<agentId>`.
pub fn scope_key(scope: Scope, session_key: &str, agent_id: &str) -> String {
    match scope {
        Scope::Shared => "shared".to_string(),
        Scope::Session => session_key.to_string(),
        Scope::Agent => format!("agent:{agent_id}"),
    }
}

/// The scope key of the chosen epoch: under `workspace` naming a non-shared key gets
/// `:workspace:<sha256(agent workspace)[0:32]>`.
pub fn epoch_scope_key(
    naming: Naming,
    scope: Scope,
    legacy_key: &str,
    agent_workspace: &Path,
) -> String {
    match (naming, scope) {
        (_, Scope::Shared) | (Naming::Legacy, _) => legacy_key.to_string(),
        (Naming::Workspace, _) => {
            format!("{legacy_key}{QUALIFIER}{}", workspace_hash(agent_workspace))
        }
    }
}

/// sha256 of the agent workspace path, first 32 hex digits.
pub fn workspace_hash(agent_workspace: &Path) -> String {
    let digest = Sha256::digest(agent_workspace.as_os_str().as_encoded_bytes());
    hex::encode(digest)[..WORKSPACE_HASH_LEN].to_string()
}

/// Split a `:workspace:<32 lowercase hex>` qualifier off a key: (the key without it, the hash).
pub fn split_workspace_qualifier(key: &str) -> (&str, Option<&str>) {
    if let Some(i) = key.rfind(QUALIFIER) {
        let hash = &key[i + QUALIFIER.len()..];
        if hash.len() == WORKSPACE_HASH_LEN
            && hash
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            && i > 0
        {
            return (&key[..i], Some(hash));
        }
    }
    (key, None)
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

/// The name part after the prefix, as (readable part, hash tail): `shared` (no hash) for
/// shared scope; `workspace` + `-<sha256(key)[0:32]>` for a workspace-qualified key; else the
/// slug, `<readable>` + `-<sha256(key)[0:8]>`.
fn name_parts(scope: Scope, scope_key: &str) -> (String, String) {
    if scope == Scope::Shared {
        return ("shared".to_string(), String::new());
    }
    if split_workspace_qualifier(scope_key).1.is_some() {
        let digest = hex::encode(Sha256::digest(scope_key.as_bytes()));
        return (
            "workspace".to_string(),
            format!("-{}", &digest[..WORKSPACE_HASH_LEN]),
        );
    }
    let s = slug(scope_key);
    match s.rsplit_once('-') {
        Some((r, h)) => (r.to_string(), format!("-{h}")),
        None => (s, String::new()),
    }
}

/// The name part after the prefix (see [`name_parts`]).
pub fn name_part(scope: Scope, scope_key: &str) -> String {
    let (readable, tail) = name_parts(scope, scope_key);
    format!("{readable}{tail}")
}

/// The hash tail a name of this epoch keeps whatever the prefix (`-` + 8 or 32 hex).
fn tail_len(scope_key: &str) -> usize {
    if split_workspace_qualifier(scope_key).1.is_some() {
        1 + WORKSPACE_HASH_LEN
    } else {
        1 + 8
    }
}

/// prefix + name part when it fits Docker's 63; otherwise the readable part is cut (only as
/// much as needed), never the hash: a shared name, which has none, gets `-<sha256("shared")[0:8]>`
/// when cut. A prefix too long to leave room for the hash is refused by [`check_prefix`]; the
/// name is still cut to 63 so nothing downstream sees an invalid one.
pub fn container_name(prefix: &str, scope: Scope, scope_key: &str) -> String {
    let (readable, mut tail) = name_parts(scope, scope_key);
    let name = format!("{prefix}{readable}{tail}");
    if name.len() <= MAX_CONTAINER_NAME {
        return name;
    }
    if tail.is_empty() {
        tail = format!("-{}", short_hash(scope_key));
    }
    let room = MAX_CONTAINER_NAME.saturating_sub(tail.len());
    let head: String = format!("{prefix}{readable}").chars().take(room).collect();
    format!("{head}{tail}")
}

/// `<workspaceRoot>/<name part>`, or `<workspaceRoot>` itself for shared scope.
pub fn sandbox_workspace_dir(root: &Path, scope: Scope, scope_key: &str) -> PathBuf {
    match scope {
        Scope::Shared => root.to_path_buf(),
        _ => root.join(name_part(scope, scope_key)),
    }
}

/// Whether a container name prefix is usable with names of this scope key's epoch: Docker's
/// name characters, and short enough that the hash tail fits in 63 (clawden refuses what
/// would cut the hash; the readable part is cut as needed).
pub fn check_prefix(prefix: &str, scope_key: &str) -> Result<(), String> {
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
    let max = MAX_CONTAINER_NAME - tail_len(scope_key);
    if prefix.len() > max {
        return Err(format!(
            "container prefix {prefix:?} is {} characters; at most {max} leave room for the hash that keeps container names distinct in Docker's {MAX_CONTAINER_NAME} (clawden refuses rather than cut the hash)",
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
        let legacy = "agent:main";
        let qualified = format!("agent:main:workspace:{}", "a".repeat(32));
        // (prefix, ok under legacy naming, ok under workspace naming)
        let table = [
            ("clawden-sbx-".to_string(), true, true),
            ("x".repeat(23), true, true),
            ("x".repeat(30), true, true),
            ("x".repeat(31), true, false),
            ("x".repeat(54), true, false),
            ("x".repeat(55), false, false),
            (String::new(), false, false),
            ("-x".into(), false, false),
            ("a b".into(), false, false),
            ("a/b".into(), false, false),
        ];
        for (p, ok_legacy, ok_ws) in table {
            assert_eq!(check_prefix(&p, legacy).is_ok(), ok_legacy, "{p:?} legacy");
            assert_eq!(
                check_prefix(&p, &qualified).is_ok(),
                ok_ws,
                "{p:?} workspace"
            );
        }
    }

    #[test]
    fn long_prefixes_cut_only_when_needed_and_never_the_hash() {
        let key = "agent:main:telegram:group:-100123";
        let h = short_hash(key);
        // 23 characters: over the old limit; a name that fits is not cut at all.
        let p23 = "x".repeat(23);
        assert_eq!(
            container_name(&p23, Scope::Agent, "agent:coder"),
            format!("{p23}{}", slug("agent:coder"))
        );
        // One character too long: exactly one character of the readable part goes.
        let full = format!("{p23}{}", slug(key));
        assert_eq!(full.len(), 64);
        assert_eq!(
            container_name(&p23, Scope::Session, key),
            format!("{p23}agent-main-telegram-group--1001-{h}")
        );
        // 40: the readable part is cut to what fits, the hash stays whole.
        let p40 = "y".repeat(40);
        let n = container_name(&p40, Scope::Session, key);
        assert_eq!(n.len(), MAX_CONTAINER_NAME);
        assert_eq!(n, format!("{p40}agent-main-tel-{h}"));
        // 54: no readable part left, prefix and hash whole.
        let p54 = "z".repeat(54);
        assert_eq!(
            container_name(&p54, Scope::Session, key),
            format!("{p54}-{h}")
        );
        // shared has no hash: it gets one when it has to be cut.
        let p60 = "s".repeat(60);
        let n = container_name(&p60, Scope::Shared, "shared");
        assert_eq!(n.len(), MAX_CONTAINER_NAME);
        assert!(n.ends_with(&format!("-{}", short_hash("shared"))), "{n}");
        assert_eq!(
            container_name(&"s".repeat(50), Scope::Shared, "shared"),
            format!("{}shared", "s".repeat(50))
        );
    }

    #[test]
    fn naming_epochs() {
        let ws = Path::new("/home/u/ws");
        let wh = workspace_hash(ws);
        let full = hex::encode(Sha256::digest(b"/home/u/ws"));
        assert_eq!(wh, &full[..32]);
        // (naming, scope, legacy key) → scope key
        let table = [
            (
                Naming::Legacy,
                Scope::Agent,
                "agent:main",
                "agent:main".to_string(),
            ),
            (
                Naming::Legacy,
                Scope::Shared,
                "shared",
                "shared".to_string(),
            ),
            (
                Naming::Workspace,
                Scope::Shared,
                "shared",
                "shared".to_string(),
            ),
            (
                Naming::Workspace,
                Scope::Agent,
                "agent:main",
                format!("agent:main:workspace:{wh}"),
            ),
            (
                Naming::Workspace,
                Scope::Session,
                "agent:main:g",
                format!("agent:main:g:workspace:{wh}"),
            ),
        ];
        for (naming, scope, legacy, want) in table {
            let k = epoch_scope_key(naming, scope, legacy, ws);
            assert_eq!(k, want, "{naming:?} {scope:?}");
            // Both forms are understood: the qualifier splits off again.
            let (base, hash) = split_workspace_qualifier(&k);
            assert_eq!(base, legacy);
            assert_eq!(
                hash.is_some(),
                naming == Naming::Workspace && scope != Scope::Shared
            );
        }
        let q = format!("agent:main:workspace:{wh}");
        let kh = hex::encode(Sha256::digest(q.as_bytes()));
        assert_eq!(
            container_name("p-", Scope::Agent, &q),
            format!("p-workspace-{}", &kh[..32])
        );
        assert_eq!(
            sandbox_workspace_dir(Path::new("/s"), Scope::Agent, &q),
            PathBuf::from(format!("/s/workspace-{}", &kh[..32]))
        );
        // Legacy keys keep their slug names.
        assert_eq!(
            container_name("p-", Scope::Agent, "agent:main"),
            format!("p-{}", slug("agent:main"))
        );
        // Not a qualifier: wrong length, upper case, non-hex, nothing before it.
        for k in [
            format!("agent:main:workspace:{}", "a".repeat(31)),
            format!("agent:main:workspace:{}", "A".repeat(32)),
            format!("agent:main:workspace:{}", "g".repeat(32)),
            format!(":workspace:{}", "a".repeat(32)),
        ] {
            assert_eq!(split_workspace_qualifier(&k), (k.as_str(), None), "{k}");
        }
        // A long prefix cuts "workspace", never the 32-hex hash.
        let n = container_name(&"w".repeat(30), Scope::Agent, &q);
        assert_eq!(n, format!("{}-{}", "w".repeat(30), &kh[..32]));
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
            // A prefix check_prefix accepts keeps the hash whole.
            if scope != Scope::Shared && check_prefix(&prefix, &key).is_ok() {
                let part = name_part(scope, &key);
                let tail = &part[part.rfind('-').unwrap()..];
                prop_assert!(n.ends_with(tail), "{} {}", n, tail);
                prop_assert!(n.starts_with(&prefix), "{}", n);
            }
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
