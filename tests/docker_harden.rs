//! Issue 7, written as an attacker would, against the real engine and through the binary:
//! oversized files (`fsize`), permissive seccomp profiles, remote or fake engines, overlapping
//! container prefixes of two configurations, terminal escapes in names. Every container a test
//! makes is under its own prefix and removed by [`Sweep`], also on failure.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn engine_up() {
    rt().block_on(async { engine().await });
}

/// Config text under `world`: mode all, the test's prefix, extra `sandbox` and `docker` keys.
fn config_text(world: &World, prefix: &str, sandbox: &str, docker: &str) -> String {
    format!(
        r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", scope: "session", workspaceRoot: "{root}", {sandbox} docker: {{ containerPrefix: "{prefix}", {docker} }} }} }} }} }}"#,
        ws = world.path("ws").display(),
        root = world.path("sandboxes").display(),
    )
}

/// Run the binary with `text` as its config; `env` adds variables; stdin is `input`.
fn clawden_env(
    world: &World,
    text: &str,
    env: &[(&str, &str)],
    input: &[u8],
    args: &[&str],
) -> Output {
    let cfg = world.path("config.json5");
    std::fs::write(&cfg, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawden"));
    cmd.arg("--config")
        .arg(&cfg)
        .args(args)
        .env("CLAWDEN_HOME", world.path("state"))
        .env("HOME", world.path("home"))
        .env_remove("CLAWDEN_CONFIG")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    child.wait_with_output().unwrap()
}

fn clawden(world: &World, text: &str, args: &[&str]) -> Output {
    clawden_env(world, text, &[], b"", args)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

// ---- limits: fsize -----------------------------------------------------------------------------

#[test]
fn fsize_is_applied_by_default_and_writing_past_it_fails() {
    engine_up();
    let sw = sweep("fsize");
    let w = World::new();
    // Default: 1 GiB, visible as `ulimit -f` (busybox counts 512-byte blocks, bash 1024).
    let dflt = config_text(&w, &sw.prefix, "", "");
    let o = clawden(
        &w,
        &dflt,
        &["exec", "--session", "g", "--json", "--", "ulimit -f"],
    );
    let j = json(&o);
    assert_eq!(j["exitCode"], 0, "{}", text(&o));
    let blocks: u64 = j["stdout"].as_str().unwrap().trim().parse().unwrap();
    assert!(
        blocks * 512 == 1 << 30 || blocks * 1024 == 1 << 30,
        "ulimit -f = {blocks}"
    );
    let name = j["containerName"].as_str().unwrap().to_string();
    let ins = docker_inspect(&name).unwrap();
    let fsize = ins["HostConfig"]["Ulimits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["Name"] == "fsize")
        .cloned()
        .unwrap_or_else(|| panic!("no fsize ulimit: {}", ins["HostConfig"]["Ulimits"]));
    assert_eq!(
        (fsize["Soft"].as_i64(), fsize["Hard"].as_i64()),
        (Some(1 << 30), Some(1 << 30))
    );

    // A configured 1 MiB limit: a 3 MiB write stops at 1 MiB (SIGXFSZ or EFBIG), on the host too.
    let small = config_text(&w, &sw.prefix, "", "ulimits: { fsize: 1048576 },");
    let o = clawden(
        &w,
        &small,
        &[
            "exec",
            "--session",
            "big",
            "--json",
            "--",
            "dd if=/dev/zero of=big.bin bs=65536 count=48; echo rc=$?; ls -l big.bin",
        ],
    );
    let j = json(&o);
    let out = j["stdout"].as_str().unwrap().to_string() + j["stderr"].as_str().unwrap();
    assert!(
        !out.contains("rc=0"),
        "the oversized write succeeded: {out}"
    );
    assert!(
        out.contains("File too large") || out.contains("rc=153") || out.contains("rc=1"),
        "{out}"
    );
    let host_file = walk_find(&w.path("sandboxes"), "big.bin").expect("big.bin on the host");
    let size = std::fs::metadata(&host_file).unwrap().len();
    assert!(size <= 1 << 20, "host file is {size} bytes");
}

fn walk_find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir()
            && let Some(f) = walk_find(&p, name)
        {
            return Some(f);
        }
    }
    None
}

// ---- limits: seccomp ---------------------------------------------------------------------------

#[test]
fn a_permissive_seccomp_profile_is_refused_unless_the_flag_is_set() {
    engine_up();
    let sw = sweep("seccp");
    let w = World::new();
    let profile = w.path("allow-all.json");
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
    let unshare = w.path("unshare.json");
    std::fs::write(
        &unshare,
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["unshare","setns","mount"],"action":"SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    for p in [&profile, &unshare] {
        let docker = format!(r#"seccompProfile: "{}","#, p.display());
        let refused = config_text(&w, &sw.prefix, "", &docker);
        let o = clawden(&w, &refused, &["explain", "--session", "g", "--json"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        let j = json(&o);
        assert!(
            j["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["code"] == "permissive_seccomp"),
            "{j}"
        );
        // Nothing is created for it.
        let o = clawden(&w, &refused, &["ensure", "--session", "g", "--json"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert_eq!(json(&o)["error"]["code"], "config_problems");
        assert!(containers_with_prefix(&sw.prefix).is_empty());

        // With the flag it plans, loudly.
        let allowed = config_text(
            &w,
            &sw.prefix,
            "",
            &format!("{docker} dangerouslyAllowPermissiveSeccomp: true,"),
        );
        let o = clawden(&w, &allowed, &["explain", "--session", "g"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let human = text(&o);
        assert!(human.contains("DANGER: seccompProfile"), "{human}");
        assert!(
            human.contains("dangerous flags    dangerouslyAllowPermissiveSeccomp"),
            "{human}"
        );
    }
    // A profile that is not one is a problem too.
    let junk = w.path("junk.json");
    std::fs::write(&junk, "not json").unwrap();
    let cfg = config_text(
        &w,
        &sw.prefix,
        "",
        &format!(
            r#"seccompProfile: "{}", dangerouslyAllowPermissiveSeccomp: true,"#,
            junk.display()
        ),
    );
    let o = clawden(&w, &cfg, &["explain", "--session", "g", "--json"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(json(&o)["problems"][0]["code"], "bad_seccomp_profile");
}

// ---- engines -----------------------------------------------------------------------------------

#[test]
fn a_remote_or_fake_engine_is_refused_and_nothing_is_created() {
    engine_up();
    let sw = sweep("remot");
    let w = World::new();
    let cfg = config_text(&w, &sw.prefix, "", "");
    // A plain listener that is not an engine: accepts and hangs up.
    let sock = w.path("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let fake = format!("unix://{}", sock.display());
    for host in [
        "tcp://127.0.0.1:1",
        "http://127.0.0.1:1",
        "ssh://nobody@127.0.0.1",
        "npipe:////./pipe/docker_engine",
        fake.as_str(),
    ] {
        let env = [("DOCKER_HOST", host)];
        for args in [
            &["ensure", "--session", "g", "--json"][..],
            &["exec", "--session", "g", "--json", "--", "true"][..],
            &["list", "--json"][..],
            &["prune", "--json"][..],
        ] {
            let o = clawden_env(&w, &cfg, &env, b"", args);
            assert_eq!(o.status.code(), Some(6), "{host} {args:?}: {}", text(&o));
            let j = json(&o);
            assert_eq!(j["error"]["code"], "remote_engine", "{host} {args:?}: {j}");
            assert!(
                j["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("not a local engine"),
                "{j}"
            );
        }
        // doctor says which engine it found and why it is refused.
        let o = clawden_env(&w, &cfg, &env, b"", &["doctor"]);
        assert_eq!(o.status.code(), Some(7), "{}", text(&o));
        assert!(text(&o).contains("not a local engine"), "{}", text(&o));
    }
    assert!(containers_with_prefix(&sw.prefix).is_empty());

    // The real local engine is accepted, and doctor names its socket and peer.
    let o = clawden(&w, &cfg, &["doctor", "--json"]);
    let j = json(&o);
    let engine = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "engine")
        .unwrap()
        .clone();
    assert_eq!(engine["status"], "pass", "{j}");
    let detail = engine["detail"].as_str().unwrap();
    assert!(
        detail.contains("served by pid") && detail.contains("uid 0"),
        "{detail}"
    );
}

// ---- ownership by label ------------------------------------------------------------------------

#[test]
fn overlapping_prefixes_never_prune_or_recreate_each_other() {
    engine_up();
    let sw = sweep("owner");
    let (wa, wb) = (World::new(), World::new());
    let (pa, pb) = (format!("{}a-", sw.prefix), format!("{}a-b-", sw.prefix));
    // Both prune anything older than a day or idle over an hour.
    let prune = "prune: { idleHours: 1, maxAgeDays: 1 },";
    let (ca, cb) = (
        config_text(&wa, &pa, prune, ""),
        config_text(&wb, &pb, prune, ""),
    );
    for (w, c) in [(&wa, &ca), (&wb, &cb)] {
        let o = clawden(w, c, &["ensure", "--session", "one", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    // B also has an old, long-idle sandbox: only B may prune it.
    rt().block_on(async {
        let e = engine().await;
        let sup = wb.supervisor(e.clone(), loaded(&cb).unwrap());
        let (_, plan) = sup.plan(Some("old"), None).unwrap();
        // What the supervisor prepares before a create (dirs, staged mounts).
        clawden::supervisor::mounting::prepare(sup.state().dir(), &plan.container).unwrap();
        let mut labels = plan.container.labels.clone();
        labels.insert(
            "clawden.createdAtMs".into(),
            (clawden::supervisor::now_ms() - 3 * 86_400_000).to_string(),
        );
        labels.insert("clawden.configHash".into(), plan.config_hash.clone());
        use clawden::engine::ContainerEngine;
        e.create(&plan.container, &labels).await.unwrap();
    });
    let names = || {
        let mut n = containers_with_prefix(&sw.prefix);
        n.sort();
        n
    };
    let all = names();
    assert_eq!(all.len(), 3, "{all:?}");
    let owner = |n: &str| docker_inspect(n).unwrap()["Config"]["Labels"]["clawden.owner"].clone();
    let a_names: Vec<&String> = all.iter().filter(|n| !n.starts_with(&pb)).collect();
    let b_names: Vec<&String> = all.iter().filter(|n| n.starts_with(&pb)).collect();
    assert_eq!((a_names.len(), b_names.len()), (1, 2));
    assert_ne!(owner(a_names[0]), owner(b_names[0]));
    assert_eq!(owner(b_names[0]), owner(b_names[1]));
    assert_eq!(owner(a_names[0]).as_str().unwrap().len(), 16);

    // A's prune and recreate --all see none of B's (whose names start with A's prefix).
    let o = clawden(&wa, &ca, &["prune", "--json"]);
    assert_eq!(json(&o)["removed"], serde_json::json!([]), "{}", text(&o));
    let o = clawden(&wa, &ca, &["recreate", "--all", "--force", "--json"]);
    let removed = json(&o)["removed"].as_array().unwrap().clone();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["name"], a_names[0].as_str());
    assert_eq!(names().len(), 2);
    // B's prune removes its own old one; B's recreate --all its last one.
    let o = clawden(&wb, &cb, &["prune", "--json"]);
    assert_eq!(
        json(&o)["removed"].as_array().unwrap().len(),
        1,
        "{}",
        text(&o)
    );
    let o = clawden(&wb, &cb, &["recreate", "--all", "--force", "--json"]);
    assert_eq!(
        json(&o)["removed"].as_array().unwrap().len(),
        1,
        "{}",
        text(&o)
    );
    assert!(names().is_empty());
}

// ---- terminal escapes --------------------------------------------------------------------------

const OSC52: &str = "\x1b]52;c;aGFja2Vk\x07";

fn assert_inert(out: &str, what: &str) {
    for bad in ['\x1b', '\x07', '\r', '\u{202e}'] {
        assert!(!out.contains(bad), "{what}: raw {bad:?} in {out:?}");
    }
}

#[test]
fn names_with_terminal_escapes_are_shown_escaped() {
    engine_up();
    let sw = sweep("escap");
    let w = World::new();
    let cfg = config_text(&w, &sw.prefix, "", "");
    // A sandbox writes a file whose name carries OSC 52, CR and a bidi override.
    let file = format!("x{OSC52}\rfake\u{202e}txt.sh");
    let o = clawden_env(&w, &cfg, &[], b"data", &["write", "--session", "g", &file]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert_inert(&out, "write");
    assert!(
        out.contains("\\x1b]52;c;aGFja2Vk\\x07\\rfake\\u{202e}txt.sh"),
        "{out}"
    );
    // JSON stays exact.
    let o = clawden_env(
        &w,
        &cfg,
        &[],
        b"data",
        &["write", "--session", "g", "--json", &file],
    );
    assert!(json(&o)["path"].as_str().unwrap().contains(OSC52));

    // A session key with a bidi override (control characters are refused as session keys).
    let session = "agent:main:chat\u{202e}gnp.exe";
    let o = clawden(&w, &cfg, &["ensure", "--session", session]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_inert(&text(&o), "ensure");
    let o = clawden(&w, &cfg, &["ensure", "--session", &format!("a{OSC52}")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_inert(&text(&o), "ensure with a control character");

    // A container planted with a hostile scope key label (anyone with Docker access can).
    let planted = format!("{}planted", sw.prefix);
    docker(&[
        "create",
        "--name",
        &planted,
        "--label",
        "clawden.sandbox=1",
        "--label",
        &format!("clawden.scopeKey=k{OSC52}\rx\u{202e}"),
        "--label",
        "clawden.agentId=a\u{2066}b",
        clawden::images::MINIMAL_TAG,
        "true",
    ]);
    let o = clawden(&w, &cfg, &["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert_inert(&out, "list");
    assert!(
        out.contains("k\\x1b]52;c;aGFja2Vk\\x07\\rx\\u{202e}"),
        "{out}"
    );
    assert!(out.contains("a\\u{2066}b"), "{out}");
    assert!(out.contains("chat\\u{202e}gnp.exe"), "{out}");

    let o = clawden(&w, &cfg, &["audit"]);
    let out = text(&o);
    assert_inert(&out, "audit");
    assert!(out.contains("\\x1b]52;c;aGFja2Vk\\x07"), "{out}");
    let o = clawden(&w, &cfg, &["audit", "--json"]);
    let entries = json(&o)["entries"].as_array().unwrap().clone();
    assert!(
        entries
            .iter()
            .any(|e| e["subject"].as_str().unwrap().contains(OSC52)),
        "{entries:?}"
    );
}

// ---- one exit code per error class, from every command -----------------------------------------

#[test]
fn every_command_exits_with_the_same_code_for_the_same_error() {
    engine_up();
    let sw = sweep("excls");
    let w = World::new();
    let cfg = config_text(&w, &sw.prefix, "", "");
    let bad_session = "agent:main:";
    // Malformed session key: 2.
    for args in [
        &["explain", "--session", bad_session][..],
        &["ensure", "--session", bad_session][..],
        &["exec", "--session", bad_session, "--", "true"][..],
        &["read", "--session", bad_session, "x"][..],
        &["write", "--session", bad_session, "x"][..],
        &["recreate", "--session", bad_session, "--force"][..],
    ] {
        let o = clawden(&w, &cfg, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // Config error: 3, from every command that loads it.
    let broken = "{ agents: { defaults: { sandbox: { mdoe: \"all\" } } } }";
    for args in [
        &["explain"][..],
        &["ensure"][..],
        &["exec", "--", "true"][..],
        &["read", "x"][..],
        &["write", "x"][..],
        &["list"][..],
        &["prune"][..],
        &["recreate", "--all"][..],
        &["audit"][..],
        &["doctor"][..],
    ] {
        let o = clawden(&w, broken, args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
    }
    // Refused: 5 — a direct session (mode off) asking for paths outside its workspace, a
    // sandboxed one for a workdir on no mount, ensure of a direct session.
    let off = config_text(&w, &sw.prefix, "", "").replace("mode: \"all\"", "mode: \"off\"");
    for (c, args) in [
        (&off, &["read", "../../etc/passwd"][..]),
        (&off, &["write", "../../tmp/x"][..]),
        (&off, &["ensure"][..]),
        (
            &cfg,
            &["exec", "--session", "g", "--workdir", "/etc", "--", "true"][..],
        ),
        (&cfg, &["read", "--session", "g", "/etc/passwd"][..]),
    ] {
        let o = clawden(&w, c, args);
        assert_eq!(o.status.code(), Some(5), "{args:?}: {}", text(&o));
    }
    // Engine unreachable: 6, from every command that needs the engine. (`read`/`write` of a
    // sandboxed session go through the host-side bind mounts today and need no engine; when
    // they move into the container they map the same way through `cli::errors`.)
    let env = [("DOCKER_HOST", "unix:///nonexistent-clawden.sock")];
    for args in [
        &["ensure", "--session", "g"][..],
        &["exec", "--session", "g", "--", "true"][..],
        &["list"][..],
        &["prune"][..],
        &["recreate", "--all", "--force"][..],
    ] {
        let o = clawden_env(&w, &cfg, &env, b"", args);
        assert_eq!(o.status.code(), Some(6), "{args:?}: {}", text(&o));
    }
    assert!(containers_with_prefix(&sw.prefix).is_empty());
}
