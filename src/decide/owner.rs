//! Which configuration owns a sandbox: the `clawden.owner` label (sandbox.md §4, issue 7).
//!
//! The owner is the first 16 hex digits of sha256 over the canonical state directory and the
//! container prefix. Why these two: the state directory is where a configuration keeps what it
//! knows about its sandboxes (last use, locks, audit log) — a sandbox whose last use is recorded
//! elsewhere cannot be judged idle here — and the prefix separates configurations that share a
//! state directory (the default one) but name their sandboxes differently. Neither is a name
//! prefix test: `clawden-a-` and `clawden-a-b-` give unrelated owners, so `recreate --all` and
//! `prune` of one never touch the other's sandboxes. The config file path is deliberately not
//! part of it: moving or layering a config must not orphan its sandboxes.

use sha2::{Digest, Sha256};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The label carrying the owner.
pub const OWNER_LABEL: &str = "clawden.owner";

/// The owner id of sandboxes named with `prefix` by a configuration whose state lives in
/// `state_dir` (canonicalised through its deepest existing ancestor, so `/x/../state` and a
/// symlinked spelling agree).
pub fn owner_id(state_dir: &Path, prefix: &str) -> String {
    let canonical = crate::validate::canonicalize_through_ancestor(state_dir)
        .unwrap_or_else(|_| crate::validate::lexical_normalize(state_dir));
    let mut h = Sha256::new();
    h.update(b"clawden-owner-v1\0");
    h.update(canonical.as_os_str().as_bytes());
    h.update(b"\0");
    h.update(prefix.as_bytes());
    hex::encode(h.finalize())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_depends_on_state_dir_and_prefix_only() {
        let d = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        let a = owner_id(&real.join("state"), "clawden-a-");
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, owner_id(&real.join("link/state"), "clawden-a-"));
        assert_eq!(a, owner_id(&real.join("x/../state/"), "clawden-a-"));
        assert_ne!(a, owner_id(&real.join("state"), "clawden-a-b-"));
        assert_ne!(a, owner_id(&real.join("state2"), "clawden-a-"));
    }
}
