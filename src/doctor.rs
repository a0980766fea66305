//! `clawden doctor`: is this host fit to run sandboxes? Engine, OCI runtime (known escape CVEs),
//! cgroups, images, state directory, then a live self-check: a throwaway sandbox made with the
//! effective settings through the supervisor's own create path, checked with `docker inspect`
//! and from inside. The throwaway container is always removed.
//!
//! The rules (runc advisories, probe verdicts, state-dir permissions) are pure functions; the
//! run itself is a thin sequence of engine calls.

use crate::config::{Env, LoadedConfig, resolve::known_agents};
use crate::engine::{ContainerEngine, EngineError, EngineInfo, ExecSpec};
use crate::supervisor::Supervisor;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Every engine call of doctor is bounded: a hung engine fails the check instead of hanging
/// `doctor` (and the scope lock it may hold).
pub const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Creating and starting the throwaway sandbox (incl. a configured setupCommand).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(180);
/// One probe inside the throwaway sandbox.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// `fut`, or `Err("no answer within Ns")` when it takes longer than `limit`.
async fn bounded<T, E: std::fmt::Display>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, status: Status, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: None,
        }
    }
    fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Pass, detail)
    }
    fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, detail).with_fix(fix)
    }
    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, detail).with_fix(fix)
    }
    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        let f = fix.into();
        self.fix = (!f.is_empty()).then_some(f);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub ok: bool,
}

impl Report {
    fn new(checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.status != Status::Fail);
        Report { checks, ok }
    }

    /// The human table.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5);
        let mut s = format!("{:<6}{:<width$}  DETAIL\n", "", "CHECK");
        use crate::display::escape;
        for c in &self.checks {
            s.push_str(&format!(
                "{:<6}{:<width$}  {}\n",
                c.status.as_str(),
                c.name,
                escape(&c.detail)
            ));
            if let Some(f) = &c.fix {
                s.push_str(&format!("{:<6}{:<width$}  fix: {}\n", "", "", escape(f)));
            }
        }
        let count = |st| self.checks.iter().filter(|c| c.status == st).count();
        s.push_str(&format!(
            "\n{}: {} passed, {} warning(s), {} failed\n",
            if self.ok { "ok" } else { "FAILED" },
            count(Status::Pass),
            count(Status::Warn),
            count(Status::Fail)
        ));
        s
    }
}

// ---- pure rules -------------------------------------------------------------------------------

/// A runc release: (major, minor, patch) and the pre-release tag (`rc.3`), if any. Distribution
/// suffixes (`+ds1-1+deb12u1`) are ignored.
pub fn parse_runc_version(v: &str) -> Option<((u64, u64, u64), Option<String>)> {
    let v = v.trim().trim_start_matches('v');
    let v = v.split('+').next()?;
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p.to_string())),
        None => (v, None),
    };
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some(((major, minor, patch), pre))
}

/// Known container-escape CVEs a runc version is exposed to (by upstream version numbers).
pub fn runc_advisories(version: &str) -> Option<Vec<&'static str>> {
    let ((maj, min, patch), pre) = parse_runc_version(version)?;
    let v = (maj, min, patch);
    let mut found = Vec::new();
    if v < (1, 1, 12) {
        found.push("CVE-2024-21626 (\"Leaky Vessels\", fixed in 1.1.12)");
    }
    // The November 2025 mount races: fixed in 1.2.8, 1.3.3 and 1.4.0-rc.3.
    let rc_number = pre
        .as_deref()
        .and_then(|p| p.strip_prefix("rc."))
        .and_then(|n| n.parse::<u64>().ok());
    let mount_race = v < (1, 2, 8)
        || ((1, 3, 0)..(1, 3, 3)).contains(&v)
        || (v == (1, 4, 0) && pre.is_some() && rc_number.is_none_or(|n| n < 3));
    if mount_race {
        found.push(
            "CVE-2025-31133, CVE-2025-52565, CVE-2025-52881 (mount races, fixed in 1.2.8, 1.3.3, 1.4.0-rc.3)",
        );
    }
    Some(found)
}

