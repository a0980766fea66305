//! Table tests for every merge rule of sandbox.md §1.

use super::load::{ConfigLayer, Env, LoadedConfig, parse_config};
use super::resolve::{Source, resolve};
use super::schema::{Mode, Scope, WorkspaceAccess};
use super::size::ByteSize;
use std::path::PathBuf;

fn env() -> Env {
    Env {
        clawden_home: Some("/state".into()),
        home: Some("/home/u".into()),
        ..Default::default()
    }
}

fn cfg(layers: &[(&str, &str)]) -> LoadedConfig {
    LoadedConfig {
        layers: layers
            .iter()
            .map(|(origin, text)| ConfigLayer {
                origin: origin.to_string(),
                file: parse_config(text, origin).unwrap(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A table row: (config text or snippet, expected value, expected (name, value) pairs).
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn key(s: &Source) -> &str {
    match s {
        Source::Key { key, .. } => key,
        Source::Default => "default",
    }
}

#[test]
fn defaults_when_nothing_is_configured() {
    let e = resolve(&cfg(&[]), "main", &env());
    assert_eq!(e.mode.value, Mode::Off);
    assert_eq!(e.scope.value, Scope::Agent);
    assert_eq!(e.workspace_access.value, WorkspaceAccess::None);
    assert_eq!(e.workspace_root.value, PathBuf::from("/state/sandboxes"));
    assert_eq!(e.agent_workspace.value, PathBuf::from("/state/workspace"));
    let d = &e.docker;
    assert_eq!(d.image.value, "clawden-sandbox:minimal");
    assert_eq!(d.container_prefix.value, "clawden-sbx-");
    assert_eq!(d.workdir.value, "/workspace");
    assert!(d.read_only_root.value);
    assert_eq!(d.network.value, "none");
    assert_eq!(d.user.value, None);
    assert_eq!(d.cap_drop.value, vec!["ALL"]);
    assert_eq!(d.env["LANG"].value, "C.UTF-8");
    assert_eq!(d.pids_limit.value, 256);
    assert_eq!(d.memory.value, ByteSize(1 << 30));
    assert_eq!(d.memory_swap.value, ByteSize(1 << 30));
    assert_eq!(d.cpus.value.nano_cpus(), 1_000_000_000);
    assert_eq!(d.ulimits["core"].value, (0, 0));
    assert_eq!(d.ulimits["nofile"].value, (1024, 4096));
    assert_eq!(d.tmpfs.value.len(), 3);
    assert!(d.binds.is_empty());
    assert!(
        !d.allow_external_sources.value
            && !d.allow_reserved_targets.value
            && !d.allow_namespace_join.value
    );
    assert_eq!(
        (e.prune_idle_hours.value, e.prune_max_age_days.value),
        (24, 7)
    );
    assert!(e.tool_allow.value.contains(&"exec".to_string()));
    assert!(e.tool_deny.value.contains(&"browser".to_string()));
    assert!(e.tool_allow.source.is_default());
}

#[test]
fn agent_value_beats_global_beats_default() {
    let text = r#"{ agents: {
        defaults: { sandbox: { mode: "non-main", scope: "session", docker: { memory: "2g", image: "g" } } },
        list: [ { id: "work", sandbox: { mode: "all", docker: { memory: "512m" } } } ] } }"#;
    let c = cfg(&[("f", text)]);
    let work = resolve(&c, "work", &env());
    assert_eq!(work.mode.value, Mode::All);
    assert_eq!(key(&work.mode.source), "agents.list[0].sandbox.mode");
    assert_eq!(work.scope.value, Scope::Session);
    assert_eq!(key(&work.scope.source), "agents.defaults.sandbox.scope");
    assert_eq!(work.docker.memory.value, ByteSize(512 << 20));
    // memorySwap follows the resolved memory when unset.
    assert_eq!(work.docker.memory_swap.value, ByteSize(512 << 20));
    assert_eq!(work.docker.image.value, "g");
    assert!(work.docker.pids_limit.source.is_default());
    let main = resolve(&c, "main", &env());
    assert_eq!(main.mode.value, Mode::NonMain);
    assert_eq!(main.docker.memory.value, ByteSize(2 << 30));
}

#[test]
fn entries_form_is_read_and_wins_over_list() {
    // Both in one file: entries is used, list ignored entirely (newer OpenClaw), with a warning.
    let text = r#"{ agents: {
        list: [ { id: "work", sandbox: { scope: "session", workspaceAccess: "ro" } }, { id: "only-listed", sandbox: { mode: "all" } } ],
        entries: { work: { sandbox: { scope: "shared" }, workspace: "/w" } } } }"#;
    let c = cfg(&[("f", text)]);
    let e = resolve(&c, "work", &env());
    assert_eq!(e.scope.value, Scope::Shared);
    assert_eq!(key(&e.scope.source), "agents.entries.work.sandbox.scope");
    assert_eq!(
        e.workspace_access.value,
        WorkspaceAccess::None,
        "the list entry's workspaceAccess must not merge in"
    );
    assert_eq!(e.agent_workspace.value, PathBuf::from("/w"));
    assert!(
        e.compat_warnings
            .iter()
            .any(|w| w.starts_with("agents.list is ignored (f)")),
        "{:?}",
        e.compat_warnings
    );
    assert_eq!(resolve(&c, "only-listed", &env()).mode.value, Mode::Off);
    assert!(!super::resolve::known_agents(&c).contains(&"only-listed".to_string()));
    // Only the list: read as before, no warning.
    let list_only = cfg(&[(
        "f",
        r#"{ agents: { list: [ { id: "work", sandbox: { scope: "session" } } ] } }"#,
    )]);
    let e = resolve(&list_only, "work", &env());
    assert_eq!(e.scope.value, Scope::Session);
    assert!(e.compat_warnings.is_empty(), "{:?}", e.compat_warnings);
}

#[test]
fn the_default_agent_and_its_workspace() {
    // (config, default agent, [(agent, workspace)])
    let table: &[Case] = &[
        (
            "{}",
            "main",
            &[("main", "/state/workspace"), ("x", "/state/workspace-x")],
        ),
        (
            r#"{ agents: { defaults: { workspace: "~/ws" } } }"#,
            "main",
            &[("main", "/home/u/ws"), ("x", "/home/u/ws/x")],
        ),
        (
            r#"{ agents: { defaults: { workspace: "/ws" }, list: [ { id: "a" }, { id: "B", default: true }, { id: "c", default: true } ] } }"#,
            "b",
            &[
                ("b", "/ws"),
                ("a", "/ws/a"),
                ("c", "/ws/c"),
                ("main", "/ws/main"),
            ],
        ),
        (
            r#"{ agents: { defaults: { workspace: "/ws" }, list: [ { id: "first" }, { id: "own", workspace: "/own" } ] } }"#,
            "first",
            &[("first", "/ws"), ("own", "/own"), ("main", "/ws/main")],
        ),
        (
            r#"{ agents: { list: [ { id: "first" }, { id: "second" } ] } }"#,
            "first",
            &[
                ("first", "/state/workspace"),
                ("second", "/state/workspace-second"),
                ("main", "/state/workspace-main"),
            ],
        ),
        // entries: written order, not sorted order, decides "the first entry".
        (
            r#"{ agents: { defaults: { workspace: "/ws" }, entries: { zed: {}, alpha: {} } } }"#,
            "zed",
            &[("zed", "/ws"), ("alpha", "/ws/alpha")],
        ),
        (
            r#"{ agents: { entries: { zed: {}, alpha: { default: true } } } }"#,
            "alpha",
            &[
                ("alpha", "/state/workspace"),
                ("zed", "/state/workspace-zed"),
            ],
        ),
    ];
    for (text, want_default, workspaces) in table {
        let c = cfg(&[("f", text)]);
        assert_eq!(super::resolve::default_agent(&c), *want_default, "{text}");
        for (agent, ws) in *workspaces {
            let e = resolve(&c, agent, &env());
            assert_eq!(
                e.agent_workspace.value,
                PathBuf::from(ws),
                "{text}: {agent}"
            );
            assert_eq!(e.default_agent, *want_default);
        }
    }
    // The source of a derived workspace names the key it came from.
    let c = cfg(&[("f", r#"{ agents: { defaults: { workspace: "/ws" } } }"#)]);
    assert_eq!(
        key(&resolve(&c, "x", &env()).agent_workspace.source),
        "agents.defaults.workspace + \"/x\""
    );
}

#[test]
fn legacy_per_session_maps_to_scope_with_a_warning() {
    // (sandbox section, scope, source key, warning contains)
    let table = [
        (
            "{ perSession: true }",
            Scope::Session,
            "agents.defaults.sandbox.perSession",
            "read as scope \"session\"",
        ),
        (
            "{ perSession: false }",
            Scope::Shared,
            "agents.defaults.sandbox.perSession",
            "read as scope \"shared\"",
        ),
        (
            "{ perSession: true, scope: \"agent\" }",
            Scope::Agent,
            "agents.defaults.sandbox.scope",
            "is ignored",
        ),
    ];
    for (section, scope, source, warning) in table {
        let text = format!("{{ agents: {{ defaults: {{ sandbox: {section} }} }} }}");
        let e = resolve(&cfg(&[("f", &text)]), "main", &env());
        assert_eq!(e.scope.value, scope, "{section}");
        assert_eq!(key(&e.scope.source), source, "{section}");
        assert_eq!(e.compat_warnings.len(), 1, "{:?}", e.compat_warnings);
        assert!(
            e.compat_warnings[0].contains(warning),
            "{:?}",
            e.compat_warnings
        );
        assert!(e.compat_warnings[0].contains("perSession"));
    }
    // An agent's own scope wins over a global perSession, which is then never read.
    let text = r#"{ agents: { defaults: { sandbox: { perSession: true } }, list: [ { id: "w", sandbox: { scope: "agent" } } ] } }"#;
    let e = resolve(&cfg(&[("f", text)]), "w", &env());
    assert_eq!(e.scope.value, Scope::Agent);
    assert!(e.compat_warnings.is_empty(), "{:?}", e.compat_warnings);
    // An agent's perSession beats the global scope.
    let text = r#"{ agents: { defaults: { sandbox: { scope: "shared" } }, list: [ { id: "w", sandbox: { perSession: true } } ] } }"#;
    let e = resolve(&cfg(&[("f", text)]), "w", &env());
    assert_eq!(e.scope.value, Scope::Session);
    assert_eq!(key(&e.scope.source), "agents.list[0].sandbox.perSession");
}

#[test]
fn a_global_env_replaces_the_default_lang() {
    // (global env, agent env) → env
    let table: &[Case] = &[
        ("", "", &[("LANG", "C.UTF-8")]),
        ("env: { A: \"1\" }", "", &[("A", "1")]),
        ("env: {}", "", &[]),
        ("", "env: { B: \"2\" }", &[("B", "2"), ("LANG", "C.UTF-8")]),
        (
            "env: { A: \"1\" }",
            "env: { B: \"2\" }",
            &[("A", "1"), ("B", "2")],
        ),
        (
            "env: { LANG: \"de_DE.UTF-8\" }",
            "",
            &[("LANG", "de_DE.UTF-8")],
        ),
    ];
    for (global, agent, want) in table {
        let text = format!(
            "{{ agents: {{ defaults: {{ sandbox: {{ docker: {{ {global} }} }} }}, list: [ {{ id: \"w\", sandbox: {{ docker: {{ {agent} }} }} }} ] }} }}"
        );
        let e = resolve(&cfg(&[("f", &text)]), "w", &env());
        let got: Vec<(&str, &str)> = e
            .docker
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(got, *want, "{global} / {agent}");
    }
}

#[test]
fn agent_ids_match_after_normalisation() {
    let text = r#"{ agents: { list: [ { id: "Work Bot", sandbox: { mode: "all" } } ] } }"#;
    let e = resolve(&cfg(&[("f", text)]), "work-bot", &env());
    assert_eq!(e.mode.value, Mode::All);
}

#[test]
fn binds_concatenate_global_then_agent() {
    let text = r#"{ agents: {
        defaults: { sandbox: { docker: { binds: ["/a:/a", "/b:/b:ro"] } } },
        list: [ { id: "work", sandbox: { docker: { binds: ["/c:/c"] } } } ] } }"#;
    let e = resolve(&cfg(&[("f", text)]), "work", &env());
    let binds: Vec<&str> = e.docker.binds.iter().map(|b| b.value.as_str()).collect();
    assert_eq!(binds, ["/a:/a", "/b:/b:ro", "/c:/c"]);
    assert_eq!(
        key(&e.docker.binds[2].source),
        "agents.list[0].sandbox.docker.binds[0]"
    );
}

#[test]
fn env_and_ulimits_merge_per_key_agent_wins() {
    let text = r#"{ agents: {
        defaults: { sandbox: { docker: { env: { A: "g", B: "g" }, ulimits: { nofile: 100, nproc: { soft: 10, hard: 20 } } } } },
        list: [ { id: "work", sandbox: { docker: { env: { B: "a", C: "a" }, ulimits: { nofile: { soft: 5, hard: 6 } } } } } ] } }"#;
    let e = resolve(&cfg(&[("f", text)]), "work", &env());
    let env: Vec<(&str, &str)> = e
        .docker
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_str()))
        .collect();
    // The global env replaces the default LANG (OC).
    assert_eq!(env, [("A", "g"), ("B", "a"), ("C", "a")]);
    assert_eq!(e.docker.ulimits["nofile"].value, (5, 6));
    assert_eq!(e.docker.ulimits["nproc"].value, (10, 20));
    assert_eq!(e.docker.ulimits["core"].value, (0, 0));
}

