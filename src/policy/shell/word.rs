//! One shell word → the text the shell would hand the program, when that text is knowable
//! without running anything: quotes removed, escapes resolved, `~` replaced by the home given
//! in the session context. Anything that depends on run time (parameters, command and process
//! substitutions, arithmetic, brace expansion) makes the word non-literal.

use brush_parser::ParserOptions;
use brush_parser::word::{TildeExpr, WordPiece, WordPieceWithSource};

/// What one word resolves to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedWord {
    /// The literal text, or `None` when it depends on run time.
    pub text: Option<String>,
    /// Unquoted glob characters (`*`, `?`, `[`): the word may become several or other words.
    pub glob: bool,
    /// Command substitutions inside the word (`$(…)`, backquotes): scripts that run too.
    pub scripts: Vec<String>,
    /// A substitution the analysis cannot follow (inside `${x:-…}` or `$((…))`).
    pub hidden_script: bool,
    /// A `$IFS` expansion (an injection shape).
    pub ifs: bool,
}

pub(crate) fn options() -> ParserOptions {
    ParserOptions {
        tilde_expansion_at_word_start: true,
        ..ParserOptions::default()
    }
}

/// Resolve a raw word as the shell would, as far as that is possible without running anything.
pub fn resolve_word(raw: &str, home: Option<&str>) -> ResolvedWord {
    let mut out = ResolvedWord::default();
    let pieces = match brush_parser::word::parse(raw, &options()) {
        Ok(p) => p,
        Err(_) => return out,
    };
    let mut text = Some(String::new());
    for p in &pieces {
        piece(&p.piece, false, home, &mut text, &mut out);
    }
    out.text = text;
    out
}

fn push(text: &mut Option<String>, s: &str) {
    if let Some(t) = text {
        t.push_str(s);
    }
}

fn piece(
    p: &WordPiece,
    quoted: bool,
    home: Option<&str>,
    text: &mut Option<String>,
    out: &mut ResolvedWord,
) {
    match p {
        WordPiece::Text(s) => {
            if !quoted {
                if s.contains(['*', '?', '[']) {
                    out.glob = true;
                }
                if is_brace_expansion(s) {
                    *text = None;
                }
            }
            push(text, s);
        }
        WordPiece::SingleQuotedText(s) => push(text, s),
        WordPiece::AnsiCQuotedText(s) => match decode_ansi_c(s) {
            Some(d) => push(text, &d),
            None => *text = None,
        },
        WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
            for WordPieceWithSource { piece: q, .. } in inner {
                piece(q, true, home, text, out);
            }
        }
        WordPiece::TildeExpansion(t) => match (t, home) {
            (TildeExpr::Home, Some(h)) => push(text, h),
            (TildeExpr::Home, None) => push(text, "~"),
            (TildeExpr::UserHome(u), _) => push(text, &format!("~{u}")),
            _ => *text = None,
        },
        WordPiece::ParameterExpansion(e) => {
            let dbg = format!("{e:?}");
            if dbg.contains("Named(\"IFS\")") {
                out.ifs = true;
            }
            if dbg.contains("$(") || dbg.contains('`') {
                out.hidden_script = true;
            }
            // `$HOME` on its own is the home directory: resolving it keeps `rm -rf $HOME` a
            // recursive removal of home rather than an unknown target.
            let plain_home = matches!(
                e,
                brush_parser::word::ParameterExpr::Parameter {
                    parameter: brush_parser::word::Parameter::Named(n),
                    indirect: false,
                } if n == "HOME"
            );
            match (plain_home, home) {
                (true, Some(h)) => push(text, h),
                _ => *text = None,
            }
        }
        WordPiece::CommandSubstitution(s) => {
            out.scripts.push(s.clone());
            *text = None;
        }
        WordPiece::BackquotedCommandSubstitution(s) => {
            out.scripts.push(unescape_backquoted(s));
            *text = None;
        }
        WordPiece::EscapeSequence(e) => {
            // `\x` is `x`; a backslash-newline is a line continuation and vanishes.
            let rest = e.strip_prefix('\\').unwrap_or(e);
            if rest != "\n" {
                push(text, rest);
            }
        }
        WordPiece::ArithmeticExpression(e) => {
            if e.value.contains("$(") || e.value.contains('`') {
                out.hidden_script = true;
            }
            *text = None;
        }
    }
}

