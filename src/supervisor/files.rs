//! File tools: a container path maps to a host path only through a bind mount of the plan (the
//! longest target wins), and the host side works beneath a directory handle of that mount's root
//! (`fileio`: openat2 with RESOLVE_BENEATH, regular files only, atomic writes). Direct sessions
//! use the agent workspace as their only root.

use super::calls::CallError;
use super::{Supervisor, SupervisorError};
use crate::decide::{Access, MountSource, PlannedMount, SandboxPlan};
use crate::exec::agent::{AgentCallError, AgentTarget};
use crate::fileio::{self, MappedPath, WriteOptions};
use crate::validate::{Refusal, RefusalCode};
use clawden_agent::proto;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    pub session: Option<String>,
    pub agent: Option<String>,
    pub path: String,
    pub offset: u64,
    pub length: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadResult {
    #[serde(skip)]
    pub content: Vec<u8>,
    pub size: u64,
    pub truncated: bool,
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct WriteRequest {
    pub session: Option<String>,
    pub agent: Option<String>,
    pub path: String,
    pub content: Vec<u8>,
    pub mkdir: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResult {
    pub bytes_written: u64,
    pub path: String,
}

fn file_error(e: fileio::FileError) -> CallError {
    CallError::Refused(e.refusal().clone())
}

/// The mounts a call's paths may use, and the directory relative paths start from.
pub(super) fn roots(plan: &SandboxPlan) -> (Vec<PlannedMount>, String) {
    if plan.sandboxed {
        (
            // The agent's own mounts are never the file tools' business.
            plan.container
                .mounts
                .iter()
                .filter(|m| {
                    !matches!(
                        m.source,
                        MountSource::AgentBinary | MountSource::AgentChannel
                    )
                })
                .cloned()
                .collect(),
            plan.container.workdir.clone(),
        )
    } else {
        let ws = plan.agent_workspace.to_string_lossy().into_owned();
        (
            vec![PlannedMount {
                host: plan.agent_workspace.clone(),
                container: ws.clone(),
                access: Access::Rw,
                source: MountSource::Agent,
            }],
            ws,
        )
    }
}

fn map(plan: &SandboxPlan, path: &str) -> Result<MappedPath, Refusal> {
    let (mounts, workdir) = roots(plan);
    fileio::map_container_path(path, &workdir, &mounts)
}

/// A write to a read-only mount: refused before any syscall on the target.
pub(super) fn read_only_refusal(path: &str) -> Refusal {
    Refusal {
        code: RefusalCode::ReadOnlyMount,
        value: path.to_string(),
        message: format!("{path} is on a read-only mount"),
        fix: "write under the workdir instead, or set workspaceAccess to \"rw\"".into(),
    }
}

/// Content over the write cap: refused before anything is sent or written.
pub(super) fn check_write_cap(len: usize, cap: u64) -> Result<(), Refusal> {
    if len as u64 > cap {
        return Err(Refusal {
            code: RefusalCode::TooLarge,
            value: format!("{len} bytes"),
            message: format!("content of {len} bytes is over the write cap of {cap} bytes"),
            fix: "raise agents.defaults.sandbox.calls.maxWriteBytes or write less".into(),
        });
    }
    Ok(())
}

/// uid:gid of the sandbox user when it is numeric (files written for it are given to it).
fn numeric_owner(user: &str) -> Option<(u32, u32)> {
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    Some((u.parse().ok()?, g.parse().ok()?))
}

impl Supervisor {
    /// For a sandboxed session with an agent: its target and the container path of the mount
    /// `mapped` lies on. `None`: the host side does the work (direct sessions, no agent).
    async fn file_agent(
        &self,
        plan: &SandboxPlan,
        mapped: &MappedPath,
    ) -> Result<Option<(AgentTarget, String)>, CallError> {
        if !plan.sandboxed {
            return Ok(None);
        }
        let ensured = self.ensure_plan(plan).await?;
        let Some(t) = self.agent_target(plan, &ensured) else {
            return Ok(None);
        };
        let (mounts, _) = roots(plan);
        Ok(Some((t, mounts[mapped.mount_index].container.clone())))
    }

    /// An agent file operation failed: a refusal is the sandbox's own answer; an unreachable
    /// agent falls back to the host side (`Ok`), with a warning and an audit entry.
    fn agent_file_error(
        &self,
        plan: &SandboxPlan,
        e: AgentCallError,
        path: &str,
    ) -> Result<(), CallError> {
        match e {
            AgentCallError::Refused(mut r) => {
                r.value = path.to_string();
                Err(CallError::Refused(r))
            }
            AgentCallError::Broken(why) => Err(SupervisorError::Io(format!(
                "the connection to the sandbox's agent broke: {why}"
            ))
            .into()),
            AgentCallError::Unavailable(u) => {
                self.audit_fallback(plan, &plan.container.name, &u);
                Ok(())
            }
        }
    }

    fn prepare_dirs(&self, plan: &SandboxPlan) -> Result<(), CallError> {
        let dirs: Vec<_> = if plan.sandboxed {
            plan.container.create_dirs.clone()
        } else {
            vec![plan.agent_workspace.clone()]
        };
        for d in dirs {
            super::dirs::create_dir_owned(&d, plan.container.dir_owner, 0o755)
                .map_err(|e| SupervisorError::Io(format!("cannot create {}: {e}", d.display())))?;
        }
        Ok(())
    }

    pub async fn read(&self, req: ReadRequest) -> Result<ReadResult, CallError> {
        let started = Instant::now();
        let planned = self.plan(req.session.as_deref(), req.agent.as_deref());
        let plan = planned.as_ref().ok().map(|(_, p)| p.clone());
        let result = match planned {
            Ok((eff, plan)) => self.read_planned(&eff, &plan, &req).await,
            Err(e) => Err(e.into()),
        };
        self.audit_call(
            plan.as_ref(),
            &req.session,
            "read",
            req.path.clone(),
            result
                .as_ref()
                .map(|r| (None, Some(r.content.len() as u64))),
            started,
        );
        result
    }

    async fn read_planned(
        &self,
        eff: &crate::config::EffectiveSandbox,
        plan: &SandboxPlan,
        req: &ReadRequest,
    ) -> Result<ReadResult, CallError> {
        if !plan.problems.is_empty() {
            return Err(SupervisorError::Problems(plan.problems.clone()).into());
        }
        let mapped = map(plan, &req.path)?;
        self.audit_gate()?;
        let cap = eff.calls.max_read_bytes.value.0;
        if let Some((t, root)) = self.file_agent(plan, &mapped).await? {
            let areq = proto::ReadRequest {
                target: proto::FileTarget {
                    root,
                    path: mapped.container_path.clone(),
                },
                offset: req.offset,
                length: req.length,
                cap,
            };
            let r = self
                .agents
                .with_client(&t, move |c| {
                    let mut buf = Vec::new();
                    let r = c.read_file(&areq, &mut buf)?;
                    Ok((r, buf))
                })
                .await;
            match r {
                Ok((r, content)) => {
                    return Ok(ReadResult {
                        content,
                        size: r.size,
                        truncated: r.truncated,
                        path: mapped.container_path,
                    });
                }
                Err(e) => self.agent_file_error(plan, e, &mapped.container_path)?,
            }
        }
        self.prepare_dirs(plan)?;
        let (offset, length, relative, host_root) = (
            req.offset,
            req.length,
            mapped.relative.clone(),
            mapped.host_root.clone(),
        );
        let out = tokio::task::spawn_blocking(move || {
            let root = fileio::open_root(&host_root)?;
            fileio::read_file(&root, &relative, offset, length, cap)
        })
        .await
        .map_err(|e| SupervisorError::Io(e.to_string()))?
        .map_err(|e| file_error(e.with_value(mapped.container_path.clone())))?;
        Ok(ReadResult {
            content: out.content,
            size: out.size,
            truncated: out.truncated,
            path: mapped.container_path,
        })
    }

    pub async fn write(&self, req: WriteRequest) -> Result<WriteResult, CallError> {
        let started = Instant::now();
        let planned = self.plan(req.session.as_deref(), req.agent.as_deref());
        let plan = planned.as_ref().ok().map(|(_, p)| p.clone());
        let result = match planned {
            Ok((eff, plan)) => self.write_planned(&eff, &plan, &req).await,
            Err(e) => Err(e.into()),
        };
        self.audit_call(
            plan.as_ref(),
            &req.session,
            "write",
            req.path.clone(),
            result.as_ref().map(|r| (None, Some(r.bytes_written))),
            started,
        );
        result
    }

    async fn write_planned(
        &self,
        eff: &crate::config::EffectiveSandbox,
        plan: &SandboxPlan,
        req: &WriteRequest,
    ) -> Result<WriteResult, CallError> {
        if !plan.problems.is_empty() {
            return Err(SupervisorError::Problems(plan.problems.clone()).into());
        }
        let mapped = map(plan, &req.path)?;
        // Refused on a read-only mount before any syscall on the target.
        if mapped.read_only {
            return Err(read_only_refusal(&mapped.container_path).into());
        }
        let cap = eff.calls.max_write_bytes.value.0;
        check_write_cap(req.content.len(), cap)?;
        self.audit_gate()?;
        if let Some((t, root)) = self.file_agent(plan, &mapped).await? {
            let areq = proto::WriteRequest {
                target: proto::FileTarget {
                    root,
                    path: mapped.container_path.clone(),
                },
                mkdir_parents: req.mkdir,
                exclusive: false,
                expected_etag: None,
                cap,
            };
            let content = req.content.clone();
            let r = self
                .agents
                .with_client(&t, move |c| {
                    c.write_file(&areq, &mut std::io::Cursor::new(content))
                })
                .await;
            match r {
                Ok(r) => {
                    return Ok(WriteResult {
                        bytes_written: r.bytes,
                        path: mapped.container_path,
                    });
                }
                Err(e) => self.agent_file_error(plan, e, &mapped.container_path)?,
            }
        }
        self.prepare_dirs(plan)?;
        let owner = if plan.sandboxed {
            numeric_owner(&plan.container.user)
        } else {
            None
        };
        let opts = WriteOptions {
            mkdir_parents: req.mkdir,
            owner,
            cap,
            read_only_mount: false,
        };
        let (relative, host_root, content) = (
            mapped.relative.clone(),
            mapped.host_root.clone(),
            req.content.clone(),
        );
        let out = tokio::task::spawn_blocking(move || {
            let root = fileio::open_root(&host_root)?;
            fileio::write_file(&root, &relative, &content, opts)
        })
        .await
        .map_err(|e| SupervisorError::Io(e.to_string()))?
        .map_err(|e| file_error(e.with_value(mapped.container_path.clone())))?;
        Ok(WriteResult {
            bytes_written: out.bytes_written,
            path: mapped.container_path,
        })
    }
}
