//! [`evaluate`]: request + principal + session → decision, every matched rule, every flag.
//! Pure: everything it knows comes in through its arguments.

use super::defaults;
use super::effective::{EffectivePolicy, KeyedList};
use super::files;
use super::flags::{character_flags, injection_flags};
use super::pattern::{ArgvPattern, Fit, Pattern};
use super::principal::{resolve_principal, trust_refuses};
use super::schema::{TrustLevel, Verdict};
use super::shell::{self, Analysis};
use super::types::*;
use std::path::Path;

/// Shell builtins that run nothing and change nothing outside the shell: never refused by
/// `exec.allow` (so `cd src && git status` works with `allow: [git]`).
pub const HARMLESS_BUILTINS: &[&str] = &[
    "cd", "echo", "printf", "true", "false", "test", "[", "pwd", "export", ":", "exit", "return",
    "shift", "read", "set", "unset", "local", "wait",
];

/// Tools whose sandbox tool policy (`tools.sandbox.tools`) clawden enforces.
pub const SANDBOX_ENFORCED_TOOLS: &[&str] = &["exec", "read", "write"];

/// OpenClaw tool groups usable in tool lists.
const TOOL_GROUPS: &[(&str, &[&str])] = &[
    ("group:runtime", &["exec", "process"]),
    ("group:fs", &["read", "write", "edit", "apply_patch"]),
];

struct Matches(Vec<Match>);

impl Matches {
    fn add(&mut self, rule: impl Into<String>, source: &str, decision: Decision, detail: String) {
        self.0.push(Match {
            rule: rule.into(),
            source: source.to_string(),
            decision,
            detail,
        });
    }
}

fn verdict(v: Verdict) -> Decision {
    match v {
        Verdict::Ask => Decision::Ask,
        Verdict::Deny => Decision::Deny,
    }
}

/// The index of the first entry naming `tool` (exactly, `*`, or a group containing it).
fn list_index(list: &[String], tool: &str) -> Option<usize> {
    list.iter().position(|e| {
        e == tool
            || e == "*"
            || TOOL_GROUPS
                .iter()
                .any(|(g, members)| g == e && members.contains(&tool))
    })
}

/// Evaluate one request. The strictest match wins (deny > ask > allow); no match is allow.
pub fn evaluate(
    req: &Request,
    principal: &Principal,
    ctx: &SessionContext,
    policy: &EffectivePolicy,
) -> Evaluation {
    let who = resolve_principal(principal, policy);
    let mut m = Matches(Vec::new());
    let tool = match req {
        Request::Exec { .. } => "exec",
        Request::Tool { name } => name.as_str(),
        Request::File {
            access: FileAccess::Read,
            ..
        } => "read",
        Request::File {
            access: FileAccess::Write,
            ..
        } => "write",
    };
    principal_rules(&who, tool, &users_source(policy), &mut m);
    tool_rules(tool, policy, ctx, &mut m);
    let mut flags = match req {
        Request::Exec { command, .. } => exec_rules(command, policy, ctx, &mut m),
        Request::Tool { name } => character_flags(name),
        Request::File { path, .. } => {
            file_rules(path, policy, ctx, &mut m);
            character_flags(&path.to_string_lossy())
        }
    };
    flags.sort_by_key(|f| f.offset);
    flag_rules(&flags, policy, &mut m);
    let decision =
        m.0.iter()
            .map(|x| x.decision)
            .max()
            .unwrap_or(Decision::Allow);
    Evaluation {
        decision,
        principal: who,
        matched: m.0,
        flags,
    }
}

fn users_source(policy: &EffectivePolicy) -> String {
    policy
        .users
        .as_ref()
        .map_or_else(|| "default".into(), |u| u.origin.clone())
}

