//! The host blocklist is about what a path is (security.md, principle 5; issue 7 item 4): every
//! newly blocked system directory and host-user file, as a bind source and as a managed
//! workspace, with and without the `dangerously*` flags, through `clawden explain` (exit 4, the
//! code named). No engine is needed: the plan refuses before anything is created.

use std::path::Path;
use std::process::{Command, Output};

fn clawden(dir: &Path, config: &str) -> Output {
    let cfg = dir.join("config.json5");
    std::fs::write(&cfg, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(["explain", "--json", "--session", "group:x", "--config"])
        .arg(&cfg)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.join("home"))
        .env("CLAWDEN_HOME", dir.join("state"))
        .output()
        .expect("run clawden")
}

fn problems(o: &Output) -> Vec<serde_json::Value> {
    let j: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)));
    j["problems"].as_array().cloned().unwrap_or_default()
}

/// System directories that issue 7 found accepted (or refused only by accident).
const SYSTEM: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr",
    "/usr/lib",
    "/usr/local",
    "/usr/local/bin",
    "/usr/share",
    "/bin",
    "/sbin",
    "/opt",
    "/var/lib",
    "/var/log",
    "/var/spool/cron",
    "/boot",
];

/// Host-user files and directories, relative to $HOME.
const HOME: &[&str] = &[
    ".npmrc",
    ".git-credentials",
    ".pypirc",
    ".pgpass",
    ".bashrc",
    ".profile",
    ".bash_profile",
    ".zshrc",
    ".zshenv",
    ".local/bin",
    ".local/bin/tool",
    ".azure",
    ".terraform.d",
    ".gitconfig",
    ".m2/settings.xml",
    ".gradle",
    ".rustup",
    ".vault-token",
    ".config/fish",
    "bin",
];

fn all_sources(home: &Path) -> Vec<String> {
    SYSTEM
        .iter()
        .map(|s| s.to_string())
        .chain(HOME.iter().map(|h| home.join(h).display().to_string()))
        .collect()
}

const FLAG_SETS: &[&str] = &[
    "",
    "dangerouslyAllowExternalBindSources: true,",
    "dangerouslyAllowExternalBindSources: true, dangerouslyAllowReservedContainerTargets: true, dangerouslyAllowContainerNamespaceJoin: true,",
];

#[test]
fn every_blocked_bind_source_is_refused_whatever_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let sources = all_sources(&home);
    let binds: Vec<String> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{s}:/mnt/b{i}:ro"))
        .collect();
    for flags in FLAG_SETS {
        let config = format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all",
                workspaceRoot: "{root}", docker: {{ {flags} binds: {binds} }} }} }} }} }}"#,
            ws = dir.path().join("ws").display(),
            root = dir.path().join("sandboxes").display(),
            binds = serde_json::to_string(&binds).unwrap(),
        );
        let o = clawden(dir.path(), &config);
        assert_eq!(
            o.status.code(),
            Some(4),
            "flags {flags:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let problems = problems(&o);
        for bind in &binds {
            let p = problems
                .iter()
                .find(|p| p["value"] == bind.as_str())
                .unwrap_or_else(|| panic!("flags {flags:?}: {bind} accepted; {problems:?}"));
            let code = p["code"].as_str().unwrap();
            assert!(
                code == "blocked_path" || code == "covers_blocked_path",
                "flags {flags:?}: {bind}: {p}"
            );
            assert!(
                p["message"].as_str().unwrap().contains("blocked path"),
                "{p}"
            );
        }
    }
}

