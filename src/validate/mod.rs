//! The bind-mount and settings validator (sandbox.md §5, security.md).
//!
//! Pure rules plus canonicalisation on the host filesystem. Every rule answers with a
//! [`Refusal`]: a stable [`RefusalCode`], the offending value, a message naming the value and
//! the rule, and the fix. Nothing here talks to Docker.
//!
//! - `code.rs`: the refusal type.
//! - `container_path.rs`: lexical normalisation of container paths.
//! - `hostpath.rs`: lexical normalisation and canonicalisation of host paths.
//! - `blocked.rs`: the blocked host-path table and the [`HostContext`] it is built from.
//! - `source.rs`: the rules every host mount source obeys (binds and managed workspaces).
//! - `binds.rs`: `docker.binds` parsing, target and allowed-root rules.
//! - `settings.rs`: network, seccomp/AppArmor, capDrop, env names, tmpfs.
//! - `seccomp.rs`: what a custom seccomp profile re-allows (a pure parser of its JSON).

mod binds;
mod blocked;
mod code;
mod container_path;
mod hostpath;
mod seccomp;
mod settings;
mod source;

pub use binds::{BindPolicy, SYSTEM_TARGETS, ValidatedBind, validate_bind, validate_binds};
pub use blocked::{BLOCKED_HOME_ENTRIES, BLOCKED_SYSTEM_PATHS, BlockKind, Blocked, HostContext};
pub use code::{Refusal, RefusalCode};
pub use container_path::{MAX_COMPONENTS, MAX_PATH_BYTES, normalize_container_path};
pub use hostpath::{canonicalize_through_ancestor, lexical_normalize};
pub use seccomp::{DANGEROUS_SYSCALLS, seccomp_findings, validate_seccomp_file};
pub use settings::{
    parse_tmpfs, validate_cap_drop, validate_env_name, validate_network, validate_security_profile,
};
pub use source::check_managed_source;

#[cfg(test)]
mod messages_tests;
