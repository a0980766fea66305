//! The edge between clawden's decisions and a container engine. Everything above this module
//! speaks [`ContainerEngine`]; [`docker::DockerEngine`] implements it with bollard against the
//! Docker Engine API (local socket, `DOCKER_HOST`, Podman's Docker API), with version negotiation.

pub mod create;
pub mod docker;
pub mod facts;
pub mod fake;
pub mod local;
pub mod remembered;
pub mod unreachable;
pub mod verify;

pub use facts::ContainerFacts;

use crate::decide::ContainerSpec;
use std::collections::BTreeMap;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("image {image:?} is not present on the engine")]
    ImageMissing { image: String },
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("a container named {0:?} already exists")]
    Conflict(String),
    #[error("Docker engine error: {0}")]
    Api(String),
    /// The engine is not a local one (sandbox.md §5, issue 7): canonicalisation, the blocklist,
    /// directory creation and file I/O act on this host, so the container must run here too.
    #[error("the Docker engine at {endpoint} is not a local engine on this host: {reason}")]
    NotLocal { endpoint: String, reason: String },
}

impl EngineError {
    /// The stable code of this error (JSON output, audit log).
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Unreachable { .. } => "engine_unreachable",
            EngineError::ImageMissing { .. } => "image_missing",
            EngineError::NotFound(_) => "container_not_found",
            EngineError::Conflict(_) => "name_conflict",
            EngineError::Api(_) => "engine_error",
            EngineError::NotLocal { .. } => "remote_engine",
        }
    }

    /// The exact command or step that fixes it.
    pub fn fix(&self) -> String {
        match self {
            EngineError::Unreachable { .. } => {
                "start the engine (`sudo dockerd &`, or `bash scripts/ensure-docker.sh` which installs Debian's docker.io if needed), or point DOCKER_HOST at it".into()
            }
            EngineError::ImageMissing { image } => match image.strip_prefix("clawden-sandbox:") {
                Some(name) => format!("clawden image build {name}"),
                None => format!("build or load {image:?} locally (no registry is used), or set docker.image to clawden-sandbox:minimal"),
            },
            EngineError::NotFound(_) => "it will be recreated on next use".into(),
            EngineError::Conflict(_) => "retry; another clawden created it first".into(),
            EngineError::Api(_) => "see the engine's message; `clawden doctor` checks the setup".into(),
            EngineError::NotLocal { .. } => "run clawden on the engine's host with its local socket (unset DOCKER_HOST, or point it at unix:///var/run/docker.sock); remote engines are not supported".into(),
        }
    }
}

/// What `docker info` / `docker version` say, reduced to what clawden checks.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineInfo {
    pub endpoint: String,
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub kernel: String,
    pub cgroup_version: String,
    pub default_runtime: String,
    pub runc_version: String,
    pub security_options: Vec<String>,
    /// Who serves the engine's socket (`unix://… served by pid N uid U`), when known.
    pub peer: String,
}

/// A container clawden made (found by its `clawden.sandbox=1` label).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    pub image: String,
    pub image_id: String,
    pub created_unix: i64,
}

/// A command to run in a container through the Engine API (the fallback call path, doctor
/// probes).
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: Vec<String>,
    /// Data for the command's stdin (attached, never in argv); `None`: stdin closed.
    pub stdin: Option<Vec<u8>>,
}

