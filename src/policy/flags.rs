//! Flags: characters that hide what a request says, and injection shapes.

use super::shell::Analysis;
use super::shell::programs::is_shell_or_interpreter;
use super::types::{Flag, FlagClass, Severity};

/// A run of at least this many spaces or tabs followed by another command hides that command
/// off the edge of a terminal or approval prompt.
pub const HIDDEN_RUN: usize = 16;

fn flag(
    code: &'static str,
    class: FlagClass,
    severity: Severity,
    offset: usize,
    detail: String,
) -> Flag {
    Flag {
        code,
        class,
        severity,
        offset,
        detail,
    }
}

/// Control characters (C0/C1 but tab and newline), ANSI escapes, bidi overrides, zero-width
/// characters and NUL, each with its byte offset.
pub fn character_flags(text: &str) -> Vec<Flag> {
    use FlagClass::ControlCharacters as C;
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let u = c as u32;
        let f = match c {
            '\0' => Some(("nul", Severity::High, "NUL byte".to_string())),
            '\x1b' => {
                let csi = chars
                    .peek()
                    .is_some_and(|(_, n)| matches!(n, '[' | ']' | '(' | 'P'));
                Some((
                    "ansi_escape",
                    Severity::High,
                    if csi {
                        "ANSI escape sequence".to_string()
                    } else {
                        "ESC character".to_string()
                    },
                ))
            }
            '\t' | '\n' => None,
            _ if u < 0x20 || u == 0x7f => Some((
                "control_character",
                Severity::Medium,
                format!("control character U+{u:04X}"),
            )),
            _ if (0x80..=0x9f).contains(&u) => Some((
                "control_character",
                Severity::Medium,
                format!("C1 control character U+{u:04X}"),
            )),
            '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{061c}' => Some((
                "bidi_override",
                Severity::High,
                format!("bidirectional control U+{u:04X}"),
            )),
            '\u{200b}'..='\u{200d}'
            | '\u{2060}'..='\u{2064}'
            | '\u{feff}'
            | '\u{180e}'
            | '\u{00ad}' => Some((
                "zero_width",
                Severity::Medium,
                format!("zero-width character U+{u:04X}"),
            )),
            _ => None,
        };
        if let Some((code, sev, detail)) = f {
            out.push(flag(code, C, sev, i, detail));
        }
    }
    out
}

/// Injection shapes in a command: a carriage return, a command hidden after a long run of
/// blanks, `$IFS` expansions, and a decoded payload piped into a shell or interpreter.
pub fn injection_flags(text: &str, analysis: Option<&Analysis>) -> Vec<Flag> {
    use FlagClass::Injection as I;
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if c == '\r' && !text[i + 1..].starts_with('\n') {
            out.push(flag(
                "carriage_return",
                I,
                Severity::High,
                i,
                "a carriage return rewinds the line: what follows overwrites what a reviewer sees"
                    .into(),
            ));
        }
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' || bytes[i] == b'\t' {
            let start = i;
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            let rest = text[i..].trim_start();
            if i - start >= HIDDEN_RUN
                && !rest.is_empty()
                && rest.contains([';', '&', '|', '\n', '`', '$'])
            {
                out.push(flag(
                    "hidden_after_spaces",
                    I,
                    Severity::High,
                    start,
                    format!("{} blanks, then more commands", i - start),
                ));
            }
        } else {
            i += 1;
        }
    }
    if let Some(a) = analysis {
        for &o in &a.ifs {
            out.push(flag(
                "ifs_expansion",
                I,
                Severity::Medium,
                o,
                "$IFS used to build words".into(),
            ));
        }
        out.extend(decoded_payloads(a));
    }
    out
}

/// `base64 -d | sh`, `xxd -r -p | bash`, `openssl base64 -d | python3`.
fn decoded_payloads(a: &Analysis) -> Vec<Flag> {
    let decodes = |inv: &super::shell::Invocation| {
        let words: Vec<&str> = inv.args.iter().filter_map(|t| t.text.as_deref()).collect();
        let has = |f: &str| {
            words.iter().any(|w| {
                *w == f
                    || (w.starts_with('-')
                        && !w.starts_with("--")
                        && f.len() == 2
                        && w.contains(&f[1..]))
            })
        };
        match inv.program.as_str() {
            "base64" | "base32" | "basenc" => has("-d") || has("--decode") || has("-D"),
            "xxd" => has("-r"),
            "openssl" => has("-d") || has("-a") && has("-d"),
            "uudecode" | "gunzip" | "zcat" | "bunzip2" | "xz" | "unxz" => true,
            _ => false,
        }
    };
    let mut out = Vec::new();
    for d in a.invocations.iter().filter(|i| decodes(i)) {
        for &(pid, si) in &d.stages {
            let fed = a.invocations.iter().any(|s| {
                is_shell_or_interpreter(&s.program)
                    && s.stages.iter().any(|&(p, j)| p == pid && j > si)
            });
            if fed {
                out.push(flag(
                    "decoded_payload_to_shell",
                    FlagClass::Injection,
                    Severity::High,
                    d.offset,
                    format!("{} output is piped into a shell or interpreter", d.program),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(fs: &[Flag]) -> Vec<&'static str> {
        fs.iter().map(|f| f.code).collect()
    }

    #[test]
    fn characters() {
        assert_eq!(codes(&character_flags("ls\tx\n")), Vec::<&str>::new());
        assert_eq!(codes(&character_flags("a\0b")), ["nul"]);
        assert_eq!(character_flags("ab\u{202e}")[0].offset, 2);
        assert_eq!(codes(&character_flags("\x1b[31m")), ["ansi_escape"]);
        assert_eq!(codes(&character_flags("a\u{200b}")), ["zero_width"]);
        assert_eq!(codes(&character_flags("a\u{85}")), ["control_character"]);
        assert_eq!(codes(&character_flags("a\x07")), ["control_character"]);
    }

    #[test]
    fn injections() {
        let a = super::super::shell::analyze_shell("echo aGk= | base64 -d | sh", None);
        assert_eq!(
            codes(&injection_flags("", Some(&a))),
            ["decoded_payload_to_shell"]
        );
        let text = format!("ls{}; rm x", " ".repeat(40));
        assert_eq!(
            codes(&injection_flags(&text, None)),
            ["hidden_after_spaces"]
        );
        assert_eq!(
            codes(&injection_flags("ls\r rm", None)),
            ["carriage_return"]
        );
        assert!(injection_flags("a\r\nb", None).is_empty());
        assert!(injection_flags("printf '%s          x'", None).is_empty());
    }
}
