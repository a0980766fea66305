//! What a long-running caller (the service) needs beyond one-shot calls: a call prepared up to
//! the point of running (so it can be driven interactively, signalled and killed from another
//! connection, or started detached), the agent's detached calls of every sandbox, and the file
//! operations only the agent has (stat, list, mkdir, remove, rename; exclusive and
//! compare-and-swap writes). Everything here passes the same plan, validation, audit gate and
//! verify-on-use as [`Supervisor::exec`].

use super::calls::{CallError, call_env, call_roots, container_cwd};
use super::{Ensured, Supervisor, SupervisorError};
use crate::decide::SandboxPlan;
use crate::exec::agent::{AgentCallError, AgentTarget};
use crate::exec::{CallLimits, ExecRequest, validate_request};
use crate::validate::{Refusal, RefusalCode};
use clawden_agent::client::ClientError;
use clawden_agent::proto;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A sandboxed call ready to run in its agent.
#[derive(Clone)]
pub struct AgentCall {
    pub plan: SandboxPlan,
    pub ensured: Ensured,
    pub target: AgentTarget,
    pub request: proto::ExecRequest,
    pub limits: CallLimits,
}

/// How a prepared call runs.
pub enum Prepared {
    /// In its sandbox's agent (interactive stdin, signals, detached lifetime).
    Agent(Box<AgentCall>),
    /// Any other way (a direct session, or a sandbox without a usable agent): through
    /// [`Supervisor::exec_streaming`], which plans, audits and runs it again from the request.
    Other,
}

/// A file operation only the agent carries.
#[derive(Debug, Clone)]
pub enum FileOp {
    Stat,
    List { max_entries: u64 },
    Mkdir { parents: bool },
    Remove,
    Rename { to: String, no_replace: bool },
}

/// What a [`FileOp`] returned.
#[derive(Debug, Clone)]
pub enum FileOpResult {
    Stat(proto::FileStat),
    List {
        entries: Vec<proto::DirEntry>,
        truncated: bool,
    },
    Done,
}

/// A write with the service's preconditions.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub mkdir: bool,
    /// Fail (`exists`) when something is at the path (`If-None-Match: *`).
    pub exclusive: bool,
    /// Fail (`precondition_failed`) unless the file's etag is this one (`If-Match`).
    pub expected_etag: Option<String>,
}

/// A read's result with the file's etag.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub content: Vec<u8>,
    pub size: u64,
    pub truncated: bool,
    pub etag: Option<String>,
    pub path: String,
}

/// A write's result with the new etag.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub bytes: u64,
    pub created: bool,
    pub etag: Option<String>,
    pub path: String,
}

fn unsupported(what: &str) -> CallError {
    CallError::Refused(Refusal {
        code: RefusalCode::Unsupported,
        value: what.to_string(),
        message: format!(
            "{what} needs the sandbox's agent (direct sessions and sandboxes without an agent do not have it)"
        ),
        fix: "use a sandboxed session whose sandbox runs clawden-agent (see `clawden explain`)"
            .into(),
    })
}

fn agent_error(e: AgentCallError, path: &str) -> CallError {
    match e {
        AgentCallError::Refused(mut r) => {
            r.value = path.to_string();
            CallError::Refused(r)
        }
        AgentCallError::Broken(why) => SupervisorError::Io(format!(
            "the connection to the sandbox's agent broke: {why}"
        ))
        .into(),
        AgentCallError::Unavailable(u) => {
            SupervisorError::Io(format!("the sandbox's agent cannot be used: {u}")).into()
        }
    }
}

