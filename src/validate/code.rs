//! The refusal type: a stable code, the offending value, a human message and the fix.

use std::fmt;

/// Stable machine-readable refusal codes. serde-serialises as the snake_case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// A host source (or container path) that is not an absolute path: relative, `~`, `$VAR`,
    /// a named volume, empty.
    NonAbsolute,
    /// The source equals or lies under a blocked host path.
    BlockedPath,
    /// The source is an ancestor of a blocked host path.
    CoversBlockedPath,
    /// The source is outside every allowed root (agent / sandbox workspace).
    OutsideAllowedRoots,
    /// The container target equals, is under or covers a reserved or system target.
    ReservedTarget,
    /// The source does not exist (Docker would silently create it) or cannot be resolved.
    MissingSource,
    /// The source is a socket, FIFO or device node.
    SpecialFile,
    /// `network: host`.
    NetworkHost,
    /// `network: container:<id>` without `dangerouslyAllowContainerNamespaceJoin`.
    NetworkContainerJoin,
    /// A seccomp or AppArmor profile of `unconfined`.
    UnconfinedProfile,
    /// A custom seccomp profile that re-allows what Docker's default refuses (default action
    /// allow, namespaces, mounts, keyring, bpf, ptrace, …) without
    /// `dangerouslyAllowPermissiveSeccomp`.
    PermissiveSeccomp,
    /// A seccomp profile that cannot be read or is not a Docker seccomp profile.
    BadSeccompProfile,
    /// Wrong number of `:` fields, empty target, NUL or newline in a bind string.
    BadBindSpec,
    /// A bind mode other than `ro` / `rw` (e.g. `rshared`, `z`).
    BadBindMode,
    /// Two mounts at the same container target.
    DuplicateTarget,
    /// `capDrop` does not contain `ALL`.
    CapDropIncomplete,
    /// An env name that is empty, contains `=` or NUL, or is not `[A-Za-z_][A-Za-z0-9_]*`.
    InvalidEnvName,
    /// A tmpfs spec that is malformed, has a relative target, or escalating options.
    InvalidTmpfs,
    /// A container path with NUL, newline, over 4096 bytes or over 256 components.
    InvalidPath,
    /// A network value that is empty or not a valid Docker network name.
    InvalidNetwork,
    /// Any other config value out of range or malformed (memory, pidsLimit, user, prefix, ...).
    InvalidValue,
    /// A call asked for root, another user, or privileges.
    PrivilegeRequested,
    /// A file-tool container path that lies on no bind mount.
    NotOnMount,
    /// A write to a read-only mount (refused before any syscall) or a read-only filesystem (`EROFS`).
    ReadOnlyMount,
    /// Content over the configured byte cap.
    TooLarge,
    /// A symlink where none is accepted (e.g. a mount's host root that is no longer canonical).
    SymlinkRefused,
    /// The kernel lacks a facility required for safe operation (e.g. `openat2`): fail closed.
    Unsupported,
    /// A file-tool path (or one of its parents) that does not exist (`ENOENT`).
    NotFound,
    /// An exclusive create (or a no-replace rename) found something at the path.
    AlreadyExists,
    /// A compare-and-swap write whose expected etag is no longer the file's.
    EtagMismatch,
    /// A file-tool path that is a directory where a file is needed (`EISDIR`).
    IsDirectory,
    /// A parent component that is not a directory (`ENOTDIR`).
    NotDirectory,
    /// Too many levels of symbolic links (`ELOOP`).
    SymlinkLoop,
    /// Resolution would leave the mount root: an absolute symlink or `..` climbing out (`EXDEV` from `RESOLVE_BENEATH`).
    EscapesRoot,
    /// Too many hard links or directory entries (`EMLINK`).
    TooManyLinks,
    /// The host refused access (`EACCES` / `EPERM`).
    PermissionDenied,
    /// A path or component over the kernel's limits (`ENAMETOOLONG`).
    NameTooLong,
    /// No space or quota left on the host filesystem (`ENOSPC` / `EDQUOT`).
    NoSpace,
    /// The file was changed or in use concurrently and the call could not complete safely (`EAGAIN` after retries, `EBUSY`, `ETXTBSY`).
    Busy,
    /// Any other I/O error; the message names the errno.
    IoError,
    /// A bind source inside (or equal to) a directory some sandbox can write: it could be swapped
    /// between the check and `docker start` (refused when mounts cannot be staged, i.e. without root).
    SourceSandboxWritable,
}