fn principal_rules(who: &ResolvedPrincipal, tool: &str, source: &str, m: &mut Matches) {
    if let Some(why) = trust_refuses(who.trust_level, tool) {
        let rule = if who.trust_level == TrustLevel::Blocked {
            format!("users ({})", who.rule)
        } else {
            who.rule.clone()
        };
        m.add(rule, source, Decision::Deny, format!("{why} ({tool})"));
    }
    if let Some(list) = &who.tools
        && list_index(list, tool).is_none()
    {
        m.add(
            format!("{}.tools", who.rule),
            source,
            Decision::Deny,
            format!("{tool} is not in this user's tools"),
        );
    }
}

fn tool_rules(tool: &str, policy: &EffectivePolicy, ctx: &SessionContext, m: &mut Matches) {
    if let Some(t) = &policy.tools {
        let src = &t.origin;
        for (i, name) in t.value.deny.iter().flatten().enumerate() {
            if list_index(std::slice::from_ref(name), tool).is_some() {
                m.add(
                    format!("policy.tools.deny[{i}]"),
                    src,
                    Decision::Deny,
                    format!("tool {tool} is denied"),
                );
            }
        }
        for (i, name) in t.value.require_approval.iter().flatten().enumerate() {
            if list_index(std::slice::from_ref(name), tool).is_some() {
                m.add(
                    format!("policy.tools.requireApproval[{i}]"),
                    src,
                    Decision::Ask,
                    format!("tool {tool} needs approval"),
                );
            }
        }
        // A tool listed under requireApproval is listed: it runs once a human says so.
        let needs_approval = t
            .value
            .require_approval
            .as_ref()
            .is_some_and(|l| list_index(l, tool).is_some());
        if let Some(allow) = &t.value.allow {
            match list_index(allow, tool) {
                Some(i) => m.add(
                    format!("policy.tools.allow[{i}]"),
                    src,
                    Decision::Allow,
                    format!("tool {tool} is allowed"),
                ),
                None if needs_approval => {}
                None => m.add(
                    "policy.tools.allow",
                    src,
                    Decision::Deny,
                    format!("tool {tool} is not in policy.tools.allow"),
                ),
            }
        }
    }
    if ctx.sandboxed && SANDBOX_ENFORCED_TOOLS.contains(&tool) {
        sandbox_tool_rules(
            tool,
            policy.sandbox_deny.as_ref(),
            policy.sandbox_allow.as_ref(),
            m,
        );
    }
}

/// OpenClaw's sandbox tool policy, enforced for the tools clawden itself runs.
fn sandbox_tool_rules(
    tool: &str,
    deny: Option<&KeyedList>,
    allow: Option<&KeyedList>,
    m: &mut Matches,
) {
    if let Some(d) = deny {
        for (i, name) in d.value.iter().enumerate() {
            if list_index(std::slice::from_ref(name), tool).is_some() {
                m.add(
                    format!("{}[{i}]", d.key),
                    &d.origin,
                    Decision::Deny,
                    format!("the sandbox tool policy denies {tool}"),
                );
            }
        }
    }
    if let Some(a) = allow {
        match list_index(&a.value, tool) {
            Some(i) => m.add(
                format!("{}[{i}]", a.key),
                &a.origin,
                Decision::Allow,
                format!("the sandbox tool policy allows {tool}"),
            ),
            None => m.add(
                a.key.clone(),
                &a.origin,
                Decision::Deny,
                format!("{tool} is not in the sandbox tool policy's allow list"),
            ),
        }
    }
}