#[test]
fn a_managed_workspace_at_a_blocked_path_is_refused_with_any_access() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ok_root = dir.path().join("sandboxes");
    let full_matrix = [
        "/usr/local".to_string(),
        home.join(".local/bin").display().to_string(),
    ];
    for (i, source) in all_sources(&home).into_iter().enumerate() {
        // Every access and flag combination for the two the issue names; one each (rotating)
        // for the rest, to keep the test quick.
        let full = full_matrix.contains(&source);
        let accesses: Vec<&str> = if full {
            vec!["none", "ro", "rw"]
        } else {
            vec![["none", "ro", "rw"][i % 3]]
        };
        let flag_sets: Vec<&str> = if full {
            vec![FLAG_SETS[0], FLAG_SETS[2]]
        } else {
            vec![FLAG_SETS[i % 2 * 2]]
        };
        for access in accesses {
            for flags in &flag_sets {
                // As the agent workspace.
                let config = format!(
                    r#"{{ agents: {{ defaults: {{ workspace: "{source}", sandbox: {{ mode: "all",
                        workspaceAccess: "{access}", workspaceRoot: "{root}", docker: {{ {flags} }} }} }} }} }}"#,
                    root = ok_root.display(),
                );
                let o = clawden(dir.path(), &config);
                assert_eq!(o.status.code(), Some(4), "workspace {source} {access}");
                let ps = problems(&o);
                assert!(
                    ps.iter().any(|p| p["value"] == source.as_str()
                        && p["code"] == "blocked_path"
                        && p["message"]
                            .as_str()
                            .unwrap()
                            .starts_with("agent workspace")),
                    "workspace {source} {access} {flags}: {ps:?}"
                );
            }
        }
        // As workspaceRoot (the sandbox workspace lies under it).
        let config = format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all",
                workspaceRoot: "{source}", docker: {{ {flags} }} }} }} }} }}"#,
            ws = dir.path().join("ws").display(),
            flags = FLAG_SETS[2],
        );
        let o = clawden(dir.path(), &config);
        assert_eq!(o.status.code(), Some(4), "workspaceRoot {source}");
        assert!(
            problems(&o).iter().any(|p| p["code"] == "blocked_path"
                && p["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("sandbox workspace")),
            "workspaceRoot {source}: {:?}",
            problems(&o)
        );
    }
}

#[test]
fn human_explain_names_what_the_path_is() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{ agents: {{ defaults: {{ workspace: "/usr/local", sandbox: {{ mode: "all", workspaceAccess: "rw",
            workspaceRoot: "{root}" }} }} }} }}"#,
        root = dir.path().join("sandboxes").display(),
    );
    let cfg = dir.path().join("c.json5");
    std::fs::write(&cfg, config).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(["explain", "--session", "group:x", "--config"])
        .arg(&cfg)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.path().join("home"))
        .env("CLAWDEN_HOME", dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(r#"[blocked_path] agent workspace "/usr/local" mounts a path under blocked path "/usr" (a system directory"#),
        "{text}"
    );
}

#[test]
fn explain_human_escapes_what_config_and_callers_control() {
    let dir = tempfile::tempdir().unwrap();
    // JSON5 escapes: ESC ]52 (OSC 52 clipboard write), BEL, CR, a bidi override.
    let config = format!(
        r#"{{ agents: {{ defaults: {{ workspace: "{ws}/a\u001b]52;c;aGk=\u0007\rb\u202ec", sandbox: {{ mode: "all",
            workspaceRoot: "{root}", docker: {{ binds: ["/etc\u001b[2J:/mnt/x"] }} }} }} }} }}"#,
        ws = dir.path().display(),
        root = dir.path().join("sandboxes").display(),
    );
    let cfg = dir.path().join("c.json5");
    std::fs::write(&cfg, config).unwrap();
    let run = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_clawden"));
        c.args(["explain", "--session", "chat\u{202e}x", "--config"])
            .arg(&cfg)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir.path().join("home"))
            .env("CLAWDEN_HOME", dir.path().join("state"));
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let o = run(false);
    let text = String::from_utf8_lossy(&o.stdout);
    for bad in ['\x1b', '\x07', '\r', '\u{202e}'] {
        assert!(!text.contains(bad), "raw {bad:?} in {text}");
    }
    assert!(
        text.contains("a\\x1b]52;c;aGk=\\x07\\rb\\u{202e}c"),
        "{text}"
    );
    assert!(text.contains("chat\\u{202e}x"), "{text}");
    // JSON is exact.
    let j: serde_json::Value = serde_json::from_slice(&run(true).stdout).unwrap();
    assert!(
        j["agentWorkspace"]
            .as_str()
            .unwrap()
            .ends_with("a\u{1b}]52;c;aGk=\u{7}\rb\u{202e}c")
    );
}