#[test]
fn shared_scope_ignores_agent_docker_and_prune() {
    let text = r#"{ agents: {
        defaults: { sandbox: { scope: "shared", docker: { memory: "2g", binds: ["/g:/g"] }, prune: { idleHours: 5 } } },
        list: [ { id: "work", sandbox: { mode: "all", docker: { memory: "512m", binds: ["/a:/a"] }, prune: { idleHours: 1 } } } ] } }"#;
    let e = resolve(&cfg(&[("f", text)]), "work", &env());
    assert_eq!(
        e.mode.value,
        Mode::All,
        "non-docker agent overrides still apply"
    );
    assert_eq!(e.docker.memory.value, ByteSize(2 << 30));
    assert_eq!(e.prune_idle_hours.value, 5);
    let binds: Vec<&str> = e.docker.binds.iter().map(|b| b.value.as_str()).collect();
    assert_eq!(binds, ["/g:/g"]);
    assert_eq!(e.ignored.len(), 2, "{:?}", e.ignored);
    assert!(e.ignored[0].contains("agents.list[0].sandbox.docker"));
    // An agent that sets scope shared itself: its docker overrides are ignored too.
    let text2 = r#"{ agents: { list: [ { id: "w", sandbox: { scope: "shared", docker: { memory: "512m" } } } ] } }"#;
    let e2 = resolve(&cfg(&[("f", text2)]), "w", &env());
    assert_eq!(e2.docker.memory.value, ByteSize(1 << 30));
    assert_eq!(e2.ignored.len(), 1);
}

