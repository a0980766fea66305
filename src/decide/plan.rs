//! From effective settings and a session to the complete, validated plan of its sandbox: the pure
//! decision that `explain` shows and the Docker edge executes. The only host facts it needs
//! (directory owners, canonical paths) come through [`HostProbe`] and the validator.

use super::hash::config_hash;
use super::mounts::{Access, MountSource, PlannedMount, managed_mounts, workdir_host_dir};
use super::naming::{check_prefix, container_name, sandbox_workspace_dir, scope_key};
use super::session::{SessionRef, is_sandboxed};
use crate::config::resolve::{DEFAULT_TMPFS_SIZE, EffectiveSandbox};
use crate::config::{Mode, Scope, WorkspaceAccess};
use crate::validate::{self, BindPolicy, HostContext, Refusal, RefusalCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The unprivileged user a sandbox gets when the workspace owner is root. (better)
pub const FALLBACK_USER: (u32, u32) = (1000, 1000);

/// System paths that can never be the workdir.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot",
    "/root", "/run", "/var/run",
];

/// Facts about the host the plan depends on (so tests can fake them).
pub trait HostProbe {
    /// uid:gid owning an existing path (not following a final symlink), `None` if absent.
    fn owner(&self, path: &Path) -> Option<(u32, u32)>;
    /// The effective uid:gid of clawden itself.
    fn identity(&self) -> (u32, u32);
}

/// The real host.
pub struct RealHost;

impl HostProbe for RealHost {
    fn owner(&self, path: &Path) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
    }
    fn identity(&self) -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }
}

/// How the container user was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserOrigin {
    Configured,
    WorkspaceOwner,
    Fallback,
    Caller,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UlimitSpec {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Everything that affects the container, as Docker will be told. Hashed for drift detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub user: String,
    pub workdir: String,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<PlannedMount>,
    /// tmpfs target → mount options (always with nosuid,nodev and a size cap).
    pub tmpfs: BTreeMap<String, String>,
    pub read_only_root: bool,
    pub network: String,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub memory: u64,
    pub memory_swap: u64,
    pub nano_cpus: u64,
    pub pids_limit: u64,
    pub ulimits: Vec<UlimitSpec>,
    pub dns: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub setup_command: Option<String>,
    /// Labels fixed by the plan (create time and hash are added when the container is made).
    pub labels: BTreeMap<String, String>,
    /// Host directories clawden creates before the container (owned by `dir_owner`).
    pub create_dirs: Vec<PathBuf>,
    pub dir_owner: Option<(u32, u32)>,
}

/// The complete decision for one session.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPlan {
    pub session: SessionRef,
    pub sandboxed: bool,
    pub mode: Mode,
    pub scope: Scope,
    pub workspace_access: WorkspaceAccess,
    pub scope_key: String,
    pub agent_workspace: PathBuf,
    pub sandbox_workspace: PathBuf,
    pub user_origin: UserOrigin,
    pub container: ContainerSpec,
    pub config_hash: String,
    pub problems: Vec<Refusal>,
    pub warnings: Vec<String>,
}

impl SandboxPlan {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

fn invalid(
    value: impl Into<String>,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Refusal {
    Refusal {
        code: RefusalCode::InvalidValue,
        value: value.into(),
        message: message.into(),
        fix: fix.into(),
    }
}

fn is_root_user(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("");
    name == "0" || name == "root"
}

fn valid_user_syntax(user: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && (p.chars().all(|c| c.is_ascii_digit())
                || (p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && p.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                    })))
    };
    let mut parts = user.split(':');
    let first = parts.next().is_some_and(part_ok);
    let second = parts.next().is_none_or(part_ok);
    first && second && parts.next().is_none()
}

