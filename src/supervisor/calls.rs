//! Tool calls routed by mode: sandboxed sessions in their scope's container (ensured on demand),
//! direct sessions on the host, both confined and audited.

use super::{Supervisor, SupervisorError, now_ms};
use crate::audit::{AuditEntry, command_digest};
use crate::decide::SandboxPlan;
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
    pub(crate) fn audit_call(
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
        let limits = CallLimits {
            timeout: req
                .timeout
                .unwrap_or(Duration::from_secs(eff.calls.timeout_seconds.value)),
            max_output_bytes: eff.calls.max_output_bytes.value.0 as usize,
        };
        if plan.sandboxed {
            let cwd = container_cwd(plan, req.workdir.as_deref())?;
            let ensured = self.ensure_plan(plan).await?;
            let env: Vec<String> = plan
                .container
                .env
                .iter()
                .chain(req.env.iter())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let target = crate::exec::container::Target {
                container_id: &ensured.container_id,
                container_name: &ensured.container_name,
                user: &plan.container.user,
                workdir: &cwd,
                env,
            };
            let outcome =
                crate::exec::container::run(self.engine().as_ref(), &target, req, limits, sink)
                    .await
                    .map_err(SupervisorError::from)?;
            if outcome.container_died {
                // The next call gets a fresh container; the workspace lives on the host.
                let _ = self.engine().remove(&ensured.container_id).await;
            }
            Ok(outcome)
        } else {
            std::fs::create_dir_all(&plan.agent_workspace).map_err(|e| {
                SupervisorError::Io(format!(
                    "cannot create {}: {e}",
                    plan.agent_workspace.display()
                ))
            })?;
            let cwd = host_cwd(&plan.agent_workspace, req.workdir.as_deref())?;
            let env =
                crate::exec::host::host_env(&plan.agent_workspace, &plan.container.env, &req.env);
            crate::exec::host::run(&cwd, &env, req, limits, sink)
                .await
                .map_err(|e| SupervisorError::Io(format!("cannot run on the host: {e}")).into())
        }
    }
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
