//! Command patterns (`rm -rf`, `git push`, `curl | bash`) and the flag normalisation both
//! sides go through: short clusters expanded (`-fr` → `-f -r`), long synonyms mapped to their
//! short form per program (`--recursive` → `-r` for rm), the flag set order-insensitive, `--`
//! ending the flags. Positional words must appear in order (not necessarily adjacent).

use super::shell::Token;
use super::shell::programs::{basename, is_downloader, is_shell_or_interpreter};
use std::collections::BTreeSet;

/// Long options (and upper-case short ones) that mean a short option, per program. Small on
/// purpose: the programs rules are usually written about.
const SYNONYMS: &[(&str, &[(&str, &str)])] = &[
    (
        "rm",
        &[
            ("--recursive", "-r"),
            ("-R", "-r"),
            ("--force", "-f"),
            ("--dir", "-d"),
            ("--interactive", "-i"),
            ("--verbose", "-v"),
        ],
    ),
    (
        "cp",
        &[
            ("--recursive", "-r"),
            ("-R", "-r"),
            ("--force", "-f"),
            ("--archive", "-a"),
        ],
    ),
    ("mv", &[("--force", "-f")]),
    ("chmod", &[("--recursive", "-R")]),
    ("chown", &[("--recursive", "-R")]),
    ("chgrp", &[("--recursive", "-R")]),
    (
        "git",
        &[
            ("--force", "-f"),
            ("--force-with-lease", "-f"),
            ("--all", "-a"),
        ],
    ),
    ("npm", &[("--force", "-f")]),
    (
        "curl",
        &[
            ("--data", "-d"),
            ("--data-raw", "-d"),
            ("--data-binary", "-d"),
            ("--data-urlencode", "-d"),
            ("--data-ascii", "-d"),
            ("--json", "-d"),
            ("--upload-file", "-T"),
            ("--form", "-F"),
            ("--form-string", "-F"),
            ("--request", "-X"),
            ("--output", "-o"),
            ("--remote-name", "-O"),
        ],
    ),
    ("wget", &[("--output-document", "-O")]),
    ("rsync", &[("--recursive", "-r"), ("--archive", "-a")]),
    ("grep", &[("--recursive", "-r"), ("-R", "-r")]),
    ("sed", &[("--in-place", "-i")]),
    ("shred", &[("--remove", "-u"), ("--zero", "-z")]),
];

fn synonym<'a>(program: &str, flag: &'a str) -> &'a str {
    SYNONYMS
        .iter()
        .find(|(p, _)| *p == program)
        .and_then(|(_, m)| m.iter().find(|(long, _)| *long == flag))
        .map(|(_, short)| *short)
        .unwrap_or(flag)
}

/// An argv in normal form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    pub flags: BTreeSet<String>,
    /// Positional words; `None` where a word is not a literal.
    pub positionals: Vec<Option<String>>,
    /// Some word is not a literal (its flags or position are unknown).
    pub nonliteral: bool,
}

/// Normalise `args` (argv[1..]) of `program`.
pub fn normalize(program: &str, args: &[Token]) -> Normalized {
    let mut n = Normalized::default();
    let mut end_of_flags = false;
    for t in args {
        let Some(s) = t.text.as_deref() else {
            n.nonliteral = true;
            n.positionals.push(None);
            continue;
        };
        if end_of_flags || s == "-" || !s.starts_with('-') {
            n.positionals.push(Some(s.to_string()));
        } else if s == "--" {
            end_of_flags = true;
        } else if s.starts_with("--") {
            let name = s.split_once('=').map_or(s, |(k, _)| k);
            n.flags.insert(synonym(program, name).to_string());
        } else {
            for c in s[1..].chars() {
                let f = format!("-{c}");
                n.flags.insert(synonym(program, &f).to_string());
            }
        }
    }
    n
}

/// One side of a pattern: a program and the words it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgvPattern {
    /// Basename; a trailing `*` matches any suffix (`mkfs*`).
    pub program: String,
    pub flags: BTreeSet<String>,
    pub positionals: Vec<String>,
}

/// A configured `exec.deny` / `exec.requireApproval` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Argv(ArgvPattern),
    /// `a | b`: a stage matching `a` feeds (directly or through later stages) one matching `b`.
    Pipeline(Vec<ArgvPattern>),
}

/// The answer of a pattern about one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Yes,
    No,
    /// The program matches but non-literal words leave the rest unknown.
    Maybe,
}

impl Pattern {
    /// Parse a pattern; `None` for an empty one.
    pub fn parse(s: &str) -> Option<Pattern> {
        let parts: Vec<&str> = s.split('|').map(str::trim).collect();
        let sides: Option<Vec<ArgvPattern>> = parts.iter().map(|p| ArgvPattern::parse(p)).collect();
        let mut sides = sides?;
        if sides.len() == 1 {
            sides.pop().map(Pattern::Argv)
        } else {
            Some(Pattern::Pipeline(sides))
        }
    }
}

