//! Engine tests: the data-driven table (`table.txt`) and property tests.
//!
//! Every fixture policy goes through the real config parser and resolver, so the table also
//! covers the schema and the layering.

mod props;
mod table;

use super::*;
use crate::config::load::ConfigLayer;
use crate::config::{Env, LoadedConfig, parse_config};
use std::path::PathBuf;

const USERS: &str = r#"users: {
    owner: { id: "telegram:1" },
    list: [
        { id: "telegram:2", name: "Partner", trustLevel: "trusted", tools: ["exec", "read", "write", "calendar", "search", "gateway"] },
        { id: "telegram:3", name: "Assistant", trustLevel: "limited" },
        { id: "telegram:4", name: "Gone", trustLevel: "blocked" },
        { id: "telegram:5", name: "Helper", trustLevel: "limited", tools: ["calendar"] },
    ],
}"#;

/// Fixture policies by name (JSON5 bodies besides `users`).
fn fixture(name: &str) -> &'static str {
    match name {
        // No policy section at all: the smart defaults.
        "none" => "",
        // policy.md's example.
        "doc" => {
            r#"policy: {
            tools: { allow: ["exec", "read", "write", "search", "calendar", "delete", "send_email"], deny: ["gateway"],
                     requireApproval: ["delete", "send_email"] },
            exec: { allow: ["git", "npm", "python3"], deny: ["rm -rf", "sudo", "curl | bash"],
                    requireApproval: ["git push", "npm publish"], unverifiable: "ask" },
            files: { allowedPaths: ["~/projects", "/tmp"], deniedPaths: ["/etc", "/var", "~/.ssh"] },
            flags: { controlCharacters: "deny", injection: "ask" },
            approvals: { timeoutSeconds: 1800, grantTtlSeconds: 600 },
        },"#
        }
        // Patterns only (no allow list), so each pattern is what decides.
        "deny" => {
            r#"policy: { exec: {
            deny: ["rm -rf", "sudo", "curl | bash", "mkfs*", "git push --force", "chmod -R 777", "base64 | sh"],
            requireApproval: ["git push", "npm publish", "docker run --privileged", "wget | python3"],
        } },"#
        }
        // Stricter classes: unverifiable denied, control characters only asked about.
        "strict" => {
            r#"policy: {
            exec: { deny: ["sudo"], unverifiable: "deny" },
            flags: { controlCharacters: "ask", injection: "deny" },
            files: { deniedPaths: ["~/ws/secret"] },
        },"#
        }
        // OpenClaw's sandbox tool policy denies exec.
        "sbxdeny" => r#"tools: { sandbox: { tools: { deny: ["exec"] } } },"#,
        // OpenClaw's sandbox tool policy allows only read.
        "sbxread" => r#"tools: { sandbox: { tools: { allow: ["read"] } } },"#,
        other => panic!("no fixture policy {other}"),
    }
}

fn policy(name: &str) -> EffectivePolicy {
    let text = format!("{{ {} {USERS} }}", fixture(name));
    let file = parse_config(&text, name).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    let cfg = LoadedConfig {
        layers: vec![ConfigLayer {
            origin: format!("fixture {name}"),
            file,
        }],
        ..Default::default()
    };
    let env = Env {
        home: Some("/home/u".into()),
        clawden_home: Some("/state".into()),
        ..Default::default()
    };
    let sandbox = crate::config::resolve(&cfg, "main", &env);
    EffectivePolicy::from_config(&cfg, &sandbox)
}

fn session(kind: &str) -> SessionContext {
    SessionContext {
        sandboxed: match kind {
            "direct" => false,
            "sandbox" => true,
            other => panic!("no session kind {other}"),
        },
        roots: vec![PathBuf::from("/home/u/ws")],
        home: Some(PathBuf::from("/home/u")),
    }
}

fn principal(name: &str) -> Principal {
    match name {
        "local" => Principal::LocalOwner,
        "anon" => Principal::Anonymous,
        "owner" => Principal::Id("telegram:1".into()),
        "partner" => Principal::Id("telegram:2".into()),
        "assistant" => Principal::Id("telegram:3".into()),
        "gone" => Principal::Id("telegram:4".into()),
        "helper" => Principal::Id("telegram:5".into()),
        "stranger" => Principal::Id("telegram:999".into()),
        other => panic!("no principal {other}"),
    }
}

