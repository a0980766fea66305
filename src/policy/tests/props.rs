//! Property tests: no spelling of a denied program or pattern slips through — random quoting of
//! each character, backslashes, `$'…'`, path prefixes, wrappers, `sh -c` nesting, flag
//! orderings and clusters. The same spellings of a harmless command stay allowed, so the
//! properties cannot pass by denying everything.

use super::*;
use proptest::prelude::*;

/// One character spelled one of five ways the shell reads as that character.
fn spell_char(c: char) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(c.to_string()),
        Just(format!("\\{c}")),
        Just(format!("'{c}'")),
        Just(format!("\"{c}\"")),
        Just(format!("$'\\x{:02x}'", c as u32)),
    ]
}

/// A word spelled character by character.
fn spell(word: &'static str) -> BoxedStrategy<String> {
    let parts: Vec<_> = word.chars().map(spell_char).collect();
    parts.prop_map(|p| p.concat()).boxed()
}

fn path_prefix() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "",
        "/usr/bin/",
        "/bin/../bin/",
        "./",
        "/usr/local/sbin/",
        "//usr//bin/",
    ])
}

fn wrapper() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "command ",
        "command -p ",
        "\\command ",
        "env ",
        "env -i FOO=1 ",
        "/usr/bin/env -u HOME ",
        "exec ",
        "exec -a x ",
        "nice ",
        "nice -n 5 ",
        "timeout 5 ",
        "timeout -s KILL 5 ",
        "nohup ",
        "xargs ",
        "xargs -n 1 ",
        "stdbuf -oL ",
        "setsid ",
        "time ",
        "builtin ",
    ])
}

/// `sh -c '<cmd>'` with the command single-quoted as the shell requires.
fn sh_c(shell: &str, cmd: &str) -> String {
    format!("{shell} -c '{}'", cmd.replace('\'', r"'\''"))
}

/// Wrap `cmd` in up to three wrappers and up to two `sh -c` layers.
fn wrapped(cmd: BoxedStrategy<String>) -> BoxedStrategy<String> {
    (
        cmd,
        prop::collection::vec(wrapper(), 0..3),
        prop::collection::vec(
            prop::sample::select(vec!["sh", "bash", "dash", "zsh", "/bin/sh"]),
            0..2,
        ),
        prop::sample::select(vec!["", "cd /tmp && ", "true; ", "ls | ", "(", "{ "]),
    )
        .prop_map(|(cmd, wrappers, shells, lead)| {
            let mut s = format!("{}{cmd}", wrappers.concat());
            for sh in shells {
                s = sh_c(sh, &s);
            }
            match lead {
                "(" => format!("({s})"),
                "{ " => format!("{{ {s}; }}"),
                l => format!("{l}{s}"),
            }
        })
        .boxed()
}

fn program(name: &'static str) -> BoxedStrategy<String> {
    (path_prefix(), spell(name))
        .prop_map(|(p, s)| format!("{p}{s}"))
        .boxed()
}

/// `-r` and `-f` for rm, in every form: clusters, separate, long, upper-case, extra flags.
fn rm_flags() -> impl Strategy<Value = Vec<String>> {
    let r = prop::sample::select(vec!["-r", "-R", "--recursive"]);
    let f = prop::sample::select(vec!["-f", "--force"]);
    let cluster = prop::sample::select(vec!["-rf", "-fr", "-Rf", "-fR", "-vrf", "-rfv", "-frv"]);
    prop_oneof![
        (r, f, any::<bool>(), any::<bool>()).prop_map(|(r, f, swap, verbose)| {
            let mut v = if swap {
                vec![f.to_string(), r.to_string()]
            } else {
                vec![r.to_string(), f.to_string()]
            };
            if verbose {
                v.insert(1, "-v".into());
            }
            v
        }),
        cluster.prop_map(|c| vec![c.to_string()]),
    ]
}

fn decide(policy_name: &str, cmd: &str) -> Evaluation {
    evaluate(
        &exec(cmd),
        &principal("owner"),
        &session("direct"),
        &policy(policy_name),
    )
}