impl ArgvPattern {
    pub fn parse(s: &str) -> Option<ArgvPattern> {
        let mut words = s.split_whitespace();
        let program = basename(words.next()?).to_string();
        let args: Vec<Token> = words.map(|w| Token::literal(w, 0)).collect();
        let n = normalize(&program, &args);
        Some(ArgvPattern {
            program,
            flags: n.flags,
            positionals: n.positionals.into_iter().flatten().collect(),
        })
    }

    pub fn program_matches(&self, program: &str) -> bool {
        match self.program.strip_suffix('*') {
            Some(prefix) => program.starts_with(prefix),
            None => self.program == program,
        }
    }

    /// As a pipeline side, a download tool stands for every download tool and a shell or
    /// interpreter for every shell and interpreter.
    fn program_matches_in_pipeline(&self, program: &str) -> bool {
        if is_downloader(&self.program) {
            return is_downloader(program);
        }
        if is_shell_or_interpreter(&self.program) {
            return is_shell_or_interpreter(program);
        }
        self.program_matches(program)
    }

    pub fn fit(&self, program: &str, args: &[Token]) -> Fit {
        self.fit_with(program, args, self.program_matches(program))
    }

    pub fn fit_in_pipeline(&self, program: &str, args: &[Token]) -> Fit {
        self.fit_with(program, args, self.program_matches_in_pipeline(program))
    }

    fn fit_with(&self, program: &str, args: &[Token], program_ok: bool) -> Fit {
        if !program_ok {
            return Fit::No;
        }
        // Normalise the pattern's flags with the command's program (a `mkfs*` pattern's
        // synonyms are those of the program it met).
        let n = normalize(program, args);
        let flags_ok = self
            .flags
            .iter()
            .all(|f| n.flags.contains(synonym(program, f)));
        let mut pos = n.positionals.iter().flatten();
        let positionals_ok = self
            .positionals
            .iter()
            .all(|want| pos.any(|have| have == want));
        match (flags_ok && positionals_ok, n.nonliteral) {
            (true, _) => Fit::Yes,
            (false, true) => Fit::Maybe,
            (false, false) => Fit::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        s.split_whitespace().map(|w| Token::literal(w, 0)).collect()
    }

    fn fit(pattern: &str, cmd: &str) -> Fit {
        let mut w = cmd.split_whitespace();
        let program = w.next().unwrap();
        let rest: Vec<&str> = w.collect();
        ArgvPattern::parse(pattern)
            .unwrap()
            .fit(program, &toks(&rest.join(" ")))
    }

    #[test]
    fn flags_are_normalised() {
        for cmd in [
            "rm -rf x",
            "rm -fr x",
            "rm -r -f x",
            "rm --recursive --force x",
            "rm -R --force x",
            "rm -rf -- x",
            "rm -v -r x -f",
            "rm --force=yes -r x",
        ] {
            assert_eq!(fit("rm -rf", cmd), Fit::Yes, "{cmd}");
        }
        for cmd in ["rm -r x", "rm -f x", "rm x", "rm -- -rf", "rmdir -rf x"] {
            assert_eq!(fit("rm -rf", cmd), Fit::No, "{cmd}");
        }
    }

    #[test]
    fn positionals_in_order() {
        assert_eq!(fit("git push", "git push origin main"), Fit::Yes);
        assert_eq!(fit("git push", "git -C dir push"), Fit::Yes);
        assert_eq!(fit("git push", "git pull"), Fit::No);
        assert_eq!(fit("git push --force", "git push -f"), Fit::Yes);
        assert_eq!(fit("rm -rf /", "rm -rf /tmp"), Fit::No);
        assert_eq!(fit("mkfs*", "mkfs.ext4 /dev/sda"), Fit::Yes);
    }

    #[test]
    fn nonliteral_words_make_a_maybe() {
        let args = vec![Token {
            text: None,
            glob: false,
            offset: 0,
            procsub: None,
        }];
        assert_eq!(
            ArgvPattern::parse("rm -rf").unwrap().fit("rm", &args),
            Fit::Maybe
        );
        assert_eq!(ArgvPattern::parse("rm").unwrap().fit("rm", &args), Fit::Yes);
        assert_eq!(
            ArgvPattern::parse("rm -rf").unwrap().fit("ls", &args),
            Fit::No
        );
    }

    #[test]
    fn pipeline_patterns_parse() {
        assert!(
            matches!(Pattern::parse("curl | bash"), Some(Pattern::Pipeline(p)) if p.len() == 2)
        );
        assert!(matches!(Pattern::parse("sudo"), Some(Pattern::Argv(_))));
        assert_eq!(Pattern::parse("  "), None);
    }
}
