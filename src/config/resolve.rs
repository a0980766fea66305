//! Merge (OC): agent value ?? global value ?? default, over every layer (the user's file above a
//! profile), remembering where each value came from so `explain` can show it.

use super::load::{Env, LoadedConfig};
use super::schema::*;
use super::size::{ByteSize, Cpus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_IMAGE: &str = "clawden-sandbox:minimal";
pub const DEFAULT_PREFIX: &str = "clawden-sbx-";
pub const DEFAULT_WORKDIR: &str = "/workspace";
pub const DEFAULT_MAIN_KEY: &str = "main";
pub const DEFAULT_AGENT: &str = "main";
/// The default `fsize` ulimit (bytes): the largest file a sandbox process can write.
pub const DEFAULT_FSIZE_BYTES: i64 = 1 << 30;
/// The cap given to a tmpfs entry that names none.
pub const DEFAULT_TMPFS_SIZE: u64 = 64 << 20;
pub const DEFAULT_TOOL_ALLOW: &[&str] = &[
    "exec",
    "process",
    "read",
    "write",
    "edit",
    "apply_patch",
    "image",
    "sessions_list",
    "sessions_history",
    "sessions_send",
    "sessions_spawn",
    "session_status",
];
pub const DEFAULT_TOOL_DENY: &[&str] = &["browser", "canvas", "nodes", "cron", "gateway"];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Source {
    Default,
    Key { key: String, origin: String },
}

impl Source {
    pub fn is_default(&self) -> bool {
        matches!(self, Source::Default)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Key { key, origin } => write!(f, "{key} ({origin})"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn default(value: T) -> Self {
        Sourced {
            value,
            source: Source::Default,
        }
    }
}

/// Every resolved setting of one agent's sandbox.
#[derive(Debug, Clone)]
pub struct EffectiveSandbox {
    pub agent_id: String,
    pub mode: Sourced<Mode>,
    pub scope: Sourced<Scope>,
    pub workspace_access: Sourced<WorkspaceAccess>,
    pub workspace_root: Sourced<PathBuf>,
    pub agent_workspace: Sourced<PathBuf>,
    pub docker: EffectiveDocker,
    pub prune_idle_hours: Sourced<u64>,
    pub prune_max_age_days: Sourced<u64>,
    pub calls: EffectiveCalls,
    pub tool_allow: Sourced<Vec<String>>,
    pub tool_deny: Sourced<Vec<String>>,
    /// Which naming epoch new containers get (clawden's `naming` key).
    pub naming: Sourced<Naming>,
    /// The default agent of the config (it owns `agents.defaults.workspace`).
    pub default_agent: String,
    pub session_scope: SessionScope,
    pub state_dir: PathBuf,
    /// Settings that were written but do not apply (shared scope ignores per-agent docker/prune).
    pub ignored: Vec<String>,
    /// What the loader did the way OpenClaw's does, with a warning: an ignored `session.mainKey`,
    /// legacy keys mapped, `agents.list` ignored beside `agents.entries`.
    pub compat_warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EffectiveDocker {
    pub image: Sourced<String>,
    pub container_prefix: Sourced<String>,
    pub workdir: Sourced<String>,
    pub read_only_root: Sourced<bool>,
    pub tmpfs: Sourced<Vec<String>>,
    pub network: Sourced<String>,
    /// `None`: unset, the user fallback of sandbox.md §1 applies.
    pub user: Sourced<Option<String>>,
    pub cap_drop: Sourced<Vec<String>>,
    pub env: BTreeMap<String, Sourced<String>>,
    pub setup_command: Sourced<Option<String>>,
    pub pids_limit: Sourced<u64>,
    pub memory: Sourced<ByteSize>,
    pub memory_swap: Sourced<ByteSize>,
    pub cpus: Sourced<Cpus>,
    pub ulimits: BTreeMap<String, Sourced<(i64, i64)>>,
    pub seccomp_profile: Sourced<Option<String>>,
    pub apparmor_profile: Sourced<Option<String>>,
    pub dns: Sourced<Vec<String>>,
    pub extra_hosts: Sourced<Vec<String>>,
    /// Global binds first, then the agent's, each with the key it came from.
    pub binds: Vec<Sourced<String>>,
    pub allow_reserved_targets: Sourced<bool>,
    pub allow_external_sources: Sourced<bool>,
    pub allow_namespace_join: Sourced<bool>,
    pub allow_permissive_seccomp: Sourced<bool>,
}

#[derive(Debug, Clone)]
pub struct EffectiveCalls {
    pub direct_user: Sourced<Option<String>>,
    pub timeout_seconds: Sourced<u64>,
    pub max_output_bytes: Sourced<ByteSize>,
    pub max_read_bytes: Sourced<ByteSize>,
    pub max_write_bytes: Sourced<ByteSize>,
}

/// One sandbox section that may supply values, highest priority first in a candidate list.
struct Candidate<'a> {
    prefix: String,
    origin: &'a str,
    section: &'a SandboxSection,
}

fn pick<T>(
    cands: &[Candidate<'_>],
    key: &str,
    get: impl Fn(&SandboxSection) -> Option<T>,
    default: T,
) -> Sourced<T> {
    for c in cands {
        if let Some(v) = get(c.section) {
            return Sourced {
                value: v,
                source: Source::Key {
                    key: format!("{}.{key}", c.prefix),
                    origin: c.origin.to_string(),
                },
            };
        }
    }
    Sourced::default(default)
}

fn docker_of(s: &SandboxSection) -> Option<&DockerSection> {
    s.docker.as_ref()
}

/// OpenClaw's agent-id normalisation (`normalizeAgentId`), reproduced rule for rule so the same
/// configured id names the same agent (and the same containers) in both. (OC)
///
/// - trimmed empty → `main`;
/// - an id that already matches `[a-z0-9][a-z0-9_-]{0,63}` ignoring case → lowercased;
/// - else: lowercased (Unicode), each run of characters outside `[a-z0-9_-]` → one `-`,
///   leading and trailing `-` stripped (a leading `_` stays), then cut to 64 characters
///   (which may leave a trailing `-`), `main` if nothing is left.
pub fn normalize_agent_id(raw: &str) -> String {
    // JavaScript's trim(): Unicode white space and the byte-order mark.
    let trimmed = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.is_empty() {
        return DEFAULT_AGENT.to_string();
    }
    let id_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let valid = trimmed.len() <= 64
        && trimmed.starts_with(|c: char| c.is_ascii_alphanumeric())
        && trimmed.chars().all(id_char);
    if valid {
        return trimmed.to_ascii_lowercase();
    }
    let lower = trimmed.to_lowercase();
    let mut collapsed = String::with_capacity(lower.len());
    let mut in_run = false;
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
            collapsed.push(c);
            in_run = false;
        } else if !in_run {
            collapsed.push('-');
            in_run = true;
        }
    }
    // Only ASCII is left: a character cut is a byte cut.
    let stripped = collapsed.trim_matches('-');
    let cut = &stripped[..stripped.len().min(64)];
    if cut.is_empty() {
        DEFAULT_AGENT.to_string()
    } else {
        cut.to_string()
    }
}

/// One per-agent entry of a file, whichever form (`agents.list[]` or `agents.entries.<id>`)
/// wrote it.
struct AgentConfigEntry<'a> {
    id: &'a str,
    /// The entry's key path, e.g. `agents.list[0]` or `agents.entries.work`.
    prefix: String,
    default: bool,
    workspace: &'a Option<String>,
    sandbox: &'a Option<SandboxSection>,
    tools: &'a Option<AgentTools>,
}

/// A file's per-agent entries in written order: `agents.entries` when the file has it (newer
/// OpenClaw reads it instead of `agents.list`, never both), else `agents.list`. (OC)
fn agent_entries(a: &AgentsSection) -> Vec<AgentConfigEntry<'_>> {
    if let Some(map) = &a.entries {
        // Written order, then any key the order probe missed (sorted), each once.
        let mut keys: Vec<&String> = a
            .entries_order
            .iter()
            .filter_map(|k| map.get_key_value(k).map(|(k, _)| k))
            .collect();
        keys.dedup();
        for k in map.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        return keys
            .into_iter()
            .map(|k| {
                let e = &map[k];
                AgentConfigEntry {
                    id: k,
                    prefix: format!("agents.entries.{k}"),
                    default: e.default == Some(true),
                    workspace: &e.workspace,
                    sandbox: &e.sandbox,
                    tools: &e.tools,
                }
            })
            .collect();
    }
    a.list
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| AgentConfigEntry {
            id: &e.id,
            prefix: format!("agents.list[{i}]"),
            default: e.default == Some(true),
            workspace: &e.workspace,
            sandbox: &e.sandbox,
            tools: &e.tools,
        })
        .collect()
}

