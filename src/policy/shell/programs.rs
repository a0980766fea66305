//! Classes of programs the rules talk about: shells, interpreters, download tools.

/// Shells: `curl | sh`, `sh -c SCRIPT`, heredocs fed to them.
pub const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "fish", "csh", "tcsh", "yash",
    "rbash",
];

/// Interpreters that run a program read from stdin (a pipeline's target, like a shell).
pub const INTERPRETERS: &[&str] = &[
    "perl",
    "ruby",
    "node",
    "nodejs",
    "php",
    "lua",
    "tclsh",
    "deno",
    "bun",
    "pwsh",
    "Rscript",
    "osascript",
    "irb",
    "jshell",
];

/// Tools that fetch data from the network.
pub const DOWNLOADERS: &[&str] = &[
    "curl",
    "wget",
    "wget2",
    "fetch",
    "aria2c",
    "axel",
    "http",
    "https",
    "xh",
    "lwp-download",
    "lwp-request",
    "GET",
    "tftp",
    "ftp",
];

pub fn is_shell(p: &str) -> bool {
    SHELLS.contains(&p)
}

/// Shells, interpreters, and `python*` (every version suffix).
pub fn is_shell_or_interpreter(p: &str) -> bool {
    is_shell(p)
        || INTERPRETERS.contains(&p)
        || p.starts_with("python")
        || p.starts_with("pypy")
        || (p.starts_with("perl") && p[4..].chars().all(|c| c.is_ascii_digit() || c == '.'))
}

pub fn is_downloader(p: &str) -> bool {
    DOWNLOADERS.contains(&p)
}

/// `basename` of a program word: `/usr/bin/sudo`, `/bin/../bin/sudo`, `./sudo` → `sudo`.
pub fn basename(word: &str) -> &str {
    let trimmed = word.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(basename("/bin/../bin/sudo"), "sudo");
        assert_eq!(basename("sudo"), "sudo");
        assert!(is_shell_or_interpreter("python3.12"));
        assert!(is_shell_or_interpreter("perl5.36"));
        assert!(!is_shell_or_interpreter("perldoc"));
        assert!(is_downloader("curl") && !is_downloader("curly"));
    }
}
