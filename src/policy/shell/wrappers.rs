//! Programs that run another program: where the inner command starts in their argv.
//!
//! Each wrapper's option grammar is written out (which options take a value), so
//! `nice -n 5 sudo …`, `timeout -s KILL 5 sudo …` and `env -u X FOO=1 sudo …` all find `sudo`.
//! An option the table does not know is skipped as a flag; a non-literal word ends the options
//! and becomes the "program", which the analysis then reports as unverifiable.

use super::Token;

/// What a program does with the rest of its argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwrap {
    /// Runs nothing else we know of.
    None,
    /// Runs `args[i..]` as a command; `transparent` wrappers are exempt from `exec.allow`.
    Inner { start: usize, transparent: bool },
    /// Runs several commands (`find -exec … ;` once per `-exec`).
    Inners(Vec<(usize, usize)>),
    /// Runs `args[i]` as a shell script (`sh -c`, `su -c`, `env -S`).
    Script(usize),
    /// A shell that reads its script from the file `args[i]`.
    ScriptFile(usize),
    /// A shell that reads its script from stdin.
    ScriptStdin,
    /// `eval ARGS`: the arguments joined are a script.
    Eval,
    /// `source FILE` / `. FILE`: a script read from a file.
    Source(Option<usize>),
}

fn text(args: &[Token], i: usize) -> Option<&str> {
    args.get(i).and_then(|t| t.text.as_deref())
}

