//! Tool calls routed by mode: sandboxed sessions in their scope's container (ensured on demand),
//! direct sessions on the host, both confined and audited.

use super::{Supervisor, SupervisorError, now_ms};
use crate::audit::{AuditEntry, command_digest};
use crate::decide::SandboxPlan;
use crate::exec::agent::AgentCallError;
use crate::exec::{CallLimits, ExecOutcome, ExecRequest, validate_request};
use crate::validate::{Refusal, RefusalCode, normalize_container_path};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a call did not run.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("{0}")]
    Failed(#[from] SupervisorError),
}

impl CallError {
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Refused(r) => r.code.as_str(),
            CallError::Failed(e) => e.code(),
        }
    }
    pub fn fix(&self) -> String {
        match self {
            CallError::Refused(r) => r.fix.clone(),
            CallError::Failed(e) => e.fix(),
        }
    }
}

impl From<Refusal> for CallError {
    fn from(r: Refusal) -> Self {
        CallError::Refused(r)
    }
}

/// Is `path` (normalised) equal to or under `root` (normalised)?
pub fn container_path_under(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The container working directory of a call: absolute or relative to the workdir, normalised,
/// and on a bind mount or tmpfs of the plan.
pub fn container_cwd(plan: &SandboxPlan, requested: Option<&str>) -> Result<String, Refusal> {
    let spec = &plan.container;
    let raw = match requested {
        None => spec.workdir.clone(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("{}/{p}", spec.workdir),
    };
    let cwd = normalize_container_path(&raw)?;
    let on_mount = spec
        .mounts
        .iter()
        .any(|m| container_path_under(&cwd, &m.container))
        || spec.tmpfs.keys().any(|t| container_path_under(&cwd, t));
    if !on_mount {
        return Err(Refusal {
            code: RefusalCode::NotOnMount,
            value: cwd.clone(),
            message: format!("working directory {cwd:?} is not on a mount of the sandbox"),
            fix: format!(
                "use a directory under {:?} (the workdir) or another mount",
                spec.workdir
            ),
        });
    }
    Ok(cwd)
}

/// The host working directory of a direct call: inside the agent workspace (canonical paths).
pub fn host_cwd(agent_workspace: &Path, requested: Option<&str>) -> Result<PathBuf, Refusal> {
    let root = std::fs::canonicalize(agent_workspace).map_err(|e| Refusal {
        code: RefusalCode::MissingSource,
        value: agent_workspace.display().to_string(),
        message: format!(
            "agent workspace {} is not usable: {e}",
            agent_workspace.display()
        ),
        fix: "create the agent workspace directory".into(),
    })?;
    let wanted = match requested {
        None => root.clone(),
        Some(p) => root.join(p), // an absolute p replaces root: checked below like any other
    };
    let refused = |why: String| Refusal {
        code: RefusalCode::NotOnMount,
        value: requested.unwrap_or("").to_string(),
        message: format!("working directory {:?} {why}", requested.unwrap_or("")),
        fix: format!(
            "use a directory inside the agent workspace {}",
            root.display()
        ),
    };
    let canon =
        std::fs::canonicalize(&wanted).map_err(|e| refused(format!("cannot be used: {e}")))?;
    if !canon.starts_with(&root) {
        return Err(refused("is outside the agent workspace".into()));
    }
    if !canon.is_dir() {
        return Err(refused("is not a directory".into()));
    }
    Ok(canon)
}

impl Supervisor {
    pub fn audit_call(
        &self,
        plan: Option<&SandboxPlan>,
        req_session: &Option<String>,
        op: &str,
        subject: String,
        result: Result<(Option<i32>, Option<u64>), &CallError>,
        started: Instant,
    ) {
        let target = match plan {
            Some(p) if p.sandboxed => format!("container:{}", p.container.name),
            Some(_) => "host".to_string(),
            None => "unknown".to_string(),
        };
        let (decision, rule, exit_code, bytes) = match result {
            Ok((code, bytes)) => ("allowed", String::new(), code, bytes),
            Err(CallError::Refused(r)) => ("refused", r.code.as_str().to_string(), None, None),
            Err(e) => ("error", e.code().to_string(), None, None),
        };
        let entry = AuditEntry {
            time_ms: now_ms(),
            session: plan
                .map(|p| p.session.key.clone())
                .or_else(|| req_session.clone())
                .unwrap_or_default(),
            agent: plan.map(|p| p.session.agent_id.clone()).unwrap_or_default(),
            op: op.into(),
            target,
            subject,
            decision: decision.into(),
            rule,
            duration_ms: started.elapsed().as_millis() as u64,
            exit_code,
            bytes,
            ..Default::default()
        };
        if let Err(e) = self.audit_log().append(&entry) {
            tracing::warn!("audit log {}: {e}", self.audit_log().path().display());
        }
    }

    /// Run one exec call.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutcome, CallError> {
        self.exec_streaming(req, None).await
    }

    /// Run one exec call, passing output to `sink` as it arrives.
    pub async fn exec_streaming(
        &self,
        req: ExecRequest,
        sink: Option<&crate::exec::OutputSink>,
    ) -> Result<ExecOutcome, CallError> {
        let started = Instant::now();
        let planned = self.plan(req.session.as_deref(), req.agent.as_deref());
        let plan = planned.as_ref().ok().map(|(_, p)| p.clone());
        let result = match planned {
            Ok((eff, plan)) => self.exec_planned(&eff, &plan, &req, sink).await,
            Err(e) => Err(e.into()),
        };
        let summary = result
            .as_ref()
            .map(|o| (o.exit_code, Some(o.stdout_bytes + o.stderr_bytes)));
        self.audit_call(
            plan.as_ref(),
            &req.session,
            "exec",
            command_digest(&req.command),
            summary,
            started,
        );
        result
    }

    async fn exec_planned(
        &self,
        eff: &crate::config::EffectiveSandbox,
        plan: &SandboxPlan,
        req: &ExecRequest,
        sink: Option<&crate::exec::OutputSink>,
    ) -> Result<ExecOutcome, CallError> {
        if !plan.problems.is_empty() {
            return Err(SupervisorError::Problems(plan.problems.clone()).into());
        }
        validate_request(req, &plan.container.user)?;
        self.audit_gate()?;
        let limits = CallLimits {
            timeout: req
                .timeout
                .unwrap_or(Duration::from_secs(eff.calls.timeout_seconds.value)),
            max_output_bytes: eff.calls.max_output_bytes.value.0 as usize,
        };
        if plan.sandboxed {
            let cwd = container_cwd(plan, req.workdir.as_deref())?;
            let ensured = self.ensure_plan(plan).await?;
            let outcome = self
                .run_in_container(plan, &ensured, &cwd, req, limits, sink)
                .await?;
            if outcome.container_died {
                // The next call gets a fresh container; the workspace lives on the host.
                let _ = self
                    .remove_sandbox(&ensured.container_id, &ensured.container_name)
                    .await;
            }
            Ok(outcome)
        } else {
            let c = &plan.container;
            crate::supervisor::dirs::create_dir_owned(&plan.agent_workspace, c.dir_owner, 0o755)
                .map_err(|e| {
                    SupervisorError::Io(format!(
                        "cannot create {}: {e}",
                        plan.agent_workspace.display()
                    ))
                })?;
            let cwd = host_cwd(&plan.agent_workspace, req.workdir.as_deref())?;
            let run_as = direct_user(eff, &plan.agent_workspace)?;
            // A fresh HOME outside every workspace, private to this call.
            let home = tempfile::Builder::new()
                .prefix("clawden-home-")
                .tempdir()
                .map_err(|e| SupervisorError::Io(format!("cannot make a HOME: {e}")))?;
            if let Some(r) = run_as {
                let f = std::fs::File::open(home.path())
                    .map_err(|e| SupervisorError::Io(e.to_string()))?;
                nix::unistd::fchown(&f, Some(r.uid.into()), Some(r.gid.into()))
                    .map_err(|e| SupervisorError::Io(format!("cannot chown HOME: {e}")))?;
            }
            let env = crate::exec::host::host_env(home.path(), &c.env, &req.env);
            crate::exec::host::run(&cwd, &env, run_as, req, limits, sink)
                .await
                .map_err(|e| SupervisorError::Io(format!("cannot run on the host: {e}")).into())
        }
    }

    /// Run a call in a sandbox container: through its agent when it has one, else (or when the
    /// agent cannot be reached or fails the peer check) through the Engine API's exec, with a
    /// warning and an audit entry. Never both: a call that reached the agent is not run again.
    pub(crate) async fn run_in_container(
        &self,
        plan: &SandboxPlan,
        ensured: &super::Ensured,
        cwd: &str,
        req: &ExecRequest,
        limits: CallLimits,
        sink: Option<&crate::exec::OutputSink>,
    ) -> Result<ExecOutcome, CallError> {
        let env = call_env(plan, req);
        if let Some(t) = self.agent_target(plan, ensured) {
            let areq = clawden_agent::proto::ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), req.command.clone()],
                env: env.clone(),
                cwd: cwd.to_string(),
                roots: call_roots(plan),
                timeout_ms: Some(limits.timeout.as_millis() as u64),
                grace_ms: Some(crate::exec::reaper::GRACE.as_millis() as u64),
                lifetime: clawden_agent::proto::Lifetime::Connection,
                stdin: clawden_agent::proto::StdinMode::Closed,
                max_output_bytes: limits.max_output_bytes as u64,
            };
            // The agent enforces the deadline; this is the backstop for an agent the sandbox
            // froze or killed (same uid): past it the sandbox is destroyed with everything in it.
            let backstop = limits.timeout + crate::exec::reaper::GRACE + AGENT_BACKSTOP_SLACK;
            let call = crate::exec::agent::exec(
                &self.agents,
                &t,
                &ensured.container_name,
                areq,
                req,
                limits,
                sink,
            );
            let Ok(result) = tokio::time::timeout(backstop, call).await else {
                tracing::warn!(
                    "sandbox {}: its agent did not end the call within {backstop:?}; the sandbox is removed",
                    ensured.container_name
                );
                let _ = self
                    .remove_sandbox(&ensured.container_id, &ensured.container_name)
                    .await;
                let mut o = lost_outcome(ensured);
                o.timed_out = true;
                o.signal = Some(9);
                return Ok(o);
            };
            match result {
                Ok(o) => return Ok(o),
                Err(AgentCallError::Refused(r)) => return Err(CallError::Refused(r)),
                Err(AgentCallError::Broken(why)) => {
                    return self.agent_lost(ensured, &why).await;
                }
                Err(AgentCallError::Unavailable(u)) => {
                    self.audit_fallback(plan, &ensured.container_name, &u);
                }
            }
        }
        let target = crate::exec::container::Target {
            container_id: &ensured.container_id,
            container_name: &ensured.container_name,
            user: &plan.container.user,
            workdir: cwd,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        };
        Ok(
            crate::exec::container::run(self.engine().as_ref(), &target, req, limits, sink)
                .await
                .map_err(SupervisorError::from)?,
        )
    }

    /// Where this sandbox's agent is, when it has one and is running.
    pub(crate) fn agent_target(
        &self,
        plan: &SandboxPlan,
        ensured: &super::Ensured,
    ) -> Option<crate::exec::agent::AgentTarget> {
        if self.force_engine_path {
            return None;
        }
        Some(crate::exec::agent::AgentTarget {
            container_id: ensured.container_id.clone(),
            init_pid: ensured.init_pid?,
            agent: plan.container.agent.clone()?,
            uid: plan.container.numeric_user().map(|(u, _)| u),
        })
    }

    /// The agent could not be used: say so, and record it (the call then takes the Engine API).
    pub(crate) fn audit_fallback(
        &self,
        plan: &SandboxPlan,
        container: &str,
        why: &crate::exec::agent::Unavailable,
    ) {
        tracing::warn!(
            "sandbox {container}: {why}; using the Engine API exec path (slower, weaker) for this call"
        );
        let entry = AuditEntry {
            time_ms: now_ms(),
            session: plan.session.key.clone(),
            agent: plan.session.agent_id.clone(),
            op: "agent".into(),
            target: format!("container:{container}"),
            subject: why.to_string(),
            decision: "fallback".into(),
            rule: why.code().into(),
            ..Default::default()
        };
        if let Err(e) = self.audit_log().append(&entry) {
            tracing::warn!("audit log {}: {e}", self.audit_log().path().display());
        }
    }

    /// The agent's connection broke mid-call: the container (whose main process it is) died.
    async fn agent_lost(
        &self,
        ensured: &super::Ensured,
        why: &str,
    ) -> Result<ExecOutcome, CallError> {
        self.agents.forget(&ensured.container_id);
        for _ in 0..10 {
            let running = self
                .engine()
                .inspect(&ensured.container_id)
                .await
                .map_err(SupervisorError::from)?
                .map(|f| f.running);
            if running != Some(true) {
                return Ok(lost_outcome(ensured));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(SupervisorError::Io(format!(
            "the connection to the sandbox's agent broke mid-call ({why}); the call's processes were killed by the agent"
        ))
        .into())
    }
}

/// How long past a call's deadline and grace the host waits for the agent to report its end.
const AGENT_BACKSTOP_SLACK: Duration = Duration::from_secs(5);

/// The outcome of a call whose container went away under it.
fn lost_outcome(ensured: &super::Ensured) -> ExecOutcome {
    ExecOutcome {
        exit_code: None,
        signal: None,
        stdout: vec![],
        stderr: vec![],
        stdout_truncated: false,
        stderr_truncated: false,
        stdout_bytes: 0,
        stderr_bytes: 0,
        duration_ms: 0,
        timed_out: false,
        oom_killed: false,
        container_died: true,
        container_name: Some(ensured.container_name.clone()),
        via: crate::exec::Via::Agent,
    }
}

/// The exact environment of a sandbox call (nothing is inherited): a default `PATH`, a `HOME`
/// private to the session, the configured env, then the call's env.
pub fn call_env(plan: &SandboxPlan, req: &ExecRequest) -> Vec<(String, String)> {
    use sha2::Digest;
    let mut env: std::collections::BTreeMap<String, String> = Default::default();
    env.insert("PATH".into(), crate::exec::agent::DEFAULT_PATH.into());
    let tag = hex::encode(sha2::Sha256::digest(plan.session.key.as_bytes()));
    env.insert("HOME".into(), format!("/tmp/home-{}", &tag[..12]));
    env.extend(
        plan.container
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

/// The container paths a call's working directory may lie under: its mounts (not the agent's
/// own) and its tmpfs.
pub fn call_roots(plan: &SandboxPlan) -> Vec<String> {
    super::files::roots(plan)
        .0
        .into_iter()
        .map(|m| m.container)
        .chain(plan.container.tmpfs.keys().cloned())
        .collect()
}

/// Who a direct call runs as (see [`crate::exec::host::decide_direct_user`]).
fn direct_user(
    eff: &crate::config::EffectiveSandbox,
    workspace: &Path,
) -> Result<Option<crate::exec::host::RunAs>, Refusal> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(workspace)
        .map(|m| (m.uid(), m.gid()))
        .map_err(|e| Refusal {
            code: RefusalCode::MissingSource,
            value: workspace.display().to_string(),
            message: format!("agent workspace {} is not usable: {e}", workspace.display()),
            fix: "create the agent workspace directory".into(),
        })?;
    crate::exec::host::decide_direct_user(
        eff.calls.direct_user.value.as_deref(),
        workspace,
        Some(owner),
        nix::unistd::geteuid().is_root(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_under() {
        assert!(container_path_under("/workspace", "/workspace"));
        assert!(container_path_under("/workspace/a", "/workspace"));
        assert!(!container_path_under("/workspace2", "/workspace"));
        assert!(container_path_under("/x", "/"));
    }

    #[test]
    fn host_cwd_is_confined() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.join("etc-link")).unwrap();
        assert_eq!(
            host_cwd(&ws, None).unwrap(),
            std::fs::canonicalize(&ws).unwrap()
        );
        assert!(host_cwd(&ws, Some("sub")).is_ok());
        for bad in ["..", "../..", "/etc", "etc-link", "sub/../../", "missing"] {
            assert_eq!(
                host_cwd(&ws, Some(bad)).unwrap_err().code,
                RefusalCode::NotOnMount,
                "{bad}"
            );
        }
    }
}