/// The default agent (OC): in the highest layer that lists agents, the first entry with
/// `default: true`, else the first entry; `main` when no layer lists any.
pub fn default_agent(cfg: &LoadedConfig) -> String {
    for layer in cfg.layers.iter().rev() {
        let Some(a) = &layer.file.agents else {
            continue;
        };
        let entries = agent_entries(a);
        if let Some(e) = entries.iter().find(|e| e.default).or(entries.first()) {
            return normalize_agent_id(e.id);
        }
    }
    DEFAULT_AGENT.to_string()
}

/// The session settings over all layers: the default agent (whose main session is
/// `agent:<id>:main`) and `session.scope`. `session.mainKey` is ignored (OC): the main session
/// is always `main`; [`compat_warnings`] says so.
pub fn session_settings(cfg: &LoadedConfig) -> (String, SessionScope) {
    let mut scope = SessionScope::PerSender;
    for layer in &cfg.layers {
        if let Some(sc) = layer.file.session.as_ref().and_then(|s| s.scope) {
            scope = sc;
        }
    }
    (default_agent(cfg), scope)
}

/// Warnings for what the config says that clawden, like OpenClaw's loader, does not take as
/// written: `session.mainKey` (ignored) and `agents.list` beside `agents.entries` (ignored).
/// Legacy sandbox keys are reported per agent by [`resolve`].
pub fn compat_warnings(cfg: &LoadedConfig) -> Vec<String> {
    let mut out = Vec::new();
    for layer in &cfg.layers {
        let origin = &layer.origin;
        // Writing the value it always has ("main") changes nothing and is not worth a warning.
        if let Some(k) = layer
            .file
            .session
            .as_ref()
            .and_then(|s| s.main_key.as_ref())
            .filter(|k| !k.trim().eq_ignore_ascii_case(DEFAULT_MAIN_KEY))
        {
            out.push(format!(
                "session.mainKey {k:?} is ignored ({origin}): the main session is always \"{DEFAULT_MAIN_KEY}\", as in OpenClaw"
            ));
        }
        if let Some(a) = &layer.file.agents
            && a.entries.is_some()
            && a.list.is_some()
        {
            out.push(format!(
                "agents.list is ignored ({origin}): agents.entries is set too and wins, as in OpenClaw"
            ));
        }
    }
    out
}