fn is_assignment(s: &str) -> bool {
    match s.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Skip options: `with_value` options consume the next word unless written `--opt=v` or `-ov`.
/// Returns the index of the first operand. Stops at `--` (skipped) or a non-literal word.
fn skip_options(args: &[Token], start: usize, with_value: &[&str], assignments: bool) -> usize {
    let mut i = start;
    while let Some(t) = args.get(i) {
        let Some(s) = t.text.as_deref() else {
            return i;
        };
        if s == "--" {
            return i + 1;
        }
        if assignments && is_assignment(s) {
            i += 1;
            continue;
        }
        if !s.starts_with('-') || s == "-" {
            return i;
        }
        i += 1;
        if s.contains('=') && s.starts_with("--") {
            continue;
        }
        if with_value.contains(&s) {
            i += 1;
        }
    }
    i
}

/// Where `program`'s inner command starts, if it runs one.
pub fn unwrap(program: &str, args: &[Token]) -> Unwrap {
    let inner = |start: usize, transparent: bool| {
        if start < args.len() {
            Unwrap::Inner { start, transparent }
        } else {
            Unwrap::None
        }
    };
    match program {
        "env" => {
            // `-S STRING` / `--split-string=STRING` is a command line in one word.
            let mut i = 0;
            while let Some(s) = text(args, i) {
                if s == "-S" || s == "--split-string" {
                    return if i + 1 < args.len() {
                        Unwrap::Script(i + 1)
                    } else {
                        Unwrap::None
                    };
                }
                if s == "--" || (!s.starts_with('-') && !is_assignment(s)) {
                    break;
                }
                i += if matches!(s, "-u" | "--unset" | "-C" | "--chdir") {
                    2
                } else {
                    1
                };
            }
            inner(
                skip_options(args, 0, &["-u", "--unset", "-C", "--chdir"], true),
                true,
            )
        }
        "timeout" => {
            let i = skip_options(args, 0, &["-s", "--signal", "-k", "--kill-after"], false);
            inner(i + 1, true)
        }
        "nice" => inner(skip_options(args, 0, &["-n", "--adjustment"], false), true),
        "nohup" | "setsid" | "builtin" | "busybox" => {
            inner(skip_options(args, 0, &[], false), true)
        }
        "time" => inner(
            skip_options(args, 0, &["-f", "--format", "-o", "--output"], false),
            true,
        ),
        "stdbuf" => inner(
            skip_options(
                args,
                0,
                &["-i", "-o", "-e", "--input", "--output", "--error"],
                false,
            ),
            true,
        ),
        "ionice" => inner(
            skip_options(args, 0, &["-c", "--class", "-n", "--classdata"], false),
            true,
        ),
        "xargs" => inner(
            skip_options(
                args,
                0,
                &[
                    "-a",
                    "--arg-file",
                    "-d",
                    "--delimiter",
                    "-E",
                    "-I",
                    "-L",
                    "--max-lines",
                    "-n",
                    "--max-args",
                    "-P",
                    "--max-procs",
                    "-s",
                    "--max-chars",
                    "--process-slot-var",
                ],
                false,
            ),
            true,
        ),
        "command" => {
            let i = skip_options(args, 0, &[], false);
            let lookup_only = args[..i.min(args.len())]
                .iter()
                .filter_map(|t| t.text.as_deref())
                .any(|s| s.starts_with('-') && (s.contains('v') || s.contains('V')));
            if lookup_only {
                Unwrap::None
            } else {
                inner(i, true)
            }
        }
        "exec" => inner(skip_options(args, 0, &["-a"], false), true),
        "sudo" => inner(
            skip_options(
                args,
                0,
                &[
                    "-u",
                    "--user",
                    "-g",
                    "--group",
                    "-C",
                    "--close-from",
                    "-D",
                    "--chdir",
                    "-h",
                    "--host",
                    "-p",
                    "--prompt",
                    "-r",
                    "--role",
                    "-t",
                    "--type",
                    "-T",
                    "--command-timeout",
                    "-U",
                    "--other-user",
                ],
                true,
            ),
            false,
        ),
        "doas" => inner(skip_options(args, 0, &["-u", "-C"], false), false),
        "chroot" => {
            let i = skip_options(args, 0, &["--userspec", "--groups"], false);
            inner(i + 1, false)
        }
        "su" | "runuser" => {
            for (i, t) in args.iter().enumerate() {
                match t.text.as_deref() {
                    Some("-c" | "--command") if i + 1 < args.len() => return Unwrap::Script(i + 1),
                    _ => {}
                }
            }
            Unwrap::None
        }
        "find" => {
            let mut out = Vec::new();
            let mut i = 0;
            while i < args.len() {
                if matches!(text(args, i), Some("-exec" | "-execdir" | "-ok" | "-okdir")) {
                    let start = i + 1;
                    let mut end = start;
                    while end < args.len() && !matches!(text(args, end), Some(";" | "+")) {
                        end += 1;
                    }
                    if end > start {
                        out.push((start, end));
                    }
                    i = end;
                }
                i += 1;
            }
            if out.is_empty() {
                Unwrap::None
            } else {
                Unwrap::Inners(out)
            }
        }
        "eval" => Unwrap::Eval,
        "source" | "." => Unwrap::Source((!args.is_empty()).then_some(0)),
        p if super::programs::is_shell(p) => shell(args),
        _ => Unwrap::None,
    }
}

/// `sh [-opts] [-c SCRIPT | FILE | -s]`.
fn shell(args: &[Token]) -> Unwrap {
    let mut c_mode = false;
    let mut i = 0;
    while let Some(t) = args.get(i) {
        let Some(s) = t.text.as_deref() else {
            // A non-literal option or script: cannot follow.
            return if c_mode {
                Unwrap::Script(i)
            } else {
                Unwrap::ScriptFile(i)
            };
        };
        if s == "--" || s == "-" {
            i += 1;
            break;
        }
        if let Some(long) = s.strip_prefix("--") {
            i += 1;
            if matches!(long, "rcfile" | "init-file") {
                i += 1;
            }
            continue;
        }
        if (s.starts_with('-') || s.starts_with('+')) && s.len() > 1 {
            if s.starts_with('-') && s.contains('c') {
                c_mode = true;
            }
            i += 1;
            if s[1..].contains('o') || s[1..].contains('O') {
                i += 1;
            }
            continue;
        }
        break;
    }
    match (c_mode, i < args.len()) {
        (true, true) => Unwrap::Script(i),
        (true, false) => Unwrap::None,
        (false, true) => Unwrap::ScriptFile(i),
        (false, false) => Unwrap::ScriptStdin,
    }
}
