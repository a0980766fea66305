//! From effective settings and a session to the complete, validated plan of its sandbox: the pure
//! decision that `explain` shows and the Docker edge executes. The only host facts it needs
//! (directory owners, canonical paths) come through [`HostProbe`] and the validator.

use super::hash::config_hash;
use super::mounts::{Access, MountSource, PlannedMount, managed_mounts, workdir_host_dir};
use super::naming::{
    check_prefix, container_name, epoch_scope_key, sandbox_workspace_dir, scope_key, workspace_hash,
};
use super::session::{SessionRef, is_sandboxed};
use crate::config::resolve::{DEFAULT_TMPFS_SIZE, EffectiveSandbox};
use crate::config::{Mode, Scope, WorkspaceAccess};
use crate::validate::{self, BindPolicy, HostContext, Refusal, RefusalCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The unprivileged user a sandbox gets when the workspace owner is root. (better)
pub const FALLBACK_USER: (u32, u32) = (1000, 1000);
/// Every sandbox gets its own cgroup namespace (its memory counters are its own).
pub const CGROUPNS_MODE: &str = "private";
/// The OCI runtime every sandbox runs under (checked on every use).
pub const RUNTIME: &str = "runc";
/// Where the agent binary is bind-mounted (read-only) in every sandbox.
pub const AGENT_BINARY_TARGET: &str = "/.clawden/agent";
/// Where the agent's per-sandbox channel directory is bind-mounted (its socket lives there).
pub const AGENT_CHANNEL_TARGET: &str = "/run/clawden";
/// The agent's socket file name inside its channel directory.
pub const AGENT_SOCKET: &str = "agent.sock";
/// The main process when no agent binary is available: idle, calls use the Engine API.
pub const IDLE_CMD: &[&str] = &["/bin/sleep", "2147483647"];

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
    /// The static `clawden-agent` binary to mount into sandboxes, or why there is none.
    fn agent_binary(&self) -> Result<PathBuf, String>;
}

/// The real host.
pub struct RealHost;

/// Where the agent binary is: `$CLAWDEN_AGENT`, else next to the running executable (or one
/// directory up, for test binaries in `target/*/deps`). It must be a static ELF: it runs in
/// images without a C library.
pub fn find_agent_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CLAWDEN_AGENT").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return check_static(&p).map(|()| p);
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find clawden's own path: {e}"))?;
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join("clawden-agent");
        if p.is_file() {
            return check_static(&p).map(|()| p);
        }
        tried.push(p.display().to_string());
    }
    Err(format!(
        "no clawden-agent binary at {} (build it with `cargo build`, or set CLAWDEN_AGENT)",
        tried.join(" or ")
    ))
}

/// A static ELF has no `PT_INTERP` program header. Reads the ELF header and the program
/// headers only (this runs in every clawden process that plans a sandbox).
fn check_static(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let truncated = || format!("{} is a truncated ELF file", p.display());
    let mut head = [0u8; 64];
    f.read_exact_at(&mut head, 0).map_err(|_| truncated())?;
    // 64-bit little-endian ELF only (the agent is built for x86_64).
    if head[0..6] != [0x7f, b'E', b'L', b'F', 2, 1] {
        return Err(format!("{} is not a 64-bit ELF executable", p.display()));
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().expect("8 bytes"));
    let (phentsize, phnum) = (u16_at(&head, 0x36), u16_at(&head, 0x38));
    if phentsize < 4 {
        return Err(truncated());
    }
    // At most 65535 entries of at most 65535 bytes: read in one go, bounded.
    let mut table = vec![0u8; phentsize * phnum];
    f.read_exact_at(&mut table, phoff)
        .map_err(|_| truncated())?;
    for entry in table.chunks_exact(phentsize) {
        if u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]) == 3 {
            return Err(format!(
                "{} is dynamically linked; the agent must be static (build with `cargo build`)",
                p.display()
            ));
        }
    }
    Ok(())
}

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
    fn agent_binary(&self) -> Result<PathBuf, String> {
        static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
        FOUND.get_or_init(find_agent_binary).clone()
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
    /// The container's main process: the agent, or an idle process when there is none.
    pub cmd: Vec<String>,
    /// The in-container agent, when its binary is available.
    pub agent: Option<AgentPlan>,
    /// When clawden runs as root, every mount is staged here first (`<state>/staging/<name>`),
    /// pinned to the checked inode, and Docker binds the staging points.
    pub staging_dir: Option<PathBuf>,
    /// Labels fixed by the plan (create time and hash are added when the container is made).
    pub labels: BTreeMap<String, String>,
    /// Host directories clawden creates before the container (owned by `dir_owner`).
    pub create_dirs: Vec<PathBuf>,
    pub dir_owner: Option<(u32, u32)>,
}

