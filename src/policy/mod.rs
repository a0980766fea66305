//! The policy engine (policy.md): who may run what, and what needs a human. Pure: no I/O.
//!
//! Enforcement is one call:
//!
//! ```text
//! let policy = EffectivePolicy::from_config(&loaded, &effective_sandbox);
//! let eval = policy::evaluate(&request, &principal, &session_ctx, &policy);
//! match eval.decision { Decision::Allow => run(), Decision::Ask => pend(eval), Decision::Deny => refuse(eval) }
//! ```
//!
//! - `schema.rs`: the `policy`/`users` config sections (strict; also the `--policy` YAML file).
//! - `effective.rs`: which layer each section comes from, plus OpenClaw's sandbox tool policy.
//! - `principal.rs`: principals → trust levels, and what each level may use.
//! - `shell/`: the command parser (brush-parser) and wrapper unwrapping → every program run.
//! - `pattern.rs`: argv and pipeline patterns, flag normalisation.
//! - `defaults.rs`: the smart defaults when `policy.exec` is not configured.
//! - `files.rs`: path rules. `flags.rs`: control characters and injection shapes.
//! - `engine.rs`: [`evaluate`], the strictest match wins.

mod defaults;
mod effective;
mod engine;
mod files;
mod flags;
mod pattern;
mod principal;
mod schema;
pub mod shell;
mod types;

pub use effective::{EffectivePolicy, FromLayer, KeyedList};
pub use engine::{HARMLESS_BUILTINS, SANDBOX_ENFORCED_TOOLS, evaluate};
pub use flags::HIDDEN_RUN;
pub use pattern::{ArgvPattern, Fit, Normalized, Pattern, normalize};
pub use principal::{EXEC_TOOLS, FILE_TOOLS, INTEGRATION_TOOLS, OPERATOR_TOOLS, resolve_principal};
pub use schema::{
    ApprovalSettings, ExecRules, FileRules, FlagRules, OwnerEntry, PolicyFile, PolicySection,
    ToolRules, TrustLevel, UserEntry, UsersSection, Verdict,
};
pub use types::{
    CommandLine, Decision, Evaluation, FileAccess, Flag, FlagClass, Match, Principal, Request,
    ResolvedPrincipal, SessionContext, Severity,
};

#[cfg(test)]
mod tests;