fn has_rule(e: &Evaluation, rule: &str) -> bool {
    e.matched
        .iter()
        .any(|m| m.rule == rule && m.decision == Decision::Deny)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sudo_is_denied_however_spelled(cmd in wrapped(program("sudo").prop_map(|p| format!("{p} ls")).boxed())) {
        let e = decide("deny", &cmd);
        prop_assert!(has_rule(&e, "policy.exec.deny[1]"), "{cmd:?} → {:?}", e.matched);
        prop_assert_eq!(e.decision, Decision::Deny);
    }

    #[test]
    fn rm_rf_is_denied_however_spelled(
        prog in program("rm"),
        flags in rm_flags(),
        flags_after in any::<bool>(),
        dashdash in any::<bool>(),
        wrappers in prop::collection::vec(wrapper(), 0..3),
    ) {
        let flags = flags.join(" ");
        let target = if dashdash { "-- /tmp/x" } else { "/tmp/x" };
        let cmd = if flags_after && !dashdash {
            format!("{}{prog} {target} {flags}", wrappers.concat())
        } else {
            format!("{}{prog} {flags} {target}", wrappers.concat())
        };
        let e = decide("deny", &cmd);
        prop_assert!(has_rule(&e, "policy.exec.deny[0]"), "{cmd:?} → {:?}", e.matched);
    }

    #[test]
    fn recursive_removal_of_root_is_denied_by_default(
        cmd in wrapped((program("rm"), rm_flags(), prop::sample::select(vec!["/", "/*", "~", "~/", "$HOME", "/home/u", "/tmp/..", "'/'"]))
            .prop_map(|(p, f, t)| format!("{p} {} {t}", f.join(" "))).boxed())
    ) {
        let e = decide("none", &cmd);
        prop_assert!(has_rule(&e, "defaults.exec.deny.recursiveRemoveRootOrHome"), "{cmd:?} → {:?}", e.matched);
    }

    #[test]
    fn download_piped_to_a_shell_is_denied(
        dl in prop::sample::select(vec!["curl", "wget", "fetch", "aria2c"]),
        sh in prop::sample::select(vec!["sh", "bash", "dash", "zsh", "ksh", "python3", "perl", "ruby", "node", "php"]),
        middle in prop::sample::select(vec!["", "| tee log ", "| cat "]),
        wrapper in prop::sample::select(vec!["", "sudo ", "env ", "nice -n 5 ", "command "]),
        spelled in any::<bool>(),
    ) {
        let sh_word = if spelled { format!("'{sh}'") } else { format!("/usr/bin/{sh}") };
        let cmd = format!("{dl} -s https://x {middle}| {wrapper}{sh_word}");
        let e = decide("deny", &cmd);
        prop_assert!(has_rule(&e, "policy.exec.deny[2]"), "{cmd:?} → {:?}", e.matched);
    }

    #[test]
    fn a_program_name_from_run_time_is_never_allowed(
        prog in program("ls"),
        dynamic in prop::sample::select(vec!["$X", "${X}", "$(echo s)", "`echo s`", "\"$X\"", "*", "?"]),
        front in any::<bool>(),
    ) {
        let name = if front { format!("{dynamic}{prog}") } else { format!("{prog}{dynamic}") };
        let cmd = format!("{name} -la");
        let e = decide("deny", &cmd);
        prop_assert_ne!(e.decision, Decision::Allow, "{:?} → {:?}", cmd, e.matched);
    }

    #[test]
    fn the_same_spellings_of_a_harmless_command_are_allowed(cmd in wrapped(program("ls").prop_map(|p| format!("{p} -la")).boxed())) {
        let e = decide("deny", &cmd);
        prop_assert_eq!(e.decision, Decision::Allow, "{:?} → {:?}", cmd, e.matched);
    }

    #[test]
    fn the_engine_never_panics_on_arbitrary_text(s in "\\PC{0,80}") {
        let e = decide("deny", &s);
        // Whatever it says, it says it with a reason when it is not allow.
        prop_assert!(e.decision == Decision::Allow || !e.matched.is_empty());
    }
}

/// `sh -c` nested beyond the depth cap is unverifiable; within it, a denied command is found.
#[test]
fn nesting_depth_is_capped() {
    let mut cmd = "sudo ls".to_string();
    for _ in 0..4 {
        cmd = sh_c("sh", &cmd);
    }
    assert!(has_rule(&decide("deny", &cmd), "policy.exec.deny[1]"));
    for _ in 0..shell::MAX_DEPTH {
        cmd = sh_c("sh", &cmd);
    }
    let e = decide("deny", &cmd);
    assert!(
        e.matched
            .iter()
            .any(|m| m.rule == "policy.exec.unverifiable" && m.detail.contains("deeper")),
        "{:?}",
        e.matched
    );
    assert_ne!(e.decision, Decision::Allow);
}