/// The OCI runtime check from what the engine reports.
pub fn runtime_check(info: &EngineInfo) -> Check {
    const NAME: &str = "oci runtime";
    let runtime = if info.default_runtime.is_empty() {
        "runc"
    } else {
        info.default_runtime.as_str()
    };
    if runtime != "runc" {
        return Check::warn(
            NAME,
            format!("default runtime {runtime:?}: clawden knows no advisories for it"),
            "check its vendor's security advisories",
        );
    }
    let v = &info.runc_version;
    match runc_advisories(v) {
        None => Check::warn(
            NAME,
            format!("runc version {v:?} not understood"),
            "check that runc is at least 1.2.8, 1.3.3 or 1.4.0",
        ),
        Some(a) if a.is_empty() => Check::pass(NAME, format!("runc {v}")),
        Some(a) => Check::warn(
            NAME,
            format!("runc {v} is affected by {}", a.join("; ")),
            "upgrade runc to 1.2.8, 1.3.3, 1.4.0 or later (a distribution package may carry backported fixes under an older version: check its security advisory)",
        ),
    }
}

pub fn cgroup_check(info: &EngineInfo) -> Check {
    match info.cgroup_version.as_str() {
        "2" => Check::pass("cgroup", "cgroup v2"),
        "1" => Check::pass("cgroup", "cgroup v1 (memory, cpu and pids limits apply)"),
        other => Check::warn(
            "cgroup",
            format!("engine reports cgroup version {other:?}"),
            "",
        ),
    }
}

/// The in-container agent: its static binary must be there, or every call takes the slower,
/// weaker Engine API path.
fn agent_check() -> Check {
    match crate::decide::plan::find_agent_binary() {
        Ok(p) => Check::pass(
            "agent",
            format!(
                "clawden-agent {} (static): calls run through it",
                p.display()
            ),
        ),
        Err(why) => Check::warn(
            "agent",
            format!("{why}: calls fall back to the Engine API exec path"),
            "build it with `cargo build` (it lands next to clawden) or set CLAWDEN_AGENT",
        ),
    }
}

/// The state directory must be a directory that only its owner can write.
pub fn state_dir_check(dir: &Path) -> Check {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    const NAME: &str = "state directory";
    let created = match std::fs::symlink_metadata(dir) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Err(e) = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
            {
                return Check::fail(
                    NAME,
                    format!("{} cannot be created: {e}", dir.display()),
                    "set CLAWDEN_HOME to a writable directory",
                );
            }
            true
        }
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{}: {e}", dir.display()),
                "set CLAWDEN_HOME to a writable directory",
            );
        }
    };
    let m = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) => return Check::fail(NAME, format!("{}: {e}", dir.display()), ""),
    };
    if !m.is_dir() {
        return Check::fail(
            NAME,
            format!("{} is not a directory", dir.display()),
            "remove it or set CLAWDEN_HOME elsewhere",
        );
    }
    if m.mode() & 0o022 != 0 {
        return Check::fail(
            NAME,
            format!(
                "{} is group- or world-writable (mode {:o})",
                dir.display(),
                m.mode() & 0o7777
            ),
            format!("chmod go-w {}", dir.display()),
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Check::warn(
            NAME,
            format!("{} is owned by uid {}, not {me}", dir.display(), m.uid()),
            format!("chown {me} {}", dir.display()),
        );
    }
    Check::pass(
        NAME,
        format!(
            "{} ({}mode {:o})",
            dir.display(),
            if created { "created, " } else { "" },
            m.mode() & 0o7777
        ),
    )
}

/// What the probes inside the throwaway sandbox printed: (exit code, stdout+stderr).
#[derive(Debug, Clone, Default)]
pub struct ProbeOutputs {
    pub status: (i64, String),
    pub net: (i64, String),
    pub write_root: (i64, String),
    pub mount: (i64, String),
    pub mknod: (i64, String),
}

