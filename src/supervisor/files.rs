//! File tools: a container path maps to a host path only through a bind mount of the plan (the
//! longest target wins), and the host side works beneath a directory handle of that mount's root
//! (`fileio`: openat2 with RESOLVE_BENEATH, regular files only, atomic writes). Direct sessions
//! use the agent workspace as their only root.

use super::calls::CallError;
use super::{Supervisor, SupervisorError};
use crate::decide::{Access, MountSource, PlannedMount, SandboxPlan};
use crate::fileio::{self, MappedPath, WriteOptions};
use crate::validate::{Refusal, RefusalCode};
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
fn roots(plan: &SandboxPlan) -> (Vec<PlannedMount>, String) {
    if plan.sandboxed {
        (
            plan.container.mounts.clone(),
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

/// uid:gid of the sandbox user when it is numeric (files written for it are given to it).
fn numeric_owner(user: &str) -> Option<(u32, u32)> {
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    Some((u.parse().ok()?, g.parse().ok()?))
}

impl Supervisor {
    fn prepare_dirs(&self, plan: &SandboxPlan) -> Result<(), CallError> {
        let dirs: Vec<_> = if plan.sandboxed {
            plan.container.create_dirs.clone()
        } else {
            vec![plan.agent_workspace.clone()]
        };
        for d in dirs {
            super::create_dir_owned(&d, plan.container.dir_owner)
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
        self.prepare_dirs(plan)?;
        let cap = eff.calls.max_read_bytes.value.0;
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
            return Err(CallError::Refused(Refusal {
                code: RefusalCode::ReadOnlyMount,
                value: mapped.container_path.clone(),
                message: format!("{} is on a read-only mount", mapped.container_path),
                fix: "write under the workdir instead, or set workspaceAccess to \"rw\"".into(),
            }));
        }
        let cap = eff.calls.max_write_bytes.value.0;
        if req.content.len() as u64 > cap {
            return Err(CallError::Refused(Refusal {
                code: RefusalCode::TooLarge,
                value: format!("{} bytes", req.content.len()),
                message: format!(
                    "content of {} bytes is over the write cap of {cap} bytes",
                    req.content.len()
                ),
                fix: "raise agents.defaults.sandbox.calls.maxWriteBytes or write less".into(),
            }));
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
