//! A recording fake engine: containers live in memory, every lifecycle call is recorded, and a
//! created container's facts are what a faithful engine would report for its create body — so
//! ensure, drift, verify and call routing are unit-tested without Docker. Tests can tamper with a
//! container's facts (a planted or weakened container) and script exec results.

use super::{
    ContainerEngine, ContainerFacts, ContainerSummary, EngineError, EngineInfo, ExecApi,
    ExecResult, ExecSpec, ExecState, ExecStream,
};
use crate::decide::ContainerSpec;
use crate::engine::facts::{MountFact, UlimitFact};
use crate::engine::verify::{REQUIRED_MASKED, REQUIRED_READONLY};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Inspect(String),
    Create(String),
    Start(String),
    Remove(String),
    Exec(String, Vec<String>),
    /// A watcher subscribed to events.
    Watch,
}

#[derive(Default)]
struct World {
    containers: BTreeMap<String, ContainerFacts>,
    images: BTreeMap<String, String>,
    calls: Vec<Call>,
    exec_exit: i64,
    next_id: u64,
}

/// The fake engine. `Send + Sync`; state behind a mutex.
#[derive(Default)]
pub struct FakeEngine {
    world: Mutex<World>,
    /// Set by [`FakeEngine::with_events`]: the engine reports container events to watchers.
    events: Mutex<Option<tokio::sync::broadcast::Sender<super::ContainerEvent>>>,
}

impl FakeEngine {
    /// An engine that has `images` present.
    pub fn with_images(images: &[&str]) -> Self {
        let e = FakeEngine::default();
        {
            let mut w = e.lock();
            for (i, img) in images.iter().enumerate() {
                w.images.insert(img.to_string(), format!("sha256:img{i}"));
            }
        }
        e
    }

    /// The same engine reporting container events (as Docker's `/events` does): every start,
    /// remove and [`FakeEngine::tamper`] is one.
    pub fn with_events(self) -> Self {
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(tokio::sync::broadcast::channel(1024).0);
        self
    }

