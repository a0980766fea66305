//! What clawden prepares on the host for a sandbox's mounts, and how it checks that what the
//! container has mounted is what was checked: directories created race-free, the agent's channel
//! directory, staged mounts ([`crate::mounts`]: as root, pinned to the checked inode, no
//! submounts, nosuid/nodev, read-only all the way down), and the inode check after start and on
//! every reuse.

use super::SupervisorError;
use super::dirs::create_dir_owned;
use crate::decide::{ContainerSpec, MountSource};
use crate::engine::{ContainerEngine, ContainerFacts};
use crate::mounts::{self, StageMode, Staged};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn io(e: impl std::fmt::Display) -> SupervisorError {
    SupervisorError::Io(e.to_string())
}

fn stage_error(e: mounts::StageError) -> SupervisorError {
    SupervisorError::MountCheck {
        code: e.code(),
        message: e.message,
        fix: e.fix,
    }
}

/// Create the sandbox's directories and its agent channel, then stage its mounts (as root) or
/// record their inodes (otherwise). Must run before the container is created or started.
pub fn prepare(state_dir: &Path, spec: &ContainerSpec) -> Result<Staged, SupervisorError> {
    for d in &spec.create_dirs {
        create_dir_owned(d, spec.dir_owner, 0o755)
            .map_err(|e| io(format!("cannot create {}: {e}", d.display())))?;
    }
    if let Some(agent) = &spec.agent {
        let agents = state_dir.join("agents");
        create_dir_owned(&agents, None, 0o700)
            .map_err(|e| io(format!("cannot create {}: {e}", agents.display())))?;
        // The channel belongs to the sandbox user (its agent creates the socket there).
        create_dir_owned(&agent.channel_dir, spec.numeric_user(), 0o700).map_err(|e| {
            io(format!(
                "cannot create {}: {e}",
                agent.channel_dir.display()
            ))
        })?;
    }
    if spec.staging_dir.is_some() {
        // Setuid files a sandbox plants in what it can write stay inert on the host as well.
        for m in spec.mounts.iter().filter(|m| !m.access.read_only()) {
            mounts::make_nosuid_in_place(&m.host).map_err(stage_error)?;
        }
    }
    let mode = if spec.staging_dir.is_some() {
        StageMode::Staged
    } else {
        StageMode::Unstaged
    };
    let staged =
        mounts::stage_as(state_dir, &spec.name, &spec.mounts, mode).map_err(stage_error)?;
    // What Docker is told must be exactly the staging points the plan names.
    let told: Vec<_> = staged.planned();
    if told != spec.engine_mounts() {
        let _ = mounts::unstage(state_dir, &spec.name);
        return Err(io(format!(
            "staging of {} did not produce the planned mount points",
            spec.name
        )));
    }
    Ok(staged)
}

fn mismatch_error(bad: Vec<mounts::InodeMismatch>) -> SupervisorError {
    SupervisorError::MountCheck {
        code: "mount_mismatch",
        message: format!(
            "the container's mounts are not what was checked: {}",
            bad.iter()
                .map(|m| format!("{}: {}", m.target, m.detail))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        fix: "the container was destroyed; it is recreated on the next call (if this repeats, a bind source is being changed behind clawden's back)".into(),
    }
}

/// After start: the container's mounts are the inodes [`prepare`] opened and checked.
pub fn verify_prepared(
    engine: &dyn ContainerEngine,
    facts: &ContainerFacts,
    staged: &Staged,
) -> Result<(), SupervisorError> {
    engine
        .verify_mounted(facts, &staged.expected())
        .map_err(mismatch_error)
}

/// On reuse: the container's mounts are the inodes its plan's sources are now. The agent binary
/// is left out (the operator's file: a new build replaces it; running sandboxes keep theirs).
pub fn verify_current(
    engine: &dyn ContainerEngine,
    facts: &ContainerFacts,
    spec: &ContainerSpec,
) -> Result<(), SupervisorError> {
    if !facts.running {
        return Ok(()); // checked when it starts
    }
    let mut expected = Vec::new();
    for m in spec
        .mounts
        .iter()
        .filter(|m| m.source != MountSource::AgentBinary)
    {
        let md = std::fs::symlink_metadata(&m.host).map_err(|e| {
            mismatch_error(vec![mounts::InodeMismatch {
                target: m.container.clone(),
                expected: mounts::Inode { dev: 0, ino: 0 },
                found: None,
                detail: format!("its source {} is gone: {e}", m.host.display()),
            }])
        })?;
        expected.push((m.container.clone(), md.dev(), md.ino()));
    }
    engine
        .verify_mounted(facts, &expected)
        .map_err(mismatch_error)
}

/// Undo what [`prepare`] made that belongs to this sandbox alone (after its container is gone):
/// its staged mounts — unmounted, never deleted through — and its agent channel directory.
/// Workspaces stay.
pub fn cleanup(state_dir: &Path, name: &str) -> std::io::Result<()> {
    mounts::unstage(state_dir, name).map_err(|e| std::io::Error::other(e.problems.join("; ")))?;
    let channel = state_dir.join("agents").join(name);
    // Its in-place nosuid over-mount (see `mounts::make_nosuid_in_place`) goes with it.
    let _ = nix::mount::umount2(&channel, nix::mount::MntFlags::MNT_DETACH);
    match std::fs::remove_dir_all(&channel) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
