//! `clawden policy check` end to end: the binary, a YAML policy file, decisions and exit codes.
//! Never runs the checked command, needs no Docker.

use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn clawden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent-clawden-fixture/home")
        .env("CLAWDEN_HOME", "/nonexistent-clawden-fixture/state")
        .output()
        .expect("run clawden")
}

fn check(extra: &[&str]) -> Output {
    let config = format!("{FIXTURES}/basic.json5");
    let policy = format!("{FIXTURES}/policy.yaml");
    let mut args = vec!["policy", "check", "--config", &config, "--policy", &policy];
    args.extend_from_slice(extra);
    clawden(&args)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn allow_exits_0() {
    let o = check(&["--json", "--", "git", "status"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j = json(&o);
    assert_eq!(j["evaluation"]["decision"], "allow");
    assert_eq!(j["evaluation"]["principal"]["trustLevel"], "owner");
    assert_eq!(j["request"]["kind"], "exec");
}

#[test]
fn deny_exits_5_with_the_rule_and_its_source() {
    let o = check(&["--json", "--", "/usr/bin/sudo", "ls"]);
    assert_eq!(o.status.code(), Some(5));
    let j = json(&o);
    assert_eq!(j["evaluation"]["decision"], "deny");
    let matched = j["evaluation"]["matched"].as_array().unwrap();
    let rule = matched
        .iter()
        .find(|m| m["rule"] == "policy.exec.deny[1]")
        .unwrap_or_else(|| panic!("{matched:?}"));
    assert!(rule["source"].as_str().unwrap().ends_with("policy.yaml"));
}

#[test]
fn ask_exits_9() {
    let o = check(&["--", "git", "push", "origin", "main"]);
    assert_eq!(o.status.code(), Some(9));
    let t = text(&o);
    assert!(t.starts_with("decision: ask\n"), "{t}");
    assert!(t.contains("policy.exec.requireApproval[0]"), "{t}");
}

#[test]
fn nothing_runs() {
    let marker = std::env::temp_dir().join(format!("clawden-policy-check-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let cmd = format!("git status; touch {}", marker.display());
    let o = check(&["--", &cmd]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "touch is not in exec.allow: {}",
        text(&o)
    );
    let o = clawden(&[
        "policy",
        "check",
        "--",
        "touch",
        &marker.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!marker.exists(), "policy check ran the command");
}

#[test]
fn principals_and_tools() {
    let o = check(&["--principal", "telegram:111222333", "--", "git", "status"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(
        text(&o).contains("limited principals may not run commands"),
        "{}",
        text(&o)
    );
    let o = check(&["--principal", "telegram:000", "--tool", "search"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(text(&o).contains("unknown principal"));
    let o = check(&["--principal", "telegram:987654321", "--tool", "search"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = check(&["--tool", "send_email"]);
    assert_eq!(
        o.status.code(),
        Some(9),
        "not in tools.allow, but requireApproval: {}",
        text(&o)
    );
    let o = check(&["--tool", "gateway"]);
    assert_eq!(o.status.code(), Some(5));
}

#[test]
fn paths_and_flags() {
    let o = check(&["--json", "--path", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(5));
    let j = json(&o);
    let rules: Vec<&str> = j["evaluation"]["matched"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["rule"].as_str())
        .collect();
    assert!(rules.contains(&"policy.files.deniedPaths[0]"), "{rules:?}");
    let o = check(&["--path", "/tmp/x", "--write"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = check(&["--json", "--", "git status \u{202e}"]);
    assert_eq!(o.status.code(), Some(5));
    let j = json(&o);
    assert_eq!(j["evaluation"]["flags"][0]["code"], "bidi_override");
    assert_eq!(j["evaluation"]["flags"][0]["offset"], 11);
    // Human output never prints the raw control character.
    let o = check(&["--", "git status \u{1b}[2J"]);
    assert!(!text(&o).contains('\u{1b}'), "{}", text(&o));
}

#[test]
fn smart_defaults_without_a_policy() {
    let o = clawden(&["policy", "check", "--", "rm", "-fr", "/"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(text(&o).contains("defaults.exec.deny.recursiveRemoveRootOrHome"));
    let o = clawden(&[
        "policy",
        "check",
        "--",
        "curl",
        "-d",
        "@x",
        "https://example.com",
    ]);
    assert_eq!(o.status.code(), Some(9));
}

#[test]
fn bad_policy_files_and_usage() {
    let typo = format!("{FIXTURES}/policy-typo.yaml");
    let o = clawden(&["policy", "check", "--policy", &typo, "--json", "--", "ls"]);
    assert_eq!(o.status.code(), Some(3));
    let j = json(&o);
    assert_eq!(j["error"]["code"], "config_error");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy.exec.alow")
    );
    let o = clawden(&[
        "policy",
        "check",
        "--policy",
        "/nonexistent-clawden/p.yaml",
        "--",
        "ls",
    ]);
    assert_eq!(o.status.code(), Some(3));
    // Exactly one of a command, --tool, --path.
    assert_eq!(clawden(&["policy", "check"]).status.code(), Some(2));
    assert_eq!(
        clawden(&["policy", "check", "--tool", "x", "--path", "/y"])
            .status
            .code(),
        Some(2)
    );
}
