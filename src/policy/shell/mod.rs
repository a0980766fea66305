//! Commands parsed, not grepped: a shell string (or an argv) → every program it would run.
//!
//! # Parser: `brush-parser`
//!
//! Candidates evaluated (2025):
//! - **`brush-parser`** (MIT, pure Rust, the parser of the `brush` shell, released regularly):
//!   bash syntax including `[[ ]]`, `$'…'`, process substitution, coprocesses and heredocs;
//!   a typed AST plus a word parser that splits a word into quoted, escaped and expanded pieces,
//!   which is exactly what resolving `r\m`, `'rm'` and `"r"m` needs. Chosen.
//! - `yash-syntax`: a careful POSIX parser, but GPL-3.0 (clawden is Apache-2.0), async-first
//!   input API, and no bash extensions (`$'…'`, `[[ ]]`, `<(…)`), which agents do write.
//! - `tree-sitter-bash`: a C grammar behind a build script; error-recovering, so a command that
//!   is not valid shell still yields a tree with `ERROR` nodes (we want a hard parse failure to
//!   become `unverifiable`), and words come back as raw source spans with no unquoting.
//! - `conch-parser`: unmaintained since 2018.
//!
//! # What this cannot verify (each becomes an `unverifiable` gap)
//!
//! A program name that is not a literal (variable, parameter, command or process substitution,
//! arithmetic, brace expansion, unquoted glob); `eval`; `source`/`.` of a non-literal file, of a
//! process substitution, or after a download in the same script; a shell reading a heredoc or
//! here-string, or a script file after a download; `sh -c` with a non-literal script;
//! substitutions hidden inside `${x:-…}` or `$((…))`; nesting deeper than [`MAX_DEPTH`]; and
//! anything the parser refuses. Interpreter code (`python -c`, `perl -e`) is not looked into.

pub mod programs;
pub mod word;
mod wrappers;

use brush_parser::ast;
use programs::{basename, is_downloader, is_shell, is_shell_or_interpreter};
use std::io::Cursor;
use word::resolve_word;
use wrappers::Unwrap;

/// How deep `sh -c` scripts, substitutions and wrappers may nest before the rest is unverifiable.
pub const MAX_DEPTH: usize = 8;

/// One argv word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The word as the program would see it; `None` when it depends on run time.
    pub text: Option<String>,
    /// Unquoted glob characters.
    pub glob: bool,
    /// Byte offset in the command string.
    pub offset: usize,
    /// For `<(…)`/`>(…)`: the invocations inside.
    pub procsub: Option<Vec<usize>>,
}

impl Token {
    pub fn literal(s: &str, offset: usize) -> Self {
        Token {
            text: Some(s.to_string()),
            glob: false,
            offset,
            procsub: None,
        }
    }
}

/// One program the command would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Basename of argv[0].
    pub program: String,
    /// argv[1..].
    pub args: Vec<Token>,
    /// A wrapper that only runs its inner command (`env`, `timeout`, `sh -c`): exempt from
    /// `exec.allow`, still matched by deny and approval patterns.
    pub transparent: bool,
    /// Every pipeline stage this invocation is part of: (pipeline, stage index).
    pub stages: Vec<(usize, usize)>,
    pub offset: usize,
}

/// An output redirection (`> FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub target: Token,
}

/// Something the analysis cannot verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub reason: String,
    pub offset: usize,
}

/// Every program, pipeline and output redirection of a command, and what could not be verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    pub invocations: Vec<Invocation>,
    /// Number of stages of each pipeline (indexed by pipeline id).
    pub pipelines: Vec<usize>,
    pub redirects: Vec<Redirect>,
    pub gaps: Vec<Gap>,
    /// Offsets of `$IFS` expansions.
    pub ifs: Vec<usize>,
}

/// Analyse a shell command string. `home` replaces `~` and `$HOME`.
pub fn analyze_shell(script: &str, home: Option<&str>) -> Analysis {
    let mut w = Walker::new(home);
    w.script(script, None, 0);
    w.out
}

/// Analyse an argv run without a shell (`argv[0]` is the program).
pub fn analyze_argv(argv: &[String], home: Option<&str>) -> Analysis {
    let mut w = Walker::new(home);
    let mut offset = 0;
    let tokens = argv
        .iter()
        .map(|a| {
            let t = Token::literal(a, offset);
            offset += a.len() + 1;
            t
        })
        .collect();
    let pid = w.new_pipeline(1);
    w.stages.push((pid, 0));
    w.chain(tokens, None, 0);
    w.out
}

