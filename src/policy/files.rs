//! File path rules: `deniedPaths` win; otherwise the session's roots and `allowedPaths`.
//! Paths are compared lexically by whole components after `~` expansion and `..` removal (the
//! caller gives host paths already resolved; symlinks are the file layer's business).

use crate::validate::lexical_normalize;
use std::path::{Path, PathBuf};

/// `~` and `~/x` → the given home; anything else unchanged. `None` when `~` is used and no
/// home is known (the rule then matches nothing rather than a wrong directory).
pub fn expand(p: &str, home: Option<&Path>) -> Option<PathBuf> {
    if p == "~" {
        return home.map(Path::to_path_buf);
    }
    if let Some(rest) = p.strip_prefix("~/") {
        return home.map(|h| h.join(rest));
    }
    Some(PathBuf::from(p))
}

/// Normalise a request path: `~` expanded, relative paths taken from the first root, `.`/`..`
/// removed lexically.
pub fn normalize(path: &Path, home: Option<&Path>, base: Option<&Path>) -> PathBuf {
    let s = path.to_string_lossy();
    let p = expand(&s, home).unwrap_or_else(|| path.to_path_buf());
    let abs = if p.is_absolute() {
        p
    } else {
        base.unwrap_or(Path::new("/")).join(p)
    };
    lexical_normalize(&abs)
}

/// `path` is `root` or lies under it.
pub fn within(path: &Path, root: &Path) -> bool {
    path.starts_with(lexical_normalize(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_not_prefixes() {
        let home = Path::new("/home/u");
        let n = |p: &str| normalize(Path::new(p), Some(home), Some(Path::new("/ws")));
        assert_eq!(n("~/.ssh/id"), PathBuf::from("/home/u/.ssh/id"));
        assert_eq!(n("a/../b"), PathBuf::from("/ws/b"));
        assert!(within(&n("/etc/passwd"), Path::new("/etc")));
        assert!(!within(&n("/etcetera"), Path::new("/etc")));
        assert!(!within(&n("/ws/../etc/x"), Path::new("/ws")));
        assert_eq!(expand("~", None), None);
    }
}
