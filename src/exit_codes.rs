//! Every exit code of the `clawden` binary, in one place (nextest's `exit_codes` pattern).
//! Documented in README.md ("Exit codes") and `--help`, both generated from [`TABLE`].
//!
//! An error maps to its code through its [`ErrorClass`], and only through it: the CLI asks each
//! error for its class (`crate::cli::errors::ExitClass`) and every command reports with the
//! same function, so the same error exits with the same code from every command (a malformed
//! session key exits 2 from `explain`, `ensure`, `exec`, `read`, `write`, `recreate`).
//!
//! `exec` adds one rule: once the command has run, its own status passes through (0–255, 126/127
//! as the shell reports them, 128+N for signal N, 137 on timeout), and 125 means that clawden
//! lost the command (the container died, no exit status). Before the command runs, a failure
//! exits with its class's code like every other command; `--json` tells the two apart
//! (`error` versus `exitCode`) when the command itself may exit 2–6.

/// Success (for `explain`: the configuration is valid).
pub const OK: u8 = 0;
/// An unexpected internal error (I/O on the state directory, an unreadable input file).
pub const FAILURE: u8 = 1;
/// The command line was wrong, or a malformed session key (clap's usage errors use this too).
pub const USAGE: u8 = 2;
/// A config file could not be read or parsed, or has an unknown key or a wrong type.
pub const CONFIG_ERROR: u8 = 3;
/// The configuration parses but the plan has problems (a refused bind, `network: host`, …).
pub const CONFIG_PROBLEMS: u8 = 4;
/// A tool call or request was refused by the validator or the policy (the refusal says which
/// rule); `policy check`: the decision is deny.
pub const REFUSED: u8 = 5;
/// The Docker engine is unreachable, not local (`remote_engine`) or failed; or an image is
/// missing.
pub const ENGINE: u8 = 6;
/// `clawden doctor` found a failing check.
pub const DOCTOR_FAILED: u8 = 7;
/// The operator declined a confirmation prompt.
pub const DECLINED: u8 = 8;
/// The policy asks a human first (`policy check`: the decision is ask). Nothing ran.
pub const APPROVAL_REQUIRED: u8 = 9;
/// `clawden run`: the command ran past its timeout (every process of it was killed).
pub const RUN_TIMEOUT: u8 = 124;
/// `clawden exec`: the command was started but clawden lost it (the container died during the
/// call, no exit status). The command's own codes pass through otherwise.
pub const EXEC_CLAWDEN_ERROR: u8 = 125;

/// What kind of failure an error is; each class has exactly one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Failure,
    Usage,
    Config,
    ConfigProblems,
    Refused,
    Engine,
    DoctorFailed,
    Declined,
    ApprovalRequired,
    ExecLost,
}

impl ErrorClass {
    /// Every class, for tests and docs.
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::Failure,
        ErrorClass::Usage,
        ErrorClass::Config,
        ErrorClass::ConfigProblems,
        ErrorClass::Refused,
        ErrorClass::Engine,
        ErrorClass::DoctorFailed,
        ErrorClass::Declined,
        ErrorClass::ApprovalRequired,
        ErrorClass::ExecLost,
    ];

    /// The one exit code of this class.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Failure => FAILURE,
            ErrorClass::Usage => USAGE,
            ErrorClass::Config => CONFIG_ERROR,
            ErrorClass::ConfigProblems => CONFIG_PROBLEMS,
            ErrorClass::Refused => REFUSED,
            ErrorClass::Engine => ENGINE,
            ErrorClass::DoctorFailed => DOCTOR_FAILED,
            ErrorClass::Declined => DECLINED,
            ErrorClass::ApprovalRequired => APPROVAL_REQUIRED,
            ErrorClass::ExecLost => EXEC_CLAWDEN_ERROR,
        }
    }
}

/// (code, meaning) for `--help` and the README.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success; for explain, the configuration is valid"),
    (FAILURE, "unexpected internal error"),
    (USAGE, "bad command line, or a malformed session key"),
    (
        CONFIG_ERROR,
        "config file unreadable, not JSON5, unknown key or wrong type",
    ),
    (
        CONFIG_PROBLEMS,
        "configuration parses but its plan has problems (refused bind, network host, ...)",
    ),
    (
        REFUSED,
        "a request was refused by the validator or the policy (policy check: deny)",
    ),
    (
        ENGINE,
        "Docker engine unreachable, not local (remote_engine) or failed, or image missing",
    ),
    (DOCTOR_FAILED, "doctor: a check failed"),
    (DECLINED, "a confirmation prompt was declined"),
    (
        APPROVAL_REQUIRED,
        "the policy requires a human's approval first (policy check: ask); nothing ran",
    ),
    (
        RUN_TIMEOUT,
        "run: the command timed out (its whole process tree was killed); otherwise run exits with the command's own status",
    ),
    (
        EXEC_CLAWDEN_ERROR,
        "exec: the command started but clawden lost it (container died); otherwise exec exits with the command's own status",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_a_distinct_documented_code() {
        let mut seen = std::collections::HashSet::new();
        for class in ErrorClass::ALL {
            let code = class.exit_code();
            assert!(seen.insert(code), "{class:?} shares code {code}");
            assert!(
                TABLE.iter().any(|(c, _)| *c == code),
                "{class:?} ({code}) is not in the table"
            );
            assert_ne!(code, OK);
        }
        // The table documents exactly the classes plus success and run's timeout.
        assert_eq!(TABLE.len(), ErrorClass::ALL.len() + 2);
    }

    #[test]
    fn the_table_is_fixed() {
        // Scripts depend on these numbers: changing one is a breaking change.
        let codes: Vec<u8> = TABLE.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 124, 125]);
    }
}
