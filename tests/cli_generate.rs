//! What is generated from the clap definitions: `--version`, `completions`, `man`.

use std::process::{Command, Output};

fn clawden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run clawden")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn version_names_the_agent_protocol() {
    let o = clawden(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        format!(
            "clawden {} (agent protocol {})\n",
            env!("CARGO_PKG_VERSION"),
            clawden_agent::proto::PROTOCOL_VERSION
        )
    );
}

#[test]
fn completions_cover_every_subcommand() {
    let subcommands = ["explain", "exec", "recreate", "completions", "man"];
    for shell in ["bash", "zsh", "fish"] {
        let o = clawden(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}");
        let text = stdout(&o);
        for sub in subcommands {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
    // The bash script is valid bash.
    let script = stdout(&clawden(&["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clawden.bash");
    std::fs::write(&path, script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "{check:?}");
    // Only the three shells named in the help.
    assert_eq!(clawden(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_page_is_roff_with_the_subcommands() {
    let o = clawden(&["man"]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    let th = text
        .lines()
        .find(|l| l.starts_with(".TH clawden 1"))
        .expect("a .TH header");
    assert!(th.contains(env!("CARGO_PKG_VERSION")), "{th}");
    assert!(text.contains(".SH SUBCOMMANDS"), "{text}");
    for sub in ["explain", "exec", "completions"] {
        assert!(
            text.contains(&format!("clawden\\-{sub}")),
            "man page lacks {sub}"
        );
    }
}
