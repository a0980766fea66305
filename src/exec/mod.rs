//! exec: one command of a session — in its container through the sandbox's agent (or, as a
//! fallback, the Engine API's exec), or (direct sessions) on the host under a one-shot reaper.
//! Always `/bin/sh -c COMMAND`, never a login shell; the exit status always comes from the kernel
//! (`waitpid` in the agent or reaper, `inspect_exec` on the fallback path), never from output.

pub mod agent;
pub mod argv;
pub mod capture;
pub mod container;
pub mod host;
pub mod kill;
pub mod reaper;

use crate::validate::{Refusal, RefusalCode, validate_env_name};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Total bytes of call env (names + values) accepted.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Stdin data accepted with a call.
pub const MAX_STDIN_BYTES: usize = 64 * 1024;
/// Longest command accepted.
pub const MAX_COMMAND_BYTES: usize = 96 * 1024;
/// Longest timeout a call may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// An exec call as it arrives.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub session: Option<String>,
    pub agent: Option<String>,
    pub command: String,
    /// Working directory: a container path for sandboxed sessions (default: the workdir), a path
    /// in the agent workspace for direct ones (default: the agent workspace).
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    /// A caller asking for a specific user: only the sandbox's own user is accepted.
    pub user: Option<String>,
    /// A caller asking for privileges: always refused.
    pub privileged: bool,
}

/// What an exec call produced.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecOutcome {
    /// The shell's exit status (128+N when the command died of signal N), `None` when unknown
    /// (timed out, container died).
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(skip)]
    pub stdout: Vec<u8>,
    #[serde(skip)]
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub container_died: bool,
    pub container_name: Option<String>,
    /// Which path ran the call.
    pub via: Via,
}

/// Which path ran a call: the sandbox's agent, the Engine API's exec (fallback), or the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Agent,
    Engine,
    #[default]
    Host,
}

/// Receives output as it arrives (`true` for stderr), e.g. to stream it to a terminal.
pub type OutputSink = dyn Fn(bool, &[u8]) + Send + Sync;

impl ExecOutcome {
    /// Assemble an outcome from the captured streams and what is known about the end.
    pub(crate) fn from_capture(
        out: capture::HeadTail,
        err: capture::HeadTail,
        status: (Option<i32>, Option<i32>),
        started: std::time::Instant,
        end: CallEnd,
    ) -> Self {
        ExecOutcome {
            exit_code: status.0,
            signal: status.1,
            stdout_truncated: out.truncated(),
            stderr_truncated: err.truncated(),
            stdout_bytes: out.total(),
            stderr_bytes: err.total(),
            stdout: out.into_bytes(),
            stderr: err.into_bytes(),
            duration_ms: started.elapsed().as_millis() as u64,
            timed_out: end.timed_out,
            oom_killed: end.oom_killed,
            container_died: end.container_died,
            container_name: end.container_name,
            via: end.via,
        }
    }
}

/// How a call ended, besides its status.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallEnd {
    pub timed_out: bool,
    pub oom_killed: bool,
    pub container_died: bool,
    pub container_name: Option<String>,
    pub via: Via,
}

/// Limits of one call, from config (`sandbox.calls`) and the request.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    pub max_output_bytes: usize,
}

