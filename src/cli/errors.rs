//! The one mapping from errors to exit codes and reports: every command reports a failure with
//! [`fail`], which asks the error for its [`ErrorClass`] (the table lives in
//! [`crate::exit_codes`]). A new error type gets an [`ExitClass`] impl here, nowhere else.

use super::report_error;
use crate::config::ConfigError;
use crate::decide::session::SessionError;
use crate::engine::EngineError;
use crate::exit_codes::ErrorClass;
use crate::supervisor::SupervisorError;
use crate::supervisor::calls::CallError;
use crate::validate::Refusal;
use std::process::ExitCode;

/// An error the CLI reports: its class (→ exit code), stable code, message and fix.
pub trait ExitClass: std::fmt::Display {
    fn class(&self) -> ErrorClass;
    /// The stable string code (JSON `error.code`, audit log).
    fn code(&self) -> String;
    fn fix(&self) -> String;
}

impl ExitClass for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
    fn code(&self) -> String {
        "config_error".into()
    }
    fn fix(&self) -> String {
        match self {
            ConfigError::Invalid { key, .. } => format!("correct or remove {key}"),
            ConfigError::Syntax { .. } => "fix the JSON5 syntax".into(),
            ConfigError::Read { .. } => "check the path given by --config or CLAWDEN_CONFIG".into(),
            ConfigError::UnknownProfile { .. } => "use a built-in profile name or a path".into(),
        }
    }
}

impl ExitClass for SessionError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
    fn code(&self) -> String {
        SessionError::code(self).into()
    }
    fn fix(&self) -> String {
        "give --session as agent:<agentId>:<name> or a short name".into()
    }
}

impl ExitClass for EngineError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Engine
    }
    fn code(&self) -> String {
        EngineError::code(self).into()
    }
    fn fix(&self) -> String {
        EngineError::fix(self)
    }
}

impl ExitClass for Refusal {
    fn class(&self) -> ErrorClass {
        ErrorClass::Refused
    }
    fn code(&self) -> String {
        self.code.as_str().into()
    }
    fn fix(&self) -> String {
        self.fix.clone()
    }
}

impl ExitClass for SupervisorError {
    fn class(&self) -> ErrorClass {
        match self {
            SupervisorError::Session(e) => e.class(),
            SupervisorError::Problems(_) => ErrorClass::ConfigProblems,
            SupervisorError::NotSandboxed(_)
            | SupervisorError::Drift { .. }
            | SupervisorError::Foreign(_)
            // Nothing ran: the audit entry could not be written, or a mount was not what was
            // checked.
            | SupervisorError::AuditFailed(_)
            | SupervisorError::MountCheck { .. } => ErrorClass::Refused,
            SupervisorError::Engine(e) => e.class(),
            SupervisorError::Mismatch { .. } | SupervisorError::SetupFailed { .. } => {
                ErrorClass::Engine
            }
            SupervisorError::Io(_) => ErrorClass::Failure,
        }
    }
    fn code(&self) -> String {
        SupervisorError::code(self).into()
    }
    fn fix(&self) -> String {
        SupervisorError::fix(self)
    }
}

impl ExitClass for CallError {
    fn class(&self) -> ErrorClass {
        match self {
            CallError::Refused(r) => r.class(),
            CallError::Failed(e) => e.class(),
        }
    }
    fn code(&self) -> String {
        CallError::code(self).into()
    }
    fn fix(&self) -> String {
        CallError::fix(self)
    }
}

/// A failure of the CLI itself that has no library type (bad `--env`, unreadable input).
#[derive(Debug)]
pub struct CliFailure {
    pub class: ErrorClass,
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for CliFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ExitClass for CliFailure {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn code(&self) -> String {
        self.code.into()
    }
    fn fix(&self) -> String {
        self.fix.clone()
    }
}

/// Report `e` (JSON `{"error": …}` with `--json`, else one escaped line on stderr) and return
/// its exit code. Every command ends a failure here.
pub fn fail(json: bool, e: &dyn ExitClass) -> ExitCode {
    ExitCode::from(report(json, e))
}

/// [`fail`], as the raw code.
pub fn report(json: bool, e: &dyn ExitClass) -> u8 {
    report_error(json, &e.code(), &e.to_string(), &e.fix());
    e.class().exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit_codes::*;

    #[test]
    fn one_code_per_error_class_whatever_the_wrapper() {
        let session = SessionError::Empty;
        let unreachable = EngineError::Unreachable {
            endpoint: "unix:///x".into(),
            message: "gone".into(),
        };
        let refusal = Refusal {
            code: crate::validate::RefusalCode::NotOnMount,
            value: "/etc".into(),
            message: "m".into(),
            fix: "f".into(),
        };
        let cases: Vec<(Box<dyn ExitClass>, u8)> = vec![
            (Box::new(SessionError::Empty), USAGE),
            (
                Box::new(SupervisorError::Session(SessionError::Empty)),
                USAGE,
            ),
            (
                Box::new(CallError::Failed(SupervisorError::Session(session))),
                USAGE,
            ),
            (Box::new(unreachable.clone()), ENGINE),
            (
                Box::new(SupervisorError::Engine(unreachable.clone())),
                ENGINE,
            ),
            (
                Box::new(CallError::Failed(SupervisorError::Engine(unreachable))),
                ENGINE,
            ),
            (
                Box::new(EngineError::NotLocal {
                    endpoint: "tcp://127.0.0.1:1".into(),
                    reason: "tcp".into(),
                }),
                ENGINE,
            ),
            (Box::new(refusal.clone()), REFUSED),
            (Box::new(CallError::Refused(refusal.clone())), REFUSED),
            (Box::new(SupervisorError::NotSandboxed("k".into())), REFUSED),
            (
                Box::new(SupervisorError::Problems(vec![refusal])),
                CONFIG_PROBLEMS,
            ),
            (
                Box::new(CallError::Failed(SupervisorError::Problems(vec![]))),
                CONFIG_PROBLEMS,
            ),
            (
                Box::new(ConfigError::Syntax {
                    origin: "x".into(),
                    message: "y".into(),
                }),
                CONFIG_ERROR,
            ),
            (Box::new(SupervisorError::Io("disk".into())), FAILURE),
        ];
        for (e, want) in cases {
            assert_eq!(e.class().exit_code(), want, "{e}");
            assert!(!e.code().is_empty());
        }
    }

    #[test]
    fn readme_documents_the_table() {
        let readme = include_str!("../../README.md");
        for (code, meaning) in TABLE {
            let row = format!("| {code} | {meaning} |");
            assert!(readme.contains(&row), "README.md lacks the row {row:?}");
        }
    }
}
