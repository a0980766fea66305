//! Attacks on "nothing a sandbox wrote runs by itself" (issue 7, class 1), written as an
//! attacker would: a sandboxed session plants shell startup files in a workspace it can write,
//! then waits for the host (a direct call of the main session) or another session's call in the
//! same container to run them. And the direct call path itself: clean environment, never root,
//! HOME outside the workspace, and a call whose clawden is killed does not live on.

mod common;

use common::*;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// mode non-main, the agent workspace mounted rw: sessions other than main can write it, and the
/// main session runs on the host in it.
fn cfg(w: &World, prefix: &str, scope: &str) -> std::path::PathBuf {
    let p = w.path(&format!("config-{scope}.json5"));
    std::fs::write(
        &p,
        format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{}", sandbox: {{ mode: "non-main", scope: "{scope}", workspaceAccess: "rw", workspaceRoot: "{}", docker: {{ containerPrefix: "{prefix}" }} }} }} }} }}"#,
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
        .env("CLAWDEN_TEST_SECRET", "hunter2")
        .env("ENV", w.path("ws/.shinit"))
        .env("BASH_ENV", w.path("ws/.bashrc"))
        .output()
        .unwrap()
}

fn exec(w: &World, c: &str, session: &str, cmd: &str) -> Output {
    clawden(w, &["exec", "--config", c, "--session", session, "--", cmd])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every startup file a shell or a login might source, each writing a canary.
const PLANT: &str = r#"for f in .profile .bashrc .bash_profile .bash_login .shinit .kshrc .zshenv .zshrc .login .mkshrc; do
  echo 'id > pwned 2>/dev/null; id > /tmp/pwned-by-startup-file 2>/dev/null' > "/workspace/$f"
done
mkdir -p /workspace/.config/fish && cp /workspace/.profile /workspace/.config/fish/config.fish
echo planted"#;

#[test]
fn startup_files_planted_by_a_sandbox_never_run_on_the_host_or_in_other_calls() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { engine().await });
    let sw = sweep("plant");
    let w = World::new();
    let c = cfg(&w, &sw.prefix, "agent");
    let c = c.to_str().unwrap();
    // The attacker: a group session, sandboxed, with the agent workspace writable.
    let o = exec(&w, c, "group:attacker", PLANT);
    assert_eq!(text(&o.stdout), "planted\n", "{}", text(&o.stderr));
    assert!(w.path("ws/.profile").exists());

    // The victim on the host: the main session's direct call, as a login would have been.
    let o = exec(&w, c, "main", "echo host-call; echo \"HOME=$HOME\"; id -u");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("host-call\n"), "{out}");
    assert!(
        !w.path("ws/pwned").exists()
            && !std::path::Path::new("/tmp/pwned-by-startup-file").exists(),
        "a planted startup file ran on the host"
    );
    // HOME is not the workspace (nor inside it), and the call is not root.
    let home = out
        .lines()
        .find_map(|l| l.strip_prefix("HOME="))
        .unwrap_or_default();
    let ws = std::fs::canonicalize(w.path("ws")).unwrap();
    assert!(
        !home.is_empty() && !std::path::Path::new(home).starts_with(&ws),
        "HOME={home}"
    );
    if nix::unistd::geteuid().is_root() {
        assert_eq!(out.lines().last(), Some("1000"), "direct call ran as {out}");
    }

    // A victim in the same container (scope agent): another session's call.
    let o = exec(
        &w,
        c,
        "group:victim",
        "echo container-call; ls /tmp/pwned-by-startup-file 2>&1",
    );
    assert!(
        text(&o.stdout).starts_with("container-call\n") && text(&o.stdout).contains("No such file"),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        !w.path("ws/pwned").exists(),
        "a planted startup file ran in another session's call"
    );
}

