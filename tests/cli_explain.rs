//! `clawden explain` end to end: the binary, fixture configs, snapshots of human and JSON output.

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

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}.json5")
}

/// Where this checkout's build keeps the agent binary (next to clawden's own binary).
fn agent_path() -> String {
    std::path::Path::new(env!("CARGO_BIN_EXE_clawden"))
        .with_file_name("clawden-agent")
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .replace(FIXTURES, "<fixtures>")
        .replace(&agent_path(), "<clawden-agent>")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn main_session_runs_on_host_under_non_main() {
    let o = clawden(&["explain", "--config", &fixture("basic"), "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j = json(&o);
    assert_eq!(j["sessionKey"], "agent:main:main");
    assert_eq!(j["mainSessionKey"], "agent:main:main");
    assert_eq!(j["sandboxed"], false);
    assert_eq!(j["mode"], "non-main");
}

#[test]
fn group_session_is_sandboxed_with_ro_mounts() {
    let o = clawden(&[
        "explain",
        "--config",
        &fixture("basic"),
        "--session",
        "telegram:group:-100123",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let j = json(&o);
    assert_eq!(j["sessionKey"], "agent:main:telegram:group:-100123");
    assert_eq!(j["sandboxed"], true);
    assert_eq!(j["scope"], "agent");
    assert_eq!(j["scopeKey"], "agent:main");
    let all = j["mounts"].as_array().unwrap();
    // The agent's own two mounts (binary, channel) come last when the agent binary is built.
    let mounts: Vec<&serde_json::Value> = all
        .iter()
        .filter(|m| m["source"] != "agentbinary" && m["source"] != "agentchannel")
        .collect();
    assert_eq!(mounts.len(), 2, "{all:?}");
    assert_eq!(mounts[0]["container"], "/workspace");
    // workspaceAccess "ro": nothing of the workspace is writable (OC).
    assert_eq!(mounts[0]["access"], "ro");
    assert_eq!(mounts[0]["source"], "workspace");
    assert_eq!(mounts[1]["host"], "/nonexistent-clawden-fixture/ws");
    assert_eq!(mounts[1]["container"], "/agent");
    assert_eq!(mounts[1]["access"], "ro");
    assert_eq!(mounts[1]["source"], "agent");
    assert_eq!(j["limits"]["memory"], 1u64 << 30);
    assert_eq!(j["limits"]["memorySwap"], 1u64 << 30);
    assert_eq!(j["limits"]["pidsLimit"], 256);
    assert_eq!(j["problems"].as_array().unwrap().len(), 0);
    insta::assert_snapshot!(
        "basic_group_human",
        stdout(&clawden(&[
            "explain",
            "--config",
            &fixture("basic"),
            "--session",
            "telegram:group:-100123"
        ]))
    );
    // Paths of the checkout differ between machines: redact them like the human output.
    let redacted: serde_json::Value = serde_json::from_str(
        &serde_json::to_string(&j)
            .unwrap()
            .replace(FIXTURES, "<fixtures>")
            .replace(&agent_path(), "<clawden-agent>"),
    )
    .unwrap();
    insta::assert_json_snapshot!("basic_group_json", redacted);
}

#[test]
fn per_agent_overrides_apply() {
    let o = clawden(&[
        "explain",
        "--config",
        &fixture("agents"),
        "--agent",
        "coder",
        "--session",
        "pr-42",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let j = json(&o);
    assert_eq!(j["sessionKey"], "agent:coder:pr-42");
    assert_eq!(j["sandboxed"], true);
    assert_eq!(j["scope"], "session");
    assert_eq!(j["scopeKey"], "agent:coder:pr-42");
    assert_eq!(j["workspaceAccess"], "rw");
    assert_eq!(j["mounts"][0]["host"], "/nonexistent-clawden-fixture/coder");
    assert_eq!(j["mounts"][0]["container"], "/workspace");
    assert_eq!(j["limits"]["memory"], 512u64 << 20);
    assert_eq!(j["limits"]["cpus"], 0.5);
    assert_eq!(
        j["toolPolicy"]["deny"]["tools"],
        serde_json::json!(["browser", "exec"])
    );
    assert!(
        j["toolPolicy"]["deny"]["source"]
            .as_str()
            .unwrap()
            .starts_with("agents.list[0].tools.sandbox.tools.deny")
    );
    // Even the coder's main session is sandboxed (mode all), while main's is not.
    let o = clawden(&[
        "explain",
        "--config",
        &fixture("agents"),
        "--session",
        "agent:coder:main",
        "--json",
    ]);
    assert_eq!(json(&o)["sandboxed"], true);
    let o = clawden(&[
        "explain",
        "--config",
        &fixture("agents"),
        "--session",
        "agent:reviewer:discord:x",
        "--json",
    ]);
    let j = json(&o);
    assert_eq!(j["workspaceAccess"], "ro");
    assert_eq!(j["limits"]["memory"], 2u64 << 30);
    // Not the default agent: under agents.defaults.workspace (OC).
    assert_eq!(
        j["agentWorkspace"],
        "/nonexistent-clawden-fixture/ws/reviewer"
    );
    insta::assert_snapshot!(
        "agents_coder_human",
        stdout(&clawden(&[
            "explain",
            "--config",
            &fixture("agents"),
            "--agent",
            "coder",
            "--session",
            "pr-42"
        ]))
    );
}

#[test]
fn each_scope_maps_to_its_container() {
    let session_a = json(&clawden(&[
        "explain",
        "--config",
        &fixture("agents"),
        "--session",
        "agent:coder:a",
        "--json",
    ]));
    let session_b = json(&clawden(&[
        "explain",
        "--config",
        &fixture("agents"),
        "--session",
        "agent:coder:b",
        "--json",
    ]));
    assert_ne!(session_a["containerName"], session_b["containerName"]);
    let agent_a = json(&clawden(&[
        "explain",
        "--config",
        &fixture("agents"),
        "--session",
        "x",
        "--json",
    ]));
    let agent_b = json(&clawden(&[
        "explain",
        "--config",
        &fixture("agents"),
        "--session",
        "y",
        "--json",
    ]));
    assert_eq!(agent_a["containerName"], agent_b["containerName"]);
    assert!(
        agent_a["containerName"]
            .as_str()
            .unwrap()
            .starts_with("clawden-sbx-agent-main-")
    );
    let shared = json(&clawden(&[
        "explain",
        "--config",
        &fixture("shared"),
        "--agent",
        "work",
        "--session",
        "x",
        "--json",
    ]));
    assert_eq!(shared["containerName"], "clawden-sbx-shared");
    assert_eq!(shared["scopeKey"], "shared");
    assert_eq!(
        shared["sandboxWorkspace"],
        "/nonexistent-clawden-fixture/sandboxes"
    );
}

#[test]
fn shared_scope_says_what_it_ignores() {
    let o = clawden(&[
        "explain",
        "--config",
        &fixture("shared"),
        "--agent",
        "work",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let j = json(&o);
    assert_eq!(
        j["limits"]["memory"],
        1u64 << 30,
        "agent docker.memory must be ignored under shared"
    );
    assert_eq!(j["prune"]["idleHours"], 24);
    let warnings = j["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("agents.list[0].sandbox.docker")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("agents.list[0].sandbox.prune")),
        "{warnings:?}"
    );
}

#[test]
fn hostile_config_lists_every_problem_and_exits_4() {
    let o = clawden(&["explain", "--config", &fixture("hostile"), "--json"]);
    assert_eq!(o.status.code(), Some(4));
    let j = json(&o);
    let codes: Vec<&str> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    for want in [
        "network_host",
        "unconfined_profile",
        "cap_drop_incomplete",
        "blocked_path",
        "covers_blocked_path",
        "non_absolute",
        "missing_source",
        "reserved_target",
        "bad_bind_mode",
    ] {
        assert!(codes.contains(&want), "missing {want} in {codes:?}");
    }
    for p in j["problems"].as_array().unwrap() {
        assert!(!p["message"].as_str().unwrap().is_empty());
        assert!(!p["fix"].as_str().unwrap().is_empty());
    }
    let human = stdout(&clawden(&["explain", "--config", &fixture("hostile")]));
    assert!(
        human.contains(r#"bind mount "/var:/mnt/var:ro" covers blocked path "/var/run""#),
        "{human}"
    );
}

#[test]
fn unknown_key_exits_3_naming_the_path() {
    let o = clawden(&["explain", "--config", &fixture("typo")]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("agents.defaults.sandbox.docker.memroy: unknown key"),
        "{err}"
    );
    let o = clawden(&["explain", "--config", &fixture("typo"), "--json"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(json(&o)["error"]["code"], "config_error");
}

#[test]
fn missing_config_file_is_an_error_but_no_config_is_defaults() {
    let o = clawden(&[
        "explain",
        "--config",
        "/nonexistent-clawden-fixture/nope.json5",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let o = clawden(&["explain", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j = json(&o);
    assert_eq!(j["mode"], "off");
    assert_eq!(j["sandboxed"], false);
    assert_eq!(j["image"], "clawden-sandbox:minimal");
}

#[test]
fn profiles_layer_under_the_config() {
    let o = clawden(&[
        "explain",
        "--profile",
        "strict",
        "--config",
        &fixture("basic"),
        "--session",
        "g",
        "--json",
    ]);
    let j = json(&o);
    assert_eq!(
        j["mode"], "non-main",
        "the user's file wins over the profile"
    );
    assert_eq!(
        j["scope"], "session",
        "the profile fills what the file leaves unset"
    );
    assert_eq!(j["limits"]["memory"], 512u64 << 20);
    assert_eq!(j["configFiles"][0], "profile strict");
    let o = clawden(&["explain", "--profile", "ci", "--session", "job-1", "--json"]);
    let j = json(&o);
    assert_eq!(
        (
            j["mode"].as_str(),
            j["scope"].as_str(),
            j["workspaceAccess"].as_str()
        ),
        (Some("all"), Some("session"), Some("rw"))
    );
    let o = clawden(&["explain", "--profile", "nope"]);
    assert_eq!(o.status.code(), Some(3));
    // The default profile is the defaults written out: same plan as no profile at all.
    let a = json(&clawden(&["explain", "--profile", "default", "--json"]));
    let b = json(&clawden(&["explain", "--json"]));
    assert_eq!(a["configHash"], b["configHash"]);
}

#[test]
fn malformed_session_keys_are_usage_errors() {
    let o = clawden(&["explain", "--session", "agent:main:", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o)["error"]["code"], "invalid_session_key");
    let o = clawden(&["explain", "--session", "agent:a:x", "--agent", "b"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_snapshot() {
    let o = clawden(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!("help", stdout(&o));
    let o = clawden(&["explain", "--help"]);
    insta::assert_snapshot!("explain_help", stdout(&o));
}

/// `explain` of one OpenClaw-compatibility case (tests/fixtures/oc/<name>.json5): the JSON to
/// assert on, and the human output as a snapshot.
fn oc_case(name: &str, extra: &[&str]) -> serde_json::Value {
    let path = format!("{FIXTURES}/oc/{name}.json5");
    let mut args = vec!["explain", "--config", path.as_str()];
    args.extend_from_slice(extra);
    let human = clawden(&args);
    assert_eq!(
        human.status.code(),
        Some(0),
        "{name}: {}",
        String::from_utf8_lossy(&human.stderr)
    );
    insta::assert_snapshot!(format!("oc_{name}"), stdout(&human));
    args.push("--json");
    json(&clawden(&args))
}

fn warnings(j: &serde_json::Value) -> Vec<String> {
    j["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn oc_main_key_is_ignored_with_a_warning() {
    // "home" would be the main session (on the host under non-main) if mainKey were honoured.
    let j = oc_case("main-key", &["--session", "home"]);
    assert_eq!(j["sessionKey"], "agent:main:home");
    assert_eq!(j["isMainSession"], false);
    assert_eq!(j["sandboxed"], true);
    assert_eq!(j["mainSessionKey"], "agent:main:main");
    assert!(
        warnings(&j)
            .iter()
            .any(|w| w.starts_with("session.mainKey \"home\" is ignored")),
        "{j}"
    );
}

#[test]
fn oc_default_agent_owns_the_default_workspace() {
    let j = oc_case("default-agent", &["--agent", "ops"]);
    assert_eq!(j["defaultAgent"], "work");
    assert_eq!(j["agentWorkspace"], "/nonexistent-clawden-fixture/ws/ops");
    assert!(
        j["sources"]["workspace"]
            .as_str()
            .unwrap()
            .starts_with("agents.defaults.workspace + \"/ops\"")
    );
    let path = format!("{FIXTURES}/oc/default-agent.json5");
    let work = json(&clawden(&["explain", "--config", &path, "--json"]));
    assert_eq!(work["agentId"], "work");
    assert_eq!(work["sessionKey"], "agent:work:main");
    assert_eq!(work["agentWorkspace"], "/nonexistent-clawden-fixture/ws");
    let main = json(&clawden(&[
        "explain", "--config", &path, "--agent", "main", "--json",
    ]));
    assert_eq!(
        main["agentWorkspace"],
        "/nonexistent-clawden-fixture/ws/main"
    );
    let own = json(&clawden(&[
        "explain", "--config", &path, "--agent", "own", "--json",
    ]));
    assert_eq!(own["agentWorkspace"], "/nonexistent-clawden-fixture/own");
}

#[test]
fn oc_legacy_per_session_maps_to_scope_session() {
    let j = oc_case("legacy", &["--session", "g"]);
    assert_eq!(j["scope"], "session");
    assert_eq!(j["scopeKey"], "agent:main:g");
    assert!(
        j["sources"]["scope"]
            .as_str()
            .unwrap()
            .starts_with("agents.defaults.sandbox.perSession")
    );
    assert!(
        warnings(&j).iter().any(|w| w.starts_with(
            "legacy key agents.defaults.sandbox.perSession: true is read as scope \"session\""
        )),
        "{j}"
    );
}

#[test]
fn oc_agent_ids_normalise_like_openclaw() {
    let j = oc_case("normalise", &["--agent", "_BOT"]);
    assert_eq!(j["agentId"], "_bot");
    assert_eq!(j["scopeKey"], "agent:_bot");
    assert_eq!(
        j["limits"]["memory"],
        256u64 << 20,
        "the _Bot! entry applies"
    );
    assert!(
        j["containerName"]
            .as_str()
            .unwrap()
            .starts_with("clawden-sbx-agent-_bot-")
    );
}

#[test]
fn oc_global_env_replaces_lang() {
    let j = oc_case("env", &[]);
    assert_eq!(j["envKeys"], serde_json::json!(["TZ"]));
}

#[test]
fn oc_long_prefix_is_accepted_and_cut_before_the_hash() {
    let j = oc_case("long-prefix", &["--session", "telegram:group:-100123"]);
    assert_eq!(j["problems"], serde_json::json!([]));
    let name = j["containerName"].as_str().unwrap();
    assert_eq!(name.len(), 63, "{name}");
    assert!(name.starts_with("a-rather-long-container-prefix-for-sbx-agent-main-"));
    let key = "agent:main:telegram:group:-100123";
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    };
    assert!(name.ends_with(&format!("-{}", &hash[..8])), "{name}");
}

#[test]
fn oc_both_naming_epochs() {
    let j = oc_case("naming-workspace", &["--session", "g"]);
    assert_eq!(j["naming"], "workspace");
    let ws_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"/nonexistent-clawden-fixture/ws"))
    };
    let key = format!("agent:main:g:workspace:{}", &ws_hash[..32]);
    assert_eq!(j["scopeKey"], key.as_str());
    let name_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    };
    assert_eq!(
        j["containerName"],
        format!("clawden-sbx-workspace-{}", &name_hash[..32]).as_str()
    );
    // A gateway of that epoch hands the qualified key: the same session, the same container.
    let path = format!("{FIXTURES}/oc/naming-workspace.json5");
    let q = json(&clawden(&[
        "explain",
        "--config",
        &path,
        "--session",
        &key,
        "--json",
    ]));
    assert_eq!(q["sessionKey"], "agent:main:g");
    assert_eq!(q["containerName"], j["containerName"]);
    // ... but one qualified with another workspace's hash is refused.
    let other = format!("agent:main:g:workspace:{}", "0".repeat(32));
    let o = clawden(&["explain", "--config", &path, "--session", &other, "--json"]);
    assert_eq!(o.status.code(), Some(4));
    let p = json(&o);
    assert!(
        p["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("qualified with workspace hash"),
        "{p}"
    );
    // The legacy epoch (the default) of the same session: slug names.
    let legacy = json(&clawden(&[
        "explain",
        "--config",
        &fixture("basic"),
        "--session",
        "g",
        "--json",
    ]));
    assert_eq!(legacy["naming"], "legacy");
    assert_eq!(legacy["scopeKey"], "agent:main");
}

#[test]
fn oc_entries_win_over_list() {
    let j = oc_case("entries-and-list", &["--agent", "work", "--session", "g"]);
    assert_eq!(j["scope"], "session");
    assert!(
        j["sources"]["scope"]
            .as_str()
            .unwrap()
            .starts_with("agents.entries.work.sandbox.scope")
    );
    assert!(
        warnings(&j)
            .iter()
            .any(|w| w.starts_with("agents.list is ignored")),
        "{j}"
    );
}
