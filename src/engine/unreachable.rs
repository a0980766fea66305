//! An engine that is not there: every call answers with the connection error, so commands that
//! may not need a container (direct sessions) still work and those that do say what is wrong.

use super::{
    ContainerEngine, ContainerFacts, ContainerSummary, EngineError, EngineInfo, ExecApi,
    ExecResult, ExecSpec, ExecState, ExecStream,
};
use crate::decide::ContainerSpec;
use std::collections::BTreeMap;

pub struct Unreachable(pub EngineError);

#[async_trait::async_trait]
impl ContainerEngine for Unreachable {
    fn endpoint(&self) -> String {
        match &self.0 {
            EngineError::Unreachable { endpoint, .. } => endpoint.clone(),
            _ => String::new(),
        }
    }
    async fn info(&self) -> Result<EngineInfo, EngineError> {
        Err(self.0.clone())
    }
    async fn image_id(&self, _: &str) -> Result<Option<String>, EngineError> {
        Err(self.0.clone())
    }
    async fn build_image(
        &self,
        _: &str,
        _: Vec<u8>,
        _: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError> {
        Err(self.0.clone())
    }
    async fn import_rootfs(
        &self,
        _: &str,
        _: &str,
        _: &std::path::Path,
        _: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<String, EngineError> {
        Err(self.0.clone())
    }
    async fn list_sandboxes(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        Err(self.0.clone())
    }
    async fn inspect(&self, _: &str) -> Result<Option<ContainerFacts>, EngineError> {
        Err(self.0.clone())
    }
    async fn create(
        &self,
        _: &ContainerSpec,
        _: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        Err(self.0.clone())
    }
    async fn start(&self, _: &str) -> Result<(), EngineError> {
        Err(self.0.clone())
    }
    async fn remove(&self, _: &str) -> Result<(), EngineError> {
        Err(self.0.clone())
    }
    fn verify_mounted(
        &self,
        facts: &ContainerFacts,
        expected: &[(String, u64, u64)],
    ) -> Result<(), Vec<crate::mounts::InodeMismatch>> {
        Err(super::not_running(facts, expected))
    }
}

#[async_trait::async_trait]
impl ExecApi for Unreachable {
    async fn exec_collect(
        &self,
        _: &str,
        _: &ExecSpec,
        _: usize,
    ) -> Result<ExecResult, EngineError> {
        Err(self.0.clone())
    }
    async fn exec_stream(&self, _: &str, _: &ExecSpec) -> Result<ExecStream, EngineError> {
        Err(self.0.clone())
    }
    async fn exec_state(&self, _: &str) -> Result<ExecState, EngineError> {
        Err(self.0.clone())
    }
}