    /// Report an event about container `id` to every watcher.
    pub fn emit(&self, id: &str, action: &str) {
        if let Some(tx) = &*self.events.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send(super::ContainerEvent {
                id: id.to_string(),
                action: action.to_string(),
            });
        }
    }

    /// End every watcher's stream (the engine restarted).
    pub fn end_watchers(&self) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.is_some() {
            *events = Some(tokio::sync::broadcast::channel(1024).0);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forget the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Change a container's facts (by name), e.g. to plant a weakened container.
    pub fn tamper(&self, name: &str, f: impl FnOnce(&mut ContainerFacts)) {
        let id = {
            let mut w = self.lock();
            let Some(c) = w.containers.values_mut().find(|c| c.name == name) else {
                return;
            };
            f(c);
            c.id.clone()
        };
        self.emit(&id, "update");
    }

    /// Put a container in place as if someone else created it.
    pub fn plant(&self, facts: ContainerFacts) {
        self.lock().containers.insert(facts.id.clone(), facts);
    }

    /// The exit code every exec reports from now on.
    pub fn set_exec_exit(&self, code: i64) {
        self.lock().exec_exit = code;
    }

    /// The facts a faithful engine reports for a container created from `spec` with `labels`.
    pub fn facts_for(
        id: &str,
        spec: &ContainerSpec,
        labels: &BTreeMap<String, String>,
    ) -> ContainerFacts {
        ContainerFacts {
            id: id.to_string(),
            name: spec.name.clone(),
            labels: labels.clone(),
            running: false,
            pid: None,
            image: spec.image.clone(),
            image_id: String::new(),
            user: spec.user.clone(),
            cmd: spec.cmd.clone(),
            entrypoint: vec![],
            privileged: false,
            cap_add: vec![],
            cap_drop: spec.cap_drop.clone(),
            readonly_rootfs: spec.read_only_root,
            tmpfs: spec.tmpfs.clone(),
            security_opt: spec.security_opt.clone(),
            apparmor_profile: "docker-default".into(),
            network_mode: spec.network.clone(),
            networks: vec![spec.network.clone()],
            pid_mode: String::new(),
            uts_mode: String::new(),
            ipc_mode: "private".into(),
            userns_mode: String::new(),
            cgroup_parent: String::new(),
            cgroupns_mode: crate::decide::plan::CGROUPNS_MODE.into(),
            runtime: crate::decide::plan::RUNTIME.into(),
            memory: spec.memory as i64,
            memory_swap: spec.memory_swap as i64,
            nano_cpus: spec.nano_cpus as i64,
            pids_limit: spec.pids_limit as i64,
            init: true,
            restart_policy: "no".into(),
            has_port_bindings: false,
            publish_all_ports: false,
            has_devices: false,
            has_device_cgroup_rules: false,
            has_device_requests: false,
            log_driver: "none".into(),
            masked_paths: REQUIRED_MASKED.iter().map(|s| s.to_string()).collect(),
            readonly_paths: REQUIRED_READONLY.iter().map(|s| s.to_string()).collect(),
            sysctls: BTreeMap::new(),
            ulimits: spec
                .ulimits
                .iter()
                .map(|u| UlimitFact {
                    name: u.name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            mounts: spec
                .engine_mounts()
                .iter()
                .map(|m| MountFact {
                    typ: "bind".into(),
                    source: m.host.to_string_lossy().into_owned(),
                    destination: m.container.clone(),
                    rw: !m.access.read_only(),
                    propagation: "rprivate".into(),
                })
                .collect(),
            oom_killed: false,
        }
    }

    fn find(w: &World, name_or_id: &str) -> Option<String> {
        w.containers
            .values()
            .find(|c| c.id == name_or_id || c.name == name_or_id)
            .map(|c| c.id.clone())
    }
}

#[async_trait::async_trait]
impl ContainerEngine for FakeEngine {
    fn endpoint(&self) -> String {
        "fake://".into()
    }
    async fn info(&self) -> Result<EngineInfo, EngineError> {
        Ok(EngineInfo {
            endpoint: "fake://".into(),
            version: "fake".into(),
            ..Default::default()
        })
    }
    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        Ok(self.lock().images.get(image).cloned())
    }
    async fn build_image(
        &self,
        tag: &str,
        _: Vec<u8>,
        _: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError> {
        let id = format!("sha256:built-{tag}");
        self.lock().images.insert(tag.into(), id.clone());
        Ok(id)
    }
    async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        _: &std::path::Path,
        _: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError> {
        let id = format!("sha256:imported-{repo}-{tag}");
        self.lock()
            .images
            .insert(format!("{repo}:{tag}"), id.clone());
        Ok(id)
    }
    async fn list_sandboxes(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| c.label("clawden.sandbox") == Some("1"))
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                name: c.name.clone(),
                labels: c.labels.clone(),
                running: c.running,
                image: c.image.clone(),
                image_id: c.image_id.clone(),
                created_unix: 0,
            })
            .collect())
    }
    async fn watch(&self, _since: f64) -> Result<Option<super::EventStream>, EngineError> {
        let Some(rx) = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|tx| tx.subscribe())
        else {
            return Ok(None);
        };
        self.lock().calls.push(Call::Watch);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(ev) => Some((Ok(ev), rx)),
                // A watcher that fell behind has missed events: it is told so.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    Some((Err(EngineError::Api("events lagged".into())), rx))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Some(Box::pin(stream)))
    }
    async fn inspect(&self, name_or_id: &str) -> Result<Option<ContainerFacts>, EngineError> {
        let mut w = self.lock();
        w.calls.push(Call::Inspect(name_or_id.into()));
        Ok(Self::find(&w, name_or_id).map(|id| w.containers[&id].clone()))
    }
    async fn create(
        &self,
        spec: &ContainerSpec,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        let mut w = self.lock();
        w.calls.push(Call::Create(spec.name.clone()));
        if Self::find(&w, &spec.name).is_some() {
            return Err(EngineError::Conflict(spec.name.clone()));
        }
        let Some(image_id) = w.images.get(&spec.image).cloned() else {
            return Err(EngineError::ImageMissing {
                image: spec.image.clone(),
            });
        };
        w.next_id += 1;
        let id = format!("fake{:060}", w.next_id);
        let mut facts = Self::facts_for(&id, spec, labels);
        facts.image_id = image_id;
        w.containers.insert(id.clone(), facts);
        Ok(id)
    }
    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.calls.push(Call::Start(id.into()));
        let id = Self::find(&w, id).ok_or_else(|| EngineError::NotFound(id.into()))?;
        let c = w.containers.get_mut(&id).expect("found above");
        c.running = true;
        c.pid = Some(1);
        drop(w);
        self.emit(&id, "start");
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.calls.push(Call::Remove(id.into()));
        if let Some(id) = Self::find(&w, id) {
            w.containers.remove(&id);
            drop(w);
            self.emit(&id, "destroy");
        }
        Ok(())
    }
    /// The fake container "sees" at each target what its mount's source is on the host now.
    fn verify_mounted(
        &self,
        facts: &ContainerFacts,
        expected: &[(String, u64, u64)],
    ) -> Result<(), Vec<crate::mounts::InodeMismatch>> {
        use std::os::unix::fs::MetadataExt;
        let mut bad = Vec::new();
        for (target, dev, ino) in expected {
            let seen = facts
                .mounts
                .iter()
                .find(|m| &m.destination == target)
                .and_then(|m| std::fs::metadata(&m.source).ok())
                .map(|md| (md.dev(), md.ino()));
            if seen != Some((*dev, *ino)) {
                bad.push(crate::mounts::InodeMismatch {
                    target: target.clone(),
                    expected: crate::mounts::Inode {
                        dev: *dev,
                        ino: *ino,
                    },
                    found: seen.map(|(dev, ino)| crate::mounts::Inode { dev, ino }),
                    detail: format!("found {seen:?}"),
                });
            }
        }
        if bad.is_empty() { Ok(()) } else { Err(bad) }
    }
}

#[async_trait::async_trait]
impl ExecApi for FakeEngine {
    async fn exec_collect(
        &self,
        id: &str,
        spec: &ExecSpec,
        _: usize,
    ) -> Result<ExecResult, EngineError> {
        let mut w = self.lock();
        w.calls.push(Call::Exec(id.into(), spec.cmd.clone()));
        Ok(ExecResult {
            exit_code: w.exec_exit,
            ..Default::default()
        })
    }
    async fn exec_stream(&self, id: &str, spec: &ExecSpec) -> Result<ExecStream, EngineError> {
        let mut w = self.lock();
        w.calls.push(Call::Exec(id.into(), spec.cmd.clone()));
        Ok(ExecStream {
            exec_id: "fake-exec".into(),
            output: Box::pin(futures_util::stream::empty()),
        })
    }
    async fn exec_state(&self, _: &str) -> Result<ExecState, EngineError> {
        Ok(ExecState {
            running: false,
            exit_code: Some(self.lock().exec_exit),
            pid: None,
        })
    }
}