impl Supervisor {
    /// Plan, validate and ensure a call without running it. `argv` replaces the shell
    /// (`/bin/sh -c command`) when given. Refusals are audited here; the run's own entry is the
    /// caller's (see [`Supervisor::audit_finished`]).
    pub async fn prepare_call(
        &self,
        req: &ExecRequest,
        argv: Option<Vec<String>>,
        lifetime: proto::Lifetime,
    ) -> Result<Prepared, CallError> {
        let started = Instant::now();
        let planned = self.plan(req.session.as_deref(), req.agent.as_deref());
        let plan = planned.as_ref().ok().map(|(_, p)| p.clone());
        let r = match planned {
            Ok((eff, plan)) => self.prepare_planned(&eff, plan, req, argv, lifetime).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = &r {
            self.audit_call(
                plan.as_ref(),
                &req.session,
                "exec",
                crate::audit::command_digest(&req.command),
                Err(e),
                started,
            );
        }
        r
    }

    /// [`Supervisor::prepare_call`] with the plan the caller already made (no second plan).
    pub async fn prepare_call_planned(
        &self,
        eff: &crate::config::EffectiveSandbox,
        plan: SandboxPlan,
        req: &ExecRequest,
        argv: Option<Vec<String>>,
        lifetime: proto::Lifetime,
    ) -> Result<Prepared, CallError> {
        let started = Instant::now();
        let audit_plan = plan.clone();
        let r = self.prepare_planned(eff, plan, req, argv, lifetime).await;
        if let Err(e) = &r {
            self.audit_call(
                Some(&audit_plan),
                &req.session,
                "exec",
                crate::audit::command_digest(&req.command),
                Err(e),
                started,
            );
        }
        r
    }

    async fn prepare_planned(
        &self,
        eff: &crate::config::EffectiveSandbox,
        plan: SandboxPlan,
        req: &ExecRequest,
        argv: Option<Vec<String>>,
        lifetime: proto::Lifetime,
    ) -> Result<Prepared, CallError> {
        if !plan.problems.is_empty() {
            return Err(SupervisorError::Problems(plan.problems.clone()).into());
        }
        validate_request(req, &plan.container.user)?;
        if let Some(a) = &argv
            && (a.is_empty() || a[0].is_empty() || a.iter().any(|s| s.contains('\0')))
        {
            return Err(CallError::Refused(Refusal {
                code: RefusalCode::InvalidValue,
                value: format!("{a:?}"),
                message: "argv must be non-empty with no NUL bytes".into(),
                fix: "send a program and its arguments".into(),
            }));
        }
        self.audit_gate()?;
        if !plan.sandboxed || self.force_engine_path {
            if argv.is_some() || lifetime == proto::Lifetime::Detached {
                return Err(unsupported("argv and detached calls"));
            }
            return Ok(Prepared::Other);
        }
        let limits = CallLimits {
            timeout: req
                .timeout
                .unwrap_or(Duration::from_secs(eff.calls.timeout_seconds.value)),
            max_output_bytes: eff.calls.max_output_bytes.value.0 as usize,
        };
        let cwd = container_cwd(&plan, req.workdir.as_deref())?;
        let ensured = self.ensure_plan(&plan).await?;
        let Some(target) = self.agent_target(&plan, &ensured) else {
            if argv.is_some() || lifetime == proto::Lifetime::Detached {
                return Err(unsupported("argv and detached calls"));
            }
            return Ok(Prepared::Other);
        };
        let mut request = proto::ExecRequest {
            argv: argv.unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), req.command.clone()]),
            env: call_env(&plan, req),
            cwd,
            roots: call_roots(&plan),
            timeout_ms: Some(limits.timeout.as_millis() as u64),
            grace_ms: Some(crate::exec::reaper::GRACE.as_millis() as u64),
            lifetime,
            stdin: proto::StdinMode::Closed,
            max_output_bytes: limits.max_output_bytes as u64,
        };
        if let Some(data) = &req.stdin {
            request.stdin = proto::StdinMode::Inline(data.clone());
        }
        Ok(Prepared::Agent(Box::new(AgentCall {
            plan,
            ensured,
            target,
            request,
            limits,
        })))
    }

    /// The audit entry of a call that ran outside [`Supervisor::exec`].
    pub fn audit_finished(
        &self,
        plan: &SandboxPlan,
        command: &str,
        exit_code: Option<i32>,
        bytes: u64,
        started: Instant,
    ) {
        self.audit_call(
            Some(plan),
            &Some(plan.session.key.clone()),
            "exec",
            crate::audit::command_digest(command),
            Ok((exit_code, Some(bytes))),
            started,
        );
    }

    /// The agent pool (connections are verified on first use and reused).
    pub fn agent_pool(&self) -> &Arc<crate::exec::agent::AgentPool> {
        &self.agents
    }

    /// Forget a sandbox after its agent's connection broke mid-call, and remove it if its
    /// container is no longer running (the next call gets a fresh one).
    pub async fn sandbox_lost(&self, ensured: &Ensured) {
        self.agents.forget(&ensured.container_id);
        if let Ok(Some(f)) = self.engine().inspect(&ensured.container_id).await
            && f.running
        {
            return;
        }
        let _ = self
            .remove_sandbox(&ensured.container_id, &ensured.container_name)
            .await;
    }

    /// Every running sandbox of this configuration with its agent target (for finding
    /// detached calls again after a restart). Sandboxes that fail verification are skipped.
    pub async fn agent_targets(&self) -> Vec<(String, AgentTarget)> {
        let mut out = Vec::new();
        let Ok(list) = self.list().await else {
            return out;
        };
        for info in list {
            if !info.running {
                continue;
            }
            // A session of that scope: the scope key itself (session scope), else any
            // non-main session of the agent (agent and shared scopes share one container).
            let plan = [info.scope_key.as_str(), "clawden-rediscover"]
                .iter()
                .filter_map(|k| self.plan(Some(k), Some(&info.agent_id)).ok())
                .map(|(_, p)| p)
                .find(|p| p.sandboxed && p.container.name == info.name);
            let Some(plan) = plan else {
                tracing::debug!(
                    "rediscover {}: not a sandbox of this configuration",
                    info.name
                );
                continue;
            };
            let ensured = match self.ensure_plan(&plan).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!("rediscover {}: {e}", info.name);
                    continue;
                }
            };
            if let Some(t) = self.agent_target(&plan, &ensured) {
                out.push((info.name.clone(), t));
            }
        }
        out
    }

    /// The agent of a sandboxed session's plan, after the same gates as every call (plan
    /// problems, audit), ensuring its sandbox once.
    async fn file_agent_of(&self, plan: &SandboxPlan) -> Result<AgentTarget, CallError> {
        if !plan.problems.is_empty() {
            return Err(SupervisorError::Problems(plan.problems.clone()).into());
        }
        if !plan.sandboxed || self.force_engine_path {
            return Err(unsupported("this file operation"));
        }
        self.audit_gate()?;
        let ensured = self.ensure_plan(plan).await?;
        self.agent_target(plan, &ensured)
            .ok_or_else(|| unsupported("this file operation"))
    }

    /// stat, list, mkdir, remove, rename in a sandbox, as its user, through its agent.
    pub async fn file_op(
        &self,
        session: Option<&str>,
        agent: Option<&str>,
        path: &str,
        op: FileOp,
    ) -> Result<FileOpResult, CallError> {
        let started = Instant::now();
        let name = match &op {
            FileOp::Stat => "stat",
            FileOp::List { .. } => "list",
            FileOp::Mkdir { .. } => "mkdir",
            FileOp::Remove => "remove",
            FileOp::Rename { .. } => "rename",
        };
        let planned = self.plan(session, agent);
        let plan = planned.as_ref().ok().map(|(_, p)| p.clone());
        let r = match planned {
            Ok((_, plan)) => self.file_op_planned(&plan, path, op).await,
            Err(e) => Err(e.into()),
        };
        self.audit_call(
            plan.as_ref(),
            &session.map(str::to_string),
            name,
            path.to_string(),
            r.as_ref().map(|_| (None, None)),
            started,
        );
        r
    }

    async fn file_op_planned(
        &self,
        plan: &SandboxPlan,
        path: &str,
        op: FileOp,
    ) -> Result<FileOpResult, CallError> {
        let writes = matches!(
            op,
            FileOp::Mkdir { .. } | FileOp::Remove | FileOp::Rename { .. }
        );
        // Both paths are mapped (and refused) before the sandbox is touched.
        let target = agent_target_of(plan, path, writes)?;
        let to = match &op {
            FileOp::Rename { to, .. } => Some(agent_target_of(plan, to, true)?),
            _ => None,
        };
        let t = self.file_agent_of(plan).await?;
        let shown = target.path.clone();
        self.agents
            .with_client(&t, move |c| -> Result<FileOpResult, ClientError> {
                Ok(match op {
                    FileOp::Stat => FileOpResult::Stat(c.stat(&target)?),
                    FileOp::List { max_entries } => {
                        let (entries, truncated) = c.list(&target, max_entries)?;
                        FileOpResult::List { entries, truncated }
                    }
                    FileOp::Mkdir { parents } => {
                        c.mkdir(&target, parents)?;
                        FileOpResult::Done
                    }
                    FileOp::Remove => {
                        c.remove(&target)?;
                        FileOpResult::Done
                    }
                    FileOp::Rename { no_replace, .. } => {
                        let to = to.expect("rename has a target");
                        c.rename(&target, &to, no_replace)?;
                        FileOpResult::Done
                    }
                })
            })
            .await
            .map_err(|e| agent_error(e, &shown))
    }

    /// A read with the file's etag: through the agent for sandboxed sessions, else the host
    /// side of [`Supervisor::read`] (no etag).
    pub async fn read_tagged(
        &self,
        req: super::files::ReadRequest,
    ) -> Result<ReadOutcome, CallError> {
        let planned = match self.plan(req.session.as_deref(), req.agent.as_deref()) {
            Ok((eff, plan)) if plan.sandboxed && !self.force_engine_path => (eff, plan),
            _ => {
                let r = self.read(req).await?;
                return Ok(ReadOutcome {
                    content: r.content,
                    size: r.size,
                    truncated: r.truncated,
                    etag: None,
                    path: r.path,
                });
            }
        };
        let started = Instant::now();
        let r = self.read_agent(&planned.0, &planned.1, &req).await;
        self.audit_call(
            Some(&planned.1),
            &req.session,
            "read",
            req.path.clone(),
            r.as_ref().map(|o| (None, Some(o.content.len() as u64))),
            started,
        );
        r
    }

    async fn read_agent(
        &self,
        eff: &crate::config::EffectiveSandbox,
        plan: &SandboxPlan,
        req: &super::files::ReadRequest,
    ) -> Result<ReadOutcome, CallError> {
        let target = agent_target_of(plan, &req.path, false)?;
        let t = self.file_agent_of(plan).await?;
        let areq = proto::ReadRequest {
            target: target.clone(),
            offset: req.offset,
            length: req.length,
            cap: eff.calls.max_read_bytes.value.0,
        };
        let (r, content) = self
            .agents
            .with_client(&t, move |c| {
                let mut buf = Vec::new();
                let r = c.read_file(&areq, &mut buf)?;
                Ok((r, buf))
            })
            .await
            .map_err(|e| agent_error(e, &target.path))?;
        Ok(ReadOutcome {
            content,
            size: r.size,
            truncated: r.truncated,
            etag: Some(r.etag),
            path: target.path,
        })
    }

    /// A write with preconditions (exclusive create, compare-and-swap) through the agent; a
    /// plain write of a direct session takes the host side of [`Supervisor::write`].
    pub async fn write_tagged(
        &self,
        req: super::files::WriteRequest,
        opts: WriteOptions,
    ) -> Result<WriteOutcome, CallError> {
        let planned = match self.plan(req.session.as_deref(), req.agent.as_deref()) {
            Ok((eff, plan)) if plan.sandboxed && !self.force_engine_path => (eff, plan),
            _ => {
                if opts.exclusive || opts.expected_etag.is_some() {
                    return Err(unsupported("exclusive and compare-and-swap writes"));
                }
                let r = self.write(req).await?;
                return Ok(WriteOutcome {
                    bytes: r.bytes_written,
                    created: false,
                    etag: None,
                    path: r.path,
                });
            }
        };
        let started = Instant::now();
        let r = self.write_agent(&planned.0, &planned.1, &req, opts).await;
        self.audit_call(
            Some(&planned.1),
            &req.session,
            "write",
            req.path.clone(),
            r.as_ref().map(|o| (None, Some(o.bytes))),
            started,
        );
        r
    }

    async fn write_agent(
        &self,
        eff: &crate::config::EffectiveSandbox,
        plan: &SandboxPlan,
        req: &super::files::WriteRequest,
        opts: WriteOptions,
    ) -> Result<WriteOutcome, CallError> {
        let target = agent_target_of(plan, &req.path, true)?;
        let cap = eff.calls.max_write_bytes.value.0;
        super::files::check_write_cap(req.content.len(), cap)?;
        let t = self.file_agent_of(plan).await?;
        let areq = proto::WriteRequest {
            target: target.clone(),
            mkdir_parents: req.mkdir || opts.mkdir,
            exclusive: opts.exclusive,
            expected_etag: opts.expected_etag,
            cap,
        };
        let content = req.content.clone();
        let r = self
            .agents
            .with_client(&t, move |c| {
                c.write_file(&areq, &mut std::io::Cursor::new(content))
            })
            .await
            .map_err(|e| agent_error(e, &target.path))?;
        Ok(WriteOutcome {
            bytes: r.bytes,
            created: r.created,
            etag: Some(r.etag),
            path: target.path,
        })
    }
}

/// A container path of a sandboxed plan as the agent addresses it (mount root + path), refused
/// on a read-only mount when `writes`. Pure: the same mapping as the host side's file tools.
fn agent_target_of(
    plan: &SandboxPlan,
    path: &str,
    writes: bool,
) -> Result<proto::FileTarget, CallError> {
    let (mounts, workdir) = super::files::roots(plan);
    let mapped = crate::fileio::map_container_path(path, &workdir, &mounts)?;
    if writes && mapped.read_only {
        return Err(super::files::read_only_refusal(&mapped.container_path).into());
    }
    Ok(proto::FileTarget {
        root: mounts[mapped.mount_index].container.clone(),
        path: mapped.container_path,
    })
}