/// `{a,b}` or `{1..3}` outside quotes: the shell turns one word into several.
fn is_brace_expansion(s: &str) -> bool {
    let Some(open) = s.find('{') else {
        return false;
    };
    let Some(close) = s[open..].find('}') else {
        return false;
    };
    let inner = &s[open + 1..open + close];
    inner.contains(',') || inner.contains("..")
}

/// Inside backquotes a backslash quotes only `$`, `` ` `` and `\`.
fn unescape_backquoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && matches!(n, '$' | '`' | '\\')
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// Decode the body of `$'…'` (bash's ANSI-C quoting). `None` for escapes it does not know, so
/// an unusual spelling is never mistaken for a known one.
pub fn decode_ansi_c(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'e' | 'E' => Some('\x1b'),
            'f' => Some('\x0c'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '\'' => Some('\''),
            '"' => Some('"'),
            '?' => Some('?'),
            _ => None,
        };
        if let Some(ch) = simple {
            out.push(ch);
            continue;
        }
        let (radix, max) = match e {
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            '0'..='7' => (8, 2),
            _ => return None,
        };
        let mut digits = String::new();
        if radix == 8 {
            digits.push(e);
        }
        while digits.len() < max + usize::from(radix == 8) {
            match chars.peek() {
                Some(d) if d.is_digit(radix) => {
                    digits.push(*d);
                    chars.next();
                }
                _ => break,
            }
        }
        if digits.is_empty() {
            return None;
        }
        let v = u32::from_str_radix(&digits, radix).ok()?;
        out.push(char::from_u32(v)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(raw: &str) -> Option<String> {
        resolve_word(raw, Some("/home/u")).text
    }

    #[test]
    fn quoting_and_escapes_resolve_as_the_shell_would() {
        assert_eq!(lit(r"r\m").as_deref(), Some("rm"));
        assert_eq!(lit("'rm'").as_deref(), Some("rm"));
        assert_eq!(lit("\"r\"m").as_deref(), Some("rm"));
        assert_eq!(lit(r#""r\m""#).as_deref(), Some(r"r\m"));
        assert_eq!(lit(r#""\$x""#).as_deref(), Some("$x"));
        assert_eq!(lit("$'\\x72m'").as_deref(), Some("rm"));
        assert_eq!(lit("$'\\162m'").as_deref(), Some("rm"));
        assert_eq!(lit("$'\\u0072m'").as_deref(), Some("rm"));
        assert_eq!(lit("~/x").as_deref(), Some("/home/u/x"));
        assert_eq!(lit("$HOME").as_deref(), Some("/home/u"));
        assert_eq!(lit("r\\\nm").as_deref(), Some("rm"));
    }

    #[test]
    fn run_time_words_are_not_literal() {
        for w in [
            "$x",
            "${x}",
            "$(echo rm)",
            "`echo rm`",
            "$((1))",
            "{r,}m",
            "r{m,x}",
        ] {
            assert_eq!(lit(w), None, "{w}");
        }
        assert_eq!(resolve_word("$(id)", None).scripts, ["id"]);
        assert_eq!(resolve_word("`echo \\`id\\``", None).scripts, ["echo `id`"]);
        assert!(resolve_word("${IFS}", None).ifs);
        assert!(resolve_word("${x:-$(id)}", None).hidden_script);
        assert!(resolve_word("/usr/bin/su?o", None).glob);
        assert!(!resolve_word("'su?o'", None).glob);
    }

    #[test]
    fn unknown_ansi_c_escapes_are_refused() {
        assert_eq!(decode_ansi_c("\\q"), None);
        assert_eq!(decode_ansi_c("\\x"), None);
        assert_eq!(decode_ansi_c("a\\tb").as_deref(), Some("a\tb"));
    }
}
