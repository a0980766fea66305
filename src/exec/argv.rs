//! `clawden exec -- WORDS…` → the one shell string every call runs as `/bin/sh -c <command>`.
//!
//! One word is the shell string itself (`exec -- 'echo hi; exit 3'`). Several words are an argv:
//! each is single-quoted for the shell and the results are joined with spaces, so
//! `exec -- sh -c 'echo hi'` runs `sh` with the arguments `-c` and `echo hi` — not `sh -c echo hi`,
//! the pitfall of joining words with bare spaces (as ssh does).

/// The shell string for the words after `--`.
pub fn command_from_words(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        _ => words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `w` as one POSIX shell word: inside single quotes nothing is special, and an embedded `'`
/// closes the quotes, adds an escaped quote and reopens them (`'\''`). The empty word is `''`.
pub fn shell_quote(w: &str) -> String {
    let mut out = String::with_capacity(w.len() + 2);
    out.push('\'');
    for c in w.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn quoting_table() {
        let table = [
            ("", "''"),
            ("plain", "'plain'"),
            ("two words", "'two words'"),
            ("it's", r"'it'\''s'"),
            ("''", r"''\'''\'''"),
            ("$HOME `id` $(id) \\ \"q\"", "'$HOME `id` $(id) \\ \"q\"'"),
            ("line1\nline2", "'line1\nline2'"),
            ("*?[a]~ ;&|<>#", "'*?[a]~ ;&|<>#'"),
        ];
        for (w, want) in table {
            assert_eq!(shell_quote(w), want, "{w:?}");
        }
    }

    #[test]
    fn one_word_is_a_shell_string_several_are_an_argv() {
        assert_eq!(
            command_from_words(&words(&["echo hi; exit 3"])),
            "echo hi; exit 3"
        );
        assert_eq!(
            command_from_words(&words(&["sh", "-c", "echo hi"])),
            "'sh' '-c' 'echo hi'"
        );
        assert_eq!(
            command_from_words(&words(&["printf", "[%s]\n", "", "a'b"])),
            "'printf' '[%s]\n' '' 'a'\\''b'"
        );
    }

    /// What /bin/sh makes of the quoted words is the words themselves (checked with the real
    /// shell: `printf '%s\0'` prints each argument NUL-terminated).
    #[test]
    fn the_shell_gets_back_the_same_argv() {
        let argv = words(&[
            "printf",
            "%s\\0",
            "",
            "two words",
            "it's",
            "$HOME",
            "a\nb",
            "'",
            "\"",
            "\\",
            "*",
            "-n",
        ]);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command_from_words(&argv))
            .env_clear()
            .output()
            .expect("run /bin/sh");
        assert!(out.status.success(), "{out:?}");
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        // printf reuses the format for every argument; the output ends with a NUL.
        let mut want: Vec<String> = argv[2..].to_vec();
        want.push(String::new());
        assert_eq!(got, want);
    }
}
