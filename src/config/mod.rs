//! Configuration: the JSON5 schema (clawden's own file or an OpenClaw `openclaw.json`), lookup,
//! profiles, and the merge into one agent's effective sandbox settings.

pub mod load;
pub mod resolve;
pub mod schema;
pub mod size;

pub use load::{ConfigError, Env, LoadedConfig, load, parse_config};
pub use resolve::{EffectiveSandbox, Source, Sourced, normalize_agent_id, resolve};
pub use schema::{Mode, Naming, Scope, SessionScope, WorkspaceAccess};
pub use size::{ByteSize, Cpus};

#[cfg(test)]
mod tests;