/// What the sandbox is configured to allow (so an operator's choice is a warning, not a failure).
#[derive(Debug, Clone, Copy)]
pub struct ProbeExpect<'a> {
    pub network: &'a str,
    pub read_only_root: bool,
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Verdicts on the probes (security.md: all capability sets zero, NoNewPrivs 1, Seccomp 2, only
/// `lo`, EROFS on `/`, `mount` and `mknod` refused).
pub fn probe_checks(o: &ProbeOutputs, expect: ProbeExpect) -> Vec<Check> {
    let mut out = Vec::new();
    let status = &o.status.1;
    let sets = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];
    let nonzero: Vec<String> = sets
        .iter()
        .filter_map(|k| match status_field(status, k) {
            Some(v) if u64::from_str_radix(v, 16) == Ok(0) => None,
            Some(v) => Some(format!("{k}={v}")),
            None => Some(format!("{k} missing")),
        })
        .collect();
    out.push(if o.status.0 == 0 && nonzero.is_empty() {
        Check::pass(
            "capabilities",
            "CapInh, CapPrm, CapEff, CapBnd, CapAmb all 0",
        )
    } else {
        Check::fail(
            "capabilities",
            format!("not all zero: {}", nonzero.join(", ")),
            "keep docker.capDrop [\"ALL\"]; check the engine honours CapDrop",
        )
    });
    let nnp = status_field(status, "NoNewPrivs");
    out.push(if nnp == Some("1") {
        Check::pass("no_new_privs", "NoNewPrivs: 1")
    } else {
        Check::fail(
            "no_new_privs",
            format!("NoNewPrivs is {nnp:?}"),
            "the engine must honour security-opt no-new-privileges",
        )
    });
    let sec = status_field(status, "Seccomp");
    out.push(if sec == Some("2") {
        Check::pass("seccomp", "Seccomp: 2 (filter mode)")
    } else {
        Check::fail(
            "seccomp",
            format!("Seccomp is {sec:?}"),
            "run dockerd with seccomp support and its default profile",
        )
    });
    let ifaces: Vec<&str> = o.net.1.split_whitespace().collect();
    out.push(if o.net.0 == 0 && ifaces == ["lo"] {
        Check::pass("network", "only lo")
    } else if expect.network != "none" {
        Check::warn(
            "network",
            format!(
                "interfaces {ifaces:?} (docker.network is {:?})",
                expect.network
            ),
            "set docker.network to \"none\" unless the sandbox needs the network",
        )
    } else {
        Check::fail(
            "network",
            format!("interfaces {ifaces:?} with network none"),
            "the engine did not apply NetworkMode none",
        )
    });
    let (code, text) = &o.write_root;
    out.push(if *code != 0 && text.contains("Read-only file system") {
        Check::pass("read-only root", "writing / fails: Read-only file system")
    } else if !expect.read_only_root {
        Check::warn(
            "read-only root",
            "the root filesystem is writable (docker.readOnlyRoot false)",
            "set docker.readOnlyRoot true",
        )
    } else {
        Check::fail(
            "read-only root",
            format!("writing / gave exit {code}: {}", text.trim()),
            "the engine did not apply ReadonlyRootfs",
        )
    });
    for (name, (code, text)) in [("mount", &o.mount), ("mknod", &o.mknod)] {
        out.push(match code {
            &PROBE_DID_NOT_RUN => Check::fail(
                name,
                format!("the {name} probe did not complete: {}", first_line(text)),
                "check the engine (`docker info`) and the image",
            ),
            0 => Check::fail(
                name,
                format!("{name} succeeded inside the sandbox"),
                "check capabilities and the seccomp profile",
            ),
            127 => Check::warn(
                name,
                format!("{name} is not in the image; the probe could not run"),
                "use an image with busybox or util-linux for the self-check",
            ),
            _ => Check::pass(name, format!("refused: {}", first_line(text))),
        });
    }
    out
}

/// A config enum as it is spelled in the config file (`non-main`, `rw`).
fn wire_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// The exit code a probe reports when it could not run or did not finish.
pub const PROBE_DID_NOT_RUN: i64 = -1;