#[test]
fn direct_calls_get_a_clean_environment() {
    let w = World::new();
    let c = cfg(&w, "cdt-envclean-", "session");
    let c = c.to_str().unwrap();
    let o = exec(&w, c, "main", "env");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let env = text(&o.stdout);
    assert!(
        !env.contains("hunter2"),
        "clawden's environment leaked: {env}"
    );
    assert!(!env.contains("CLAWDEN_HOME"), "{env}");
    // ENV / BASH_ENV of clawden's own environment never reach a call.
    assert!(
        !env.lines()
            .any(|l| l.starts_with("ENV=") || l.starts_with("BASH_ENV=")),
        "{env}"
    );
    let mut names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort();
    names.dedup();
    // The shell adds PWD/SHLVL/_ itself; everything else is the explicit allowlist.
    for n in names {
        assert!(
            ["HOME", "PATH", "LANG", "PWD", "SHLVL", "_", "OLDPWD"].contains(&n),
            "unexpected variable {n} in {env}"
        );
    }
}

fn sleepers(tag: &str) -> Vec<String> {
    let o = Command::new("ps")
        .args(["-eo", "pid,user,args"])
        .output()
        .unwrap();
    text(&o.stdout)
        .lines()
        .filter(|l| {
            let args = l.split_whitespace().nth(2).unwrap_or("");
            l.contains(tag) && (args == "sleep" || args == "/bin/sleep")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn killing_clawden_mid_direct_call_ends_the_whole_tree() {
    let w = World::new();
    let c = cfg(&w, "cdt-kill9-", "session");
    // Unique sleep lengths so this test finds only its own processes.
    let tag = format!("{}", 400_000 + (std::process::id() % 50_000));
    let cmd = format!(
        "sleep {tag}1 & (setsid sleep {tag}2 &); env -i /bin/sleep {tag}3 & nohup sleep {tag}4 >/dev/null 2>&1 & sleep {tag}5"
    );
    for attempt in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_clawden"))
            .args([
                "exec",
                "--config",
                c.to_str().unwrap(),
                "--session",
                "main",
                "--timeout",
                "600s",
                "--",
                &cmd,
            ])
            .env("CLAWDEN_HOME", w.path("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the whole tree is up.
        let t = Instant::now();
        while sleepers(&tag).len() < 5 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            sleepers(&tag).len(),
            5,
            "attempt {attempt}: {:?}",
            sleepers(&tag)
        );
        // Kill clawden at a slightly different moment each time.
        std::thread::sleep(Duration::from_millis(30 * attempt));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let t = Instant::now();
        while !sleepers(&tag).is_empty() && t.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = sleepers(&tag);
        if !left.is_empty() {
            for l in &left {
                if let Some(pid) = l.split_whitespace().next() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        assert!(left.is_empty(), "attempt {attempt}: left running: {left:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn explain_shows_who_direct_calls_run_as_and_warns_about_root() {
    let w = World::new();
    let c = cfg(&w, "cdt-explain-", "session");
    let o = clawden(
        &w,
        &[
            "explain",
            "--config",
            c.to_str().unwrap(),
            "--session",
            "main",
        ],
    );
    let out = text(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("direct calls as"))
        .unwrap_or_else(|| panic!("no direct-user line in {out}"));
    if nix::unistd::geteuid().is_root() {
        assert!(
            line.contains("1000:1000 (the agent workspace's owner)"),
            "{line}"
        );
        // Root only when the config says so, and then loudly.
        let rooted = w.path("rooted.json5");
        std::fs::write(
            &rooted,
            std::fs::read_to_string(&c).unwrap().replace(
                "workspaceAccess",
                r#"calls: { directUser: "0:0" }, workspaceAccess"#,
            ),
        )
        .unwrap();
        let o = clawden(
            &w,
            &[
                "explain",
                "--config",
                rooted.to_str().unwrap(),
                "--session",
                "main",
            ],
        );
        let out = text(&o.stdout);
        assert!(out.contains("0:0 (calls.directUser) — ROOT"), "{out}");
        assert!(out.contains("as ROOT"), "{out}");
    } else {
        assert!(line.contains("clawden's own user"), "{line}");
    }
}
