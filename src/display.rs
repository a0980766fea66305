//! Human output of values a sandbox (or anyone but the operator) controls: session keys, scope
//! keys, container names, paths, file names (security.md, principle 8). Rendered with every
//! character that can steer a terminal or hide text escaped, so an OSC 52 clipboard write, a
//! cursor move, a carriage return that overprints a line, or a bidi override that reorders it
//! never reaches the operator's terminal as such. JSON output is never escaped this way: serde
//! writes exact JSON.
//!
//! Escaped: C0 controls and DEL (`\x1b`, with `\n`, `\r`, `\t` short forms), C1 controls,
//! bidi embeddings/overrides/isolates and marks (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
//! U+061C), zero-width and invisible characters (U+200B–U+200D, U+2060–U+2064, U+FEFF, U+00AD,
//! U+180E), line/paragraph separators (U+2028, U+2029) — as `\u{202e}` — and the backslash
//! itself (`\\`), so an escape in the output is always one that clawden wrote.

use std::borrow::Cow;

fn needs_escape(c: char) -> bool {
    matches!(c,
        '\\'
        | '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{ad}'
        | '\u{61c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}'
    )
}

/// `s` with control, bidi and invisible characters escaped (borrowed when there are none).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] of a path (lossy: for humans; JSON keeps the exact value).
pub fn escape_path(p: &std::path::Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

/// `"value"` with [`escape`] applied inside the quotes (and `"` escaped).
pub fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s).replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn terminal_attacks_are_escaped() {
        let cases = [
            ("plain/path name", "plain/path name"),
            ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),
            ("ok\rFAKE", "ok\\rFAKE"),
            ("a\nb\tc", "a\\nb\\tc"),
            ("txt.\u{202e}exe", "txt.\\u{202e}exe"),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
            ("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}"),
            ("del\x7f c1\u{9b}", "del\\x7f c1\\u{9b}"),
            ("back\\slash", "back\\\\slash"),
            ("ünïcödé 日本", "ünïcödé 日本"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
        assert!(matches!(escape("clean"), Cow::Borrowed(_)));
        assert_eq!(quote("a\"\x1b"), "\"a\\\"\\x1b\"");
    }

    proptest! {
        /// Whatever goes in, nothing that can steer a terminal comes out.
        #[test]
        fn output_is_inert(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(!e.chars().any(|c| needs_escape(c) && c != '\\'), "{:?}", e);
        }
    }
}