/// One probe in the sandbox, bounded by `limit`: (exit code, stdout+stderr), or
/// ([`PROBE_DID_NOT_RUN`], why) when the exec failed or hung. (A hung probe's process is left to
/// the container, which is removed right after.)
pub async fn run_probe(
    engine: &dyn ContainerEngine,
    id: &str,
    user: &str,
    script: &str,
    limit: Duration,
) -> (i64, String) {
    let spec = ExecSpec {
        cmd: vec!["/bin/sh".into(), "-c".into(), script.into()],
        user: Some(user.to_string()),
        ..Default::default()
    };
    match bounded(limit, engine.exec_collect(id, &spec, 64 * 1024)).await {
        Ok(r) => (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr),
        ),
        Err(e) => (PROBE_DID_NOT_RUN, format!("probe did not complete: {e}")),
    }
}

/// The engine check's detail: what engine, where, served by whom.
fn engine_detail(info: &EngineInfo) -> String {
    let peer = if info.peer.is_empty() {
        String::new()
    } else {
        format!(" ({})", info.peer)
    };
    format!(
        "Docker {} (API {}) at {}{peer}; {}, kernel {}",
        info.version, info.api_version, info.endpoint, info.os, info.kernel
    )
}

// ---- the run ----------------------------------------------------------------------------------

/// Run every check. `engine` is the result of connecting (an unreachable engine is a failed
/// check, not an error). `agent`: whose effective settings the self-check uses (default `main`).
pub async fn run(
    engine: Result<Arc<dyn ContainerEngine>, EngineError>,
    config: LoadedConfig,
    env: Env,
    agent: Option<&str>,
) -> Report {
    let mut checks = Vec::new();
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            checks.push(Check::fail("engine", e.to_string(), e.fix()));
            checks.push(state_dir_check(&env.state_dir()));
            return Report::new(checks);
        }
    };
    match tokio::time::timeout(ENGINE_CALL_TIMEOUT, engine.info()).await {
        Ok(Ok(info)) => {
            checks.push(Check::pass("engine", engine_detail(&info)));
            checks.push(runtime_check(&info));
            checks.push(cgroup_check(&info));
        }
        Ok(Err(e)) => {
            checks.push(Check::fail("engine", e.to_string(), e.fix()));
            return Report::new(checks);
        }
        Err(_) => {
            checks.push(Check::fail(
                "engine",
                format!(
                    "{}: no answer to docker info within {}s",
                    engine.endpoint(),
                    ENGINE_CALL_TIMEOUT.as_secs()
                ),
                "check the engine (`docker info`); restart it if it hangs",
            ));
            return Report::new(checks);
        }
    }
    let agents = known_agents(&config);
    let sup = Supervisor::new(engine.clone(), config, env.clone());

    // Every image the config names (one per agent at most).
    let mut images: Vec<String> = agents
        .iter()
        .filter_map(|a| sup.plan(None, Some(a)).ok())
        .map(|(_, p)| p.container.image)
        .collect();
    images.sort();
    images.dedup();
    let mut images_ok = true;
    for image in &images {
        let found = match tokio::time::timeout(ENGINE_CALL_TIMEOUT, engine.image_id(image)).await {
            Ok(r) => r,
            Err(_) => {
                images_ok = false;
                checks.push(Check::fail(
                    "image",
                    format!(
                        "{image}: no answer within {}s",
                        ENGINE_CALL_TIMEOUT.as_secs()
                    ),
                    "check the engine (`docker info`)",
                ));
                continue;
            }
        };
        checks.push(match found {
            Ok(Some(id)) => Check::pass("image", format!("{image} ({})", &id[..id.len().min(19)])),
            Ok(None) => {
                images_ok = false;
                let e = EngineError::ImageMissing {
                    image: image.clone(),
                };
                Check::fail("image", e.to_string(), e.fix())
            }
            Err(e) => {
                images_ok = false;
                Check::fail("image", format!("{image}: {e}"), e.fix())
            }
        });
    }
    checks.push(state_dir_check(&env.state_dir()));
    // Staged mounts: available as root; without root, what is lost.
    checks.extend(crate::mounts::doctor_report().into_iter().map(|i| Check {
        name: i.name.to_string(),
        status: i.status,
        detail: i.detail,
        fix: i.fix,
    }));
    checks.push(agent_check());
    if images_ok {
        checks.extend(self_check(&sup, agent).await);
    } else {
        checks.push(Check::fail(
            "self-check",
            "skipped: an image is missing",
            "build the image (see above), then run doctor again",
        ));
    }
    Report::new(checks)
}

