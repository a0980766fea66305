//! `clawden exec` and `clawden audit` end to end through the binary: exit codes and JSON shapes.

mod common;

use common::*;
use std::process::{Command, Output};

fn cfg(w: &World, prefix: &str, mode: &str) -> std::path::PathBuf {
    let p = w.path(&format!("config-{mode}.json5"));
    std::fs::write(
        &p,
        format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{}", sandbox: {{ mode: "{mode}", workspaceRoot: "{}", docker: {{ containerPrefix: "{prefix}" }} }} }} }} }}"#,
            w.path("ws").display(),
            w.path("sandboxes").display()
        ),
    )
    .unwrap();
    p
}

fn clawden(w: &World, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(args)
        .env("CLAWDEN_HOME", w.path("state"))
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
/// The command's own status passes through; clawden's refusals before the command ran exit
/// with the shared table (src/exit_codes.rs): 5 refused, 6 engine.
fn exit_codes_pass_through_and_errors_use_the_shared_table() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { engine().await });
    let sw = sweep("cliex");
    let w = World::new();
    let c = cfg(&w, &sw.prefix, "all");
    let c = c.to_str().unwrap();
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--",
            "echo hi; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--",
            "kill -TERM $$",
        ],
    );
    assert_eq!(o.status.code(), Some(128 + 15));
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--",
            "no-such-command",
        ],
    );
    assert_eq!(o.status.code(), Some(127));
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--timeout",
            "500ms",
            "--",
            "sleep 100",
        ],
    );
    assert_eq!(o.status.code(), Some(137));
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--workdir",
            "/etc",
            "--json",
            "--",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(5));
    let j = json(&o);
    assert_eq!(j["error"]["code"], "not_on_mount");
    assert!(!j["error"]["fix"].as_str().unwrap().is_empty());
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--env",
            "A=B=C",
            "--env",
            "BAD NAME=1",
            "--",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(5));
}

/// Several words after `--` are an argv: each arrives as one argument, whatever it holds
/// (`printf '[%s]\n' WORD…` prints each between brackets). One word stays a shell string.
#[test]
fn several_words_keep_their_argv_one_word_is_a_shell_string() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { engine().await });
    let sw = sweep("cliargv");
    let w = World::new();
    let c = cfg(&w, &sw.prefix, "all");
    let c = c.to_str().unwrap();
    let words = [
        "",
        "two words",
        "it's",
        "\"double\"",
        "$HOME",
        "$(echo no)",
        "line1\nline2",
        "*",
        "a\\b",
        "",
    ];
    let mut args = vec![
        "exec",
        "--config",
        c,
        "--session",
        "g",
        "--",
        "printf",
        "[%s]\n",
    ];
    args.extend_from_slice(&words);
    let o = clawden(&w, &args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let want: String = words.iter().map(|w| format!("[{w}]\n")).collect();
    assert_eq!(String::from_utf8_lossy(&o.stdout), want);
    // The ssh pitfall: `sh -c 'echo hi'` runs sh with "-c" and "echo hi".
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--",
            "sh",
            "-c",
            "echo hi",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    // One word is the shell string itself: `$` expands, `;` separates.
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c,
            "--session",
            "g",
            "--",
            "x=1; echo \"[$x]\"",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[1]\n");
}