/// Label with a digest of the planned mounts (host source, target, access).
pub const MOUNTS_LABEL: &str = "clawden.mounts";

/// A short digest of what is mounted where, so a container's mounts can be compared with a
/// plan's even when the engine only sees staging points.
pub fn mounts_digest(mounts: &[PlannedMount]) -> String {
    let v: Vec<(String, &str, bool)> = mounts
        .iter()
        // Where this host keeps the agent binary is not a sandbox's business.
        .filter(|m| m.source != MountSource::AgentBinary)
        .map(|m| {
            (
                m.host.to_string_lossy().into_owned(),
                m.container.as_str(),
                m.access.read_only(),
            )
        })
        .collect();
    let h = super::hash::config_hash(&v);
    h[..16].to_string()
}

/// The agent of a sandbox: its binary on the host, its channel directory, who may call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPlan {
    pub binary: PathBuf,
    /// `<state>/agents/<container>`: owned by the sandbox user, mounted at [`AGENT_CHANNEL_TARGET`].
    pub channel_dir: PathBuf,
    /// The only uid the agent accepts calls from (clawden's own).
    pub supervisor_uid: u32,
}

impl AgentPlan {
    /// The agent's socket as the host reaches it.
    pub fn host_socket(&self) -> PathBuf {
        self.channel_dir.join(AGENT_SOCKET)
    }
}

impl ContainerSpec {
    /// The mounts as the engine is told: staging points instead of host paths when staged.
    pub fn engine_mounts(&self) -> Vec<PlannedMount> {
        match &self.staging_dir {
            None => self.mounts.clone(),
            Some(dir) => self
                .mounts
                .iter()
                .enumerate()
                .map(|(i, m)| PlannedMount {
                    host: dir.join(i.to_string()),
                    ..m.clone()
                })
                .collect(),
        }
    }

    /// Give the container another name (doctor's throwaway sandbox), moving what is named after
    /// it — its staging directory and its agent channel — along.
    pub fn rename(&mut self, name: &str) {
        let sibling = |p: &Path| {
            p.parent()
                .map(|d| d.join(name))
                .unwrap_or_else(|| p.to_path_buf())
        };
        self.staging_dir = self.staging_dir.as_deref().map(sibling);
        if let Some(a) = self.agent.as_mut() {
            a.channel_dir = sibling(&a.channel_dir);
            for m in &mut self.mounts {
                if m.source == MountSource::AgentChannel {
                    m.host = a.channel_dir.clone();
                }
            }
        }
        self.name = name.to_string();
    }

    /// The user as numeric uid:gid, when it is numeric.
    pub fn numeric_user(&self) -> Option<(u32, u32)> {
        let mut it = self.user.split(':');
        let uid = it.next()?.parse().ok()?;
        let gid = match it.next() {
            Some(g) => g.parse().ok()?,
            None => uid,
        };
        Some((uid, gid))
    }
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
    /// How long the setupCommand may run (`calls.timeoutSeconds`).
    pub setup_timeout_seconds: u64,
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
    let mut warnings: Vec<String> = eff.compat_warnings.clone();
    warnings.extend(eff.ignored.iter().map(|i| format!("ignored: {i}")));

