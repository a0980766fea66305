//! The supervisor: decisions (pure) carried out on an engine. Shareable across threads and tasks
//! (`Arc<Supervisor>`): per-scope work is serialised by file locks that also hold across processes.

pub mod calls;
pub mod files;
pub mod ops;
pub mod state;

use crate::config::resolve::EffectiveSandbox;
use crate::config::{Env, LoadedConfig};
use crate::decide::plan::ContainerSpec;
use crate::decide::session::SessionError;
use crate::decide::{RealHost, SandboxPlan};
use crate::engine::verify::{Mismatch, verify};
use crate::engine::{ContainerEngine, EngineError, ExecSpec};
use crate::validate::{HostContext, Refusal};
use serde::Serialize;
use state::StateStore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A container used this recently is "hot": config drift keeps it (with a warning). (OC)
pub const HOT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Output kept from a failing setupCommand.
const SETUP_OUTPUT_CAP: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("the configuration has {} problem(s): {}", .0.len(), .0.iter().map(|r| r.message.clone()).collect::<Vec<_>>().join("; "))]
    Problems(Vec<Refusal>),
    #[error("session {0} is not sandboxed (it runs on the host); there is no container to ensure")]
    NotSandboxed(String),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{message}")]
    Drift { message: String, fix: String },
    #[error(
        "a container named {0:?} exists but clawden did not create it (no clawden.sandbox label)"
    )]
    Foreign(String),
    #[error(
        "setupCommand failed with exit code {exit_code}; the container was removed. Output: {output}"
    )]
    SetupFailed { exit_code: i64, output: String },
    #[error("container {name} does not match its plan: {}", .mismatches.iter().map(|m| format!("{}: {}", m.field, m.detail)).collect::<Vec<_>>().join("; "))]
    Mismatch {
        name: String,
        mismatches: Vec<Mismatch>,
    },
    #[error("{0}")]
    Io(String),
}

impl SupervisorError {
    pub fn code(&self) -> &'static str {
        match self {
            SupervisorError::Session(e) => e.code(),
            SupervisorError::Problems(_) => "config_problems",
            SupervisorError::NotSandboxed(_) => "not_sandboxed",
            SupervisorError::Engine(e) => e.code(),
            SupervisorError::Drift { .. } => "config_drift",
            SupervisorError::Foreign(_) => "foreign_container",
            SupervisorError::SetupFailed { .. } => "setup_failed",
            SupervisorError::Mismatch { .. } => "plan_mismatch",
            SupervisorError::Io(_) => "io_error",
        }
    }

    pub fn fix(&self) -> String {
        match self {
            SupervisorError::Session(_) => "give --session as agent:<agentId>:<name> or a short name".into(),
            SupervisorError::Problems(p) => p.first().map(|r| r.fix.clone()).unwrap_or_default(),
            SupervisorError::NotSandboxed(_) => "see `clawden explain`; set mode to \"all\" to sandbox it".into(),
            SupervisorError::Engine(e) => e.fix(),
            SupervisorError::Drift { fix, .. } => fix.clone(),
            SupervisorError::Foreign(n) => format!("rename or remove the container {n:?}, or change docker.containerPrefix"),
            SupervisorError::SetupFailed { .. } => "fix docker.setupCommand (it runs once, as the sandbox user, in the workdir)".into(),
            SupervisorError::Mismatch { .. } => "report this: the engine did not apply clawden's settings; `clawden doctor` checks the engine".into(),
            SupervisorError::Io(_) => "check permissions of the state and workspace directories".into(),
        }
    }
}

fn io(e: impl std::fmt::Display) -> SupervisorError {
    SupervisorError::Io(e.to_string())
}