/// Every agent id the config names (normalised, sorted, deduplicated), plus `main` and the
/// default agent.
pub fn known_agents(cfg: &LoadedConfig) -> Vec<String> {
    let mut ids = vec![DEFAULT_AGENT.to_string(), default_agent(cfg)];
    for layer in &cfg.layers {
        if let Some(a) = &layer.file.agents {
            ids.extend(agent_entries(a).iter().map(|e| normalize_agent_id(e.id)));
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

fn legacy_scope(per_session: bool) -> Scope {
    if per_session {
        Scope::Session
    } else {
        Scope::Shared
    }
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Session => "session",
        Scope::Agent => "agent",
        Scope::Shared => "shared",
    }
}

/// Resolve the effective sandbox settings of `agent_id` (already normalised).
pub fn resolve(cfg: &LoadedConfig, agent_id: &str, env: &Env) -> EffectiveSandbox {
    let state_dir = env.state_dir();
    // Candidates, highest priority first: agent sections (user file above profile), then globals.
    let mut agent_cands = Vec::new();
    let mut global_cands = Vec::new();
    let mut agent_workspace: Option<Sourced<PathBuf>> = None;
    let mut default_workspace: Option<Sourced<PathBuf>> = None;
    let mut agent_tools: Vec<(String, &str, &ToolPolicySection)> = Vec::new();
    let mut global_tools: Vec<(String, &str, &ToolPolicySection)> = Vec::new();
    for layer in cfg.layers.iter().rev() {
        let origin = layer.origin.as_str();
        let src = |key: String| Source::Key {
            key,
            origin: origin.to_string(),
        };
        if let Some(agents) = &layer.file.agents {
            for e in agent_entries(agents) {
                if normalize_agent_id(e.id) != agent_id {
                    continue;
                }
                let prefix = e.prefix;
                if let Some(s) = e.sandbox {
                    agent_cands.push(Candidate {
                        prefix: format!("{prefix}.sandbox"),
                        origin,
                        section: s,
                    });
                }
                if let (None, Some(w)) = (&agent_workspace, e.workspace) {
                    agent_workspace = Some(Sourced {
                        value: env.expand_tilde(w),
                        source: src(format!("{prefix}.workspace")),
                    });
                }
                if let Some(t) = e
                    .tools
                    .as_ref()
                    .and_then(|t| t.sandbox.as_ref())
                    .and_then(|t| t.tools.as_ref())
                {
                    agent_tools.push((format!("{prefix}.tools.sandbox.tools"), origin, t));
                }
            }
            if let Some(d) = &agents.defaults {
                if let Some(s) = &d.sandbox {
                    global_cands.push(Candidate {
                        prefix: "agents.defaults.sandbox".into(),
                        origin,
                        section: s,
                    });
                }
                if let (None, Some(w)) = (&default_workspace, &d.workspace) {
                    default_workspace = Some(Sourced {
                        value: env.expand_tilde(w),
                        source: src("agents.defaults.workspace".into()),
                    });
                }
            }
        }
        if let Some(t) = layer
            .file
            .tools
            .as_ref()
            .and_then(|t| t.sandbox.as_ref())
            .and_then(|t| t.tools.as_ref())
        {
            global_tools.push(("tools.sandbox.tools".into(), origin, t));
        }
    }
    let all: Vec<Candidate<'_>> = agent_cands
        .iter()
        .chain(global_cands.iter())
        .map(|c| Candidate {
            prefix: c.prefix.clone(),
            origin: c.origin,
            section: c.section,
        })
        .collect();

    // `scope`, else the legacy `perSession` of the same section (mapped with a warning). (OC)
    // Sections below the one that decides are never read, so they warn about nothing.
    let mut compat = compat_warnings(cfg);
    let mut scope = Sourced::default(Scope::Agent);
    for c in &all {
        let legacy = c.section.per_session.map(|p| (p, legacy_scope(p)));
        if let (Some((p, _)), Some(s)) = (legacy, c.section.scope) {
            compat.push(format!(
                "legacy key {}.perSession: {p} is ignored ({}): {}.scope {:?} is set",
                c.prefix,
                c.origin,
                c.prefix,
                scope_name(s)
            ));
        }
        let found = match (c.section.scope, legacy) {
            (Some(s), _) => Some((s, "scope")),
            (None, Some((p, s))) => {
                compat.push(format!(
                    "legacy key {}.perSession: {p} is read as scope {:?} ({}), as OpenClaw does; write {}.scope instead",
                    c.prefix,
                    scope_name(s),
                    c.origin,
                    c.prefix
                ));
                Some((s, "perSession"))
            }
            (None, None) => None,
        };
        if let Some((value, key)) = found {
            scope = Sourced {
                value,
                source: Source::Key {
                    key: format!("{}.{key}", c.prefix),
                    origin: c.origin.to_string(),
                },
            };
            break;
        }
    }
    let mut ignored = Vec::new();
    // Under shared scope only the global docker and prune settings apply. (OC)
    let docker_cands: Vec<Candidate<'_>> = if scope.value == Scope::Shared {
        for c in &agent_cands {
            if c.section.docker.is_some() {
                ignored.push(format!(
                    "{}.docker (scope \"shared\" uses only agents.defaults.sandbox.docker)",
                    c.prefix
                ));
            }
            if c.section.prune.is_some() {
                ignored.push(format!(
                    "{}.prune (scope \"shared\" uses only agents.defaults.sandbox.prune)",
                    c.prefix
                ));
            }
        }
        global_cands
            .iter()
            .map(|c| Candidate {
                prefix: c.prefix.clone(),
                origin: c.origin,
                section: c.section,
            })
            .collect()
    } else {
        all.iter()
            .map(|c| Candidate {
                prefix: c.prefix.clone(),
                origin: c.origin,
                section: c.section,
            })
            .collect()
    };

    macro_rules! d {
        ($key:literal, $field:ident, $default:expr) => {
            pick(
                &docker_cands,
                concat!("docker.", $key),
                |s| docker_of(s).and_then(|d| d.$field.clone()),
                $default,
            )
        };
    }
    macro_rules! dopt {
        ($key:literal, $field:ident) => {
            pick(
                &docker_cands,
                concat!("docker.", $key),
                |s| docker_of(s).and_then(|d| d.$field.clone()).map(Some),
                None,
            )
        };
    }

    let memory = d!("memory", memory, ByteSize(1 << 30));
    // memorySwap defaults to the resolved memory: no swap beyond the memory limit. (better)
    let memory_swap = d!("memorySwap", memory_swap, memory.value);

    // Per-key merges: default, then globals (lowest first), then agents (lowest first).
    let mut env_map: BTreeMap<String, Sourced<String>> = BTreeMap::new();
    // A configured global env replaces the default `{LANG: "C.UTF-8"}` instead of merging with
    // it (OC); agent env merges over whichever applies.
    let global_env_set = global_cands
        .iter()
        .any(|c| docker_of(c.section).is_some_and(|d| d.env.is_some()));
    if !global_env_set {
        env_map.insert("LANG".into(), Sourced::default("C.UTF-8".into()));
    }
    let mut ulimits: BTreeMap<String, Sourced<(i64, i64)>> = BTreeMap::new();
    ulimits.insert("nofile".into(), Sourced::default((1024, 4096)));
    ulimits.insert("core".into(), Sourced::default((0, 0)));
    // No file written in the sandbox grows past this (issue 7): a sandbox cannot fill the
    // host's disk through a writable workspace with one file. (better)
    ulimits.insert(
        "fsize".into(),
        Sourced::default((DEFAULT_FSIZE_BYTES, DEFAULT_FSIZE_BYTES)),
    );
    let mut binds = Vec::new();
    for c in docker_cands.iter().rev() {
        let Some(d) = docker_of(c.section) else {
            continue;
        };
        let src = |k: &str| Source::Key {
            key: format!("{}.docker.{k}", c.prefix),
            origin: c.origin.to_string(),
        };
        for (k, v) in d.env.iter().flatten() {
            env_map.insert(
                k.clone(),
                Sourced {
                    value: v.clone(),
                    source: src(&format!("env.{k}")),
                },
            );
        }
        for (k, v) in d.ulimits.iter().flatten() {
            ulimits.insert(
                k.clone(),
                Sourced {
                    value: v.soft_hard(),
                    source: src(&format!("ulimits.{k}")),
                },
            );
        }
    }
    // Binds concatenate: global then agent, each lowest layer first.
    for c in global_cands.iter().rev().chain(
        if scope.value == Scope::Shared {
            [].iter()
        } else {
            agent_cands.iter()
        }
        .rev(),
    ) {
        for (i, b) in docker_of(c.section)
            .and_then(|d| d.binds.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            binds.push(Sourced {
                value: b.clone(),
                source: Source::Key {
                    key: format!("{}.docker.binds[{i}]", c.prefix),
                    origin: c.origin.to_string(),
                },
            });
        }
    }

    let docker = EffectiveDocker {
        image: d!("image", image, DEFAULT_IMAGE.into()),
        container_prefix: d!("containerPrefix", container_prefix, DEFAULT_PREFIX.into()),
        workdir: d!("workdir", workdir, DEFAULT_WORKDIR.into()),
        read_only_root: d!("readOnlyRoot", read_only_root, true),
        tmpfs: d!(
            "tmpfs",
            tmpfs,
            vec![
                "/tmp:size=64m".into(),
                "/var/tmp:size=64m".into(),
                "/run:size=16m".into()
            ]
        ),
        network: d!("network", network, "none".into()),
        user: dopt!("user", user),
        cap_drop: d!("capDrop", cap_drop, vec!["ALL".into()]),
        env: env_map,
        setup_command: dopt!("setupCommand", setup_command),
        pids_limit: d!("pidsLimit", pids_limit, 256),
        memory,
        memory_swap,
        cpus: d!("cpus", cpus, Cpus(Cpus::NANOS)),
        ulimits,
        seccomp_profile: dopt!("seccompProfile", seccomp_profile),
        apparmor_profile: dopt!("apparmorProfile", apparmor_profile),
        dns: d!("dns", dns, vec![]),
        extra_hosts: d!("extraHosts", extra_hosts, vec![]),
        binds,
        allow_reserved_targets: d!(
            "dangerouslyAllowReservedContainerTargets",
            dangerously_allow_reserved_container_targets,
            false
        ),
        allow_external_sources: d!(
            "dangerouslyAllowExternalBindSources",
            dangerously_allow_external_bind_sources,
            false
        ),
        allow_namespace_join: d!(
            "dangerouslyAllowContainerNamespaceJoin",
            dangerously_allow_container_namespace_join,
            false
        ),
        allow_permissive_seccomp: d!(
            "dangerouslyAllowPermissiveSeccomp",
            dangerously_allow_permissive_seccomp,
            false
        ),
    };

    let calls = EffectiveCalls {
        direct_user: pick(
            &all,
            "calls.directUser",
            |s| {
                s.calls
                    .as_ref()
                    .and_then(|c| c.direct_user.clone().map(Some))
            },
            None,
        ),
        timeout_seconds: pick(
            &all,
            "calls.timeoutSeconds",
            |s| s.calls.as_ref().and_then(|c| c.timeout_seconds),
            300,
        ),
        max_output_bytes: pick(
            &all,
            "calls.maxOutputBytes",
            |s| s.calls.as_ref().and_then(|c| c.max_output_bytes),
            ByteSize(1 << 20),
        ),
        max_read_bytes: pick(
            &all,
            "calls.maxReadBytes",
            |s| s.calls.as_ref().and_then(|c| c.max_read_bytes),
            ByteSize(16 << 20),
        ),
        max_write_bytes: pick(
            &all,
            "calls.maxWriteBytes",
            |s| s.calls.as_ref().and_then(|c| c.max_write_bytes),
            ByteSize(64 << 20),
        ),
    };

    let workspace_root = pick(
        &all,
        "workspaceRoot",
        |s| s.workspace_root.as_deref().map(|w| env.expand_tilde(w)),
        state_dir.join("sandboxes"),
    );
    // Agent workspace (OC): the agent's own; else the default agent's is
    // agents.defaults.workspace and every other agent's is `<agents.defaults.workspace>/<id>`;
    // without agents.defaults.workspace, `<state>/workspace` and `<state>/workspace-<id>`.
    let default_agent = default_agent(cfg);
    let agent_workspace =
        agent_workspace.unwrap_or_else(|| match (agent_id == default_agent, default_workspace) {
            (true, Some(w)) => w,
            (true, None) => Sourced::default(state_dir.join("workspace")),
            (false, Some(w)) => Sourced {
                value: w.value.join(agent_id),
                source: match w.source {
                    Source::Key { key, origin } => Source::Key {
                        key: format!("{key} + \"/{agent_id}\""),
                        origin,
                    },
                    Source::Default => Source::Default,
                },
            },
            (false, None) => Sourced::default(state_dir.join(format!("workspace-{agent_id}"))),
        });

    let tool_pick = |cands: &[(String, &str, &ToolPolicySection)],
                     f: fn(&ToolPolicySection) -> Option<&Vec<String>>,
                     name: &str| {
        cands.iter().find_map(|(p, o, t)| {
            f(t).map(|v| Sourced {
                value: v.clone(),
                source: Source::Key {
                    key: format!("{p}.{name}"),
                    origin: o.to_string(),
                },
            })
        })
    };
    let mut tool_allow = tool_pick(&agent_tools, |t| t.allow.as_ref(), "allow")
        .or_else(|| tool_pick(&global_tools, |t| t.allow.as_ref(), "allow"))
        .unwrap_or_else(|| {
            Sourced::default(DEFAULT_TOOL_ALLOW.iter().map(|s| s.to_string()).collect())
        });
    for (_, _, t) in agent_tools.iter().chain(global_tools.iter()) {
        for extra in t.also_allow.iter().flatten() {
            if !tool_allow.value.contains(extra) {
                tool_allow.value.push(extra.clone());
            }
        }
    }
    let tool_deny = tool_pick(&agent_tools, |t| t.deny.as_ref(), "deny")
        .or_else(|| tool_pick(&global_tools, |t| t.deny.as_ref(), "deny"))
        .unwrap_or_else(|| {
            Sourced::default(DEFAULT_TOOL_DENY.iter().map(|s| s.to_string()).collect())
        });

    let (_, session_scope) = session_settings(cfg);
    EffectiveSandbox {
        agent_id: agent_id.to_string(),
        mode: pick(&all, "mode", |s| s.mode, Mode::Off),
        workspace_access: pick(
            &all,
            "workspaceAccess",
            |s| s.workspace_access,
            WorkspaceAccess::None,
        ),
        scope,
        workspace_root,
        agent_workspace,
        docker,
        prune_idle_hours: pick(
            &docker_cands,
            "prune.idleHours",
            |s| s.prune.as_ref().and_then(|p| p.idle_hours),
            24,
        ),
        prune_max_age_days: pick(
            &docker_cands,
            "prune.maxAgeDays",
            |s| s.prune.as_ref().and_then(|p| p.max_age_days),
            7,
        ),
        calls,
        tool_allow,
        tool_deny,
        naming: pick(&all, "naming", |s| s.naming, Naming::Legacy),
        default_agent,
        session_scope,
        state_dir,
        ignored,
        compat_warnings: compat,
    }
}
