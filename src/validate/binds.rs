//! `docker.binds` entries: parsing, target rules, and the host-source rules.

use std::path::{Path, PathBuf};

use super::blocked::{BlockedTable, HostContext};
use super::code::{Refusal, RefusalCode, quote, quote_path};
use super::container_path::{is_same_or_under, normalize_container_path};
use super::hostpath::canonicalize_through_ancestor;
use super::source::{SourceUse, check_source};

/// Container paths a bind may never equal, lie under or cover (unless
/// `dangerouslyAllowReservedContainerTargets`).
pub const SYSTEM_TARGETS: &[&str] = &[
    "/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
    "/libx32", "/boot", "/root", "/run", "/var/run",
];

#[derive(Debug, Clone, Copy)]
pub struct BindPolicy<'a> {
    /// Agent workspace + sandbox workspace (may not exist yet; compare canonical forms).
    pub allowed_roots: &'a [PathBuf],
    /// The workdir, "/agent", every managed mount/tmpfs target (already normalised).
    pub reserved_targets: &'a [String],
    /// dangerouslyAllowExternalBindSources: lifts ONLY the allowed-roots rule.
    pub allow_external_sources: bool,
    /// dangerouslyAllowReservedContainerTargets: lifts ONLY the reserved-target rule.
    pub allow_reserved_targets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidatedBind {
    /// The entry as written in config.
    pub spec: String,
    /// Canonical host path: what Docker receives.
    pub source: PathBuf,
    /// Normalised container path.
    pub target: String,
    pub read_only: bool,
}

/// Parse and validate one `docker.binds` entry "SRC:DST" or "SRC:DST:ro|rw" (default rw, OpenClaw semantics).
pub fn validate_bind(
    spec: &str,
    ctx: &HostContext,
    policy: &BindPolicy,
) -> Result<ValidatedBind, Refusal> {
    validate_one(spec, &ctx.table(), policy)
}

/// Validate a list: each entry, plus DuplicateTarget across entries and against reserved targets. Returns all refusals, not just the first.
///
/// Each entry yields at most one refusal. Duplicates are detected among the entries that
/// passed every other rule; a bind exactly at a reserved target is only reachable here when
/// `allow_reserved_targets` is set, and is then a DuplicateTarget (Docker refuses two mounts
/// at one target).
pub fn validate_binds(
    specs: &[String],
    ctx: &HostContext,
    policy: &BindPolicy,
) -> (Vec<ValidatedBind>, Vec<Refusal>) {
    let table = ctx.table();
    let reserved: Vec<String> = normalised_reserved(policy);
    let mut accepted: Vec<ValidatedBind> = Vec::new();
    let mut refusals = Vec::new();
    for spec in specs {
        let bind = match validate_one(spec, &table, policy) {
            Ok(b) => b,
            Err(r) => {
                refusals.push(r);
                continue;
            }
        };
        if reserved.contains(&bind.target) {
            refusals.push(Refusal::new(
                RefusalCode::DuplicateTarget,
                spec.as_str(),
                format!(
                    "bind mount {} targets {}, where clawden already mounts the workdir, /agent or a managed mount",
                    quote(spec),
                    quote(&bind.target)
                ),
                "choose another container target, e.g. a subdirectory such as \"/mnt/<name>\"",
            ));
            continue;
        }
        if let Some(earlier) = accepted.iter().find(|b| b.target == bind.target) {
            refusals.push(Refusal::new(
                RefusalCode::DuplicateTarget,
                spec.as_str(),
                format!(
                    "bind mount {} targets {}, which bind mount {} already uses",
                    quote(spec),
                    quote(&bind.target),
                    quote(&earlier.spec)
                ),
                "give each bind mount its own container target, or remove one of the two entries",
            ));
            continue;
        }
        accepted.push(bind);
    }
    (accepted, refusals)
}

fn normalised_reserved(policy: &BindPolicy) -> Vec<String> {
    policy
        .reserved_targets
        .iter()
        .map(|t| normalize_container_path(t).unwrap_or_else(|_| t.clone()))
        .collect()
}

struct ParsedBind<'s> {
    source: &'s str,
    target: &'s str,
    read_only: bool,
}