/// What `ensure` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ensured {
    pub container_name: String,
    pub container_id: String,
    pub scope_key: String,
    pub created: bool,
    pub image: String,
    pub warnings: Vec<String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct Supervisor {
    engine: Arc<dyn ContainerEngine>,
    config: LoadedConfig,
    env: Env,
    host_ctx: HostContext,
    state: StateStore,
    audit: crate::audit::AuditLog,
    /// When this supervisor last recorded each container's use (the state file is rewritten at
    /// most every [`TOUCH_INTERVAL`] per container, not on every call).
    touched: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// Last-used times only feed the 5-minute hot window and hour-scale pruning.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(10);

impl Supervisor {
    pub fn new(engine: Arc<dyn ContainerEngine>, config: LoadedConfig, env: Env) -> Self {
        let state_dir = env.state_dir();
        let host_ctx = HostContext::from_system(vec![
            state_dir.join("state.json"),
            state_dir.join("locks"),
            state_dir.join("audit.log"),
            state_dir.join("audit.log.1"),
        ]);
        Supervisor {
            engine,
            config,
            env,
            host_ctx,
            state: StateStore::new(&state_dir),
            audit: crate::audit::AuditLog::new(&state_dir),
            touched: Default::default(),
        }
    }

    pub fn engine(&self) -> &Arc<dyn ContainerEngine> {
        &self.engine
    }

    pub fn audit_log(&self) -> &crate::audit::AuditLog {
        &self.audit
    }

    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// The pure decision for a session.
    pub fn plan(
        &self,
        session: Option<&str>,
        agent: Option<&str>,
    ) -> Result<(EffectiveSandbox, SandboxPlan), SupervisorError> {
        Ok(crate::decide::decide(
            &self.config,
            &self.env,
            &self.host_ctx,
            &RealHost,
            session,
            agent,
        )?)
    }

    /// The container for the session's scope key: reused, started, or created (sandbox.md §4).
    pub async fn ensure(
        &self,
        session: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Ensured, SupervisorError> {
        let (_, plan) = self.plan(session, agent)?;
        if !plan.problems.is_empty() {
            return Err(SupervisorError::Problems(plan.problems));
        }
        if !plan.sandboxed {
            return Err(SupervisorError::NotSandboxed(plan.session.key));
        }
        self.ensure_plan(&plan).await
    }

    pub async fn ensure_plan(&self, plan: &SandboxPlan) -> Result<Ensured, SupervisorError> {
        let name = plan.container.name.clone();
        let dir = self.state.dir().to_path_buf();
        let lock_name = name.clone();
        // One ensure per scope key at a time, across threads and processes.
        let _lock = tokio::task::spawn_blocking(move || state::lock_name(&dir, &lock_name))
            .await
            .map_err(io)?
            .map_err(io)?;
        let mut warnings = Vec::new();
        for _attempt in 0..3 {
            if let Some(found) = self.engine.inspect(&name).await? {
                match self.reuse(plan, &found, &mut warnings).await? {
                    Some(id) => return self.finish(plan, id, false, warnings),
                    None => continue, // removed for recreation
                }
            }
            match self.create(plan).await {
                Ok(id) => return self.finish(plan, id, true, warnings),
                Err(SupervisorError::Engine(EngineError::Conflict(_))) => continue, // created elsewhere meanwhile
                Err(e) => return Err(e),
            }
        }
        Err(SupervisorError::Engine(EngineError::Conflict(name)))
    }

    fn finish(
        &self,
        plan: &SandboxPlan,
        id: String,
        created: bool,
        mut warnings: Vec<String>,
    ) -> Result<Ensured, SupervisorError> {
        let due = {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            let due = created
                || touched
                    .get(&plan.container.name)
                    .is_none_or(|t| t.elapsed() >= TOUCH_INTERVAL);
            if due {
                touched.insert(plan.container.name.clone(), std::time::Instant::now());
            }
            due
        };
        if due
            && let Some(w) = self
                .state
                .touch(&plan.container.name, now_ms())
                .map_err(io)?
        {
            warnings.push(w);
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(Ensured {
            container_name: plan.container.name.clone(),
            container_id: id,
            scope_key: plan.scope_key.clone(),
            created,
            image: plan.container.image.clone(),
            warnings,
        })
    }

    /// An existing container: reuse it (`Some(id)`), or remove it for recreation (`None`).
    async fn reuse(
        &self,
        plan: &SandboxPlan,
        found: &serde_json::Value,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>, SupervisorError> {
        let name = &plan.container.name;
        let labels = found.pointer("/Config/Labels").and_then(|l| l.as_object());
        let label = |k: &str| {
            labels
                .and_then(|l| l.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        if label("clawden.sandbox").as_deref() != Some("1") {
            return Err(SupervisorError::Foreign(name.clone()));
        }
        let id = found
            .get("Id")
            .and_then(|v| v.as_str())
            .unwrap_or(name)
            .to_string();
        let running = found
            .pointer("/State/Running")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if label("clawden.configHash").as_deref() != Some(plan.config_hash.as_str()) {
            let (state, _) = self.state.load();
            let created_ms = label("clawden.createdAtMs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let last_used = state.last_used_ms.get(name).copied().unwrap_or(created_ms);
            let hot = now_ms().saturating_sub(last_used) < HOT_WINDOW.as_millis() as u64;
            let recreate = format!("clawden recreate --session {}", plan.session.key);
            if hot && running {
                if mounts_of(found) != planned_mounts(&plan.container) {
                    return Err(SupervisorError::Drift {
                        message: format!(
                            "sandbox {name} is in use and its mounts differ from the configuration; it was not used"
                        ),
                        fix: recreate,
                    });
                }
                warnings.push(format!("sandbox {name} was created with an older configuration; kept because it was used in the last 5 minutes. Apply the change with `{recreate}`"));
                return Ok(Some(id));
            }
            self.engine.remove(&id).await?;
            return Ok(None);
        }
        if !running {
            self.engine.start(&id).await?;
        }
        self.check_running(plan, &id).await?;
        Ok(Some(id))
    }

    async fn create(&self, plan: &SandboxPlan) -> Result<String, SupervisorError> {
        let spec = &plan.container;
        if self.engine.image_id(&spec.image).await?.is_none() {
            return Err(EngineError::ImageMissing {
                image: spec.image.clone(),
            }
            .into());
        }
        for d in &spec.create_dirs {
            create_dir_owned(d, spec.dir_owner)
                .map_err(|e| io(format!("cannot create {}: {e}", d.display())))?;
        }
        let mut labels = spec.labels.clone();
        labels.insert("clawden.createdAtMs".into(), now_ms().to_string());
        labels.insert("clawden.configHash".into(), plan.config_hash.clone());
        let id = self.engine.create(spec, &labels).await?;
        let result = async {
            self.engine.start(&id).await?;
            if let Some(cmd) = &spec.setup_command {
                let r = self
                    .engine
                    .exec_collect(
                        &id,
                        &ExecSpec {
                            cmd: vec!["/bin/sh".into(), "-lc".into(), cmd.clone()],
                            user: Some(spec.user.clone()),
                            workdir: Some(spec.workdir.clone()),
                            env: vec![],
                        },
                        SETUP_OUTPUT_CAP,
                    )
                    .await?;
                if r.exit_code != 0 {
                    let mut out = String::from_utf8_lossy(&r.stderr).into_owned();
                    out.push_str(&String::from_utf8_lossy(&r.stdout));
                    return Err(SupervisorError::SetupFailed {
                        exit_code: r.exit_code,
                        output: out.trim().to_string(),
                    });
                }
            }
            self.check_running(plan, &id).await
        }
        .await;
        if let Err(e) = result {
            // Nothing half-made is left behind.
            let _ = self.engine.remove(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Inspect the container and refuse it unless it matches the plan and the baseline.
    async fn check_running(&self, plan: &SandboxPlan, id: &str) -> Result<(), SupervisorError> {
        let found = self
            .engine
            .inspect(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        let mismatches = verify(&found, &plan.container);
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(SupervisorError::Mismatch {
                name: plan.container.name.clone(),
                mismatches,
            })
        }
    }
}

fn mounts_of(inspect: &serde_json::Value) -> BTreeSet<(String, String, bool)> {
    inspect
        .get("Mounts")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .map(|m| {
            let s = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            (
                s("Source"),
                s("Destination"),
                m.get("RW").and_then(|v| v.as_bool()).unwrap_or(true),
            )
        })
        .collect()
}

fn planned_mounts(spec: &ContainerSpec) -> BTreeSet<(String, String, bool)> {
    spec.mounts
        .iter()
        .map(|m| {
            (
                m.host.to_string_lossy().into_owned(),
                m.container.clone(),
                !m.access.read_only(),
            )
        })
        .collect()
}

/// `mkdir -p`, giving each directory it creates to `owner` (when clawden runs as root).
pub(crate) fn create_dir_owned(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        match std::fs::create_dir(p) {
            Ok(()) => {
                if let Some((uid, gid)) = owner.filter(|_| nix::unistd::geteuid().is_root()) {
                    nix::unistd::chown(p, Some(uid.into()), Some(gid.into()))
                        .map_err(std::io::Error::from)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Labels of a summary as a map (for list/prune).
pub fn label<'a>(labels: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    labels.get(k).map(String::as_str)
}
