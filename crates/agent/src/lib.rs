//! `clawden-agent`: the in-container agent that owns every call of a sandbox.
//!
//! It runs as the container's main process (under Docker's `--init`), as the sandbox user, and
//! listens on a Unix socket that only the supervisor — a process outside the container's pid
//! namespace with the supervisor's uid — may use. Every command it starts runs under a per-call
//! reaper, so no descendant outlives the call; exit status comes only from `waitpid`; deadlines
//! are enforced inside the container; file operations run with the sandbox user's rights in the
//! container's own mount view.
//!
//! - [`proto`]: the wire format (frames, hello, typed requests and events) shared by both sides.
//! - [`client`]: the blocking host-side client clawden uses.
//! - [`server`]: the agent itself (`clawden-agent serve …`).

pub mod capture;
pub mod client;
pub mod proto;
pub mod server;