    let sandboxed = is_sandboxed(eff.mode.value, session);
    let scope = eff.scope.value;
    let access = eff.workspace_access.value;
    // The scope key of the configured naming epoch (sandbox.md §3): qualified with the agent
    // workspace's hash under `naming: "workspace"`.
    let skey = epoch_scope_key(
        eff.naming.value,
        scope,
        &scope_key(scope, &session.key, &session.agent_id),
        &eff.agent_workspace.value,
    );
    if let Err(m) = check_prefix(&d.container_prefix.value, &skey) {
        problems.push(invalid(
            &d.container_prefix.value,
            m,
            format!("shorten or fix {}", d.container_prefix.source),
        ));
    }
    // A workspace-qualified session key from a gateway must name this agent's workspace.
    if let Some(h) = &session.workspace_qualifier {
        let ours = workspace_hash(&eff.agent_workspace.value);
        if *h != ours {
            problems.push(invalid(
                format!("{}:workspace:{h}", session.key),
                format!(
                    "the session key is qualified with workspace hash {h}, but agent {:?}'s workspace {} hashes to {ours}",
                    session.agent_id,
                    eff.agent_workspace.value.display()
                ),
                format!(
                    "hand clawden the key without \":workspace:{h}\", or set {}'s workspace to the gateway's",
                    session.agent_id
                ),
            ));
        }
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
    let mut reserved: Vec<String> = vec![
        workdir.clone(),
        super::mounts::AGENT_MOUNT.to_string(),
        "/.clawden".to_string(),
        AGENT_CHANNEL_TARGET.to_string(),
    ];
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
            let checked = validate::validate_security_profile(key, v).and_then(|()| {
                if key == "seccompProfile" {
                    validate::validate_seccomp_file(v, d.allow_permissive_seccomp.value)
                } else {
                    Ok(Vec::new())
                }
            });
            match checked {
                Ok(permissive) => {
                    let opt = if key == "seccompProfile" {
                        "seccomp"
                    } else {
                        "apparmor"
                    };
                    security_opt.push(format!("{opt}={v}"));
                    warnings.push(format!(
                        "custom {key} {v:?} replaces Docker's default profile"
                    ));
                    if !permissive.is_empty() {
                        warnings.push(format!(
                            "DANGER: seccompProfile {v:?} is permissive and accepted only because dangerouslyAllowPermissiveSeccomp is on ({}): {}",
                            d.allow_permissive_seccomp.source,
                            permissive.join("; ")
                        ));
                    }
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
        if name == "fsize" && (soft < 0 || hard < 0) {
            warnings.push(
                "ulimit fsize is unlimited: a sandbox can write files of any size into its writable mounts".into(),
            );
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
    // Only root gives directories away; without root the owner is whoever clawden is, so the
    // plan (and its hash) must not depend on whether the directory exists yet.
    let dir_owner = if euid == 0 { dir_owner } else { None };
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
        (
            &d.allow_permissive_seccomp,
            "dangerouslyAllowPermissiveSeccomp",
        ),
    ] {
        if flag.value {
            warnings.push(format!("{name} is on ({})", flag.source));
        }
    }
    if eff.mode.value != Mode::Off && scope != Scope::Session {
        warnings.push(format!(
            "scope {:?}: sessions sharing this container can read each other's call environment and processes; use scope \"session\" to separate them",
            if scope == Scope::Agent { "agent" } else { "shared" }
        ));
    }
    if !sandboxed
        && eff
            .calls
            .direct_user
            .value
            .as_deref()
            .is_some_and(|u| matches!(u.split(':').next(), Some("0") | Some("root")))
    {
        warnings.push(format!(
            "calls.directUser runs this session's direct calls on the host as ROOT ({})",
            eff.calls.direct_user.source
        ));
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
    labels.insert(
        super::owner::OWNER_LABEL.into(),
        super::owner::owner_id(&eff.state_dir, &d.container_prefix.value),
    );

    let mut create_dirs = vec![sandbox_ws.clone()];
    if access != WorkspaceAccess::None {
        create_dirs.push(agent_ws.clone());
    }
    // The agent: bind-mounted read-only, its channel directory private to this sandbox.
    let agent = match host.agent_binary() {
        Ok(binary) => Some(AgentPlan {
            binary,
            channel_dir: eff.state_dir.join("agents").join(&name),
            supervisor_uid: euid,
        }),
        Err(why) => {
            warnings.push(format!(
                "no in-container agent: {why}; calls use the slower Engine API exec path"
            ));
            None
        }
    };
    let cmd: Vec<String> = match &agent {
        Some(a) => {
            mounts.push(PlannedMount {
                host: a.binary.clone(),
                container: AGENT_BINARY_TARGET.into(),
                access: Access::Ro,
                source: MountSource::AgentBinary,
            });
            mounts.push(PlannedMount {
                host: a.channel_dir.clone(),
                container: AGENT_CHANNEL_TARGET.into(),
                access: Access::Rw,
                source: MountSource::AgentChannel,
            });
            vec![
                AGENT_BINARY_TARGET.to_string(),
                "serve".into(),
                "--socket".into(),
                format!("{AGENT_CHANNEL_TARGET}/{AGENT_SOCKET}"),
                "--supervisor-uid".into(),
                a.supervisor_uid.to_string(),
            ]
        }
        None => IDLE_CMD.iter().map(|s| s.to_string()).collect(),
    };
    // As root every mount is staged (pinned, no submounts, nosuid/nodev); see `crate::mounts`.
    let staging_dir = (euid == 0).then(|| crate::mounts::staging_dir(&eff.state_dir, &name));
    // Which host paths are mounted where (staging points hide them from the engine's view).
    labels.insert(MOUNTS_LABEL.into(), mounts_digest(&mounts));
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
        cmd,
        agent,
        staging_dir,
        labels,
        create_dirs,
        dir_owner,
    };
    // The hash covers what the sandbox gets, not where this host keeps the agent binary (a
    // different checkout or install path is not a different sandbox).
    let config_hash = {
        let mut hashed = container.clone();
        if let Some(a) = hashed.agent.as_mut() {
            a.binary = PathBuf::from("clawden-agent");
        }
        for m in hashed.mounts.iter_mut() {
            if m.source == MountSource::AgentBinary {
                m.host = PathBuf::from("clawden-agent");
            }
        }
        config_hash(&hashed)
    };
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
        setup_timeout_seconds: eff.calls.timeout_seconds.value,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF header with program headers of these types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[0..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut e = vec![0u8; 56];
            e[0..4].copy_from_slice(&t.to_le_bytes());
            b.extend(e);
        }
        b
    }

    #[test]
    fn the_agent_must_be_a_static_elf() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        assert_eq!(check_static(&file("static", &elf(&[6, 1, 1]))), Ok(()));
        let dynamic = check_static(&file("dynamic", &elf(&[6, 3, 1]))).unwrap_err();
        assert!(dynamic.contains("dynamically linked"), "{dynamic}");
        let mut cut = elf(&[1, 1]);
        cut.truncate(100);
        assert!(
            check_static(&file("cut", &cut))
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            check_static(&file("short", b"\x7fELF"))
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            check_static(&file("script", &[b'#'; 80]))
                .unwrap_err()
                .contains("not a 64-bit ELF")
        );
    }
    use crate::config::load::ConfigLayer;
    use crate::config::{Env, LoadedConfig, parse_config};

    /// A host whose agent binary lives wherever the test says.
    struct AgentAt(PathBuf);

    impl HostProbe for AgentAt {
        fn owner(&self, path: &Path) -> Option<(u32, u32)> {
            RealHost.owner(path)
        }
        fn identity(&self) -> (u32, u32) {
            (1000, 1000)
        }
        fn agent_binary(&self) -> Result<PathBuf, String> {
            Ok(self.0.clone())
        }
    }

    fn plan_with(host: &dyn HostProbe, state: &str) -> SandboxPlan {
        let text = r#"{ agents: { defaults: { workspace: "/nonexistent-ws", sandbox: { mode: "all" } } } }"#;
        let cfg = LoadedConfig {
            layers: vec![ConfigLayer {
                origin: "test".into(),
                file: parse_config(text, "test").unwrap(),
            }],
            ..Default::default()
        };
        let env = Env {
            clawden_home: Some(PathBuf::from(state)),
            home: Some(PathBuf::from("/nonexistent-home")),
            ..Default::default()
        };
        let ctx = HostContext::for_tests(vec![]);
        crate::decide::decide(&cfg, &env, &ctx, host, Some("group:x"), None)
            .unwrap()
            .1
    }

    #[test]
    fn the_hash_does_not_depend_on_where_the_agent_binary_lives() {
        let a = plan_with(&AgentAt("/one/checkout/clawden-agent".into()), "/st");
        let b = plan_with(&AgentAt("/other/place/clawden-agent".into()), "/st");
        assert_ne!(
            a.container.mounts, b.container.mounts,
            "binary paths differ"
        );
        assert_eq!(a.config_hash, b.config_hash);
        assert_eq!(
            a.container.labels.get(MOUNTS_LABEL),
            b.container.labels.get(MOUNTS_LABEL)
        );
        // What the sandbox does get still counts: another state directory is another channel.
        let c = plan_with(&AgentAt("/one/checkout/clawden-agent".into()), "/st2");
        assert_ne!(a.config_hash, c.config_hash);
    }
}