fn exec_rules(
    command: &CommandLine,
    policy: &EffectivePolicy,
    ctx: &SessionContext,
    m: &mut Matches,
) -> Vec<Flag> {
    let home = ctx.home.as_ref().map(|h| h.to_string_lossy().into_owned());
    let home = home.as_deref();
    let analysis = match command {
        CommandLine::Shell(s) => shell::analyze_shell(s, home),
        CommandLine::Argv(a) => shell::analyze_argv(a, home),
    };
    let (rules, src, prefix) = match &policy.exec {
        Some(e) => (Some(&e.value), e.origin.as_str(), "policy"),
        None => (None, "default", "defaults"),
    };
    let unverifiable = verdict(rules.and_then(|r| r.unverifiable).unwrap_or(Verdict::Ask));
    let unverifiable_rule = format!("{prefix}.exec.unverifiable");
    for g in &analysis.gaps {
        m.add(
            &unverifiable_rule,
            src,
            unverifiable,
            format!("{} (at byte {})", g.reason, g.offset),
        );
    }
    match rules {
        Some(r) => {
            if let Some(allow) = &r.allow {
                allow_rules(&analysis, allow, src, m);
            }
            for (list, name, decision) in [
                (&r.deny, "deny", Decision::Deny),
                (&r.require_approval, "requireApproval", Decision::Ask),
            ] {
                for (i, p) in list.iter().flatten().enumerate() {
                    pattern_rule(
                        &analysis,
                        p,
                        &format!("policy.exec.{name}[{i}]"),
                        decision,
                        src,
                        unverifiable,
                        m,
                    );
                }
            }
        }
        None => {
            for hit in defaults::destructive(&analysis, home) {
                m.add(
                    format!("defaults.exec.deny.{}", hit.id),
                    "default",
                    Decision::Deny,
                    hit.detail,
                );
            }
            if !ctx.sandboxed {
                for hit in defaults::exfiltration(&analysis) {
                    m.add(
                        format!("defaults.exec.requireApproval.{}", hit.id),
                        "default",
                        Decision::Ask,
                        hit.detail,
                    );
                }
            }
        }
    }
    let text = command.text();
    let mut flags = character_flags(&text);
    flags.extend(injection_flags(&text, Some(&analysis)));
    flags
}

fn allow_rules(a: &Analysis, allow: &[String], src: &str, m: &mut Matches) {
    let mut seen = Vec::new();
    for inv in &a.invocations {
        if inv.transparent
            || HARMLESS_BUILTINS.contains(&inv.program.as_str())
            || seen.contains(&&inv.program)
        {
            continue;
        }
        seen.push(&inv.program);
        let listed = allow
            .iter()
            .position(|p| ArgvPattern::parse(p).is_some_and(|p| p.program_matches(&inv.program)));
        match listed {
            Some(i) => m.add(
                format!("policy.exec.allow[{i}]"),
                src,
                Decision::Allow,
                format!("{} may run", inv.program),
            ),
            None => m.add(
                "policy.exec.allow",
                src,
                Decision::Deny,
                format!("{} is not in policy.exec.allow", inv.program),
            ),
        }
    }
}

fn pattern_rule(
    a: &Analysis,
    pattern: &str,
    rule: &str,
    decision: Decision,
    src: &str,
    unverifiable: Decision,
    m: &mut Matches,
) {
    match Pattern::parse(pattern) {
        Some(Pattern::Argv(p)) => {
            let mut maybe = None;
            for inv in &a.invocations {
                match p.fit(&inv.program, &inv.args) {
                    Fit::Yes => {
                        m.add(
                            rule,
                            src,
                            decision,
                            format!("{pattern:?} matches {}", describe(inv)),
                        );
                        return;
                    }
                    Fit::Maybe => maybe = maybe.or(Some(inv)),
                    Fit::No => {}
                }
            }
            if let Some(inv) = maybe {
                m.add(
                    rule,
                    src,
                    unverifiable,
                    format!(
                        "unverifiable: {pattern:?} may match {} (words not known until run time)",
                        describe(inv)
                    ),
                );
            }
        }
        Some(Pattern::Pipeline(sides)) => {
            if let Some(detail) = pipeline_fit(a, &sides) {
                m.add(rule, src, decision, format!("{pattern:?} matches {detail}"));
            }
        }
        None => {}
    }
}

