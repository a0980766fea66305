//! What `doctor` says about staged mounts: available as root, and what is lost without it.

use crate::doctor::Status;
use serde::Serialize;

/// One doctor line (the caller turns it into a `doctor::Check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorItem {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

const RUN_AS_ROOT: &str = "run clawden as root so it stages every mount itself";

/// The staged-mount lines of `doctor`. As root it probes the new mount API once (a detached,
/// non-recursive clone of `/` that is dropped at once, never attached).
pub fn doctor_report() -> Vec<DoctorItem> {
    let root = nix::unistd::geteuid().is_root();
    let probe = if root { Some(probe_mount_api()) } else { None };
    doctor_items(root, probe)
}

/// Pure: the lines for a given identity and probe result (`None`: not probed).
pub fn doctor_items(is_root: bool, probe: Option<Result<(), String>>) -> Vec<DoctorItem> {
    if is_root {
        return vec![match probe {
            Some(Err(e)) => DoctorItem {
                name: "staged mounts",
                status: Status::Fail,
                detail: format!(
                    "clawden runs as root but the new mount API is unusable ({e}): sandboxes cannot be created"
                ),
                fix: Some(
                    "use Linux ≥ 5.12 with open_tree/move_mount/mount_setattr, and run clawden with CAP_SYS_ADMIN in the host's mount namespace"
                        .into(),
                ),
            },
            _ => DoctorItem {
                name: "staged mounts",
                status: Status::Pass,
                detail: "every mount is staged (open_tree without submounts, nosuid,nodev, read-only where asked) and pinned to the checked inode"
                    .into(),
                fix: None,
            },
        }];
    }
    let warn = |name, detail: &str| DoctorItem {
        name,
        status: Status::Warn,
        detail: detail.to_string(),
        fix: Some(RUN_AS_ROOT.to_string()),
    };
    vec![
        warn(
            "staged mounts",
            "clawden is not root: mounts are not staged; Docker binds the host paths directly",
        ),
        warn(
            "mount pinning",
            "a bind source is pinned only by the inode check after start (a swapped source is caught once the container runs, and the container destroyed); bind sources inside sandbox-writable directories are refused (source_sandbox_writable)",
        ),
        warn(
            "submounts",
            "mounts below a source (a tmpfs, a bind, a socket such as docker.sock bound inside a workspace) cross into the sandbox, and read-only access does not reach them",
        ),
        warn(
            "setuid",
            "mounts are not nosuid/nodev: a setuid or setgid file a sandbox leaves in a workspace keeps its effect for host users who run it",
        ),
    ]
}

/// A detached, non-recursive clone of `/`, dropped at once: proves `open_tree` works here.
fn probe_mount_api() -> Result<(), String> {
    use rustix::mount::OpenTreeFlags;
    rustix::mount::open_tree(
        rustix::fs::CWD,
        "/",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map(drop)
    .map_err(|e| format!("open_tree: {e}"))
}