/// Decide everything about `session`'s sandbox under `eff`.
pub fn plan(
    eff: &EffectiveSandbox,
    session: &SessionRef,
    host: &dyn HostProbe,
    ctx: &HostContext,
) -> SandboxPlan {
    let d = &eff.docker;
    let mut problems: Vec<Refusal> = Vec::new();
    let mut warnings: Vec<String> = eff
        .ignored
        .iter()
        .map(|i| format!("ignored: {i}"))
        .collect();

    let sandboxed = is_sandboxed(eff.mode.value, session);
    let scope = eff.scope.value;
    let access = eff.workspace_access.value;
    let skey = scope_key(scope, &session.key, &session.agent_id);
    if let Err(m) = check_prefix(&d.container_prefix.value) {
        problems.push(invalid(
            &d.container_prefix.value,
            m,
            format!("shorten or fix {}", d.container_prefix.source),
        ));
    }
    let name = container_name(&d.container_prefix.value, scope, &skey);

    // Host directories, checked like any bind source (a typo must not mount the host's root).
    let agent_ws =
        match validate::check_managed_source(&eff.agent_workspace.value, "agent workspace", ctx) {
            Ok(p) => p,
            Err(r) => {
                problems.push(r);
                eff.agent_workspace.value.clone()
            }
        };
    let sandbox_root = &eff.workspace_root.value;
    let sandbox_ws_raw = sandbox_workspace_dir(sandbox_root, scope, &skey);
    let sandbox_ws = match validate::check_managed_source(
        &sandbox_ws_raw,
        "sandbox workspace (workspaceRoot)",
        ctx,
    ) {
        Ok(p) => p,
        Err(r) => {
            problems.push(r);
            sandbox_ws_raw.clone()
        }
    };

    // Workdir: an absolute container path that is not a system directory.
    let workdir = match validate::normalize_container_path(&d.workdir.value) {
        Ok(w) => w,
        Err(r) => {
            problems.push(r);
            d.workdir.value.clone()
        }
    };
    let reserved_workdir = SYSTEM_DIRS
        .iter()
        .any(|s| workdir == *s || (*s != "/" && workdir.starts_with(&format!("{s}/"))))
        || workdir == super::mounts::AGENT_MOUNT;
    if reserved_workdir && !d.allow_reserved_targets.value {
        problems.push(Refusal {
            code: RefusalCode::ReservedTarget,
            value: workdir.clone(),
            message: format!("workdir {workdir:?} is a reserved container path"),
            fix: format!(
                "set {} to a dedicated directory such as \"/workspace\"",
                key_of(&d.workdir.source, "agents.defaults.sandbox.docker.workdir")
            ),
        });
    }

    // tmpfs: each with a size cap, nosuid, nodev.
    let mut tmpfs = BTreeMap::new();
    for spec in &d.tmpfs.value {
        match validate::parse_tmpfs(spec, DEFAULT_TMPFS_SIZE) {
            Ok((target, opts)) => {
                if tmpfs.insert(target.clone(), opts).is_some() || target == workdir {
                    problems.push(Refusal {
                        code: RefusalCode::DuplicateTarget,
                        value: spec.clone(),
                        message: format!(
                            "tmpfs {spec:?} mounts over {target:?}, which is already mounted"
                        ),
                        fix: "remove the duplicate tmpfs entry".into(),
                    });
                }
            }
            Err(r) => problems.push(r),
        }
    }

    let mut mounts = managed_mounts(access, &sandbox_ws, &agent_ws, &workdir);
    let mut reserved: Vec<String> = vec![workdir.clone(), super::mounts::AGENT_MOUNT.to_string()];
    reserved.extend(tmpfs.keys().cloned());
    let allowed_roots = [agent_ws.clone(), sandbox_ws.clone()];
    let policy = BindPolicy {
        allowed_roots: &allowed_roots,
        reserved_targets: &reserved,
        allow_external_sources: d.allow_external_sources.value,
        allow_reserved_targets: d.allow_reserved_targets.value,
    };
    let specs: Vec<String> = d.binds.iter().map(|b| b.value.clone()).collect();
    let (binds, refusals) = validate::validate_binds(&specs, ctx, &policy);
    problems.extend(refusals);
    mounts.extend(binds.into_iter().map(|b| PlannedMount {
        host: b.source,
        container: b.target,
        access: if b.read_only { Access::Ro } else { Access::Rw },
        source: MountSource::Bind,
    }));

    if let Err(r) = validate::validate_network(&d.network.value, d.allow_namespace_join.value) {
        problems.push(r);
    }
    let mut security_opt = vec!["no-new-privileges".to_string()];
    for (key, value) in [
        ("seccompProfile", &d.seccomp_profile.value),
        ("apparmorProfile", &d.apparmor_profile.value),
    ] {
        if let Some(v) = value {
            match validate::validate_security_profile(key, v) {
                Ok(()) => {
                    let opt = if key == "seccompProfile" {
                        "seccomp"
                    } else {
                        "apparmor"
                    };
                    security_opt.push(format!("{opt}={v}"));
                    warnings.push(format!(
                        "custom {key} {v:?} replaces Docker's default profile"
                    ));
                }
                Err(r) => problems.push(r),
            }
        }
    }
    if let Err(r) = validate::validate_cap_drop(&d.cap_drop.value) {
        problems.push(r);
    }
    for k in d.env.keys() {
        if let Err(r) = validate::validate_env_name(k) {
            problems.push(r);
        }
    }

    // Limits.
    if d.memory.value.0 < (6 << 20) {
        problems.push(invalid(
            d.memory.value.human(),
            "memory must be at least 6m (Docker's minimum)",
            format!(
                "raise {}",
                key_of(&d.memory.source, "agents.defaults.sandbox.docker.memory")
            ),
        ));
    }
    if d.memory_swap.value < d.memory.value {
        problems.push(invalid(
            d.memory_swap.value.human(),
            format!(
                "memorySwap {} is below memory {}",
                d.memory_swap.value, d.memory.value
            ),
            "set memorySwap equal to memory (no swap)",
        ));
    } else if d.memory_swap.value > d.memory.value {
        warnings.push(format!(
            "memorySwap {} exceeds memory {}: the sandbox may swap",
            d.memory_swap.value, d.memory.value
        ));
    }
    if d.pids_limit.value == 0 {
        problems.push(invalid(
            "0",
            "pidsLimit must be positive (0 would mean unlimited)",
            "set docker.pidsLimit, e.g. 256",
        ));
    }
    let mut ulimits = Vec::new();
    for (name, v) in &d.ulimits {
        let (soft, hard) = v.value;
        if !name.chars().all(|c| c.is_ascii_lowercase()) || name.is_empty() {
            problems.push(invalid(
                name,
                format!("ulimit name {name:?} is not a ulimit (e.g. nofile, nproc, core)"),
                "remove it",
            ));
        } else if soft > hard || soft < -1 {
            problems.push(invalid(
                format!("{name}={soft}:{hard}"),
                format!("ulimit {name}: soft {soft} must be between -1 and hard {hard}"),
                "fix the ulimit",
            ));
        }
        if name == "core" && hard != 0 {
            warnings
                .push("ulimit core is not 0: processes in the sandbox may write core dumps".into());
        }
        ulimits.push(UlimitSpec {
            name: name.clone(),
            soft,
            hard,
        });
    }

    // User (sandbox.md §1): configured, else the workdir owner, else an unprivileged fallback.
    let (euid, egid) = host.identity();
    let workdir_dir = workdir_host_dir(access, &sandbox_ws, &agent_ws);
    let (user, user_origin, dir_owner) = match &d.user.value {
        Some(u) => {
            if !valid_user_syntax(u) {
                problems.push(invalid(
                    u,
                    format!("docker.user {u:?} is not uid[:gid] or a user name"),
                    "use e.g. \"1000:1000\"",
                ));
            }
            if is_root_user(u) {
                warnings.push(format!(
                    "docker.user {u:?} runs the sandbox as root ({})",
                    d.user.source
                ));
            }
            let owner = if euid == 0 { Some(FALLBACK_USER) } else { None };
            (u.clone(), UserOrigin::Configured, owner)
        }
        None => match host.owner(workdir_dir) {
            Some((uid, gid)) if uid != 0 => (
                format!("{uid}:{gid}"),
                UserOrigin::WorkspaceOwner,
                Some((uid, gid)),
            ),
            Some(_) => (
                format!("{}:{}", FALLBACK_USER.0, FALLBACK_USER.1),
                UserOrigin::Fallback,
                Some(FALLBACK_USER),
            ),
            None if euid == 0 => (
                format!("{}:{}", FALLBACK_USER.0, FALLBACK_USER.1),
                UserOrigin::Fallback,
                Some(FALLBACK_USER),
            ),
            None => (format!("{euid}:{egid}"), UserOrigin::Caller, None),
        },
    };
    if access == WorkspaceAccess::Rw
        && d.user.value.is_none()
        && host.owner(&agent_ws).is_some_and(|(u, _)| u == 0)
    {
        warnings.push(format!(
            "the agent workspace {} is owned by root, so the sandbox user {user} cannot write to it; chown it to a regular user or set docker.user",
            agent_ws.display()
        ));
    }

    if !d.read_only_root.value {
        warnings.push(format!(
            "readOnlyRoot is false ({}): the container's root filesystem is writable",
            d.read_only_root.source
        ));
    }
    if d.network.value != "none" {
        warnings.push(format!(
            "network {:?} ({}): the sandbox can reach the network",
            d.network.value, d.network.source
        ));
    }
    for (flag, name) in [
        (
            &d.allow_reserved_targets,
            "dangerouslyAllowReservedContainerTargets",
        ),
        (
            &d.allow_external_sources,
            "dangerouslyAllowExternalBindSources",
        ),
        (
            &d.allow_namespace_join,
            "dangerouslyAllowContainerNamespaceJoin",
        ),
    ] {
        if flag.value {
            warnings.push(format!("{name} is on ({})", flag.source));
        }
    }
    if eff.mode.value == Mode::Off {
        warnings.push(
            "mode is \"off\": tool calls run on the host (confined to the agent workspace)".into(),
        );
    } else if !sandboxed {
        warnings.push(format!(
            "{} is the main session: under mode \"non-main\" it runs on the host",
            session.key
        ));
    }

    let mut labels = BTreeMap::new();
    labels.insert("clawden.sandbox".into(), "1".into());
    labels.insert("clawden.scopeKey".into(), skey.clone());
    labels.insert("clawden.agentId".into(), session.agent_id.clone());

    let mut create_dirs = vec![sandbox_ws.clone()];
    if access != WorkspaceAccess::None {
        create_dirs.push(agent_ws.clone());
    }
    let container = ContainerSpec {
        name,
        image: d.image.value.clone(),
        user,
        workdir,
        env: d
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect(),
        mounts,
        tmpfs,
        read_only_root: d.read_only_root.value,
        network: d.network.value.clone(),
        cap_drop: d.cap_drop.value.clone(),
        security_opt,
        memory: d.memory.value.0,
        memory_swap: d.memory_swap.value.0,
        nano_cpus: d.cpus.value.nano_cpus(),
        pids_limit: d.pids_limit.value,
        ulimits,
        dns: d.dns.value.clone(),
        extra_hosts: d.extra_hosts.value.clone(),
        setup_command: d.setup_command.value.clone(),
        labels,
        create_dirs,
        dir_owner,
    };
    let config_hash = config_hash(&container);
    SandboxPlan {
        session: session.clone(),
        sandboxed,
        mode: eff.mode.value,
        scope,
        workspace_access: access,
        scope_key: skey,
        agent_workspace: agent_ws,
        sandbox_workspace: sandbox_ws,
        user_origin,
        container,
        config_hash,
        problems,
        warnings,
    }
}

/// The key to name in a fix: where the value came from, or the global default key.
fn key_of(source: &crate::config::Source, default_key: &str) -> String {
    match source {
        crate::config::Source::Key { key, .. } => key.clone(),
        crate::config::Source::Default => default_key.to_string(),
    }
}
