//! `clawden explain`: the decision made visible — one data structure, rendered as JSON or text.

use crate::config::resolve::EffectiveSandbox;
use crate::config::{ByteSize, Source};
use crate::decide::plan::{SandboxPlan, UserOrigin};
use crate::decide::{Access, MountSource};
use crate::display::{escape, escape_path};
use crate::validate::Refusal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub agent_id: String,
    pub session_key: String,
    pub main_session_key: String,
    pub is_main_session: bool,
    pub sandboxed: bool,
    pub mode: crate::config::Mode,
    pub scope: crate::config::Scope,
    pub workspace_access: crate::config::WorkspaceAccess,
    pub workspace_root: PathBuf,
    pub agent_workspace: PathBuf,
    pub sandbox_workspace: PathBuf,
    pub scope_key: String,
    /// The naming epoch new containers get (`legacy` or `workspace`).
    pub naming: crate::config::Naming,
    pub container_name: String,
    /// The config's default agent (first `agents.list` entry with `default: true`, else the
    /// first entry, else `main`); it owns `agents.defaults.workspace`.
    pub default_agent: String,
    pub image: String,
    pub workdir: String,
    pub network: String,
    pub user: String,
    pub user_origin: UserOrigin,
    /// Who a direct (unsandboxed) call of this session runs as on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_user: Option<String>,
    pub read_only_root: bool,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub env_keys: Vec<String>,
    pub setup_command: Option<String>,
    /// Labels the container gets from the plan, incl. `clawden.owner` (the configuration that
    /// owns it; `recreate --all` and `prune` judge ownership by it).
    pub labels: BTreeMap<String, String>,
    /// Every `dangerously*` setting and whether it is on.
    pub dangerous_flags: BTreeMap<String, bool>,
    pub mounts: Vec<MountView>,
    pub limits: Limits,
    pub prune: Prune,
    pub tool_policy: ToolPolicy,
    pub config_hash: String,
    pub problems: Vec<Refusal>,
    pub warnings: Vec<String>,
    pub fix_its: Vec<FixIt>,
    /// Where each top-level value came from (`default` or `key (file)`).
    pub sources: BTreeMap<String, String>,
    pub config_files: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MountView {
    pub host: PathBuf,
    pub container: String,
    pub access: Access,
    pub source: MountSource,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub memory: u64,
    pub memory_swap: u64,
    pub cpus: f64,
    pub pids_limit: u64,
    pub tmpfs: Vec<TmpfsView>,
    pub ulimits: BTreeMap<String, UlimitView>,
    pub call_timeout_seconds: u64,
    pub max_output_bytes: u64,
    pub max_read_bytes: u64,
    pub max_write_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TmpfsView {
    pub path: String,
    pub size_bytes: Option<u64>,
    pub options: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UlimitView {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prune {
    pub idle_hours: u64,
    pub max_age_days: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolPolicy {
    pub allow: ToolList,
    pub deny: ToolList,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolList {
    pub tools: Vec<String>,
    pub source: String,
}

/// A key the operator can change, and what it would do.
#[derive(Debug, Clone, Serialize)]
pub struct FixIt {
    pub key: String,
    pub hint: String,
}

fn src(s: &Source) -> String {
    s.to_string()
}

fn key_or(s: &Source, fallback: &str) -> String {
    match s {
        Source::Key { key, .. } => key.clone(),
        Source::Default => fallback.to_string(),
    }
}

fn tmpfs_size(options: &str) -> Option<u64> {
    options
        .split(',')
        .find_map(|o| o.strip_prefix("size="))
        .and_then(|s| ByteSize::parse(s).ok())
        .map(|b| b.0)
}

/// Assemble the explanation from the effective settings and the plan.
pub fn explain(
    eff: &EffectiveSandbox,
    plan: &SandboxPlan,
    config_files: Vec<String>,
) -> Explanation {
    let c = &plan.container;
    let d = &eff.docker;
    let mut sources = BTreeMap::new();
    sources.insert("mode".into(), src(&eff.mode.source));
    sources.insert("scope".into(), src(&eff.scope.source));
    sources.insert("workspaceAccess".into(), src(&eff.workspace_access.source));
    sources.insert("workspaceRoot".into(), src(&eff.workspace_root.source));
    sources.insert("workspace".into(), src(&eff.agent_workspace.source));
    sources.insert("naming".into(), src(&eff.naming.source));
    sources.insert("image".into(), src(&d.image.source));
    sources.insert("workdir".into(), src(&d.workdir.source));
    sources.insert("network".into(), src(&d.network.source));
    sources.insert("user".into(), src(&d.user.source));
    sources.insert("memory".into(), src(&d.memory.source));
    sources.insert("memorySwap".into(), src(&d.memory_swap.source));
    sources.insert("cpus".into(), src(&d.cpus.source));
    sources.insert("pidsLimit".into(), src(&d.pids_limit.source));
    sources.insert("tmpfs".into(), src(&d.tmpfs.source));
    for (k, v) in &d.ulimits {
        sources.insert(format!("ulimits.{k}"), src(&v.source));
    }
    for (k, f) in [
        (
            "dangerouslyAllowReservedContainerTargets",
            &d.allow_reserved_targets,
        ),
        (
            "dangerouslyAllowExternalBindSources",
            &d.allow_external_sources,
        ),
        (
            "dangerouslyAllowContainerNamespaceJoin",
            &d.allow_namespace_join,
        ),
        (
            "dangerouslyAllowPermissiveSeccomp",
            &d.allow_permissive_seccomp,
        ),
    ] {
        sources.insert(k.into(), src(&f.source));
    }

    let mut fix_its = Vec::new();
    let mode_key = key_or(&eff.mode.source, "agents.defaults.sandbox.mode");
    if !plan.sandboxed {
        let hint = if plan.session.is_main {
            "set to \"all\" to sandbox the main session too"
        } else {
            "set to \"non-main\" or \"all\" to run this session in a container"
        };
        fix_its.push(FixIt {
            key: mode_key,
            hint: hint.into(),
        });
    }
    fix_its.push(FixIt {
        key: key_or(&eff.scope.source, "agents.defaults.sandbox.scope"),
        hint: "\"session\" (one container per session), \"agent\" (per agent) or \"shared\"".into(),
    });
    fix_its.push(FixIt {
        key: key_or(&eff.workspace_access.source, "agents.defaults.sandbox.workspaceAccess"),
        hint: "\"none\", \"ro\" (nothing writable: sandbox workspace read-only at the workdir, agent workspace read-only at /agent) or \"rw\" (agent workspace at the workdir)".into(),
    });
    fix_its.push(FixIt {
        key: key_or(&eff.naming.source, "agents.defaults.sandbox.naming"),
        hint: "\"legacy\" (scope key as is, slug names) or \"workspace\" (newer OpenClaw: scope keys qualified with the agent workspace's hash, workspace-<32 hex> names)".into(),
    });
    fix_its.push(FixIt {
        key: key_or(&eff.tool_deny.source, "tools.sandbox.tools.deny"),
        hint: "tools denied inside the sandbox; tools.sandbox.tools.allow / alsoAllow widen the allow list".into(),
    });

    Explanation {
        agent_id: plan.session.agent_id.clone(),
        session_key: plan.session.key.clone(),
        main_session_key: plan.session.main_key.clone(),
        is_main_session: plan.session.is_main,
        sandboxed: plan.sandboxed,
        mode: plan.mode,
        scope: plan.scope,
        workspace_access: plan.workspace_access,
        workspace_root: eff.workspace_root.value.clone(),
        agent_workspace: plan.agent_workspace.clone(),
        sandbox_workspace: plan.sandbox_workspace.clone(),
        scope_key: plan.scope_key.clone(),
        naming: eff.naming.value,
        container_name: c.name.clone(),
        default_agent: eff.default_agent.clone(),
        image: c.image.clone(),
        workdir: c.workdir.clone(),
        network: c.network.clone(),
        user: c.user.clone(),
        user_origin: plan.user_origin,
        direct_user: (!plan.sandboxed).then(|| {
            use crate::decide::HostProbe;
            let host = crate::decide::RealHost;
            crate::exec::host::describe_direct_user(
                eff.calls.direct_user.value.as_deref(),
                &plan.agent_workspace,
                host.owner(&plan.agent_workspace),
                host.identity().0 == 0,
            )
        }),
        read_only_root: c.read_only_root,
        cap_drop: c.cap_drop.clone(),
        security_opt: c.security_opt.clone(),
        env_keys: c.env.keys().cloned().collect(),
        setup_command: c.setup_command.clone(),
        labels: c.labels.clone(),
        dangerous_flags: [
            (
                "dangerouslyAllowReservedContainerTargets",
                d.allow_reserved_targets.value,
            ),
            (
                "dangerouslyAllowExternalBindSources",
                d.allow_external_sources.value,
            ),
            (
                "dangerouslyAllowContainerNamespaceJoin",
                d.allow_namespace_join.value,
            ),
            (
                "dangerouslyAllowPermissiveSeccomp",
                d.allow_permissive_seccomp.value,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        mounts: c
            .mounts
            .iter()
            .map(|m| MountView {
                host: m.host.clone(),
                container: m.container.clone(),
                access: m.access,
                source: m.source,
            })
            .collect(),
        limits: Limits {
            memory: c.memory,
            memory_swap: c.memory_swap,
            cpus: d.cpus.value.as_f64(),
            pids_limit: c.pids_limit,
            tmpfs: c
                .tmpfs
                .iter()
                .map(|(p, o)| TmpfsView {
                    path: p.clone(),
                    size_bytes: tmpfs_size(o),
                    options: o.clone(),
                })
                .collect(),
            ulimits: c
                .ulimits
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        UlimitView {
                            soft: u.soft,
                            hard: u.hard,
                        },
                    )
                })
                .collect(),
            call_timeout_seconds: eff.calls.timeout_seconds.value,
            max_output_bytes: eff.calls.max_output_bytes.value.0,
            max_read_bytes: eff.calls.max_read_bytes.value.0,
            max_write_bytes: eff.calls.max_write_bytes.value.0,
        },
        prune: Prune {
            idle_hours: eff.prune_idle_hours.value,
            max_age_days: eff.prune_max_age_days.value,
        },
        tool_policy: ToolPolicy {
            allow: ToolList {
                tools: eff.tool_allow.value.clone(),
                source: src(&eff.tool_allow.source),
            },
            deny: ToolList {
                tools: eff.tool_deny.value.clone(),
                source: src(&eff.tool_deny.source),
            },
        },
        config_hash: plan.config_hash.clone(),
        problems: plan.problems.clone(),
        warnings: plan.warnings.clone(),
        fix_its,
        sources,
        config_files,
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn from(e: &Explanation, key: &str) -> String {
    match e.sources.get(key) {
        Some(s) if s != "default" => format!("  (from {})", escape(s)),
        _ => "  (default)".to_string(),
    }
}

/// Human output, in sections.
pub fn render_human(e: &Explanation) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "Effective sandbox");
    let _ = writeln!(
        w,
        "  session            {}{}",
        escape(&e.session_key),
        if e.is_main_session {
            " (main session)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        w,
        "  agent              {}{}",
        escape(&e.agent_id),
        if e.agent_id == e.default_agent {
            " (default agent)"
        } else {
            ""
        }
    );
    let why = match (e.sandboxed, e.mode) {
        (false, crate::config::Mode::Off) => {
            "mode \"off\": runs on the host, confined to the agent workspace"
        }
        (false, _) => {
            "main session under mode \"non-main\": runs on the host, confined to the agent workspace"
        }
        (true, crate::config::Mode::All) => "mode \"all\"",
        (true, _) => "mode \"non-main\" and not the main session",
    };
    let _ = writeln!(w, "  sandboxed          {} ({why})", yes(e.sandboxed));
    let _ = writeln!(
        w,
        "  mode               {}{}",
        json_str(&e.mode),
        from(e, "mode")
    );
    let _ = writeln!(
        w,
        "  scope              {}{}",
        json_str(&e.scope),
        from(e, "scope")
    );
    let _ = writeln!(
        w,
        "  workspace access   {}{}",
        json_str(&e.workspace_access),
        from(e, "workspaceAccess")
    );
    let _ = writeln!(w, "  scope key          {}", escape(&e.scope_key));
    let _ = writeln!(
        w,
        "  naming             {}{}",
        json_str(&e.naming),
        from(e, "naming")
    );
    let _ = writeln!(
        w,
        "  container          {}{}",
        escape(&e.container_name),
        if e.sandboxed {
            ""
        } else {
            " (not used by this session)"
        }
    );
    let _ = writeln!(
        w,
        "  image              {}{}",
        escape(&e.image),
        from(e, "image")
    );
    let _ = writeln!(
        w,
        "  workdir            {}{}",
        escape(&e.workdir),
        from(e, "workdir")
    );
    let _ = writeln!(
        w,
        "  user               {} ({})",
        escape(&e.user),
        json_str(&e.user_origin)
    );
    if let Some(d) = &e.direct_user {
        let _ = writeln!(w, "  direct calls as    {}", escape(d));
    }
    let _ = writeln!(
        w,
        "  agent workspace    {}{}",
        escape_path(&e.agent_workspace),
        from(e, "workspace")
    );
    let _ = writeln!(
        w,
        "  sandbox workspace  {}",
        escape_path(&e.sandbox_workspace)
    );
    let _ = writeln!(w, "  config hash        {}", e.config_hash);

    let _ = writeln!(w, "\nMounts");
    for m in &e.mounts {
        let _ = writeln!(
            w,
            "  {} -> {}  {}  ({})",
            escape_path(&m.host),
            escape(&m.container),
            json_str(&m.access),
            json_str(&m.source)
        );
    }
    for t in &e.limits.tmpfs {
        let _ = writeln!(w, "  tmpfs -> {}  {}", escape(&t.path), escape(&t.options));
    }

    let l = &e.limits;
    let _ = writeln!(w, "\nLimits and security");
    let _ = writeln!(
        w,
        "  memory             {} (swap {}){}",
        ByteSize(l.memory),
        ByteSize(l.memory_swap),
        from(e, "memory")
    );
    let _ = writeln!(w, "  cpus               {}{}", l.cpus, from(e, "cpus"));
    let _ = writeln!(
        w,
        "  pids limit         {}{}",
        l.pids_limit,
        from(e, "pidsLimit")
    );
    let ul: Vec<String> = l
        .ulimits
        .iter()
        .map(|(k, v)| {
            // fsize is in bytes: show it as a size as well.
            let size = |n: i64| {
                if n < 0 {
                    "unlimited".to_string()
                } else {
                    ByteSize(n as u64).to_string()
                }
            };
            if k == "fsize" {
                format!("fsize={}:{}", size(v.soft), size(v.hard))
            } else {
                format!("{k}={}:{}", v.soft, v.hard)
            }
        })
        .collect();
    let _ = writeln!(w, "  ulimits            {}", ul.join(" "));
    let fsize_from = from(e, "ulimits.fsize");
    if let Some(f) = l.ulimits.get("fsize") {
        let _ = writeln!(
            w,
            "  max file size      {}{fsize_from}",
            if f.hard < 0 {
                "unlimited".to_string()
            } else {
                ByteSize(f.hard as u64).to_string()
            }
        );
    }
    let _ = writeln!(
        w,
        "  network            {}{}",
        escape(&e.network),
        from(e, "network")
    );
    let _ = writeln!(w, "  read-only root     {}", yes(e.read_only_root));
    let _ = writeln!(w, "  capDrop            {}", escape(&e.cap_drop.join(",")));
    let _ = writeln!(
        w,
        "  security options   {}",
        escape(&e.security_opt.join(" "))
    );
    let on: Vec<String> = e
        .dangerous_flags
        .iter()
        .filter(|(_, v)| **v)
        .map(|(k, _)| format!("{k}{}", from(e, k)))
        .collect();
    let _ = writeln!(
        w,
        "  dangerous flags    {}",
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(", ")
        }
    );
    let labels: Vec<String> = e
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect();
    let _ = writeln!(w, "  labels             {}", labels.join(" "));
    let _ = writeln!(w, "  env                {}", escape(&e.env_keys.join(" ")));
    let _ = writeln!(
        w,
        "  tool calls         timeout {}s, output cap {}, read cap {}, write cap {}",
        l.call_timeout_seconds,
        ByteSize(l.max_output_bytes),
        ByteSize(l.max_read_bytes),
        ByteSize(l.max_write_bytes)
    );
    let _ = writeln!(
        w,
        "  prune              idle > {}h or age > {}d (0 disables)",
        e.prune.idle_hours, e.prune.max_age_days
    );

    let _ = writeln!(w, "\nTool policy");
    let _ = writeln!(
        w,
        "  allow  {}  (from {})",
        escape(&e.tool_policy.allow.tools.join(", ")),
        escape(&e.tool_policy.allow.source)
    );
    let _ = writeln!(
        w,
        "  deny   {}  (from {})",
        escape(&e.tool_policy.deny.tools.join(", ")),
        escape(&e.tool_policy.deny.source)
    );

    let _ = writeln!(w, "\nProblems");
    if e.problems.is_empty() {
        let _ = writeln!(w, "  none");
    }
    for p in &e.problems {
        let _ = writeln!(w, "  [{}] {}", p.code.as_str(), escape(&p.message));
        let _ = writeln!(w, "      fix: {}", escape(&p.fix));
    }
    let _ = writeln!(w, "\nWarnings");
    if e.warnings.is_empty() {
        let _ = writeln!(w, "  none");
    }
    for x in &e.warnings {
        let _ = writeln!(w, "  - {}", escape(x));
    }
    let _ = writeln!(w, "\nFix-it keys");
    for f in &e.fix_its {
        let _ = writeln!(w, "  {}: {}", escape(&f.key), escape(&f.hint));
    }
    if !e.config_files.is_empty() {
        let _ = writeln!(w, "\nConfig: {}", escape(&e.config_files.join(" < ")));
    } else {
        let _ = writeln!(w, "\nConfig: none found (all defaults)");
    }
    o
}

fn json_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}