impl RefusalCode {
    /// Every code, in declaration order (for docs and exhaustive tests).
    pub const ALL: [RefusalCode; 41] = [
        RefusalCode::NonAbsolute,
        RefusalCode::BlockedPath,
        RefusalCode::CoversBlockedPath,
        RefusalCode::OutsideAllowedRoots,
        RefusalCode::ReservedTarget,
        RefusalCode::MissingSource,
        RefusalCode::SpecialFile,
        RefusalCode::NetworkHost,
        RefusalCode::NetworkContainerJoin,
        RefusalCode::UnconfinedProfile,
        RefusalCode::PermissiveSeccomp,
        RefusalCode::BadSeccompProfile,
        RefusalCode::BadBindSpec,
        RefusalCode::BadBindMode,
        RefusalCode::DuplicateTarget,
        RefusalCode::CapDropIncomplete,
        RefusalCode::InvalidEnvName,
        RefusalCode::InvalidTmpfs,
        RefusalCode::InvalidPath,
        RefusalCode::InvalidNetwork,
        RefusalCode::InvalidValue,
        RefusalCode::PrivilegeRequested,
        RefusalCode::NotOnMount,
        RefusalCode::ReadOnlyMount,
        RefusalCode::TooLarge,
        RefusalCode::SymlinkRefused,
        RefusalCode::Unsupported,
        RefusalCode::NotFound,
        RefusalCode::AlreadyExists,
        RefusalCode::EtagMismatch,
        RefusalCode::IsDirectory,
        RefusalCode::NotDirectory,
        RefusalCode::SymlinkLoop,
        RefusalCode::EscapesRoot,
        RefusalCode::TooManyLinks,
        RefusalCode::PermissionDenied,
        RefusalCode::NameTooLong,
        RefusalCode::NoSpace,
        RefusalCode::Busy,
        RefusalCode::IoError,
        RefusalCode::SourceSandboxWritable,
    ];

    /// The stable snake_case tag (identical to the serde form).
    pub fn as_str(&self) -> &'static str {
        match self {
            RefusalCode::NonAbsolute => "non_absolute",
            RefusalCode::BlockedPath => "blocked_path",
            RefusalCode::CoversBlockedPath => "covers_blocked_path",
            RefusalCode::OutsideAllowedRoots => "outside_allowed_roots",
            RefusalCode::ReservedTarget => "reserved_target",
            RefusalCode::MissingSource => "missing_source",
            RefusalCode::SpecialFile => "special_file",
            RefusalCode::NetworkHost => "network_host",
            RefusalCode::NetworkContainerJoin => "network_container_join",
            RefusalCode::UnconfinedProfile => "unconfined_profile",
            RefusalCode::PermissiveSeccomp => "permissive_seccomp",
            RefusalCode::BadSeccompProfile => "bad_seccomp_profile",
            RefusalCode::BadBindSpec => "bad_bind_spec",
            RefusalCode::BadBindMode => "bad_bind_mode",
            RefusalCode::DuplicateTarget => "duplicate_target",
            RefusalCode::CapDropIncomplete => "cap_drop_incomplete",
            RefusalCode::InvalidEnvName => "invalid_env_name",
            RefusalCode::InvalidTmpfs => "invalid_tmpfs",
            RefusalCode::InvalidPath => "invalid_path",
            RefusalCode::InvalidNetwork => "invalid_network",
            RefusalCode::InvalidValue => "invalid_value",
            RefusalCode::PrivilegeRequested => "privilege_requested",
            RefusalCode::NotOnMount => "not_on_mount",
            RefusalCode::ReadOnlyMount => "read_only_mount",
            RefusalCode::TooLarge => "too_large",
            RefusalCode::SymlinkRefused => "symlink_refused",
            RefusalCode::Unsupported => "unsupported",
            RefusalCode::NotFound => "not_found",
            RefusalCode::AlreadyExists => "already_exists",
            RefusalCode::EtagMismatch => "etag_mismatch",
            RefusalCode::IsDirectory => "is_directory",
            RefusalCode::NotDirectory => "not_directory",
            RefusalCode::SymlinkLoop => "symlink_loop",
            RefusalCode::EscapesRoot => "escapes_root",
            RefusalCode::TooManyLinks => "too_many_links",
            RefusalCode::PermissionDenied => "permission_denied",
            RefusalCode::NameTooLong => "name_too_long",
            RefusalCode::NoSpace => "no_space",
            RefusalCode::Busy => "busy",
            RefusalCode::IoError => "io_error",
            RefusalCode::SourceSandboxWritable => "source_sandbox_writable",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every refusal: code, the offending value, a human message naming the value and the rule, and the fix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: RefusalCode,
    pub value: String,
    pub message: String,
    pub fix: String,
}

impl Refusal {
    pub(crate) fn new(
        code: RefusalCode,
        value: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Refusal {
            code,
            value: value.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Quote a value for a message: Rust debug quoting, so control characters (NUL, newline) are
/// visible as escapes and the value cannot break the message's layout.
pub(crate) fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// [`quote`] for a path (lossy: a message is for humans; the `value` field keeps the input).
pub(crate) fn quote_path(p: &std::path::Path) -> String {
    quote(&p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde_for_every_code() {
        for code in RefusalCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()), "{code:?}");
            assert_eq!(code.to_string(), code.as_str());
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in RefusalCode::ALL {
            assert!(
                seen.insert(code.as_str()),
                "duplicate tag {}",
                code.as_str()
            );
        }
    }

    #[test]
    fn refusal_serialises_all_fields_and_displays_message() {
        let r = Refusal::new(RefusalCode::BlockedPath, "/etc:/x", "msg here", "fix here");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": "blocked_path", "value": "/etc:/x", "message": "msg here", "fix": "fix here"})
        );
        assert_eq!(r.to_string(), "msg here");
    }

    #[test]
    fn quote_escapes_control_characters() {
        assert_eq!(quote("a\nb\0c\"d"), r#""a\nb\0c\"d""#);
    }
}
