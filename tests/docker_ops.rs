//! `list`, `recreate`, `prune` against the real Docker engine: through the library and through
//! the binary (`--json` shapes as snapshots, volatile values rewritten first). Every test uses
//! its own container prefix and agent ids, so it never touches another test's (or anyone
//! else's) sandboxes; [`Sweep`] removes what it made, also on failure.

mod common;

use clawden::engine::ContainerEngine;
use clawden::supervisor::Supervisor;
use clawden::supervisor::now_ms;
use clawden::supervisor::ops::{PruneReason, Selector};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A unique agent id (so scope keys and `--agent` never meet other tests' sandboxes).
fn agent_id(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}

/// Config text: session scope, the test's prefix, `sandbox`/`docker` extras for the defaults,
/// `list` entries for agents.
fn config_text(world: &World, prefix: &str, sandbox: &str, docker: &str, list: &str) -> String {
    format!(
        r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", scope: "session", workspaceRoot: "{root}", {sandbox} docker: {{ containerPrefix: "{prefix}", {docker} }} }} }}, list: [ {list} ] }} }}"#,
        ws = world.path("ws").display(),
        root = world.path("sandboxes").display(),
    )
}

fn supervisor(
    world: &World,
    engine: Arc<clawden::engine::docker::DockerEngine>,
    text: &str,
) -> Supervisor {
    world.supervisor(engine, loaded(text).unwrap())
}

/// Run the binary with the config text written to a file, stdin not a terminal.
fn clawden(world: &World, text: &str, args: &[&str]) -> (i32, Value, String) {
    let cfg = world.path("config.json5");
    std::fs::write(&cfg, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_clawden"))
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env("CLAWDEN_HOME", world.path("state"))
        .env("HOME", world.path("home"))
        .env_remove("CLAWDEN_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        o.status.code().unwrap_or(-1),
        json,
        stdout + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Rewrite what changes between runs: the prefix, agent ids, name hashes, ids and times.
fn stable(v: &Value, prefix: &str, agents: &[(&str, &str)]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match (k.as_str(), x) {
                        ("ageSeconds" | "idleSeconds", Value::Number(n)) => {
                            assert!(n.as_u64().unwrap() < 3600, "{k} {n}");
                            Value::String("[seconds]".into())
                        }
                        ("id", Value::String(_)) => Value::String("[id]".into()),
                        ("name", Value::String(s)) => {
                            let s = s.replace(prefix, "PREFIX-");
                            // The slug ends in 8 hex of sha256(scope key), which has the random id.
                            let s = match s.rsplit_once('-') {
                                Some((head, h))
                                    if h.len() == 8 && h.chars().all(|c| c.is_ascii_hexdigit()) =>
                                {
                                    format!("{head}-HASH")
                                }
                                _ => s,
                            };
                            Value::String(rename(&s, agents))
                        }
                        _ => stable(x, prefix, agents),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| stable(x, prefix, agents)).collect()),
        Value::String(s) => Value::String(rename(s, agents)),
        other => other.clone(),
    }
}

fn rename(s: &str, agents: &[(&str, &str)]) -> String {
    agents
        .iter()
        .fold(s.to_string(), |acc, (from, to)| acc.replace(from, to))
}

/// The `sandboxes` of `list --json` that belong to this test (the engine may hold others).
fn own(list: &Value, prefix: &str) -> Value {
    Value::Array(
        list["sandboxes"]
            .as_array()
            .expect("sandboxes array")
            .iter()
            .filter(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .collect(),
    )
}

/// Removes images made for a test, after its containers (declare it before the `Sweep`).
struct ImageSweep(Vec<String>);
impl Drop for ImageSweep {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

async fn build_variant(
    engine: &clawden::engine::docker::DockerEngine,
    tag: &str,
    label: &str,
) -> String {
    let dockerfile = format!(
        "FROM {}\nLABEL clawden.test={label}\n",
        clawden::images::MINIMAL_TAG
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    engine
        .build_image(tag, b.into_inner().unwrap(), &|_| {})
        .await
        .unwrap()
}

#[test]
fn list_shows_config_and_image_currency() {
    rt().block_on(async {
        let engine = engine().await;
        let image_tag = format!(
            "cdt-img-{}:t",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut images = ImageSweep(vec![image_tag.clone()]);
        let sw = sweep("list");
        let world = World::new();
        let (a, b) = (agent_id("la"), agent_id("lb"));
        let list = format!(r#"{{ id: "{a}" }}, {{ id: "{b}", sandbox: {{ docker: {{ image: "{image_tag}" }} }} }}"#);
        images.0.push(build_variant(&engine, &image_tag, "1").await);
        let text = config_text(&world, &sw.prefix, "", "", &list);
        let sup = supervisor(&world, engine.clone(), &text);
        for s in [format!("agent:{a}:one"), format!("agent:{a}:two")] {
            sup.ensure(Some(&s), None).await.unwrap();
        }
        let b_name = sup
            .ensure(Some(&format!("agent:{b}:x")), None)
            .await
            .unwrap()
            .container_name;
        let mine = |l: Vec<clawden::supervisor::ops::SandboxInfo>| -> BTreeMap<String, (bool, bool, bool)> {
            l.into_iter()
                .filter(|s| s.name.starts_with(&sw.prefix))
                .map(|s| (s.scope_key, (s.running, s.config_current, s.image_matches)))
                .collect()
        };
        let all_current: BTreeMap<String, (bool, bool, bool)> = [
            (format!("agent:{a}:one"), (true, true, true)),
            (format!("agent:{a}:two"), (true, true, true)),
            (format!("agent:{b}:x"), (true, true, true)),
        ]
        .into();
        assert_eq!(mine(sup.list().await.unwrap()), all_current);

        // The JSON shape, through the binary.
        let (code, json, out) = clawden(&world, &text, &["list", "--json"]);
        assert_eq!(code, 0, "{out}");
        insta::assert_json_snapshot!(
            "list_json_current",
            stable(&own(&json, &sw.prefix), &sw.prefix, &[(&a, "AGENT-A"), (&b, "AGENT-B"), (&image_tag, "IMAGE")])
        );

        // The image agent b names is rebuilt: its sandbox no longer matches the image, but its
        // config is still current.
        images.0.push(build_variant(&engine, &image_tag, "2").await);
        let mut want = all_current.clone();
        want.insert(format!("agent:{b}:x"), (true, true, false));
        assert_eq!(mine(sup.list().await.unwrap()), want);

        // Agent a's config changes: its sandboxes are stale, with the recreate command as hint.
        let changed_list = format!(r#"{{ id: "{a}", sandbox: {{ docker: {{ memory: "512m" }} }} }}, {{ id: "{b}", sandbox: {{ docker: {{ image: "{image_tag}" }} }} }}"#);
        let changed_text = config_text(&world, &sw.prefix, "", "", &changed_list);
        let changed = supervisor(&world, engine.clone(), &changed_text);
        // A stopped sandbox is listed as not running.
        docker(&["stop", "-t", "0", &b_name]);
        let got = changed.list().await.unwrap();
        let stale: Vec<_> = got
            .iter()
            .filter(|s| s.name.starts_with(&sw.prefix) && !s.config_current)
            .collect();
        assert_eq!(stale.len(), 2, "{got:?}");
        assert!(
            got.iter()
                .any(|s| s.name == b_name && !s.running && s.config_current && !s.image_matches),
            "{got:?}"
        );
        for s in &stale {
            assert_eq!(s.agent_id, a);
            let hint = s.hint.as_deref().unwrap();
            assert!(
                hint.contains(&format!("clawden recreate --session {}", s.scope_key)),
                "{hint}"
            );
        }
        let (code, json, out) = clawden(&world, &changed_text, &["list", "--json"]);
        assert_eq!(code, 0, "{out}");
        insta::assert_json_snapshot!(
            "list_json_stale",
            stable(&own(&json, &sw.prefix), &sw.prefix, &[(&a, "AGENT-A"), (&b, "AGENT-B"), (&image_tag, "IMAGE")])
        );
        // The human table names every sandbox and the hints.
        let (code, _, out) = clawden(&world, &changed_text, &["list"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("NAME"), "{out}");
        assert!(out.contains("stale") && out.contains("(outdated)") && out.contains("hints:"), "{out}");
    });
}

#[test]
fn recreate_by_session_agent_and_all_removes_exactly_those() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("recr");
        let world = World::new();
        let (a, b, c) = (agent_id("ra"), agent_id("rb"), agent_id("rc"));
        // Agent c uses agent scope: one sandbox, scope key agent:<c>.
        let list = format!(
            r#"{{ id: "{a}" }}, {{ id: "{b}" }}, {{ id: "{c}", sandbox: {{ scope: "agent" }} }}"#
        );
        let text = config_text(&world, &sw.prefix, "", "", &list);
        let sup = supervisor(&world, engine.clone(), &text);
        let sessions = [
            format!("agent:{a}:one"),
            format!("agent:{a}:two"),
            format!("agent:{b}:one"),
            format!("agent:{b}:two"),
            format!("agent:{c}:one"),
        ];
        for s in &sessions {
            sup.ensure(Some(s), None).await.unwrap();
        }
        let remaining = || {
            let mut v: Vec<String> = containers_with_prefix(&sw.prefix)
                .into_iter()
                .map(|n| {
                    docker_inspect(&n).unwrap()["Config"]["Labels"]["clawden.scopeKey"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(remaining().len(), 5, "{:?}", remaining()); // a×2, b×2, c×1

        // --session with a session key: exactly that sandbox; not a terminal, so no question.
        let (code, json, out) = clawden(
            &world,
            &text,
            &["recreate", "--session", &sessions[0], "--json"],
        );
        assert_eq!(code, 0, "{out}");
        insta::assert_json_snapshot!(
            "recreate_session_json",
            stable(&json, &sw.prefix, &[(&a, "AGENT-A")])
        );
        assert_eq!(
            remaining(),
            [
                format!("agent:{a}:two"),
                format!("agent:{b}:one"),
                format!("agent:{b}:two"),
                format!("agent:{c}")
            ]
        );
        assert!(
            !sup.state()
                .load()
                .0
                .last_used_ms
                .keys()
                .any(|k| k.contains(&a) && k.contains("one")),
            "forgotten in the state file"
        );

        // --session with a session of an agent-scope agent: that agent's one sandbox.
        let (code, _, out) = clawden(
            &world,
            &text,
            &[
                "recreate",
                "--session",
                &format!("agent:{c}:whatever"),
                "--force",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("removed"), "{out}");
        assert_eq!(remaining().len(), 3);

        // --agent: every sandbox of that agent.
        let (code, json, out) = clawden(&world, &text, &["recreate", "--agent", &b, "--json"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(json["removed"].as_array().unwrap().len(), 2, "{json}");
        assert_eq!(remaining(), [format!("agent:{a}:two")]);

        // Nothing matches: success, nothing removed.
        let (code, json, _) = clawden(&world, &text, &["recreate", "--agent", &b, "--json"]);
        assert_eq!((code, json), (0, serde_json::json!({"removed": []})));

        // Recreated on next use.
        sup.ensure(Some(&sessions[2]), None).await.unwrap();
        assert_eq!(remaining().len(), 2);

        // --all: every sandbox of this config (its prefix), and only those.
        let all = sup.select(&Selector::All).await.unwrap();
        assert!(
            all.iter().all(|s| s.name.starts_with(&sw.prefix)),
            "{all:?}"
        );
        let (code, json, out) = clawden(&world, &text, &["recreate", "--all", "--json"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(json["removed"].as_array().unwrap().len(), 2, "{json}");
        assert_eq!(remaining(), Vec::<String>::new());

        // Exactly one selector is required.
        let (code, _, out) = clawden(&world, &text, &["recreate"]);
        assert_eq!(code, 2, "{out}");
    });
}

#[test]
fn prune_removes_exactly_the_idle_and_old_ones_by_their_own_agents_settings() {
    rt().block_on(async {
        let engine = engine().await;
        let sw = sweep("prune");
        let world = World::new();
        // Defaults: idle 1h, age 2d. keep: never pruned. lazy: idle 48h. shared: scope shared,
        // so its own prune settings are ignored (the global ones apply).
        let (dflt, keep, lazy, shr) = (
            agent_id("pd"),
            agent_id("pk"),
            agent_id("pl"),
            agent_id("ps"),
        );
        let list = format!(
            r#"{{ id: "{dflt}" }},
               {{ id: "{keep}", sandbox: {{ prune: {{ idleHours: 0, maxAgeDays: 0 }} }} }},
               {{ id: "{lazy}", sandbox: {{ prune: {{ idleHours: 48 }} }} }},
               {{ id: "{shr}", sandbox: {{ scope: "shared", prune: {{ idleHours: 0, maxAgeDays: 0 }} }} }}"#
        );
        let text = config_text(
            &world,
            &sw.prefix,
            "prune: { idleHours: 1, maxAgeDays: 2 },",
            "",
            &list,
        );
        let sup = supervisor(&world, engine.clone(), &text);
        let now = now_ms();
        // (session, created ago, last used ago) — created through ensure unless older than now.
        let cases: Vec<(String, u64, u64)> = vec![
            (format!("agent:{dflt}:fresh"), 0, 0),
            (format!("agent:{dflt}:idle2h"), 0, 2 * HOUR),
            (format!("agent:{dflt}:old3d"), 3 * DAY, 0),
            (format!("agent:{keep}:idle30d"), 30 * DAY, 30 * DAY),
            (format!("agent:{lazy}:idle3h"), 0, 3 * HOUR),
            (format!("agent:{lazy}:idle3d"), 0, 3 * DAY),
            (format!("agent:{lazy}:old3d"), 3 * DAY, 0),
            (format!("agent:{shr}:any"), 0, 3 * HOUR),
        ];
        let mut names = BTreeMap::new();
        for (session, created_ago, used_ago) in &cases {
            let name = if *created_ago == 0 {
                sup.ensure(Some(session), None).await.unwrap().container_name
            } else {
                // Labels cannot change after create: make an "old" one with an old createdAtMs.
                let (_, plan) = sup.plan(Some(session), None).unwrap();
                // What the supervisor prepares before a create (dirs, staged mounts).
                clawden::supervisor::mounting::prepare(sup.state().dir(), &plan.container).unwrap();
                let mut labels = plan.container.labels.clone();
                labels.insert("clawden.createdAtMs".into(), (now - created_ago).to_string());
                labels.insert("clawden.configHash".into(), plan.config_hash.clone());
                engine.create(&plan.container, &labels).await.unwrap();
                plan.container.name
            };
            sup.state().touch(&name, now - used_ago).unwrap();
            names.insert(name, session.clone());
        }
        let expected: BTreeMap<String, &str> = [
            (format!("agent:{dflt}:idle2h"), "idle"),
            (format!("agent:{dflt}:old3d"), "maxAge"),
            (format!("agent:{lazy}:idle3d"), "idle"),
            (format!("agent:{lazy}:old3d"), "maxAge"),
            ("shared".to_string(), "idle"),
        ]
        .into();
        let verdicts = |removed: &[clawden::supervisor::ops::Removed]| -> BTreeMap<String, &str> {
            removed
                .iter()
                .map(|r| {
                    (
                        r.scope_key.clone(),
                        match r.reason.unwrap() {
                            PruneReason::Idle { .. } => "idle",
                            PruneReason::MaxAge { .. } => "maxAge",
                            PruneReason::RunGone => "runGone",
                        },
                    )
                })
                .collect()
        };

        // Dry run: the same verdicts, nothing removed.
        let dry = sup.prune(now_ms(), true).await.unwrap();
        assert_eq!(verdicts(&dry), expected);
        assert_eq!(containers_with_prefix(&sw.prefix).len(), cases.len());
        let (code, json, out) = clawden(&world, &text, &["prune", "--dry-run", "--json"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(json["dryRun"], true);
        assert_eq!(json["removed"].as_array().unwrap().len(), expected.len(), "{json}");

        // For real, through the binary: exactly those are gone, the rest untouched.
        let (code, _, out) = clawden(&world, &text, &["prune"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("idle 2h0m > idleHours 1"), "{out}");
        assert!(out.contains("maxAgeDays 2"), "{out}");
        let mut left: Vec<String> = containers_with_prefix(&sw.prefix)
            .into_iter()
            .map(|n| names[&n].clone())
            .collect();
        left.sort();
        let mut want = vec![
            format!("agent:{dflt}:fresh"),
            format!("agent:{keep}:idle30d"),
            format!("agent:{lazy}:idle3h"),
        ];
        want.sort();
        assert_eq!(left, want);
        let state = sup.state().load().0.last_used_ms;
        assert_eq!(
            state.keys().filter(|k| k.starts_with(&sw.prefix)).count(),
            3,
            "pruned ones are forgotten: {state:?}"
        );
        // Nothing left to prune.
        assert!(sup.prune(now_ms(), false).await.unwrap().is_empty());
    });
}
