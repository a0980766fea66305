//! The table: one request per row of `table.txt`, its expected decision, and optionally a rule
//! and a flag that must be among the matches.
//!
//! Row: `DECISION POLICY PRINCIPAL SESSION KIND [rule=SUBSTR] [flag=CODE] [noflag] :: INPUT`.
//! KIND is `exec` (a shell string), `argv` (words split on spaces), `tool`, `read` or `write`.
//! In INPUT, `\u{XXXX}` stands for that character (for control characters); every other
//! backslash is the shell's.

use super::*;

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\u{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let end = after.find('}').expect("closing brace of \\u{…}");
        let c = u32::from_str_radix(&after[..end], 16)
            .ok()
            .and_then(char::from_u32)
            .expect("a valid \\u{…}");
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

struct Row {
    line: usize,
    decision: Decision,
    policy: String,
    principal: String,
    session: String,
    kind: String,
    rule: Option<String>,
    flag: Option<String>,
    no_flags: bool,
    input: String,
}

fn rows() -> Vec<Row> {
    let text = include_str!("table.txt");
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t.trim().is_empty() || t.trim_start().starts_with('#') {
            continue;
        }
        let (head, input) = t
            .split_once(" :: ")
            .unwrap_or_else(|| panic!("table.txt:{}: no ' :: '", n + 1));
        let f: Vec<&str> = head.split_whitespace().collect();
        assert!(f.len() >= 5, "table.txt:{}: too few fields", n + 1);
        let decision = match f[0] {
            "allow" => Decision::Allow,
            "ask" => Decision::Ask,
            "deny" => Decision::Deny,
            d => panic!("table.txt:{}: decision {d}", n + 1),
        };
        let mut row = Row {
            line: n + 1,
            decision,
            policy: f[1].into(),
            principal: f[2].into(),
            session: f[3].into(),
            kind: f[4].into(),
            rule: None,
            flag: None,
            no_flags: false,
            input: unescape(input),
        };
        for extra in &f[5..] {
            if let Some(r) = extra.strip_prefix("rule=") {
                row.rule = Some(r.into());
            } else if let Some(c) = extra.strip_prefix("flag=") {
                row.flag = Some(c.into());
            } else if *extra == "noflag" {
                row.no_flags = true;
            } else {
                panic!("table.txt:{}: unknown field {extra}", n + 1);
            }
        }
        out.push(row);
    }
    out
}

fn request(kind: &str, input: &str) -> Request {
    match kind {
        "exec" => exec(input),
        "argv" => Request::Exec {
            command: CommandLine::Argv(input.split(' ').map(str::to_string).collect()),
            cwd: None,
        },
        "tool" => Request::Tool { name: input.into() },
        "read" => Request::File {
            path: input.into(),
            access: FileAccess::Read,
        },
        "write" => Request::File {
            path: input.into(),
            access: FileAccess::Write,
        },
        other => panic!("kind {other}"),
    }
}

#[test]
fn table() {
    let rows = rows();
    assert!(rows.len() >= 300, "the table has {} rows", rows.len());
    let mut failures = Vec::new();
    for r in &rows {
        let e = evaluate(
            &request(&r.kind, &r.input),
            &principal(&r.principal),
            &session(&r.session),
            &policy(&r.policy),
        );
        let mut wrong = Vec::new();
        if e.decision != r.decision {
            wrong.push(format!("decision {:?}, want {:?}", e.decision, r.decision));
        }
        if let Some(rule) = &r.rule
            && !e.matched.iter().any(|m| m.rule.contains(rule.as_str()))
        {
            wrong.push(format!("no rule containing {rule:?}"));
        }
        if let Some(code) = &r.flag
            && !e.flags.iter().any(|f| f.code == code)
        {
            wrong.push(format!("no flag {code}"));
        }
        if r.no_flags && !e.flags.is_empty() {
            wrong.push("flags where none were expected".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "table.txt:{} {:?}: {}\n    matched: {:?}\n    flags: {:?}",
                r.line,
                r.input,
                wrong.join("; "),
                e.matched
                    .iter()
                    .map(|m| format!("{} {} ({})", m.rule, m.decision.as_str(), m.detail))
                    .collect::<Vec<_>>(),
                e.flags
                    .iter()
                    .map(|f| (f.code, f.offset))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