/// Create a throwaway sandbox with the effective settings, check it, always remove it.
async fn self_check(sup: &Supervisor, agent: Option<&str>) -> Vec<Check> {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let agent = agent.unwrap_or(crate::config::resolve::DEFAULT_AGENT);
    let session = format!("agent:{agent}:clawden-doctor-{tag}");
    let (eff, mut plan) = match sup.plan(Some(&session), Some(agent)) {
        Ok(p) => p,
        Err(e) => return vec![Check::fail("config", e.to_string(), e.fix())],
    };
    if let Some(p) = plan.problems.first() {
        return vec![Check::fail(
            "config",
            format!(
                "{} problem(s) in the effective settings of agent {agent}: {}",
                plan.problems.len(),
                p.message
            ),
            p.fix.clone(),
        )];
    }
    let mut checks = vec![Check::pass(
        "config",
        format!(
            "agent {agent}: mode {}, scope {}, workspaceAccess {}, image {}",
            wire_name(&plan.mode),
            wire_name(&plan.scope),
            wire_name(&plan.workspace_access),
            plan.container.image
        ),
    )];
    // A unique name under the configured prefix, so it cannot meet a real sandbox.
    let name = format!("{}doctor-{tag}", eff.docker.container_prefix.value);
    plan.container.rename(&name);
    plan.container
        .labels
        .insert("clawden.doctor".into(), "1".into());
    let new_dirs: Vec<PathBuf> = plan
        .container
        .create_dirs
        .iter()
        .flat_map(|d| d.ancestors().map(Path::to_path_buf).collect::<Vec<_>>())
        .filter(|d| !d.exists())
        .collect();

    let live = live_checks(sup, &plan).await;
    checks.extend(live);

    // Always clean up: the container, its state entry and lock file, the dirs made for it.
    let engine = sup.engine();
    // Removed with everything made for it on the host (staged mounts, agent channel).
    let removed = bounded(ENGINE_CALL_TIMEOUT, sup.remove_sandbox(&name, &name)).await;
    let _ = sup.state().forget(&name);
    let _ = std::fs::remove_file(sup.state().dir().join("locks").join(format!("{name}.lock")));
    let mut dirs = new_dirs;
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs.dedup();
    for d in dirs {
        // A directory doctor made may carry the in-place nosuid over-mount of a writable
        // workspace (see `mounts::make_nosuid_in_place`): detach it, then remove the directory
        // only if it is still empty.
        let _ = nix::mount::umount2(&d, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(d);
    }
    let gone = bounded(ENGINE_CALL_TIMEOUT, engine.inspect(&name)).await;
    checks.push(match (removed, gone) {
        (Ok(()), Ok(None)) => Check::pass("cleanup", format!("throwaway sandbox {name} removed")),
        (r, _) => Check::fail(
            "cleanup",
            format!(
                "throwaway sandbox {name} may still exist: {}",
                r.err().unwrap_or_default()
            ),
            format!("docker rm -f {name}"),
        ),
    });
    checks
}

async fn live_checks(sup: &Supervisor, plan: &crate::decide::SandboxPlan) -> Vec<Check> {
    let engine = sup.engine();
    let mut checks = Vec::new();
    // Bounded: a hung create or setupCommand fails the check; the caller still removes the
    // throwaway container by name.
    let ens = match tokio::time::timeout(CREATE_TIMEOUT, sup.ensure_plan(plan)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            checks.push(Check::fail("sandbox create", e.to_string(), e.fix()));
            return checks;
        }
        Err(_) => {
            checks.push(Check::fail(
                "sandbox create",
                format!(
                    "creating and starting the sandbox took longer than {}s",
                    CREATE_TIMEOUT.as_secs()
                ),
                "check docker.setupCommand (it must finish) and the engine (`docker info`)",
            ));
            return checks;
        }
    };
    checks.push(Check::pass(
        "sandbox create",
        format!(
            "{} created and started through the supervisor",
            ens.container_name
        ),
    ));
    match bounded(ENGINE_CALL_TIMEOUT, engine.inspect(&ens.container_id)).await {
        Ok(Some(ins)) => {
            let bad = crate::engine::verify::verify(&ins, &plan.container);
            checks.push(if bad.is_empty() {
                Check::pass(
                    "baseline",
                    "docker inspect matches the plan and the baseline",
                )
            } else {
                Check::fail(
                    "baseline",
                    bad.iter()
                        .map(|m| format!("{}: {}", m.field, m.detail))
                        .collect::<Vec<_>>()
                        .join("; "),
                    "the engine did not apply clawden's settings",
                )
            });
        }
        Ok(None) => checks.push(Check::fail("baseline", "the container vanished", "")),
        Err(e) => checks.push(Check::fail(
            "baseline",
            e,
            "check the engine (`docker info`)",
        )),
    }
    let run = |script: &'static str| {
        run_probe(
            engine.as_ref(),
            &ens.container_id,
            &plan.container.user,
            script,
            PROBE_TIMEOUT,
        )
    };
    let outputs = ProbeOutputs {
        status: run("cat /proc/self/status").await,
        net: run("ls /sys/class/net").await,
        write_root: run("touch /.clawden-doctor").await,
        mount: run("mount -t tmpfs none /tmp").await,
        mknod: run("mknod /tmp/.clawden-doctor-dev c 1 3").await,
    };
    checks.extend(probe_checks(
        &outputs,
        ProbeExpect {
            network: &plan.container.network,
            read_only_root: plan.container.read_only_root,
        },
    ));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_versions_and_their_advisories() {
        let leaky = |v: &str| {
            runc_advisories(v)
                .unwrap()
                .iter()
                .any(|a| a.contains("CVE-2024-21626"))
        };
        let race = |v: &str| {
            runc_advisories(v)
                .unwrap()
                .iter()
                .any(|a| a.contains("CVE-2025-31133"))
        };
        // (version, leaky vessels, 2025 mount races)
        let table = [
            ("1.1.5+ds1", true, true),
            ("1.1.5+ds1-1+deb12u1", true, true),
            ("1.1.11", true, true),
            ("1.1.12", false, true),
            ("1.1.15", false, true),
            ("1.2.7", false, true),
            ("1.2.8", false, false),
            ("1.2.9", false, false),
            ("1.3.0", false, true),
            ("1.3.2", false, true),
            ("1.3.3", false, false),
            ("v1.3.4", false, false),
            ("1.4.0-rc.1", false, true),
            ("1.4.0-rc.2", false, true),
            ("1.4.0-rc.3", false, false),
            ("1.4.0", false, false),
            ("1.4.1", false, false),
            ("2.0.0", false, false),
            ("1.0.0-rc93", true, true),
        ];
        for (v, l, r) in table {
            assert_eq!((leaky(v), race(v)), (l, r), "{v}");
        }
        assert_eq!(runc_advisories("1.2.8"), Some(vec![]));
        assert_eq!(runc_advisories("unknown"), None);
        assert_eq!(runc_advisories(""), None);
    }

    #[test]
    fn old_runc_is_a_warning_not_a_failure() {
        let info = EngineInfo {
            default_runtime: "runc".into(),
            runc_version: "1.1.5+ds1".into(),
            ..Default::default()
        };
        let c = runtime_check(&info);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("CVE-2024-21626"), "{}", c.detail);
        assert!(c.detail.contains("CVE-2025-52881"), "{}", c.detail);
        let ok = EngineInfo {
            runc_version: "1.3.3".into(),
            ..info.clone()
        };
        assert_eq!(runtime_check(&ok).status, Status::Pass);
        let crun = EngineInfo {
            default_runtime: "crun".into(),
            ..info
        };
        assert_eq!(runtime_check(&crun).status, Status::Warn);
    }

    fn good_outputs() -> ProbeOutputs {
        let status = "Name:\tcat\nNoNewPrivs:\t1\nSeccomp:\t2\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n";
        ProbeOutputs {
            status: (0, status.into()),
            net: (0, "lo\n".into()),
            write_root: (1, "touch: /.x: Read-only file system\n".into()),
            mount: (255, "mount: permission denied (are you root?)\n".into()),
            mknod: (1, "mknod: /tmp/x: Operation not permitted\n".into()),
        }
    }

    const STRICT: ProbeExpect = ProbeExpect {
        network: "none",
        read_only_root: true,
    };

    #[test]
    fn probes_of_a_hardened_sandbox_pass() {
        let checks = probe_checks(&good_outputs(), STRICT);
        assert_eq!(checks.len(), 7);
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:?}"
        );
    }

    #[test]
    fn each_weakness_is_caught() {
        let verdict = |o: ProbeOutputs, name: &str, expect: ProbeExpect| {
            probe_checks(&o, expect)
                .into_iter()
                .find(|c| c.name == name)
                .unwrap()
                .status
        };
        let mut o = good_outputs();
        o.status.1 = o
            .status
            .1
            .replace("CapBnd:\t0000000000000000", "CapBnd:\t00000000a80425fb");
        assert_eq!(verdict(o, "capabilities", STRICT), Status::Fail);
        let mut o = good_outputs();
        o.status.1 = o.status.1.replace("CapAmb:\t0000000000000000\n", "");
        assert_eq!(verdict(o, "capabilities", STRICT), Status::Fail);
        let mut o = good_outputs();
        o.status.1 = o.status.1.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        assert_eq!(verdict(o, "no_new_privs", STRICT), Status::Fail);
        let mut o = good_outputs();
        o.status.1 = o.status.1.replace("Seccomp:\t2", "Seccomp:\t0");
        assert_eq!(verdict(o, "seccomp", STRICT), Status::Fail);
        let mut o = good_outputs();
        o.net.1 = "eth0\nlo\n".into();
        assert_eq!(verdict(o.clone(), "network", STRICT), Status::Fail);
        let bridged = ProbeExpect {
            network: "bridge",
            ..STRICT
        };
        assert_eq!(verdict(o, "network", bridged), Status::Warn);
        let mut o = good_outputs();
        o.write_root = (0, String::new());
        assert_eq!(verdict(o.clone(), "read-only root", STRICT), Status::Fail);
        let writable = ProbeExpect {
            read_only_root: false,
            ..STRICT
        };
        assert_eq!(verdict(o, "read-only root", writable), Status::Warn);
        let mut o = good_outputs();
        o.mount = (0, String::new());
        assert_eq!(verdict(o, "mount", STRICT), Status::Fail);
        let mut o = good_outputs();
        o.mknod = (127, "sh: mknod: not found".into());
        assert_eq!(verdict(o, "mknod", STRICT), Status::Warn);
    }

    #[test]
    fn state_dir_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let fresh = d.path().join("a/b");
        let c = state_dir_check(&fresh);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(c.detail.contains("created"));
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o777)).unwrap();
        let c = state_dir_check(&fresh);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.fix.unwrap(), format!("chmod go-w {}", fresh.display()));
        let file = d.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert_eq!(state_dir_check(&file).status, Status::Fail);
    }

    #[test]
    fn report_is_ok_unless_something_fails() {
        let r = Report::new(vec![Check::pass("a", "x"), Check::warn("b", "y", "do z")]);
        assert!(r.ok);
        let text = r.render();
        assert!(text.contains("warn  b"), "{text}");
        assert!(text.contains("fix: do z"), "{text}");
        assert!(!Report::new(vec![Check::fail("c", "bad", "")]).ok);
    }

    /// An engine whose every exec hangs (and everything else fails at once).
    struct HangingEngine;

    #[async_trait::async_trait]
    impl ContainerEngine for HangingEngine {
        fn endpoint(&self) -> String {
            "fake://hanging".into()
        }
        async fn info(&self) -> Result<EngineInfo, EngineError> {
            std::future::pending().await
        }
        async fn image_id(&self, _: &str) -> Result<Option<String>, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn build_image(
            &self,
            _: &str,
            _: Vec<u8>,
            _: &(dyn for<'a> Fn(&'a str) + Send + Sync),
        ) -> Result<String, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn import_rootfs(
            &self,
            _: &str,
            _: &str,
            _: &std::path::Path,
            _: &(dyn for<'a> Fn(&'a str) + Send + Sync),
        ) -> Result<String, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn list_sandboxes(
            &self,
        ) -> Result<Vec<crate::engine::ContainerSummary>, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn inspect(
            &self,
            _: &str,
        ) -> Result<Option<crate::engine::ContainerFacts>, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn create(
            &self,
            _: &crate::decide::ContainerSpec,
            _: &std::collections::BTreeMap<String, String>,
        ) -> Result<String, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn start(&self, _: &str) -> Result<(), EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn remove(&self, _: &str) -> Result<(), EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        fn verify_mounted(
            &self,
            f: &crate::engine::ContainerFacts,
            e: &[(String, u64, u64)],
        ) -> Result<(), Vec<crate::mounts::InodeMismatch>> {
            Err(crate::engine::not_running(f, e))
        }
    }

    #[async_trait::async_trait]
    impl crate::engine::ExecApi for HangingEngine {
        async fn exec_collect(
            &self,
            _: &str,
            _: &ExecSpec,
            _: usize,
        ) -> Result<crate::engine::ExecResult, EngineError> {
            std::future::pending().await
        }
        async fn exec_stream(
            &self,
            _: &str,
            _: &ExecSpec,
        ) -> Result<crate::engine::ExecStream, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
        async fn exec_state(&self, _: &str) -> Result<crate::engine::ExecState, EngineError> {
            Err(EngineError::Api("fake".into()))
        }
    }

    #[test]
    fn a_hung_probe_fails_its_check_within_the_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let out = rt.block_on(run_probe(
            &HangingEngine,
            "id",
            "1000:1000",
            "mount -t tmpfs none /tmp",
            Duration::from_millis(200),
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(out.0, PROBE_DID_NOT_RUN);
        assert!(out.1.contains("no answer within"), "{}", out.1);
        // Every probe hung: every check fails (none passes as "refused").
        let hung = ProbeOutputs {
            status: out.clone(),
            net: out.clone(),
            write_root: out.clone(),
            mount: out.clone(),
            mknod: out,
        };
        let checks = probe_checks(&hung, STRICT);
        assert!(
            checks.iter().all(|c| c.status == Status::Fail),
            "{checks:?}"
        );
    }

    #[test]
    fn a_hung_engine_fails_the_engine_check() {
        // doctor::run with an engine whose `info` never answers: bounded by
        // ENGINE_CALL_TIMEOUT; checked here through `bounded` with a short limit.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(bounded(Duration::from_millis(100), HangingEngine.info()));
        assert_eq!(r.unwrap_err(), "no answer within 100ms");
    }

    #[test]
    fn the_engine_detail_says_which_engine_and_where() {
        let info = EngineInfo {
            endpoint: "unix:///var/run/docker.sock".into(),
            version: "20.10.24".into(),
            api_version: "1.41".into(),
            os: "Debian".into(),
            kernel: "6.1.0".into(),
            peer: "unix:///var/run/docker.sock (owner uid 0), served by pid 812 uid 0".into(),
            ..Default::default()
        };
        let d = engine_detail(&info);
        assert!(d.contains("Docker 20.10.24"), "{d}");
        assert!(d.contains("served by pid 812 uid 0"), "{d}");
        assert!(d.contains("unix:///var/run/docker.sock"), "{d}");
    }
}
