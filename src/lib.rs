//! clawden — a sandbox supervisor for AI-agent tool calls.
//!
//! Layout (decide, then do):
//! - [`config`]: the on-disk schema (JSON5, OpenClaw-compatible), lookup and profile layering.
//! - [`decide`]: pure decisions — sessions, scope keys, names, mount plans, effective settings, hashes.
//! - [`validate`]: the bind-mount and settings validator (pure, plus canonicalisation on the host fs).
//! - [`doctor`]: host and engine checks plus a live self-check of a throwaway sandbox.
//! - [`explain`]: the decision made visible, as data (JSON) and as human text.
//! - [`mounts`]: staged mounts (the new mount API as root), the post-start inode check.
//! - [`policy`]: the pure policy engine — who may run what, and what needs a human.
//! - [`exit_codes`]: every exit code the binary uses, in one place.
//! - [`display`]: escaping of sandbox-controlled values in human output.
//! - [`cli`]: the command line.

pub mod audit;
pub mod cli;
pub mod config;
pub mod decide;
pub mod display;
pub mod doctor;
pub mod engine;
pub mod exec;
pub mod exit_codes;
pub mod explain;
pub mod fileio;
pub mod images;
pub mod mounts;
pub mod policy;
pub mod serve;
pub mod supervisor;
pub mod validate;
