//! Without root (no staging), a bind source a sandbox could rewrite between the check and
//! `docker start` is refused: `source_sandbox_writable`.

use crate::config::resolve::{known_agents, resolve};
use crate::config::{Env, LoadedConfig, WorkspaceAccess};
use crate::decide::mounts::{MountSource, PlannedMount};
use crate::validate::{Refusal, RefusalCode, canonicalize_through_ancestor, lexical_normalize};
use std::path::{Path, PathBuf};

/// Refuse every bind source (`MountSource::Bind`) that equals or lies inside one of `writable`
/// (directories some sandbox can write, see [`sandbox_writable_dirs`]). Inputs are canonical
/// host paths; both are also compared in their lexically normalised form, which can only add
/// refusals. Paths are compared component by component (`/a/ws2` is not inside `/a/ws`).
pub fn sandbox_writable_check(mounts: &[PlannedMount], writable: &[PathBuf]) -> Vec<Refusal> {
    let mut out = Vec::new();
    for m in mounts.iter().filter(|m| m.source == MountSource::Bind) {
        let forms = [m.host.clone(), lexical_normalize(&m.host)];
        // The deepest (most specific) writable directory names the problem best.
        let hit = writable
            .iter()
            .filter(|w| {
                let wforms = [w.to_path_buf(), lexical_normalize(w)];
                forms
                    .iter()
                    .any(|s| wforms.iter().any(|w| w.is_absolute() && s.starts_with(w)))
            })
            .max_by_key(|w| w.components().count());
        if let Some(w) = hit {
            out.push(refusal(m, w));
        }
    }
    out
}

fn refusal(m: &PlannedMount, w: &Path) -> Refusal {
    let src = m.host.to_string_lossy();
    let dir = w.to_string_lossy();
    let spec = format!(
        "{src}:{}{}",
        m.container,
        if m.access.read_only() { ":ro" } else { "" }
    );
    let relation = if lexical_normalize(&m.host) == lexical_normalize(w) {
        "is"
    } else {
        "lies inside"
    };
    Refusal {
        code: RefusalCode::SourceSandboxWritable,
        value: spec.clone(),
        message: format!(
            "bind mount {spec:?}: host source {src:?} {relation} {dir:?}, a directory a sandbox can write; \
             without root clawden cannot pin the mount, so a sandbox could swap the source (or a directory \
             above it) for a symlink between the check and the container start"
        ),
        fix: format!(
            "run clawden as root (mounts are then staged and pinned to the checked inode), or move {src:?} \
             outside {dir:?} and every other sandbox-writable directory (workspaceRoot, agent workspaces \
             mounted \"rw\")"
        ),
    }
}

/// Every directory some sandbox of this configuration can write, canonical (and lexical) forms:
/// the `workspaceRoot` of every agent (every sandbox workspace lies there; under `shared` scope it
/// is the workspace itself), and the agent workspace of every agent whose `workspaceAccess` is
/// `rw`.
pub fn sandbox_writable_dirs(cfg: &LoadedConfig, env: &Env) -> Vec<PathBuf> {
    let mut raw = Vec::new();
    for id in known_agents(cfg) {
        let eff = resolve(cfg, &id, env);
        raw.push(eff.workspace_root.value.clone());
        if eff.workspace_access.value == WorkspaceAccess::Rw {
            raw.push(eff.agent_workspace.value.clone());
        }
    }
    let mut out = Vec::new();
    for p in raw.into_iter().filter(|p| p.is_absolute()) {
        out.push(lexical_normalize(&p));
        if let Ok(c) = canonicalize_through_ancestor(&p) {
            out.push(c);
        }
    }
    out.sort();
    out.dedup();
    out
}