fn refuse(
    code: RefusalCode,
    value: impl Into<String>,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Refusal {
    Refusal {
        code,
        value: value.into(),
        message: message.into(),
        fix: fix.into(),
    }
}

/// Checks of the request that need no session: env names and sizes, command, stdin, timeout,
/// user and privileges.
pub fn validate_request(r: &ExecRequest, sandbox_user: &str) -> Result<(), Refusal> {
    if r.privileged {
        return Err(refuse(
            RefusalCode::PrivilegeRequested,
            "privileged",
            "exec with privileges is never allowed",
            "drop the privileged flag",
        ));
    }
    if let Some(u) = r.user.as_ref().filter(|u| *u != sandbox_user) {
        {
            return Err(refuse(
                RefusalCode::PrivilegeRequested,
                u,
                format!(
                    "exec as user {u:?} is refused: calls run as the sandbox user {sandbox_user}"
                ),
                "omit the user; set docker.user in the config to change the sandbox user",
            ));
        }
    }
    if r.command.trim().is_empty() {
        return Err(refuse(
            RefusalCode::InvalidValue,
            "",
            "the command is empty",
            "give a command",
        ));
    }
    if r.command.contains('\0') {
        return Err(refuse(
            RefusalCode::InvalidValue,
            r.command.escape_debug().to_string(),
            "the command contains a NUL byte",
            "remove the NUL byte",
        ));
    }
    if r.command.len() > MAX_COMMAND_BYTES {
        return Err(refuse(
            RefusalCode::TooLarge,
            format!("{} bytes", r.command.len()),
            format!("the command is longer than {MAX_COMMAND_BYTES} bytes"),
            "write a script to the workspace and run it",
        ));
    }
    let mut total = 0;
    for (k, v) in &r.env {
        validate_env_name(k)?;
        if v.contains('\0') {
            return Err(refuse(
                RefusalCode::InvalidEnvName,
                k,
                format!("the value of env {k:?} contains a NUL byte"),
                "remove the NUL byte",
            ));
        }
        total += k.len() + v.len() + 2;
    }
    if total > MAX_ENV_BYTES {
        return Err(refuse(
            RefusalCode::TooLarge,
            format!("{total} bytes"),
            format!("the call env is larger than {MAX_ENV_BYTES} bytes"),
            "pass large data as a file",
        ));
    }
    if r.stdin.as_ref().is_some_and(|d| d.len() > MAX_STDIN_BYTES) {
        return Err(refuse(
            RefusalCode::TooLarge,
            "stdin",
            format!("stdin data is larger than {MAX_STDIN_BYTES} bytes"),
            "write the data to a file in the workspace and redirect it",
        ));
    }
    if r.timeout.is_some_and(|t| t.is_zero() || t > MAX_TIMEOUT) {
        return Err(refuse(
            RefusalCode::InvalidValue,
            format!("{:?}", r.timeout),
            "the timeout must be between 1ms and 24h",
            "give a timeout such as 30s",
        ));
    }
    Ok(())
}

/// exit status → (exit code, signal): the shell reports death by signal N as 128+N.
pub fn split_status(code: i32) -> (Option<i32>, Option<i32>) {
    if (129..=128 + 64).contains(&code) {
        (Some(code), Some(code - 128))
    } else {
        (Some(code), None)
    }
}

pub fn new_call_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmd: &str) -> ExecRequest {
        ExecRequest {
            command: cmd.into(),
            ..Default::default()
        }
    }

    #[test]
    fn request_rules() {
        assert!(validate_request(&req("true"), "1000:1000").is_ok());
        let code = |r: &ExecRequest| validate_request(r, "1000:1000").unwrap_err().code.as_str();
        assert_eq!(code(&req("")), "invalid_value");
        assert_eq!(code(&req("a\0b")), "invalid_value");
        assert_eq!(
            code(&ExecRequest {
                privileged: true,
                ..req("true")
            }),
            "privilege_requested"
        );
        assert_eq!(
            code(&ExecRequest {
                user: Some("0:0".into()),
                ..req("true")
            }),
            "privilege_requested"
        );
        assert_eq!(
            code(&ExecRequest {
                user: Some("root".into()),
                ..req("true")
            }),
            "privilege_requested"
        );
        assert!(
            validate_request(
                &ExecRequest {
                    user: Some("1000:1000".into()),
                    ..req("true")
                },
                "1000:1000"
            )
            .is_ok()
        );
        for bad in ["A=B", "", "X\0", "1X"] {
            let r = ExecRequest {
                env: [(bad.to_string(), "v".to_string())].into(),
                ..req("true")
            };
            assert_eq!(code(&r), "invalid_env_name", "{bad:?}");
        }
        let r = ExecRequest {
            env: [("BIG".to_string(), "x".repeat(MAX_ENV_BYTES))].into(),
            ..req("true")
        };
        assert_eq!(code(&r), "too_large");
        let r = ExecRequest {
            stdin: Some(vec![0; MAX_STDIN_BYTES + 1]),
            ..req("cat")
        };
        assert_eq!(code(&r), "too_large");
        let r = ExecRequest {
            timeout: Some(Duration::ZERO),
            ..req("true")
        };
        assert_eq!(code(&r), "invalid_value");
    }

    #[test]
    fn statuses() {
        assert_eq!(split_status(0), (Some(0), None));
        assert_eq!(split_status(137), (Some(137), Some(9)));
        assert_eq!(split_status(127), (Some(127), None));
        assert_eq!(split_status(255), (Some(255), None));
    }
}
