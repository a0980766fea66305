//! `clawden run` end to end through the binary on the real engine: exit codes, live output,
//! `--copy`, timeouts, signals, `kill -9` and `prune`, concurrent runs, kept runs.

mod common;

use common::*;
use std::io::BufRead;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A config that gives the run's sandboxes the test's prefix (the run adds the rest).
fn cfg(w: &World, prefix: &str) -> String {
    let p = w.path("config.json5");
    std::fs::write(
        &p,
        format!(r#"{{ agents: {{ defaults: {{ sandbox: {{ docker: {{ containerPrefix: "{prefix}" }} }} }} }} }}"#),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn cmd(w: &World, c: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawden"));
    cmd.args(["run", "--config", c, "--workspace"])
        .arg(w.path("ws"))
        .args(args)
        .env("CLAWDEN_HOME", w.path("state"))
        .env_remove("GITHUB_ACTIONS");
    cmd
}

fn run(w: &World, c: &str, args: &[&str]) -> Output {
    cmd(w, c, args).output().unwrap()
}

fn prune(w: &World, c: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(["prune", "--config", c, "--profile", "ci", "--json"])
        .env("CLAWDEN_HOME", w.path("state"))
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// Nothing of any run is left: no container with the prefix, no run directory, no mount under
/// the test's state directory.
fn nothing_left(w: &World, prefix: &str) {
    assert_eq!(containers_with_prefix(prefix), Vec::<String>::new());
    let runs = w.path("state/runs");
    let left: Vec<_> = std::fs::read_dir(&runs)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "run directories left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let state = w.path("state");
    assert!(
        !mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|p| std::path::Path::new(p).starts_with(&state)),
        "mounts left under {}",
        state.display()
    );
}

fn image() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { engine().await });
}

