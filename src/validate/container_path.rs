//! Lexical normalisation of paths *inside the container*.
//!
//! Container paths are never resolved against the host, so lexical normalisation is the right
//! tool here (security.md principle 2): `..` never climbs above `/`.

use super::code::{Refusal, RefusalCode, quote};

/// Longest container path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Most non-empty components a container path may have.
pub const MAX_COMPONENTS: usize = 256;

/// Lexical normalisation of a CONTAINER path: must be absolute; collapses //, ., and .. (never above /); strips trailing '/'.
/// Refuses NUL, newline, > 4096 bytes, > 256 components (InvalidPath) and relative (NonAbsolute).
pub fn normalize_container_path(p: &str) -> Result<String, Refusal> {
    let shown = quote(p);
    if p.contains('\0') || p.contains('\n') {
        return Err(Refusal::new(
            RefusalCode::InvalidPath,
            p,
            format!("container path {shown} contains a NUL or newline character"),
            "use a container path made of ordinary characters",
        ));
    }
    if p.len() > MAX_PATH_BYTES {
        return Err(Refusal::new(
            RefusalCode::InvalidPath,
            p,
            format!(
                "container path of {} bytes is longer than PATH_MAX ({MAX_PATH_BYTES} bytes)",
                p.len()
            ),
            "use a shorter container path",
        ));
    }
    if !p.starts_with('/') {
        return Err(Refusal::new(
            RefusalCode::NonAbsolute,
            p,
            format!("container path {shown} is not absolute"),
            "use an absolute container path starting with '/', e.g. \"/mnt/data\"",
        ));
    }
    let segments = p.split('/').filter(|s| !s.is_empty());
    if segments.clone().count() > MAX_COMPONENTS {
        return Err(Refusal::new(
            RefusalCode::InvalidPath,
            p,
            format!("container path has more than {MAX_COMPONENTS} components"),
            "use a container path with fewer components",
        ));
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in segments {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    if out.is_empty() {
        return Ok("/".to_string());
    }
    let mut s = String::with_capacity(p.len());
    for seg in out {
        s.push('/');
        s.push_str(seg);
    }
    Ok(s)
}

/// Whether normalised container path `inner` equals `outer` or lies below it.
/// Both must already be normalised. `/` contains everything.
pub(crate) fn is_same_or_under(inner: &str, outer: &str) -> bool {
    if outer == "/" {
        return true;
    }
    inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/../../..", "/"),
            ("/workspace", "/workspace"),
            ("/workspace/", "/workspace"),
            ("//workspace//a///b//", "/workspace/a/b"),
            ("/./etc/.", "/etc"),
            ("/etc/", "/etc"),
            ("//etc//passwd", "/etc/passwd"),
            ("/a/b/../c", "/a/c"),
            ("/a/../../b", "/b"),
            ("/a/./b/./", "/a/b"),
            ("/..a/.b/...", "/..a/.b/..."),
            ("/a b/c:d", "/a b/c:d"),
        ];
        for (input, want) in cases {
            assert_eq!(
                normalize_container_path(input).as_deref(),
                Ok(*want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn refusal_table() {
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        let many = "/a".repeat(MAX_COMPONENTS + 1);
        let many_dots = "/.".repeat(MAX_COMPONENTS + 1);
        let five_thousand = "/x".repeat(5000);
        let cases: Vec<(&str, RefusalCode)> = vec![
            ("", RefusalCode::NonAbsolute),
            ("workspace", RefusalCode::NonAbsolute),
            ("./workspace", RefusalCode::NonAbsolute),
            ("../etc", RefusalCode::NonAbsolute),
            ("~/x", RefusalCode::NonAbsolute),
            ("$HOME", RefusalCode::NonAbsolute),
            ("/a\0b", RefusalCode::InvalidPath),
            ("/a\nb", RefusalCode::InvalidPath),
            (long.as_str(), RefusalCode::InvalidPath),
            (many.as_str(), RefusalCode::InvalidPath),
            (many_dots.as_str(), RefusalCode::InvalidPath),
            (five_thousand.as_str(), RefusalCode::InvalidPath),
        ];
        for (input, code) in cases {
            let err = normalize_container_path(input).expect_err(input);
            assert_eq!(err.code, code, "input {input:?}");
            assert_eq!(err.value, input);
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let at_len = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert_eq!(at_len.len(), MAX_PATH_BYTES);
        assert!(normalize_container_path(&at_len).is_ok());
        let at_count = "/a".repeat(MAX_COMPONENTS);
        assert_eq!(
            normalize_container_path(&at_count).as_deref(),
            Ok(at_count.as_str())
        );
    }

    #[test]
    fn same_or_under_table() {
        let cases = [
            ("/a", "/a", true),
            ("/a/b", "/a", true),
            ("/ab", "/a", false),
            ("/a", "/a/b", false),
            ("/anything", "/", true),
            ("/", "/", true),
        ];
        for (inner, outer, want) in cases {
            assert_eq!(
                is_same_or_under(inner, outer),
                want,
                "{inner} under {outer}"
            );
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(".".to_string()),
            Just("..".to_string()),
            Just(String::new()),
            "[a-z.]{1,4}",
        ]
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent_and_clean(segs in prop::collection::vec(segment(), 0..20), trailing in any::<bool>()) {
            let mut p = format!("/{}", segs.join("/"));
            if trailing { p.push('/'); }
            let once = normalize_container_path(&p).unwrap();
            let twice = normalize_container_path(&once).unwrap();
            prop_assert_eq!(&once, &twice);
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains("//"), "{}", once);
            prop_assert!(!once.contains("/./"), "{}", once);
            prop_assert!(!once.contains("/../"), "{}", once);
            prop_assert!(!once.ends_with("/.") && !once.ends_with("/.."), "{}", once);
            prop_assert!(once == "/" || !once.ends_with('/'), "{}", once);
        }
    }
}
