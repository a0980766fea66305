//! The supervisor: decisions (pure) carried out on an engine. Shareable across threads and tasks
//! (`Arc<Supervisor>`): per-scope work is serialised by file locks that also hold across processes.

pub mod calls;
pub mod dirs;
pub mod files;
pub mod fresh;
pub mod mounting;
pub mod ops;
pub mod run;
pub mod service;
pub mod state;
pub mod workcopy;

use crate::config::resolve::EffectiveSandbox;
use crate::config::{Env, LoadedConfig};
use crate::decide::session::SessionError;
use crate::decide::{RealHost, SandboxPlan};
use crate::engine::verify::{Mismatch, actual_mounts, planned_mounts, verify};
use crate::engine::{ContainerEngine, ContainerFacts, EngineError};
use crate::validate::{HostContext, Refusal};
use serde::Serialize;
use state::StateStore;
use std::collections::BTreeMap;
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
    #[error("setupCommand failed ({status}); the container was removed. Output: {output}")]
    SetupFailed { status: String, output: String },
    #[error("container {name} does not match its plan: {}", .mismatches.iter().map(|m| format!("{}: {}", m.field, m.detail)).collect::<Vec<_>>().join("; "))]
    Mismatch {
        name: String,
        mismatches: Vec<Mismatch>,
    },
    #[error("{0}")]
    Io(String),
    #[error("the audit log cannot be written ({0}); the call was not run")]
    AuditFailed(String),
    /// A mount could not be staged, or the container's mounts are not what was checked.
    #[error("{message}")]
    MountCheck {
        code: &'static str,
        message: String,
        fix: String,
    },
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
            SupervisorError::AuditFailed(_) => "audit_failed",
            SupervisorError::MountCheck { code, .. } => code,
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
            SupervisorError::SetupFailed { .. } => "fix docker.setupCommand (it runs once, as the sandbox user, in the workdir, within calls.timeoutSeconds)".into(),
            SupervisorError::Mismatch { .. } => "report this: the engine did not apply clawden's settings; `clawden doctor` checks the engine".into(),
            SupervisorError::Io(_) => "check permissions of the state and workspace directories".into(),
            SupervisorError::AuditFailed(_) => "make the state directory's audit.log writable and give its filesystem room".into(),
            SupervisorError::MountCheck { fix, .. } => fix.clone(),
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
    /// Host pid of the container's init (its agent is init's child).
    #[serde(skip)]
    pub init_pid: Option<u32>,
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
    /// Idle verified connections to sandbox agents.
    agents: Arc<crate::exec::agent::AgentPool>,
    /// Calls take the Engine API path even when a sandbox has an agent (tests of the fallback).
    force_engine_path: bool,
    /// Host facts the plan depends on (replaceable in tests).
    host: Arc<dyn crate::decide::HostProbe + Send + Sync>,
    /// When this supervisor last recorded each container's use (the state file is rewritten at
    /// most every [`TOUCH_INTERVAL`] per container, not on every call).
    touched: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Verified containers kept fresh by the engine's events (long-lived supervisors).
    fresh: Arc<fresh::Fresh>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.fresh.stop();
    }
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
            host: Arc::new(RealHost),
            agents: Default::default(),
            force_engine_path: std::env::var_os("CLAWDEN_FORCE_ENGINE_EXEC")
                .is_some_and(|v| v == "1"),
            touched: Default::default(),
            fresh: Default::default(),
        }
    }

    /// Would the next use of this plan's sandbox rely on facts verified earlier (the engine's
    /// events said nothing changed since) instead of inspecting it?
    pub fn relies_on_verified_facts(&self, plan: &SandboxPlan) -> bool {
        self.fresh
            .lookup(&plan.container.name, &plan.config_hash)
            .is_some()
    }

    /// The same supervisor, sending every sandboxed call through the Engine API's exec (the
    /// fallback path) even when the agent is there.
    pub fn with_engine_path(mut self) -> Self {
        self.force_engine_path = true;
        self
    }

    /// The same supervisor with other host facts (tests: a non-root identity, no agent binary).
    pub fn with_host_probe(
        mut self,
        host: Arc<dyn crate::decide::HostProbe + Send + Sync>,
    ) -> Self {
        self.host = host;
        self
    }

    pub fn engine(&self) -> &Arc<dyn ContainerEngine> {
        &self.engine
    }

    /// The configuration this supervisor decides with.
    pub fn config(&self) -> &LoadedConfig {
        &self.config
    }

    /// The environment it was started with.
    pub fn env(&self) -> &Env {
        &self.env
    }

    pub fn audit_log(&self) -> &crate::audit::AuditLog {
        &self.audit
    }

    /// Fail closed: no call runs unless its audit entry can be written.
    pub(crate) fn audit_gate(&self) -> Result<(), SupervisorError> {
        self.audit.ensure_writable().map_err(|e| {
            SupervisorError::AuditFailed(format!("{}: {e}", self.audit.path().display()))
        })
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
            self.host.as_ref(),
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
        if let Some(facts) = self.fresh.lookup(&name, &plan.config_hash) {
            // Verified, and the engine has reported nothing about it since: the live part of
            // the check (what its mounts are now) runs again.
            self.check_mounted(plan, &facts).await?;
            return self.finish(plan, facts, false, Vec::new());
        }
        let dir = self.state.dir().to_path_buf();
        let lock_name = name.clone();
        // One ensure per scope key at a time, across threads and processes.
        let _lock = tokio::task::spawn_blocking(move || state::lock_name(&dir, &lock_name))
            .await
            .map_err(io)?
            .map_err(io)?;
        let mut warnings = Vec::new();
        for _attempt in 0..3 {
            let ticket = self.fresh.ticket();
            if let Some(found) = self.engine.inspect(&name).await? {
                match self.reuse(plan, found, &mut warnings).await? {
                    Some(facts) => {
                        // Only a container that matches its configuration is kept (one kept
                        // with a warning is inspected, and warned about, on every use).
                        if warnings.is_empty()
                            && self
                                .fresh
                                .remember(&name, &facts, &plan.config_hash, ticket)
                        {
                            self.fresh.watch(self.engine.clone());
                        }
                        return self.finish(plan, facts, false, warnings);
                    }
                    None => continue, // removed for recreation
                }
            }
            match self.create(plan).await {
                Ok(facts) => return self.finish(plan, facts, true, warnings),
                Err(SupervisorError::Engine(EngineError::Conflict(_))) => continue, // created elsewhere meanwhile
                Err(e) => return Err(e),
            }
        }
        Err(SupervisorError::Engine(EngineError::Conflict(name)))
    }

    fn finish(
        &self,
        plan: &SandboxPlan,
        facts: ContainerFacts,
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
        // Another process (a one-shot CLI call) may have recorded a use just now: a read is
        // cheaper than rewriting the state file.
        let due = due
            && (created
                || self
                    .state
                    .load()
                    .0
                    .last_used_ms
                    .get(&plan.container.name)
                    .is_none_or(|t| {
                        now_ms().saturating_sub(*t) >= TOUCH_INTERVAL.as_millis() as u64
                    }));
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
            container_id: facts.id,
            init_pid: facts.pid,
            scope_key: plan.scope_key.clone(),
            created,
            image: plan.container.image.clone(),
            warnings,
        })
    }

    /// An existing container: reuse it (`Some(facts)`), or remove it for recreation (`None`).
    /// The security baseline is checked on every reuse, hot or not: only non-security drift
    /// (image, main command) is tolerated while a stale container is in use.
    async fn reuse(
        &self,
        plan: &SandboxPlan,
        found: ContainerFacts,
        warnings: &mut Vec<String>,
    ) -> Result<Option<ContainerFacts>, SupervisorError> {
        let name = &plan.container.name;
        if found.label("clawden.sandbox") != Some("1") {
            return Err(SupervisorError::Foreign(name.clone()));
        }
        // Another configuration's sandbox under the same name is not ours to use or remove
        // (containers from before the owner label have none, and a stale hash: recreated).
        let owner = plan.container.labels.get(crate::decide::owner::OWNER_LABEL);
        if let Some(theirs) = found.label(crate::decide::owner::OWNER_LABEL)
            && Some(theirs) != owner.map(String::as_str)
        {
            return Err(SupervisorError::Foreign(name.clone()));
        }
        let mismatches = verify(&found, &plan.container);
        if found.label("clawden.configHash") != Some(plan.config_hash.as_str()) {
            let (state, _) = self.state.load();
            let created_ms = found
                .label("clawden.createdAtMs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let last_used = state.last_used_ms.get(name).copied().unwrap_or(created_ms);
            let hot = now_ms().saturating_sub(last_used) < HOT_WINDOW.as_millis() as u64;
            let recreate = format!("clawden recreate --session {}", plan.session.key);
            if hot && found.running {
                let security: Vec<&Mismatch> = mismatches.iter().filter(|m| m.security).collect();
                let mounts_changed = actual_mounts(&found) != planned_mounts(&plan.container)
                    || found.label(crate::decide::plan::MOUNTS_LABEL)
                        != plan
                            .container
                            .labels
                            .get(crate::decide::plan::MOUNTS_LABEL)
                            .map(String::as_str);
                if !security.is_empty() || mounts_changed {
                    return Err(SupervisorError::Drift {
                        message: format!(
                            "sandbox {name} is in use and its {} differ from the configuration ({}); it was not used",
                            if mounts_changed {
                                "mounts"
                            } else {
                                "security settings"
                            },
                            if security.is_empty() {
                                "host sources changed".to_string()
                            } else {
                                security
                                    .iter()
                                    .map(|m| format!("{}: {}", m.field, m.detail))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            }
                        ),
                        fix: recreate,
                    });
                }
                self.check_mounted(plan, &found).await?;
                warnings.push(format!("sandbox {name} was created with an older configuration; kept because it was used in the last 5 minutes. Apply the change with `{recreate}`"));
                return Ok(Some(found));
            }
            self.remove_sandbox(&found.id, name).await?;
            return Ok(None);
        }
        if !mismatches.is_empty() {
            return Err(SupervisorError::Mismatch {
                name: name.clone(),
                mismatches,
            });
        }
        if !found.running {
            // Staged mounts may be gone (a reboot, a sweep): stage again, then start and check.
            let staged = self.prepare(plan).await?;
            self.engine.start(&found.id).await?;
            let facts = self.check_running(plan, &found.id).await?;
            if let Err(e) = mounting::verify_prepared(self.engine.as_ref(), &facts, &staged) {
                let _ = self.remove_sandbox(&found.id, name).await;
                return Err(e);
            }
            return Ok(Some(facts));
        }
        self.check_mounted(plan, &found).await?;
        Ok(Some(found))
    }

    /// Remove a sandbox container and everything clawden made for it on the host: its staged
    /// mounts (unmounted, never deleted through) and its agent channel directory.
    pub async fn remove_sandbox(&self, id: &str, name: &str) -> Result<(), SupervisorError> {
        self.fresh.forget(name);
        self.engine.remove(id).await?;
        self.agents.forget(id);
        let state_dir = self.state.dir().to_path_buf();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || mounting::cleanup(&state_dir, &name))
            .await
            .map_err(io)?
            .map_err(io)
    }

    async fn create(&self, plan: &SandboxPlan) -> Result<ContainerFacts, SupervisorError> {
        let spec = &plan.container;
        if self.engine.image_id(&spec.image).await?.is_none() {
            return Err(EngineError::ImageMissing {
                image: spec.image.clone(),
            }
            .into());
        }
        let prepared = self.prepare(plan).await?;
        let mut labels = spec.labels.clone();
        labels.insert("clawden.createdAtMs".into(), now_ms().to_string());
        labels.insert("clawden.configHash".into(), plan.config_hash.clone());
        let id = match self.engine.create(spec, &labels).await {
            Ok(id) => id,
            Err(e) => {
                let _ = mounting::cleanup(self.state.dir(), &spec.name);
                return Err(e.into());
            }
        };
        let result = async {
            self.engine.start(&id).await?;
            let facts = self.check_running(plan, &id).await?;
            mounting::verify_prepared(self.engine.as_ref(), &facts, &prepared)?;
            if let Some(cmd) = &spec.setup_command {
                self.run_setup(plan, &facts, cmd).await?;
            }
            Ok(facts)
        }
        .await;
        match result {
            Ok(facts) => Ok(facts),
            Err(e) => {
                // Nothing half-made is left behind.
                let _ = self.remove_sandbox(&id, &spec.name).await;
                Err(e)
            }
        }
    }

    async fn prepare(&self, plan: &SandboxPlan) -> Result<crate::mounts::Staged, SupervisorError> {
        let spec = plan.container.clone();
        let state_dir = self.state.dir().to_path_buf();
        tokio::task::spawn_blocking(move || mounting::prepare(&state_dir, &spec))
            .await
            .map_err(io)?
    }

    /// The setupCommand, once, as a normal call (agent or fallback path) with a timeout.
    async fn run_setup(
        &self,
        plan: &SandboxPlan,
        facts: &ContainerFacts,
        cmd: &str,
    ) -> Result<(), SupervisorError> {
        // It holds the scope's lock: bounded like any call.
        let timeout = Duration::from_secs(plan.setup_timeout_seconds.max(1));
        let req = crate::exec::ExecRequest {
            command: cmd.to_string(),
            timeout: Some(timeout),
            ..Default::default()
        };
        let limits = crate::exec::CallLimits {
            timeout,
            max_output_bytes: SETUP_OUTPUT_CAP,
        };
        let ensured = Ensured {
            container_name: plan.container.name.clone(),
            container_id: facts.id.clone(),
            init_pid: facts.pid,
            scope_key: plan.scope_key.clone(),
            created: true,
            image: plan.container.image.clone(),
            warnings: vec![],
        };
        let o = self
            .run_in_container(plan, &ensured, &plan.container.workdir, &req, limits, None)
            .await
            .map_err(|e| match e {
                calls::CallError::Failed(e) => e,
                calls::CallError::Refused(r) => SupervisorError::SetupFailed {
                    status: format!("refused: {}", r.code.as_str()),
                    output: r.message,
                },
            })?;
        if o.exit_code != Some(0) {
            let mut out = String::from_utf8_lossy(&o.stderr).into_owned();
            out.push_str(&String::from_utf8_lossy(&o.stdout));
            let status = if o.timed_out {
                format!("timed out after {}s", timeout.as_secs())
            } else {
                match (o.exit_code, o.signal) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(c), None) => format!("exit code {c}"),
                    _ => "no exit status".into(),
                }
            };
            return Err(SupervisorError::SetupFailed {
                status,
                output: out.trim().to_string(),
            });
        }
        Ok(())
    }

    /// Inspect the container and refuse it unless it matches the plan and the baseline and its
    /// mounts are the checked inodes.
    async fn check_running(
        &self,
        plan: &SandboxPlan,
        id: &str,
    ) -> Result<ContainerFacts, SupervisorError> {
        let found = self
            .engine
            .inspect(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        let mismatches = verify(&found, &plan.container);
        if !mismatches.is_empty() {
            return Err(SupervisorError::Mismatch {
                name: plan.container.name.clone(),
                mismatches,
            });
        }
        self.check_mounted(plan, &found).await?;
        Ok(found)
    }

    /// The inodes mounted in a running container are the ones its plan's sources are now.
    async fn check_mounted(
        &self,
        plan: &SandboxPlan,
        found: &ContainerFacts,
    ) -> Result<(), SupervisorError> {
        let spec = plan.container.clone();
        let facts = found.clone();
        let engine = self.engine.clone();
        let r = tokio::task::spawn_blocking(move || {
            mounting::verify_current(engine.as_ref(), &facts, &spec)
        })
        .await
        .map_err(io)?;
        if let Err(e) = r {
            // A container whose mounts are not what was checked is destroyed, never used.
            let _ = self.remove_sandbox(&found.id, &found.name).await;
            return Err(e);
        }
        Ok(())
    }
}

/// Labels of a summary as a map (for list/prune).
pub fn label<'a>(labels: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    labels.get(k).map(String::as_str)
}

#[cfg(test)]
mod tests;