fn exec(s: &str) -> Request {
    Request::Exec {
        command: CommandLine::Shell(s.to_string()),
        cwd: None,
    }
}

#[test]
fn evaluation_serialises_in_camel_case() {
    let e = evaluate(
        &exec("sudo ls"),
        &principal("owner"),
        &session("direct"),
        &policy("deny"),
    );
    let j = serde_json::to_value(&e).unwrap();
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["matched"][0]["rule"], "policy.exec.deny[1]");
    assert_eq!(j["matched"][0]["source"], "fixture deny");
    assert_eq!(j["principal"]["trustLevel"], "owner");
    let f = evaluate(
        &exec("ls \u{202e}x"),
        &principal("owner"),
        &session("direct"),
        &policy("none"),
    );
    let j = serde_json::to_value(&f).unwrap();
    assert_eq!(j["flags"][0]["code"], "bidi_override");
    assert_eq!(j["flags"][0]["offset"], 3);
    assert_eq!(j["flags"][0]["class"], "controlCharacters");
}

#[test]
fn strictest_match_wins_and_every_match_is_listed() {
    let e = evaluate(
        &exec("git push && sudo ls"),
        &principal("owner"),
        &session("direct"),
        &policy("deny"),
    );
    assert_eq!(e.decision, Decision::Deny);
    let rules: Vec<&str> = e.matched.iter().map(|m| m.rule.as_str()).collect();
    assert_eq!(
        rules,
        ["policy.exec.deny[1]", "policy.exec.requireApproval[0]"]
    );
}

#[test]
fn policy_sections_layer_by_section_and_yaml_loads_the_same_shape() {
    let yaml = "policy:\n  exec:\n    deny: [\"ls\"]\nusers:\n  owner: { id: \"x:1\" }\n";
    let file = crate::config::load::parse_policy_yaml(yaml, "p.yaml").unwrap();
    let base = parse_config(&format!("{{ {} {USERS} }}", fixture("doc")), "cfg").unwrap();
    let cfg = LoadedConfig {
        layers: vec![
            ConfigLayer {
                origin: "cfg".into(),
                file: base,
            },
            ConfigLayer {
                origin: "p.yaml".into(),
                file: crate::config::schema::FileConfig {
                    policy: file.policy,
                    users: file.users,
                    ..Default::default()
                },
            },
        ],
        ..Default::default()
    };
    let p = EffectivePolicy::from_layers(&cfg);
    assert_eq!(p.exec.as_ref().unwrap().origin, "p.yaml");
    assert_eq!(p.files.as_ref().unwrap().origin, "cfg");
    assert_eq!(p.users.as_ref().unwrap().origin, "p.yaml");
    let e = evaluate(
        &exec("ls"),
        &Principal::Id("x:1".into()),
        &session("direct"),
        &p,
    );
    assert_eq!(e.decision, Decision::Deny);
    let deny = e.matched.iter().find(|m| m.rule == "policy.exec.deny[0]");
    assert_eq!(deny.map(|m| m.source.as_str()), Some("p.yaml"));
}

#[test]
fn strict_schema_names_the_full_key() {
    let bad = [
        (
            "{policy:{exec:{deny:['x'], alow:['y']}}}",
            "policy.exec.alow",
        ),
        (
            "{policy:{exec:{unverifiable:'maybe'}}}",
            "policy.exec.unverifiable",
        ),
        (
            "{policy:{flags:{injection:'allow'}}}",
            "policy.flags.injection",
        ),
        ("{policy:{tool:{}}}", "policy.tool"),
        (
            "{users:{list:[{id:'a', trustLevel:'admin'}]}}",
            "users.list[0].trustLevel",
        ),
        ("{users:{list:[{id:'a'}]}}", "users.list[0]"),
        ("{users:{owner:{id:'a', role:'x'}}}", "users.owner.role"),
    ];
    for (text, key) in bad {
        let e = parse_config(text, "t").unwrap_err();
        assert_eq!(e.key(), Some(key), "{text}: {e}");
    }
    let e = crate::config::load::parse_policy_yaml("policy:\n  files:\n    allowed: []\n", "p")
        .unwrap_err();
    assert_eq!(e.key(), Some("policy.files.allowed"));
    assert!(crate::config::load::parse_policy_yaml("policy: [1", "p").is_err());
}