fn parse(spec: &str) -> Result<ParsedBind<'_>, Refusal> {
    let bad = |problem: String| {
        Refusal::new(
            RefusalCode::BadBindSpec,
            spec,
            format!("bind mount {} {problem}", quote(spec)),
            "write the entry as \"/host/path:/container/path\" or \"/host/path:/container/path:ro\" \
             (host paths containing ':' cannot be bind-mounted)",
        )
    };
    if spec.contains('\0') || spec.contains('\n') {
        return Err(bad("contains a NUL or newline character".to_string()));
    }
    let fields: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match fields.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => {
            return Err(bad(format!(
                "has {} ':'-separated fields; expected SRC:DST or SRC:DST:ro|rw",
                fields.len()
            )));
        }
    };
    if target.is_empty() {
        return Err(bad("has an empty container target".to_string()));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => {
            return Err(Refusal::new(
                RefusalCode::BadBindMode,
                spec,
                format!(
                    "bind mount {} has mode {}; only \"ro\" and \"rw\" are accepted",
                    quote(spec),
                    quote(m)
                ),
                "end the entry with \":ro\" or \":rw\"; propagation (rshared, rslave, …) and SELinux \
                 relabel (z, Z) options are not supported: clawden always mounts rprivate",
            ));
        }
    };
    Ok(ParsedBind {
        source,
        target,
        read_only,
    })
}

fn validate_one(
    spec: &str,
    table: &BlockedTable,
    policy: &BindPolicy,
) -> Result<ValidatedBind, Refusal> {
    let parsed = parse(spec)?;
    let use_ = SourceUse::Bind { spec };

    let checked = check_source(Path::new(parsed.source), use_, table)?;
    if !checked.exists {
        return Err(Refusal::new(
            RefusalCode::MissingSource,
            spec,
            format!(
                "bind mount {}: host source {} does not exist (Docker would create it as an empty root-owned directory)",
                quote(spec),
                quote_path(&checked.canonical)
            ),
            format!("create {} first, or correct the path", quote(parsed.source)),
        ));
    }
    if !policy.allow_external_sources {
        check_allowed_roots(spec, &checked.canonical, policy.allowed_roots)?;
    }

    let target = normalize_container_path(parsed.target).map_err(|r| Refusal {
        value: spec.to_string(),
        message: format!("bind mount {}: {}", quote(spec), r.message),
        ..r
    })?;
    if !policy.allow_reserved_targets {
        check_reserved_target(spec, &target, &normalised_reserved(policy))?;
    }
    Ok(ValidatedBind {
        spec: spec.to_string(),
        source: checked.canonical,
        target,
        read_only: parsed.read_only,
    })
}

fn check_allowed_roots(spec: &str, canonical: &Path, roots: &[PathBuf]) -> Result<(), Refusal> {
    let canonical_roots: Vec<PathBuf> = roots
        .iter()
        .filter(|r| r.is_absolute())
        .filter_map(|r| canonicalize_through_ancestor(r).ok())
        .collect();
    if canonical_roots.iter().any(|r| canonical.starts_with(r)) {
        return Ok(());
    }
    let listed = if canonical_roots.is_empty() {
        "none configured".to_string()
    } else {
        canonical_roots
            .iter()
            .map(|r| quote_path(r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Refusal::new(
        RefusalCode::OutsideAllowedRoots,
        spec,
        format!(
            "bind mount {}: host source {} is outside the allowed roots (the agent and sandbox workspaces: {listed})",
            quote(spec),
            quote_path(canonical)
        ),
        "move the data under the agent or sandbox workspace, or set \
         dangerouslyAllowExternalBindSources: true (lifts only this check)",
    ))
}

fn check_reserved_target(spec: &str, target: &str, reserved: &[String]) -> Result<(), Refusal> {
    let managed = reserved.iter().map(|r| (r.as_str(), "reserved target"));
    let system = SYSTEM_TARGETS.iter().map(|r| (*r, "system path"));
    for (r, kind) in managed.chain(system) {
        let relation = if target == r {
            "is"
        } else if r != "/" && is_same_or_under(target, r) {
            "is under"
        } else if is_same_or_under(r, target) {
            "covers"
        } else {
            continue;
        };
        return Err(Refusal::new(
            RefusalCode::ReservedTarget,
            spec,
            format!(
                "bind mount {}: container target {} {relation} the {kind} {}",
                quote(spec),
                quote(target),
                quote(r)
            ),
            "choose another container target, e.g. \"/mnt/<name>\", or set \
             dangerouslyAllowReservedContainerTargets: true (lifts only this check)",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "binds_tests.rs"]
mod tests;