#[test]
fn json_shapes() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { engine().await });
    let sw = sweep("clijs");
    let w = World::new();
    let c = cfg(&w, &sw.prefix, "all");
    let o = clawden(
        &w,
        &[
            "exec",
            "--config",
            c.to_str().unwrap(),
            "--session",
            "g",
            "--json",
            "--",
            r"printf 'a\377'; echo e >&2",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let mut j = json(&o);
    assert_eq!(j["stdoutEncoding"], "base64");
    assert_eq!(j["stdout"], "Yf8=");
    assert_eq!(j["stderrEncoding"], "utf8");
    assert!(j["containerName"].as_str().unwrap().starts_with(&sw.prefix));
    j["durationMs"] = serde_json::json!("<ms>");
    j["containerName"] = serde_json::json!("<name>");
    insta::assert_json_snapshot!("exec_json", j);
    // A direct session: containerName is null.
    let off = cfg(&w, &sw.prefix, "off");
    let j = json(&clawden(
        &w,
        &[
            "exec",
            "--config",
            off.to_str().unwrap(),
            "--json",
            "--",
            "echo host",
        ],
    ));
    assert_eq!(j["containerName"], serde_json::Value::Null);
    assert_eq!(j["stdout"], "host\n");
    // The audit log has both calls.
    let j = json(&clawden(&w, &["audit", "--json"]));
    let entries = j["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["target"], "host");
    assert!(
        entries[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn an_unreachable_engine_is_reported_with_the_fix_and_direct_calls_still_work() {
    let w = World::new();
    let c = cfg(&w, "cdt-unreach-", "non-main");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_clawden"))
            .args(args)
            .env("CLAWDEN_HOME", w.path("state"))
            .env("DOCKER_HOST", "unix:///nonexistent-clawden.sock")
            .output()
            .unwrap()
    };
    let o = run(&[
        "ensure",
        "--config",
        c.to_str().unwrap(),
        "--session",
        "g",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(6));
    let j = json(&o);
    assert_eq!(j["error"]["code"], "engine_unreachable");
    assert!(
        j["error"]["fix"]
            .as_str()
            .unwrap()
            .contains("ensure-docker.sh")
    );
    let o = run(&[
        "exec",
        "--config",
        c.to_str().unwrap(),
        "--session",
        "g",
        "--json",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(6));
    assert_eq!(json(&o)["error"]["code"], "engine_unreachable");
    let o = run(&["exec", "--config", c.to_str().unwrap(), "--", "echo direct"]);
    assert_eq!(
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string()
        ),
        (Some(0), "direct\n".to_string())
    );
}

#[test]
fn read_and_write_commands() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { engine().await });
    let sw = sweep("clirw");
    let w = World::new();
    let c = cfg(&w, &sw.prefix, "all");
    let c = c.to_str().unwrap();
    let input = w.path("input.bin");
    std::fs::write(&input, b"\x00\x01binary\xff").unwrap();
    let o = clawden(
        &w,
        &[
            "write",
            "--config",
            c,
            "--session",
            "g",
            "out/data.bin",
            "--from",
            input.to_str().unwrap(),
            "--mkdir",
            "--json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    insta::assert_json_snapshot!("write_json", json(&o));
    let o = clawden(
        &w,
        &[
            "read",
            "--config",
            c,
            "--session",
            "g",
            "out/data.bin",
            "--json",
        ],
    );
    insta::assert_json_snapshot!("read_json", json(&o));
    let o = clawden(
        &w,
        &["read", "--config", c, "--session", "g", "out/data.bin"],
    );
    assert_eq!(o.stdout, b"\x00\x01binary\xff");
    let o = clawden(
        &w,
        &[
            "read",
            "--config",
            c,
            "--session",
            "g",
            "out/data.bin",
            "--offset",
            "2",
            "--length",
            "3",
            "--json",
        ],
    );
    assert_eq!(json(&o)["content"], "bin");
    let o = clawden(
        &w,
        &[
            "read",
            "--config",
            c,
            "--session",
            "g",
            "/etc/passwd",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(5));
    insta::assert_json_snapshot!("read_refused_json", json(&o));
}

#[test]
fn stdin_is_passed_only_when_asked() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { engine().await });
    let sw = sweep("clistd");
    let w = World::new();
    let c = cfg(&w, &sw.prefix, "all");
    let run = |extra: &[&str], input: &[u8]| {
        let mut args = vec!["exec", "--config", c.to_str().unwrap(), "--session", "g"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "tr a-z A-Z"]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_clawden"))
            .args(&args)
            .env("CLAWDEN_HOME", w.path("state"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = run(&["--stdin"], b"piped");
    assert_eq!(
        (o.status.code(), o.stdout.as_slice()),
        (Some(0), &b"PIPED"[..])
    );
    let o = run(&[], b"ignored");
    assert_eq!((o.status.code(), o.stdout.as_slice()), (Some(0), &b""[..]));
    let o = run(&["--stdin"], &vec![b'x'; 70_000]);
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stdin data is larger"));
}
