//! [`ContainerEngine`] over the Docker Engine API with bollard. Connects through `DOCKER_HOST` or
//! the local socket and negotiates the API version (the engine may be older than bollard's).

use super::local::{
    Endpoint, SocketError, SocketPeer, check_socket, host_kernel, kernel_rule, parse_docker_host,
};
use super::{
    ContainerEngine, ContainerFacts, ContainerSummary, EngineError, EngineInfo, ExecApi,
    ExecResult, ExecSpec, ExecState,
};
use crate::decide::ContainerSpec;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions,
};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};

pub struct DockerEngine {
    docker: Docker,
    endpoint: String,
    peer: SocketPeer,
}

fn endpoint_from_env() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| format!("unix://{}", super::local::DEFAULT_SOCKET))
}

/// How long a freshly connected socket may take to answer `/version`.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl DockerEngine {
    /// Connect to a *local* engine (see [`super::local`]) and negotiate the API version. Fails
    /// with `NotLocal` (`remote_engine`) for anything but an engine on this host's unix socket,
    /// and with `Unreachable` when no engine listens.
    pub async fn connect() -> Result<Self, EngineError> {
        Self::connect_with(None).await
    }

    /// [`DockerEngine::connect`] for a one-shot call: the `/version` answer the same daemon
    /// process gave earlier is reused from `state_dir` (see [`super::remembered`]); the
    /// socket's peer check runs as always.
    pub async fn connect_remembered(state_dir: &std::path::Path) -> Result<Self, EngineError> {
        Self::connect_with(Some(state_dir)).await
    }

    async fn connect_with(state_dir: Option<&std::path::Path>) -> Result<Self, EngineError> {
        use super::remembered;
        let endpoint = endpoint_from_env();
        let not_local = |reason: String| EngineError::NotLocal {
            endpoint: endpoint.clone(),
            reason,
        };
        let path = match parse_docker_host(std::env::var("DOCKER_HOST").ok().as_deref()) {
            Endpoint::Unix(p) => p,
            Endpoint::NotLocal(reason) => return Err(not_local(reason)),
        };
        let socket = path.clone();
        let peer = tokio::task::spawn_blocking(move || check_socket(&socket))
            .await
            .map_err(|e| not_local(e.to_string()))?
            .map_err(|e| match e {
                SocketError::Absent(message) => EngineError::Unreachable {
                    endpoint: endpoint.clone(),
                    message,
                },
                SocketError::NotLocal(reason) => not_local(reason),
            })?;
        let path_str = path
            .to_str()
            .ok_or_else(|| not_local(format!("socket path {} is not UTF-8", path.display())))?;
        let connect = |v: &bollard::ClientVersion| {
            Docker::connect_with_unix(path_str, 120, v).map_err(|e| EngineError::Unreachable {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })
        };
        let ours = (
            bollard::API_DEFAULT_VERSION.major_version,
            bollard::API_DEFAULT_VERSION.minor_version,
        );
        // Speak the engine's API version when it is older than bollard's.
        let speaking = |theirs: (usize, usize)| {
            let (major_version, minor_version) = theirs.min(ours);
            connect(&bollard::ClientVersion {
                major_version,
                minor_version,
            })
        };
        let identity = state_dir.and_then(|_| remembered::Identity::of(&path, peer.pid));
        let now = crate::supervisor::now_ms();
        if let (Some(dir), Some(id)) = (state_dir, &identity)
            && let Some(api) = remembered::recall(dir, id, now)
        {
            return Ok(DockerEngine {
                docker: speaking(api)?,
                endpoint,
                peer,
            });
        }
        let docker = connect(bollard::API_DEFAULT_VERSION)?;
        // Something local listens; it must answer as a Docker engine, on this host's kernel.
        let version = match tokio::time::timeout(ANSWER_TIMEOUT, docker.version()).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                return Err(not_local(format!(
                    "{} does not answer as a Docker engine: {e}",
                    peer.describe()
                )));
            }
            Err(_) => {
                return Err(not_local(format!(
                    "{} gave no answer to /version within {}s",
                    peer.describe(),
                    ANSWER_TIMEOUT.as_secs()
                )));
            }
        };
        kernel_rule(
            version.kernel_version.as_deref().unwrap_or(""),
            &host_kernel(),
        )
        .map_err(not_local)?;
        // The version negotiation bollard would do with a second `/version`, from the answer
        // we already have.
        let parse = |v: &str| {
            let (a, b) = v.split_once('.')?;
            Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
        };
        let docker = match version.api_version.as_deref().and_then(parse) {
            Some(theirs) => {
                if let (Some(dir), Some(identity)) = (state_dir, identity) {
                    remembered::remember(
                        dir,
                        &remembered::Record {
                            identity,
                            api: theirs,
                            at_ms: now,
                        },
                    );
                }
                if theirs < ours {
                    speaking(theirs)?
                } else {
                    docker
                }
            }
            None => {
                return Err(not_local(format!(
                    "{} reports no API version",
                    peer.describe()
                )));
            }
        };
        Ok(DockerEngine {
            docker,
            endpoint,
            peer,
        })
    }

    /// Who serves the engine's socket (checked at connect).
    pub fn peer(&self) -> &SocketPeer {
        &self.peer
    }

    fn map(&self, e: BollardError) -> EngineError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(message),
            BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            } => EngineError::Conflict(message),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Api(format!("{status_code}: {message}")),
            BollardError::IOError { err } => EngineError::Unreachable {
                endpoint: self.endpoint.clone(),
                message: err.to_string(),
            },
            BollardError::HyperResponseError { err } => EngineError::Unreachable {
                endpoint: self.endpoint.clone(),
                message: err.to_string(),
            },
            other => EngineError::Api(other.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl ContainerEngine for DockerEngine {
    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let v = self.docker.version().await.map_err(|e| self.map(e))?;
        let i = self.docker.info().await.map_err(|e| self.map(e))?;
        let runc_version = i
            .runc_commit
            .as_ref()
            .and_then(|c| c.id.clone())
            .unwrap_or_default();
        let runc_component = v
            .components
            .iter()
            .flatten()
            .find(|c| c.name.eq_ignore_ascii_case("runc"))
            .map(|c| c.version.clone());
        Ok(EngineInfo {
            endpoint: self.endpoint.clone(),
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            os: i.operating_system.unwrap_or_default(),
            kernel: i.kernel_version.unwrap_or_default(),
            cgroup_version: i.cgroup_version.map(|c| c.to_string()).unwrap_or_default(),
            default_runtime: i.default_runtime.unwrap_or_default(),
            runc_version: runc_component.unwrap_or(runc_version),
            security_options: i.security_options.unwrap_or_default(),
            peer: self.peer.describe(),
        })
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.map(e)),
        }
    }

    async fn build_image(
        &self,
        tag: &str,
        context_tar: Vec<u8>,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError> {
        let opts = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.docker
                .build_image(opts, None, Some(bollard::body_full(context_tar.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.map(e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message).or(info.error) {
                return Err(EngineError::Api(format!("building {tag}: {err}")));
            }
            if let Some(s) = info.stream {
                let line = s.trim_end();
                if !line.is_empty() {
                    progress(line);
                }
            }
        }
        self.image_id(tag).await?.ok_or_else(|| {
            EngineError::Api(format!(
                "build of {tag} finished but the image is not present"
            ))
        })
    }

    async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        rootfs_tar: &std::path::Path,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError> {
        let file = tokio::fs::File::open(rootfs_tar)
            .await
            .map_err(|e| EngineError::Api(format!("cannot open {}: {e}", rootfs_tar.display())))?;
        // Streamed in chunks: a rootfs is hundreds of MB and need not sit in memory. A read
        // error ends the body with that error (the engine then reports a failed import).
        let chunks = futures_util::stream::unfold(Some(file), |f| async move {
            use tokio::io::AsyncReadExt;
            let mut f = f?;
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        })
        .map(|r: std::io::Result<Vec<u8>>| r.map(Into::into));
        let opts = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .message("clawden toolbox rootfs")
            .build();
        let mut stream =
            self.docker
                .create_image(Some(opts), Some(bollard::body_try_stream(chunks)), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.map(e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message).or(info.error) {
                return Err(EngineError::Api(format!("importing {repo}:{tag}: {err}")));
            }
            if let Some(s) = info.status {
                let line = s.trim_end();
                if !line.is_empty() {
                    progress(line);
                }
            }
        }
        let image = format!("{repo}:{tag}");
        self.image_id(&image).await?.ok_or_else(|| {
            EngineError::Api(format!(
                "import of {image} finished but the image is not present"
            ))
        })
    }

    async fn list_sandboxes(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec!["clawden.sandbox=1".to_string()]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.map(e))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerSummary {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                labels: c
                    .labels
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
                running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                created_unix: c.created.unwrap_or(0),
            })
            .collect())
    }

    async fn watch(&self, since_unix: f64) -> Result<Option<super::EventStream>, EngineError> {
        let filters: HashMap<&str, Vec<&str>> =
            HashMap::from([("type", vec!["container", "network"])]);
        let opts = bollard::query_parameters::EventsOptionsBuilder::new()
            .since(&format!("{since_unix:.9}"))
            .filters(&filters)
            .build();
        let stream = self.docker.events(Some(opts)).filter_map(|m| async move {
            match m {
                Ok(m) => container_event(m).map(Ok),
                Err(e) => Some(Err(EngineError::Api(e.to_string()))),
            }
        });
        Ok(Some(Box::pin(stream)))
    }

    async fn inspect(&self, name_or_id: &str) -> Result<Option<ContainerFacts>, EngineError> {
        match self
            .docker
            .inspect_container(name_or_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(r) => serde_json::to_value(r)
                .map(|v| Some(ContainerFacts::from_docker_inspect(&v)))
                .map_err(|e| EngineError::Api(e.to_string())),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.map(e)),
        }
    }

    async fn create(
        &self,
        spec: &ContainerSpec,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        let mut body = super::create::create_body(spec, labels);
        if let Some(hc) = body.host_config.as_mut() {
            hc.security_opt =
                Some(super::create::inline_seccomp(&spec.security_opt).map_err(EngineError::Api)?);
        }
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(r) => Ok(r.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.contains("image") || message.contains("No such image") => {
                Err(EngineError::ImageMissing {
                    image: spec.image.clone(),
                })
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Err(EngineError::Conflict(spec.name.clone())),
            Err(e) => Err(self.map(e)),
        }
    }

    fn verify_mounted(
        &self,
        facts: &ContainerFacts,
        expected: &[(String, u64, u64)],
    ) -> Result<(), Vec<crate::mounts::InodeMismatch>> {
        // A local engine's container processes are host processes: look through /proc.
        match facts.pid {
            Some(pid) => crate::mounts::verify_mounted(pid, expected),
            None => Err(super::not_running(facts, expected)),
        }
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        match self
            .docker
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            // 304: already started.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.map(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // 409 "removal already in progress": someone else is removing it.
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("in progress") => Ok(()),
            Err(e) => Err(self.map(e)),
        }
    }
}

