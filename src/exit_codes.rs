//! Every exit code of the `clawden` binary, in one place. Documented in README.md ("Exit codes").

/// Success (for `explain`: the configuration is valid).
pub const OK: u8 = 0;
/// An unexpected internal error.
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap's usage errors use this too).
pub const USAGE: u8 = 2;
/// A config file could not be read or parsed, or has an unknown key or a wrong type.
pub const CONFIG_ERROR: u8 = 3;
/// The configuration parses but the plan has problems (a refused bind, `network: host`, …).
pub const CONFIG_PROBLEMS: u8 = 4;
/// A tool call or request was refused by the validator (the refusal says which rule).
pub const REFUSED: u8 = 5;
/// The Docker engine is unreachable or failed; or a required image is missing.
pub const ENGINE: u8 = 6;
/// `clawden doctor` found a failing check.
pub const DOCTOR_FAILED: u8 = 7;
/// The operator declined a confirmation prompt.
pub const DECLINED: u8 = 8;
/// `clawden exec`: clawden itself failed (the command's own codes pass through; 126/127 as a
/// shell reports them; 128+N when the command died of signal N).
pub const EXEC_CLAWDEN_ERROR: u8 = 125;

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
    (REFUSED, "a request was refused by the validator"),
    (
        ENGINE,
        "Docker engine unreachable or failed, or image missing",
    ),
    (DOCTOR_FAILED, "doctor: a check failed"),
    (DECLINED, "a confirmation prompt was declined"),
    (
        EXEC_CLAWDEN_ERROR,
        "exec: clawden failed before or while running the command",
    ),
];
