//! The mount plan for `none` / `ro` / `rw` workspace access (sandbox.md §3). (OC)
//!
//! `ro` mounts the sandbox workspace at the workdir read-only and the agent workspace at
//! `/agent` read-only: nothing of the workspace is writable, as in OpenClaw.

use crate::config::WorkspaceAccess;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where the agent workspace appears under `ro` access.
pub const AGENT_MOUNT: &str = "/agent";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Ro,
    Rw,
}

impl Access {
    pub fn read_only(self) -> bool {
        self == Access::Ro
    }
}

/// What a mount is for: the sandbox's own workspace, the agent's workspace, or an operator bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountSource {
    Workspace,
    Agent,
    Bind,
    /// The `clawden-agent` binary (read-only).
    AgentBinary,
    /// The agent's channel directory (its socket).
    AgentChannel,
}

/// One bind mount of the plan: canonical host path → container path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedMount {
    pub host: PathBuf,
    pub container: String,
    pub access: Access,
    pub source: MountSource,
}

/// The mounts clawden manages itself, before operator binds are added.
pub fn managed_mounts(
    access: WorkspaceAccess,
    sandbox_workspace: &Path,
    agent_workspace: &Path,
    workdir: &str,
) -> Vec<PlannedMount> {
    let m = |host: &Path, container: &str, access, source| PlannedMount {
        host: host.to_path_buf(),
        container: container.to_string(),
        access,
        source,
    };
    match access {
        WorkspaceAccess::None => vec![m(
            sandbox_workspace,
            workdir,
            Access::Rw,
            MountSource::Workspace,
        )],
        // Nothing of the workspace is writable: the sandbox writes only to its tmpfs. (OC)
        WorkspaceAccess::Ro => vec![
            m(
                sandbox_workspace,
                workdir,
                Access::Ro,
                MountSource::Workspace,
            ),
            m(agent_workspace, AGENT_MOUNT, Access::Ro, MountSource::Agent),
        ],
        WorkspaceAccess::Rw => vec![m(agent_workspace, workdir, Access::Rw, MountSource::Agent)],
    }
}

/// The host directory that appears at the workdir (its owner decides the default user).
pub fn workdir_host_dir<'a>(
    access: WorkspaceAccess,
    sandbox_workspace: &'a Path,
    agent_workspace: &'a Path,
) -> &'a Path {
    match access {
        WorkspaceAccess::Rw => agent_workspace,
        _ => sandbox_workspace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_table() {
        let (s, a) = (Path::new("/state/sandboxes/x"), Path::new("/home/u/ws"));
        let none = managed_mounts(WorkspaceAccess::None, s, a, "/workspace");
        assert_eq!(
            none,
            vec![PlannedMount {
                host: s.into(),
                container: "/workspace".into(),
                access: Access::Rw,
                source: MountSource::Workspace
            }]
        );
        let ro = managed_mounts(WorkspaceAccess::Ro, s, a, "/workspace");
        assert_eq!(ro.len(), 2);
        assert_eq!(
            (ro[0].host.as_path(), ro[0].container.as_str(), ro[0].access),
            (s, "/workspace", Access::Ro)
        );
        // Under ro nothing of the workspace is writable, under none and rw the workdir is.
        for (access, writable_workdir) in [
            (WorkspaceAccess::None, true),
            (WorkspaceAccess::Ro, false),
            (WorkspaceAccess::Rw, true),
        ] {
            let ms = managed_mounts(access, s, a, "/workspace");
            assert_eq!(
                ms.iter().any(|m| m.access == Access::Rw),
                writable_workdir,
                "{access:?}"
            );
        }
        assert_eq!(
            (
                ro[1].host.as_path(),
                ro[1].container.as_str(),
                ro[1].access,
                ro[1].source
            ),
            (a, "/agent", Access::Ro, MountSource::Agent)
        );
        let rw = managed_mounts(WorkspaceAccess::Rw, s, a, "/work");
        assert_eq!(
            rw,
            vec![PlannedMount {
                host: a.into(),
                container: "/work".into(),
                access: Access::Rw,
                source: MountSource::Agent
            }]
        );
        assert_eq!(workdir_host_dir(WorkspaceAccess::Rw, s, a), a);
        assert_eq!(workdir_host_dir(WorkspaceAccess::Ro, s, a), s);
        assert_eq!(workdir_host_dir(WorkspaceAccess::None, s, a), s);
    }
}