#[async_trait::async_trait]
impl ExecApi for DockerEngine {
    async fn exec_collect(
        &self,
        id: &str,
        spec: &ExecSpec,
        cap: usize,
    ) -> Result<ExecResult, EngineError> {
        let opts = exec_options(spec);
        let created = self
            .docker
            .create_exec(id, opts)
            .await
            .map_err(|e| self.map(e))?;
        let mut result = ExecResult::default();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.map(e))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| self.map(e))? {
                    bollard::container::LogOutput::StdOut { message } => {
                        push_capped(&mut result.stdout, &message, cap)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        push_capped(&mut result.stderr, &message, cap)
                    }
                    _ => {}
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.map(e))?;
        result.exit_code = inspected.exit_code.unwrap_or(-1);
        Ok(result)
    }

    async fn exec_stream(
        &self,
        id: &str,
        spec: &ExecSpec,
    ) -> Result<super::ExecStream, EngineError> {
        let created = self
            .docker
            .create_exec(id, exec_options(spec))
            .await
            .map_err(|e| self.map(e))?;
        let endpoint = self.endpoint.clone();
        match self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.map(e))?
        {
            StartExecResults::Attached { output, mut input } => {
                // stdin is attached (never in argv): write the data, then close it for EOF.
                if let Some(data) = spec.stdin.clone() {
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let _ = input.write_all(&data).await;
                        let _ = input.shutdown().await;
                    });
                } else {
                    drop(input);
                }
                let output = output
                    .filter_map(move |item| {
                        let endpoint = endpoint.clone();
                        async move {
                            match item {
                                Ok(bollard::container::LogOutput::StdOut { message }) => {
                                    Some(Ok(super::ExecChunk::Stdout(message.to_vec())))
                                }
                                Ok(bollard::container::LogOutput::StdErr { message }) => {
                                    Some(Ok(super::ExecChunk::Stderr(message.to_vec())))
                                }
                                Ok(_) => None,
                                Err(e) => Some(Err(EngineError::Unreachable {
                                    endpoint,
                                    message: e.to_string(),
                                })),
                            }
                        }
                    })
                    .boxed();
                Ok(super::ExecStream {
                    exec_id: created.id,
                    output,
                })
            }
            StartExecResults::Detached => Err(EngineError::Api("exec started detached".into())),
        }
    }

    async fn exec_state(&self, exec_id: &str) -> Result<ExecState, EngineError> {
        let i = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| self.map(e))?;
        Ok(ExecState {
            running: i.running.unwrap_or(false),
            exit_code: i.exit_code,
            pid: i.pid.filter(|p| *p > 0).map(|p| p as u32),
        })
    }
}

/// The container an engine event is about: the actor of a container event, the `container`
/// attribute of a network event (connect, disconnect).
fn container_event(m: bollard::models::EventMessage) -> Option<super::ContainerEvent> {
    use bollard::models::EventMessageTypeEnum as T;
    let actor = m.actor?;
    let id = match m.typ? {
        T::CONTAINER => actor.id?,
        T::NETWORK => actor.attributes?.get("container")?.clone(),
        _ => return None,
    };
    Some(super::ContainerEvent {
        id,
        action: m.action.unwrap_or_default(),
    })
}

fn exec_options(spec: &ExecSpec) -> CreateExecOptions<String> {
    CreateExecOptions {
        cmd: Some(spec.cmd.clone()),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        env: if spec.env.is_empty() {
            None
        } else {
            Some(spec.env.clone())
        },
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(spec.stdin.is_some()),
        tty: Some(false),
        privileged: Some(false),
        ..Default::default()
    }
}

fn push_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize) {
    let room = cap.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}