#[test]
fn user_file_overrides_profile_layer() {
    let profile = r#"{ agents: { defaults: { sandbox: { mode: "all", scope: "session", docker: { memory: "512m", cpus: 0.5 } } } } }"#;
    let user = r#"{ agents: { defaults: { sandbox: { scope: "agent" } } } }"#;
    let c = cfg(&[("profile strict", profile), ("/u.json5", user)]);
    let e = resolve(&c, "main", &env());
    assert_eq!(e.mode.value, Mode::All);
    assert!(matches!(&e.mode.source, Source::Key { origin, .. } if origin == "profile strict"));
    assert_eq!(e.scope.value, Scope::Agent);
    assert!(matches!(&e.scope.source, Source::Key { origin, .. } if origin == "/u.json5"));
    assert_eq!(e.docker.memory.value, ByteSize(512 << 20));
}

#[test]
fn workspaces_follow_openclaw() {
    let text = r#"{ agents: { defaults: { workspace: "~/ws" }, list: [ { id: "own", workspace: "/own" }, { id: "other" } ] } }"#;
    let c = cfg(&[("f", text)]);
    // "own" is the default agent (the first entry) but has its own workspace; "main" is not
    // the default agent, so it no longer gets agents.defaults.workspace itself.
    assert_eq!(
        resolve(&c, "main", &env()).agent_workspace.value,
        PathBuf::from("/home/u/ws/main")
    );
    assert_eq!(
        resolve(&c, "own", &env()).agent_workspace.value,
        PathBuf::from("/own")
    );
    // Not the default agent ("own" is, as the first entry): under agents.defaults.workspace.
    assert_eq!(
        resolve(&c, "other", &env()).agent_workspace.value,
        PathBuf::from("/home/u/ws/other")
    );
}

