//! The pure decision layer: which session is sandboxed, in which container, with which mounts and
//! limits. No Docker here; the only host facts come in through [`plan::HostProbe`] and the
//! validator's canonicalisation.

pub mod hash;
pub mod mounts;
pub mod naming;
pub mod owner;
pub mod plan;
pub mod session;

pub use mounts::{Access, MountSource, PlannedMount};
pub use owner::{OWNER_LABEL, owner_id};
pub use plan::{ContainerSpec, HostProbe, RealHost, SandboxPlan, plan};
pub use session::{SessionRef, is_sandboxed, resolve_session};

use crate::config::{Env, LoadedConfig, resolve::EffectiveSandbox};
use crate::validate::HostContext;

/// Config + caller's session/agent → effective settings and the full plan. Pure but for the
/// host facts behind `host` and the validator's canonicalisation.
pub fn decide(
    cfg: &LoadedConfig,
    env: &Env,
    ctx: &HostContext,
    host: &dyn HostProbe,
    session: Option<&str>,
    agent: Option<&str>,
) -> Result<(EffectiveSandbox, SandboxPlan), session::SessionError> {
    let (default_agent, scope) = crate::config::resolve::session_settings(cfg);
    let s = resolve_session(session, agent, &default_agent, scope)?;
    let eff = crate::config::resolve(cfg, &s.agent_id, env);
    let mut p = plan(&eff, &s, host, ctx);
    // Without root nothing pins a bind source between check and use: a source some sandbox can
    // rewrite is refused instead.
    if p.container.staging_dir.is_none() {
        let writable = crate::mounts::sandbox_writable_dirs(cfg, env);
        p.problems.extend(crate::mounts::sandbox_writable_check(
            &p.container.mounts,
            &writable,
        ));
    }
    Ok((eff, p))
}