/// A pipeline whose stages, in order, fit the pattern's sides.
fn pipeline_fit(a: &Analysis, sides: &[ArgvPattern]) -> Option<String> {
    for pid in 0..a.pipelines.len() {
        let mut after: Option<usize> = None;
        let mut names = Vec::new();
        for side in sides {
            let found = a
                .invocations
                .iter()
                .filter(|inv| side.fit_in_pipeline(&inv.program, &inv.args) == Fit::Yes)
                .flat_map(|inv| {
                    inv.stages
                        .iter()
                        .filter(|(p, _)| *p == pid)
                        .map(move |(_, s)| (*s, inv))
                })
                .filter(|(s, _)| after.is_none_or(|a| *s > a))
                .min_by_key(|(s, _)| *s);
            match found {
                Some((s, inv)) => {
                    after = Some(s);
                    names.push(inv.program.clone());
                }
                None => {
                    names.clear();
                    break;
                }
            }
        }
        if !names.is_empty() {
            return Some(names.join(" | "));
        }
    }
    None
}

fn describe(inv: &shell::Invocation) -> String {
    let mut s = inv.program.clone();
    for t in inv.args.iter().take(6) {
        s.push(' ');
        s.push_str(t.text.as_deref().unwrap_or("…"));
    }
    if inv.args.len() > 6 {
        s.push_str(" …");
    }
    s
}

fn file_rules(path: &Path, policy: &EffectivePolicy, ctx: &SessionContext, m: &mut Matches) {
    let home = ctx.home.as_deref();
    let p = files::normalize(path, home, ctx.roots.first().map(|r| r.as_path()));
    let shown = p.display();
    let (rules, src, prefix) = match &policy.files {
        Some(f) => (Some(&f.value), f.origin.as_str(), "policy"),
        None => (None, "default", "defaults"),
    };
    for (i, d) in rules
        .and_then(|r| r.denied_paths.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if files::expand(d, home).is_some_and(|d| files::within(&p, &d)) {
            m.add(
                format!("policy.files.deniedPaths[{i}]"),
                src,
                Decision::Deny,
                format!("{shown} is under {d}"),
            );
        }
    }
    let mut allowed = false;
    for root in &ctx.roots {
        if files::within(&p, root) {
            m.add(
                "session.roots",
                "session",
                Decision::Allow,
                format!("{shown} is in the session's workspace {}", root.display()),
            );
            allowed = true;
            break;
        }
    }
    for (i, a) in rules
        .and_then(|r| r.allowed_paths.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if files::expand(a, home).is_some_and(|a| files::within(&p, &a)) {
            m.add(
                format!("policy.files.allowedPaths[{i}]"),
                src,
                Decision::Allow,
                format!("{shown} is under {a}"),
            );
            allowed = true;
        }
    }
    if !allowed {
        m.add(
            format!("{prefix}.files.allowedPaths"),
            src,
            Decision::Deny,
            format!("{shown} is outside the workspace and every allowed path"),
        );
    }
}

fn flag_rules(flags: &[Flag], policy: &EffectivePolicy, m: &mut Matches) {
    let (rules, src, prefix) = match &policy.flags {
        Some(f) => (Some(&f.value), f.origin.as_str(), "policy"),
        None => (None, "default", "defaults"),
    };
    for class in [FlagClass::ControlCharacters, FlagClass::Injection] {
        let of_class: Vec<&Flag> = flags.iter().filter(|f| f.class == class).collect();
        if of_class.is_empty() {
            continue;
        }
        let v = match class {
            FlagClass::ControlCharacters => rules
                .and_then(|r| r.control_characters)
                .unwrap_or(Verdict::Deny),
            FlagClass::Injection => rules.and_then(|r| r.injection).unwrap_or(Verdict::Ask),
        };
        let codes: Vec<&str> = of_class.iter().map(|f| f.code).collect();
        m.add(
            format!("{prefix}.flags.{}", class.key()),
            src,
            verdict(v),
            format!("flagged: {}", codes.join(", ")),
        );
    }
}