#[test]
fn tool_policy_agent_then_global_then_default_and_also_allow() {
    let text = r#"{ tools: { sandbox: { tools: { allow: ["exec", "read"], alsoAllow: ["browser"], deny: ["cron"] } } },
        agents: { list: [ { id: "w", tools: { sandbox: { tools: { deny: ["exec"] } } } } ] } }"#;
    let c = cfg(&[("f", text)]);
    let w = resolve(&c, "w", &env());
    assert_eq!(w.tool_allow.value, ["exec", "read", "browser"]);
    assert_eq!(key(&w.tool_allow.source), "tools.sandbox.tools.allow");
    assert_eq!(w.tool_deny.value, ["exec"]);
    assert_eq!(
        key(&w.tool_deny.source),
        "agents.list[0].tools.sandbox.tools.deny"
    );
    let m = resolve(&c, "main", &env());
    assert_eq!(m.tool_deny.value, ["cron"]);
}

#[test]
fn session_settings_are_read_and_main_key_is_ignored_with_a_warning() {
    let c = cfg(&[("f", r#"{ session: { mainKey: "Home", scope: "global" } }"#)]);
    let (default_agent, s) = super::resolve::session_settings(&c);
    assert_eq!(default_agent, "main");
    assert_eq!(s, super::schema::SessionScope::Global);
    let w = super::resolve::compat_warnings(&c);
    assert_eq!(
        w,
        [
            "session.mainKey \"Home\" is ignored (f): the main session is always \"main\", as in OpenClaw"
        ]
    );
    assert_eq!(resolve(&c, "main", &env()).compat_warnings, w);
    for quiet in [
        r#"{ session: { scope: "global" } }"#,
        r#"{ session: { mainKey: " Main " } }"#,
    ] {
        let c = cfg(&[("f", quiet)]);
        assert!(super::resolve::compat_warnings(&c).is_empty(), "{quiet}");
    }
}

#[test]
fn agent_id_normalisation() {
    use super::resolve::normalize_agent_id as n;
    let a63 = "a".repeat(63);
    let a64 = "a".repeat(64);
    let long_dash = format!("{a63}-b");
    let long_dash_want = format!("{a63}-");
    let long_bang = format!("{a63}!b");
    let table: Vec<(&str, &str)> = vec![
        ("main", "main"),
        ("Work", "work"),
        ("  Work  ", "work"),
        ("\u{feff}work", "work"),
        ("my agent!", "my-agent"),
        ("", "main"),
        ("   ", "main"),
        ("---", "main"),
        ("!!!", "main"),
        ("a_b-c", "a_b-c"),
        ("-x-", "x"),
        // Valid ids keep trailing - and _ (only the fallback strips dashes).
        ("x_-", "x_-"),
        ("a_", "a_"),
        // A leading _ is not valid but survives the fallback (only dashes are stripped).
        ("_x", "_x"),
        ("_x!", "_x"),
        ("__", "__"),
        ("-_x", "_x"),
        // Runs of invalid characters collapse to one dash; literal dashes are kept.
        ("a -b", "a--b"),
        ("a::b", "a-b"),
        ("Ünïcode", "n-code"),
        // Unicode lowercasing first: the Kelvin sign becomes an ASCII k.
        ("\u{212a}x", "kx"),
        // The 64-character cut comes after the dash stripping: it can leave a trailing dash.
        (&long_dash, &long_dash_want),
        (&long_bang, &long_dash_want),
        (&a64, &a64),
    ];
    for (i, want) in table {
        assert_eq!(n(i), want, "{i:?}");
    }
    assert_eq!(n(&"X".repeat(100)), "x".repeat(64));
}