/// What a command's stdin is fed from, when that matters (a shell reading its script).
enum Stdin {
    Heredoc { doc: String, expands: bool },
    HereString(Token),
}

struct Walker<'a> {
    home: Option<&'a str>,
    out: Analysis,
    /// Pipeline stages enclosing the current position.
    stages: Vec<(usize, usize)>,
    /// Inside a nested script every offset is the offset of the word it came from.
    nested_at: Option<usize>,
    downloaded: bool,
}

impl<'a> Walker<'a> {
    fn new(home: Option<&'a str>) -> Self {
        Walker {
            home,
            out: Analysis::default(),
            stages: Vec::new(),
            nested_at: None,
            downloaded: false,
        }
    }

    fn gap(&mut self, offset: usize, reason: impl Into<String>) {
        self.out.gaps.push(Gap {
            reason: reason.into(),
            offset,
        });
    }

    fn new_pipeline(&mut self, stages: usize) -> usize {
        self.out.pipelines.push(stages);
        self.out.pipelines.len() - 1
    }

    fn offset_of(&self, loc: Option<&brush_parser::SourceSpan>) -> usize {
        match self.nested_at {
            Some(at) => at,
            None => loc.map(|l| l.start.index).unwrap_or(0),
        }
    }

    /// Parse and walk a script. `at` is the offset of the word it came from (nested scripts).
    fn script(&mut self, text: &str, at: Option<usize>, depth: usize) {
        let here = at.unwrap_or(0);
        if depth > MAX_DEPTH {
            self.gap(
                here,
                format!("nested deeper than {MAX_DEPTH} levels; not followed"),
            );
            return;
        }
        let parsed = std::panic::catch_unwind(|| {
            brush_parser::Parser::new(Cursor::new(text.as_bytes()), &word::options())
                .parse_program()
        });
        let program = match parsed {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                self.gap(here, format!("the shell parser refused it: {e}"));
                return;
            }
            Err(_) => {
                self.gap(here, "the shell parser failed on it");
                return;
            }
        };
        let saved = self.nested_at;
        if at.is_some() {
            self.nested_at = at;
        }
        for cc in &program.complete_commands {
            self.list(cc, depth);
        }
        self.nested_at = saved;
    }

    fn list(&mut self, l: &ast::CompoundList, depth: usize) {
        for ast::CompoundListItem(ao, _) in &l.0 {
            self.pipeline(&ao.first, depth);
            for next in &ao.additional {
                match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p, depth),
                }
            }
        }
    }

    fn pipeline(&mut self, p: &ast::Pipeline, depth: usize) {
        let pid = self.new_pipeline(p.seq.len());
        for (i, c) in p.seq.iter().enumerate() {
            self.stages.push((pid, i));
            self.command(c, depth);
            self.stages.pop();
        }
    }

    fn command(&mut self, c: &ast::Command, depth: usize) {
        match c {
            ast::Command::Simple(s) => self.simple(s, depth),
            ast::Command::Compound(cc, redirects) => {
                self.compound(cc, depth);
                for r in redirects.iter().flat_map(|r| r.0.iter()) {
                    self.redirect(r, depth);
                }
            }
            // A function's body may run later under its name: walk it as if it ran here.
            ast::Command::Function(f) => self.compound(&f.body.0, depth),
            ast::Command::ExtendedTest(t, redirects) => {
                self.test_expr(&t.expr, depth);
                for r in redirects.iter().flat_map(|r| r.0.iter()) {
                    self.redirect(r, depth);
                }
            }
        }
    }

    fn test_expr(&mut self, e: &ast::ExtendedTestExpr, depth: usize) {
        use ast::ExtendedTestExpr as E;
        match e {
            E::And(a, b) | E::Or(a, b) => {
                self.test_expr(a, depth);
                self.test_expr(b, depth);
            }
            E::Not(a) | E::Parenthesized(a) => self.test_expr(a, depth),
            E::UnaryTest(_, w) => {
                self.word(w, depth);
            }
            E::BinaryTest(_, a, b) => {
                self.word(a, depth);
                self.word(b, depth);
            }
        }
    }

    fn compound(&mut self, c: &ast::CompoundCommand, depth: usize) {
        use ast::CompoundCommand as C;
        match c {
            C::Arithmetic(a) => self.arith(&a.expr.value, self.offset_of(Some(&a.loc))),
            C::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater]
                    .into_iter()
                    .flatten()
                {
                    self.arith(&e.value, self.offset_of(Some(&f.loc)));
                }
                self.list(&f.body.list, depth);
            }
            C::BraceGroup(b) => self.list(&b.list, depth),
            C::Subshell(s) => self.list(&s.list, depth),
            C::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word(w, depth);
                }
                self.list(&f.body.list, depth);
            }
            C::CaseClause(c) => {
                self.word(&c.value, depth);
                for item in &c.cases {
                    for w in &item.patterns {
                        self.word(w, depth);
                    }
                    if let Some(l) = &item.cmd {
                        self.list(l, depth);
                    }
                }
            }
            C::IfClause(i) => {
                self.list(&i.condition, depth);
                self.list(&i.then, depth);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        self.list(c, depth);
                    }
                    self.list(&e.body, depth);
                }
            }
            C::WhileClause(w) | C::UntilClause(w) => {
                self.list(&w.0, depth);
                self.list(&w.1.list, depth);
            }
            C::Coprocess(c) => self.command(&c.body, depth),
        }
    }

    fn arith(&mut self, expr: &str, offset: usize) {
        if expr.contains("$(") || expr.contains('`') {
            self.gap(offset, "a command substitution inside arithmetic");
        }
    }

    /// Resolve a word; the substitutions inside it run as scripts of their own.
    fn word(&mut self, w: &ast::Word, depth: usize) -> Token {
        let offset = self.offset_of(w.loc.as_ref());
        let r = resolve_word(&w.value, self.home);
        if r.ifs {
            self.out.ifs.push(offset);
        }
        if r.hidden_script {
            self.gap(
                offset,
                format!("a substitution inside an expansion in {:?}", w.value),
            );
        }
        for s in &r.scripts {
            // A substitution's output is not a pipeline stage of the command around it.
            let saved = std::mem::take(&mut self.stages);
            self.script(s, Some(offset), depth + 1);
            self.stages = saved;
        }
        Token {
            text: r.text,
            glob: r.glob,
            offset,
            procsub: None,
        }
    }

    fn procsub(&mut self, s: &ast::SubshellCommand, depth: usize) -> Token {
        let offset = self.offset_of(Some(&s.loc));
        let first = self.out.invocations.len();
        let saved = std::mem::take(&mut self.stages);
        self.list(&s.list, depth + 1);
        self.stages = saved;
        Token {
            text: None,
            glob: false,
            offset,
            procsub: Some((first..self.out.invocations.len()).collect()),
        }
    }

    fn redirect(&mut self, r: &ast::IoRedirect, depth: usize) -> Option<Stdin> {
        use ast::{IoFileRedirectKind as K, IoFileRedirectTarget as T, IoRedirect as R};
        match r {
            R::File(_, kind, target) => {
                match target {
                    T::Filename(w) => {
                        let t = self.word(w, depth);
                        if matches!(kind, K::Write | K::Append | K::Clobber | K::ReadAndWrite) {
                            self.out.redirects.push(Redirect { target: t });
                        }
                    }
                    T::ProcessSubstitution(_, s) => {
                        self.procsub(s, depth);
                    }
                    T::Duplicate(w) => {
                        self.word(w, depth);
                    }
                    T::Fd(_) => {}
                }
                None
            }
            R::HereDocument(_, h) => Some(Stdin::Heredoc {
                doc: h.doc.value.clone(),
                expands: h.requires_expansion,
            }),
            R::HereString(_, w) => Some(Stdin::HereString(self.word(w, depth))),
            R::OutputAndError(w, _) => {
                let t = self.word(w, depth);
                self.out.redirects.push(Redirect { target: t });
                None
            }
        }
    }

    fn simple(&mut self, s: &ast::SimpleCommand, depth: usize) {
        use ast::CommandPrefixOrSuffixItem as I;
        let mut tokens = Vec::new();
        let mut stdin = None;
        for item in s.prefix.iter().flat_map(|p| p.0.iter()) {
            match item {
                I::IoRedirect(r) => {
                    if let Some(feed) = self.redirect(r, depth) {
                        stdin = Some(feed);
                    }
                }
                I::AssignmentWord(_, w) | I::Word(w) => {
                    self.word(w, depth);
                }
                I::ProcessSubstitution(_, sub) => {
                    self.procsub(sub, depth);
                }
            }
        }
        if let Some(w) = &s.word_or_name {
            tokens.push(self.word(w, depth));
        }
        for item in s.suffix.iter().flat_map(|p| p.0.iter()) {
            match item {
                I::IoRedirect(r) => {
                    if let Some(feed) = self.redirect(r, depth) {
                        stdin = Some(feed);
                    }
                }
                I::AssignmentWord(_, w) | I::Word(w) => tokens.push(self.word(w, depth)),
                I::ProcessSubstitution(_, sub) => tokens.push(self.procsub(sub, depth)),
            }
        }
        self.chain(tokens, stdin, depth);
    }

    /// Record the program of `argv` and follow whatever it runs in turn.
    fn chain(&mut self, mut argv: Vec<Token>, stdin: Option<Stdin>, mut depth: usize) {
        loop {
            if argv.is_empty() {
                return;
            }
            if depth > MAX_DEPTH {
                self.gap(
                    argv[0].offset,
                    format!("wrappers nested deeper than {MAX_DEPTH} levels; not followed"),
                );
                return;
            }
            let head = argv.remove(0);
            let Some(name) = head.text.clone() else {
                self.gap(
                    head.offset,
                    "the program name is not a literal (a variable, substitution or expansion)",
                );
                return;
            };
            if head.glob {
                self.gap(
                    head.offset,
                    format!("the program name {name:?} is a glob pattern"),
                );
                return;
            }
            let program = basename(&name).to_string();
            if program.is_empty() {
                return;
            }
            let idx = self.out.invocations.len();
            self.out.invocations.push(Invocation {
                program: program.clone(),
                args: argv.clone(),
                transparent: false,
                stages: self.stages.clone(),
                offset: head.offset,
            });
            self.feeds(idx, &program, &argv);
            let unwrap = wrappers::unwrap(&program, &argv);
            if is_shell_or_interpreter(&program) {
                self.stdin_script(&program, &unwrap, stdin.as_ref(), head.offset, depth);
            }
            if is_downloader(&program) {
                self.downloaded = true;
            }
            match unwrap {
                Unwrap::None | Unwrap::ScriptStdin => return,
                Unwrap::Inner { start, transparent } => {
                    self.out.invocations[idx].transparent = transparent;
                    argv.drain(..start);
                    depth += 1;
                }
                Unwrap::Inners(ranges) => {
                    for (a, b) in ranges {
                        self.chain(argv[a..b].to_vec(), None, depth + 1);
                    }
                    return;
                }
                Unwrap::Script(i) => {
                    self.out.invocations[idx].transparent = true;
                    match argv[i].text.clone() {
                        Some(s) => self.script(&s, Some(argv[i].offset), depth + 1),
                        None => self.gap(
                            argv[i].offset,
                            format!("the script given to {program} is not a literal"),
                        ),
                    }
                    return;
                }
                Unwrap::ScriptFile(i) => {
                    if argv[i].text.is_none() || self.downloaded {
                        self.gap(
                            argv[i].offset,
                            format!("{program} runs a script file that cannot be checked"),
                        );
                    }
                    return;
                }
                Unwrap::Eval => {
                    self.gap(head.offset, "eval runs text as a command");
                    let joined: Option<Vec<String>> = argv.iter().map(|t| t.text.clone()).collect();
                    if let Some(parts) = joined {
                        self.script(&parts.join(" "), Some(head.offset), depth + 1);
                    }
                    return;
                }
                Unwrap::Source(arg) => {
                    let checkable = arg
                        .and_then(|i| argv[i].text.as_ref())
                        .is_some_and(|_| !self.downloaded);
                    if !checkable {
                        self.gap(
                            head.offset,
                            format!("{program} reads commands from a file that cannot be checked"),
                        );
                    }
                    return;
                }
            }
        }
    }

    /// A shell or interpreter fed a script on stdin by a heredoc or here-string.
    fn stdin_script(
        &mut self,
        program: &str,
        unwrap: &Unwrap,
        stdin: Option<&Stdin>,
        offset: usize,
        depth: usize,
    ) {
        let reads_stdin = !is_shell(program) || matches!(unwrap, Unwrap::ScriptStdin);
        let Some(feed) = stdin.filter(|_| reads_stdin) else {
            return;
        };
        self.gap(
            offset,
            format!("{program} reads its script from a heredoc or here-string"),
        );
        if !is_shell(program) {
            return;
        }
        // Still look inside, so a denied command in it is denied rather than asked about.
        let body = match feed {
            Stdin::Heredoc { doc, expands } if !*expands || !doc.contains(['$', '`']) => {
                Some(doc.clone())
            }
            Stdin::HereString(t) => t.text.clone(),
            _ => None,
        };
        if let Some(b) = body {
            self.script(&b, Some(offset), depth + 1);
        }
    }

    /// `bash <(curl …)`: a process substitution feeding a shell is a pipeline in disguise.
    fn feeds(&mut self, idx: usize, program: &str, args: &[Token]) {
        if !is_shell_or_interpreter(program) && program != "source" && program != "." {
            return;
        }
        for t in args {
            let Some(inner) = &t.procsub else { continue };
            if inner.is_empty() {
                continue;
            }
            let pid = self.new_pipeline(2);
            for &i in inner {
                self.out.invocations[i].stages.push((pid, 0));
            }
            self.out.invocations[idx].stages.push((pid, 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs(s: &str) -> Vec<String> {
        analyze_shell(s, Some("/home/u"))
            .invocations
            .iter()
            .map(|i| i.program.clone())
            .collect()
    }

    #[test]
    fn every_simple_command_of_every_construct() {
        assert_eq!(
            programs("a | b && c || d; e & f"),
            ["a", "b", "c", "d", "e", "f"]
        );
        assert_eq!(programs("(a; { b; })"), ["a", "b"]);
        assert_eq!(
            programs("if a; then b; elif c; then d; else e; fi"),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(
            programs("while a; do b; done; until c; do d; done"),
            ["a", "b", "c", "d"]
        );
        assert_eq!(programs("for x in 1 2; do a; done"), ["a"]);
        assert_eq!(programs("case x in y) a;; *) b;; esac"), ["a", "b"]);
        // Substitutions run before the command around them.
        assert_eq!(programs("echo $(a | b) `c`"), ["a", "b", "c", "echo"]);
        assert_eq!(programs("diff <(a) <(b)"), ["a", "b", "diff"]);
        assert_eq!(programs("f() { a; }; f"), ["a", "f"]);
        assert_eq!(programs("X=$(a) b"), ["a", "b"]);
    }

    #[test]
    fn wrappers_are_unwrapped() {
        assert_eq!(programs("env -i A=1 -u B sudo ls"), ["env", "sudo", "ls"]);
        assert_eq!(
            programs("timeout -s KILL 5 nice -n 5 nohup x"),
            ["timeout", "nice", "nohup", "x"]
        );
        assert_eq!(programs("sh -c 'bash -lc \"rm x\"'"), ["sh", "bash", "rm"]);
        assert_eq!(
            programs("find . -name x -exec rm {} \\; -exec ls +"),
            ["find", "rm", "ls"]
        );
        assert_eq!(programs("xargs -0 -n 1 rm"), ["xargs", "rm"]);
        assert_eq!(
            programs("command -p sudo x; command -v sudo"),
            ["command", "sudo", "x", "command"]
        );
        assert_eq!(programs("exec -a n /usr/bin/sudo x"), ["exec", "sudo", "x"]);
        assert_eq!(
            programs("\\sudo x; /bin/../bin/sudo y"),
            ["sudo", "x", "sudo", "y"]
        );
        assert_eq!(programs("env -S 'sudo x'"), ["env", "sudo", "x"]);
        assert_eq!(programs("busybox rm x"), ["busybox", "rm"]);
    }

    #[test]
    fn gaps() {
        let gaps = |s: &str| analyze_shell(s, None).gaps.len();
        for s in [
            "$X foo",
            "$(echo rm) -rf /",
            "eval ls",
            "source $F",
            "curl x -o f; . f",
            "echo 'unterminated",
            "sh -c \"$S\"",
            "bash <<EOF\nls\nEOF",
            "s?do ls",
        ] {
            assert!(gaps(s) > 0, "{s}");
        }
        for s in [
            "ls -la",
            "git status && echo ok",
            "source ./env.sh",
            "bash run.sh",
        ] {
            assert_eq!(gaps(s), 0, "{s}");
        }
    }

    #[test]
    fn pipeline_stages() {
        let a = analyze_shell("curl x | tee f | (cd /; sudo bash)", None);
        let stage = |p: &str| {
            a.invocations
                .iter()
                .find(|i| i.program == p)
                .map(|i| i.stages.clone())
                .unwrap()
        };
        assert_eq!(stage("curl"), [(0, 0)]);
        assert!(stage("bash").contains(&(0, 2)), "{:?}", stage("bash"));
        let b = analyze_shell("bash <(curl x)", None);
        let (curl, bash) = (&b.invocations[0], &b.invocations[1]);
        assert_eq!(
            (curl.program.as_str(), bash.program.as_str()),
            ("curl", "bash")
        );
        assert!(
            bash.stages
                .iter()
                .any(|&(p, i)| i == 1 && curl.stages.contains(&(p, 0)))
        );
    }
}