#[test]
fn exit_codes_pass_through_and_nothing_is_left() {
    image();
    let sw = sweep("run-ec");
    let w = World::new();
    let c = cfg(&w, &sw.prefix);
    for (command, want) in [
        ("true", 0),
        ("exit 1", 1),
        ("echo out; echo err >&2; exit 3", 3),
        ("no-such-command", 127),
        ("kill -TERM $$", 143),
    ] {
        let o = run(&w, &c, &["--", command]);
        assert_eq!(o.status.code(), Some(want), "{command}: {o:?}");
        if want == 3 {
            assert_eq!(text(&o.stdout), "out\n");
            assert!(text(&o.stderr).contains("err\n"), "{}", text(&o.stderr));
        }
    }
    // Several words keep their argv.
    let o = run(
        &w,
        &c,
        &["--", "printf", "[%s]", "a b", "it's", "$HOME", ""],
    );
    assert_eq!(text(&o.stdout), "[a b][it's][$HOME][]");
    // --json: one summary on stdout, the command's output on stderr.
    let o = run(&w, &c, &["--json", "--", "echo hi; exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    let j = json(&o);
    assert_eq!(j["exitCode"], 4);
    assert_eq!(j["stdoutBytes"], 3);
    assert_eq!(j["via"], "agent");
    assert!(j["container"].as_str().unwrap().starts_with(&sw.prefix));
    assert!(text(&o.stderr).contains("hi\n"));
    // A clawden failure before the command: its documented code.
    let o = run(&w, &c, &["--network", "host", "--", "true"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    nothing_left(&w, &sw.prefix);
}

#[test]
fn output_streams_before_the_command_ends_and_a_timeout_has_its_own_code() {
    image();
    let sw = sweep("run-st");
    let w = World::new();
    let c = cfg(&w, &sw.prefix);
    let mut child = cmd(&w, &c, &["--", "echo first; sleep 5; echo last"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first line came only after the command ended"
    );
    assert!(child.wait().unwrap().success());
    let t = Instant::now();
    let o = run(&w, &c, &["--timeout", "2s", "--", "sleep 100 & sleep 100"]);
    assert_eq!(o.status.code(), Some(124), "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(30));
    nothing_left(&w, &sw.prefix);
}

#[test]
fn copy_leaves_the_checkout_untouched_on_failure_and_updated_on_success() {
    image();
    let sw = sweep("run-cp");
    let w = World::new();
    let c = cfg(&w, &sw.prefix);
    std::fs::write(w.path("ws/a.txt"), "original").unwrap();
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(w.path("ws/a.txt"), Some(1000), Some(1000)).unwrap();
    }
    let o = run(
        &w,
        &c,
        &[
            "--copy",
            "--",
            "echo changed > a.txt; echo new > b.txt; exit 1",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(w.path("ws/a.txt")).unwrap(),
        "original"
    );
    assert!(!w.path("ws/b.txt").exists());
    let o = run(
        &w,
        &c,
        &[
            "--copy",
            "--json",
            "--",
            "echo changed > a.txt; mkdir -p d; echo new > d/b.txt",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(w.path("ws/a.txt")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(w.path("ws/d/b.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        json(&o)["copiedBack"]["written"].as_array().unwrap().len(),
        2
    );
    nothing_left(&w, &sw.prefix);
}

/// Wait until a sandbox with the prefix exists (the run is in its command).
fn wait_for_sandbox(prefix: &str) {
    let t = Instant::now();
    while containers_with_prefix(prefix).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(30), "no sandbox appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

#[test]
fn sigint_and_kill_9_leave_nothing_once_prune_has_run() {
    image();
    let sw = sweep("run-sg");
    let w = World::new();
    let c = cfg(&w, &sw.prefix);
    // SIGINT and SIGTERM mid-command: the tree is killed, everything removed, 128+N.
    for (sig, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let mut child = cmd(&w, &c, &["--", "sleep 1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_sandbox(&sw.prefix);
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, sig);
        assert_eq!(child.wait().unwrap().code(), Some(code));
        nothing_left(&w, &sw.prefix);
    }
    // kill -9 at moments spread over setup, the command and teardown.
    for delay_ms in [0u64, 150, 400, 800, 1500] {
        let mut child = cmd(&w, &c, &["--", "sleep 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        signal(&child, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        let o = prune(&w, &c);
        assert!(o.status.success(), "{o:?}");
        nothing_left(&w, &sw.prefix);
    }
    // No process of a killed run's command is left on the host either.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!text(&ps.stdout).lines().any(|l| l.trim() == "sleep 1000"));
}

#[test]
fn concurrent_runs_do_not_share_and_a_kept_run_can_be_entered_and_removed() {
    image();
    let sw = sweep("run-cc");
    let w = World::new();
    let c = cfg(&w, &sw.prefix);
    let spawn = || {
        cmd(&w, &c, &["--json", "--", "sleep 2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ja, jb) = (json(&a), json(&b));
    assert_ne!(ja["container"], jb["container"]);
    assert_ne!(ja["key"], jb["key"]);
    nothing_left(&w, &sw.prefix);

    let o = run(
        &w,
        &c,
        &[
            "--keep-on-failure",
            "--json",
            "--",
            "echo state > /tmp/x; exit 2",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let j = json(&o);
    assert_eq!(j["kept"], true);
    let key = j["key"].as_str().unwrap().to_string();
    assert_eq!(containers_with_prefix(&sw.prefix).len(), 1);
    // A later run's sweep and prune leave a kept run alone.
    assert!(run(&w, &c, &["--", "true"]).status.success());
    assert!(prune(&w, &c).status.success());
    assert_eq!(containers_with_prefix(&sw.prefix).len(), 1);
    let o = Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(["exec", "--config", &c, "--run", &key, "--", "cat /tmp/x"])
        .env("CLAWDEN_HOME", w.path("state"))
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), "state\n", "{o:?}");
    // Keys that name no run, or not a run directory at all, are usage errors (nothing removed).
    for bad in ["run-000000000000", "run-../../etc", "anything"] {
        let o = Command::new(env!("CARGO_BIN_EXE_clawden"))
            .args(["run", "--remove", bad])
            .env("CLAWDEN_HOME", w.path("state"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}: {o:?}");
    }
    assert_eq!(containers_with_prefix(&sw.prefix).len(), 1);
    let o = Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(["run", "--remove", &key])
        .env("CLAWDEN_HOME", w.path("state"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    nothing_left(&w, &sw.prefix);
}

/// The `clawden run` lines of README's CI snippets, run as a CI runner would (in the checkout,
/// `clawden` on PATH), on a checkout with the scripts they name; and GitHub's groups.
#[test]
fn the_readme_ci_snippets_run() {
    image();
    let sw = sweep("run-rd");
    let w = World::new();
    let c = cfg(&w, &sw.prefix);
    let ws = w.path("ws");
    std::fs::create_dir_all(ws.join("ci")).unwrap();
    for (name, body) in [
        ("test.sh", "#!/bin/sh\necho tests ran in $(pwd)\n"),
        ("build.sh", "#!/bin/sh\necho built > artifact.txt\n"),
    ] {
        let p = ws.join("ci").join(name);
        std::fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if nix::unistd::geteuid().is_root() {
        for p in ["ci", "ci/test.sh", "ci/build.sh"] {
            std::os::unix::fs::chown(ws.join(p), Some(1000), Some(1000)).unwrap();
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_clawden"))
        .parent()
        .unwrap();
    let mut ran = 0;
    for snippet in ["github", "gitlab"] {
        let marker = format!("<!-- ci-snippet: {snippet} -->");
        let block = readme.split(&marker).nth(1).expect("snippet in README");
        let block = block.split("```").nth(1).unwrap();
        for line in block.lines().filter(|l| l.contains("clawden run")) {
            let line = line
                .trim()
                .trim_start_matches("- run:")
                .trim_start_matches("- ")
                .trim();
            let line = line.strip_prefix("sudo ").unwrap_or(line);
            let _ = std::fs::remove_file(ws.join("artifact.txt"));
            let o = Command::new("sh")
                .args(["-c", line])
                .current_dir(&ws)
                .env(
                    "PATH",
                    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
                )
                .env("CLAWDEN_HOME", w.path("state"))
                .env("CLAWDEN_CONFIG", &c)
                .env(
                    "GITHUB_ACTIONS",
                    if snippet == "github" { "true" } else { "" },
                )
                .output()
                .unwrap();
            assert!(o.status.success(), "{snippet}: {line}: {o:?}");
            if line.contains("test.sh") {
                assert!(text(&o.stdout).contains("tests ran in /workspace"), "{o:?}");
                if snippet == "github" {
                    let out = text(&o.stdout);
                    let setup = out.find("::group::clawden: setup").expect("setup group");
                    let ran_at = out.find("tests ran").unwrap();
                    let teardown = out
                        .find("::group::clawden: teardown")
                        .expect("teardown group");
                    assert!(setup < ran_at && ran_at < teardown, "{out}");
                }
            }
            if line.contains("build.sh") {
                assert_eq!(
                    std::fs::read_to_string(ws.join("artifact.txt")).unwrap(),
                    "built\n"
                );
                let j: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(ws.join("run.json")).unwrap()).unwrap();
                assert_eq!(j["exitCode"], 0);
            }
            ran += 1;
        }
    }
    assert_eq!(ran, 4);
    nothing_left(&w, &sw.prefix);
}