/// What the engine says about a running or finished exec (`inspect_exec`): the only source of an
/// Engine-API call's exit status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecState {
    pub running: bool,
    pub exit_code: Option<i64>,
    /// Host pid of the exec's process.
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecResult {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One piece of an exec's output.
#[derive(Debug, Clone)]
pub enum ExecChunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A started exec: its ID (for [`ExecApi::exec_state`]) and its output stream.
pub struct ExecStream {
    pub exec_id: String,
    pub output: futures_util::stream::BoxStream<'static, Result<ExecChunk, EngineError>>,
}

/// The Engine API's own exec (`docker exec`): the fallback call path and doctor's probes. The
/// exit status comes from [`ExecApi::exec_state`], never from the output.
#[async_trait::async_trait]
pub trait ExecApi: Send + Sync {
    /// Run a command to completion and collect its output, each stream capped at `cap` bytes.
    async fn exec_collect(
        &self,
        id: &str,
        spec: &ExecSpec,
        cap: usize,
    ) -> Result<ExecResult, EngineError>;
    /// Start a command and stream its output (stdin: the spec's data, else closed).
    async fn exec_stream(&self, id: &str, spec: &ExecSpec) -> Result<ExecStream, EngineError>;
    /// The state of an exec (running, exit code, pid).
    async fn exec_state(&self, exec_id: &str) -> Result<ExecState, EngineError>;
}

/// Something the engine did to a container (`docker events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container's full ID.
    pub id: String,
    pub action: String,
}

/// A stream of container events; it ends (or yields an error) when the engine stops reporting.
pub type EventStream =
    futures_util::stream::BoxStream<'static, Result<ContainerEvent, EngineError>>;

/// The container lifecycle seam. Object-safe and `Send + Sync`, so one engine serves many
/// sessions at once. It reports containers as typed [`ContainerFacts`].
#[async_trait::async_trait]
pub trait ContainerEngine: ExecApi + Send + Sync {
    /// Where the engine is (for messages).
    fn endpoint(&self) -> String;
    async fn info(&self) -> Result<EngineInfo, EngineError>;
    /// The image's ID, or `None` when it is not present.
    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError>;
    /// Build an image from a tar build context; progress lines go to `progress`. Returns its ID.
    async fn build_image(
        &self,
        tag: &str,
        context_tar: Vec<u8>,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError>;
    /// Import a root filesystem tarball as image `repo:tag` (`POST /images/create?fromSrc=-`,
    /// what `docker import` does); progress lines go to `progress`. Returns the image's ID.
    async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        rootfs_tar: &std::path::Path,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError>;
    /// Every container carrying `clawden.sandbox=1`, running or not.
    async fn list_sandboxes(&self) -> Result<Vec<ContainerSummary>, EngineError>;
    /// The container's facts (`docker inspect`), `None` if there is no such container.
    async fn inspect(&self, name_or_id: &str) -> Result<Option<ContainerFacts>, EngineError>;
    /// Create (not start) the container of a plan with the given labels. Returns its ID.
    async fn create(
        &self,
        spec: &ContainerSpec,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError>;
    async fn start(&self, id: &str) -> Result<(), EngineError>;
    /// Force-remove a container; a missing one is not an error.
    async fn remove(&self, id: &str) -> Result<(), EngineError>;
    /// Container events from `since_unix` (seconds; the engine replays what it still holds
    /// from then) on, for as long as the stream lasts: every action on a container (update,
    /// die, rename, network connect, …) may have changed its facts. `None`: this engine cannot
    /// report events, and every use inspects.
    async fn watch(&self, since_unix: f64) -> Result<Option<EventStream>, EngineError> {
        let _ = since_unix;
        Ok(None)
    }
    /// Is each container path `(target, dev, ino)` the expected inode, as the container sees
    /// it? (The post-start and on-use mount check.)
    fn verify_mounted(
        &self,
        facts: &ContainerFacts,
        expected: &[(String, u64, u64)],
    ) -> Result<(), Vec<crate::mounts::InodeMismatch>>;
}

/// The mismatch of a container that has no process to look into.
pub fn not_running(
    facts: &ContainerFacts,
    expected: &[(String, u64, u64)],
) -> Vec<crate::mounts::InodeMismatch> {
    expected
        .iter()
        .map(|(t, dev, ino)| crate::mounts::InodeMismatch {
            target: t.clone(),
            expected: crate::mounts::Inode {
                dev: *dev,
                ino: *ino,
            },
            found: None,
            detail: format!("container {} has no running process", facts.name),
        })
        .collect()
}
