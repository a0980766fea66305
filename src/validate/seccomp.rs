//! Custom seccomp profiles (`docker.seccompProfile`): what a profile re-allows beyond Docker's
//! default (security.md, principle 7). The parser is pure ([`seccomp_findings`]); reading the
//! file is the only I/O ([`validate_seccomp_file`]).
//!
//! A profile is *permissive* when its default action lets unlisted syscalls run, or when it
//! allows a syscall that Docker's default profile refuses to an unprivileged container: the
//! namespace and mount calls (`unshare`, `setns`, `mount`, the new mount API, `pivot_root`,
//! `clone`/`clone3` with namespace flags), the kernel keyring, `bpf`, `ptrace`,
//! `perf_event_open`, `userfaultfd`, handle-based opens, module and kexec loading, and
//! `personality` beyond the values Docker allows. (`ptrace` is the one Docker's own default
//! allows, on kernels from 4.8; in a custom profile clawden still counts it as permissive, as
//! issue 7 asks: a profile copied from Docker's default needs that rule removed, or no
//! `seccompProfile` at all.) Every sandbox drops all capabilities
//! (`capDrop` must hold `ALL`), so a rule that applies only with a capability
//! (`includes.caps`) never applies and is ignored. A permissive profile is a problem unless
//! `dangerouslyAllowPermissiveSeccomp` is set; an unreadable or malformed profile is always a
//! problem.

use serde::Deserialize;

use super::code::{Refusal, RefusalCode, quote};

/// Syscalls Docker's default profile refuses to a container without capabilities, and why
/// each matters.
pub const DANGEROUS_SYSCALLS: &[(&str, &str)] = &[
    ("unshare", "new namespaces (uid 0 in a user namespace)"),
    ("setns", "joins other namespaces"),
    ("mount", "mounts"),
    ("umount", "unmounts"),
    ("umount2", "unmounts"),
    ("pivot_root", "changes the root"),
    ("move_mount", "the new mount API"),
    ("open_tree", "the new mount API"),
    ("fsopen", "the new mount API"),
    ("fsconfig", "the new mount API"),
    ("fsmount", "the new mount API"),
    ("fspick", "the new mount API"),
    ("mount_setattr", "the new mount API"),
    ("clone3", "new namespaces (flags cannot be filtered)"),
    ("keyctl", "the kernel keyring (not namespaced)"),
    ("add_key", "the kernel keyring (not namespaced)"),
    ("request_key", "the kernel keyring (not namespaced)"),
    ("bpf", "eBPF programs"),
    ("ptrace", "tracing other processes"),
    ("perf_event_open", "kernel performance events"),
    ("userfaultfd", "a common kernel-exploit primitive"),
    (
        "open_by_handle_at",
        "opens files by handle (the Shocker escape)",
    ),
    ("init_module", "kernel modules"),
    ("finit_module", "kernel modules"),
    ("delete_module", "kernel modules"),
    ("create_module", "kernel modules"),
    ("kexec_load", "loads a new kernel"),
    ("kexec_file_load", "loads a new kernel"),
    ("reboot", "reboots the host"),
    ("swapon", "host swap"),
    ("swapoff", "host swap"),
    ("syslog", "the kernel log"),
    ("acct", "process accounting"),
    ("settimeofday", "the host clock"),
    ("clock_settime", "the host clock"),
    ("clock_adjtime", "the host clock"),
    ("stime", "the host clock"),
    ("iopl", "I/O ports"),
    ("ioperm", "I/O ports"),
    ("quotactl", "filesystem quotas"),
    ("lookup_dcookie", "kernel internals"),
    ("vm86", "legacy CPU modes"),
    ("vm86old", "legacy CPU modes"),
    ("nfsservctl", "kernel NFS server"),
    ("uselib", "legacy loader"),
    ("_sysctl", "kernel parameters"),
];

/// The namespace flags of `clone`: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
/// NEWPID | NEWNET (Docker's default profile allows `clone` only when these are all clear).
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The `personality` values Docker's default profile allows (PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE
/// variants, and the query 0xffffffff).
const PERSONALITY_ALLOWED: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// The old single-name form.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Option<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
}

/// Does this action let the syscall run? `TRACE` counts: a tracer in the same sandbox decides.
/// `None` for an action clawden does not know (a problem: it cannot be judged).
fn allows(action: &str) -> Option<bool> {
    match action {
        "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" | "SCMP_ACT_TRACE" => Some(true),
        "SCMP_ACT_ERRNO"
        | "SCMP_ACT_KILL"
        | "SCMP_ACT_KILL_THREAD"
        | "SCMP_ACT_KILL_PROCESS"
        | "SCMP_ACT_TRAP" => Some(false),
        _ => None,
    }
}

/// `clone`/`unshare` allowed only when every namespace flag is clear: an arg filter
/// `(flags & mask) == 0` with a mask covering all of [`CLONE_NAMESPACE_FLAGS`].
fn masks_namespace_flags(args: &[Arg]) -> bool {
    args.iter().any(|a| {
        a.index <= 1
            && a.op == "SCMP_CMP_MASKED_EQ"
            && a.value & CLONE_NAMESPACE_FLAGS == CLONE_NAMESPACE_FLAGS
            && a.value_two == 0
    })
}

/// What a profile allows beyond Docker's default, one line each; `Err` when it is not a
/// profile at all (not JSON, no `defaultAction`, an unknown action).
pub fn seccomp_findings(json: &str) -> Result<Vec<String>, String> {
    let profile: Profile =
        serde_json::from_str(json).map_err(|e| format!("not a seccomp profile: {e}"))?;
    let mut findings = Vec::new();
    match allows(&profile.default_action) {
        Some(true) => findings.push(format!(
            "defaultAction {} lets every syscall the profile does not list run",
            profile.default_action
        )),
        Some(false) => {}
        None => {
            return Err(format!(
                "unknown defaultAction {}",
                quote(&profile.default_action)
            ));
        }
    }
    for rule in &profile.syscalls {
        let Some(allowed) = allows(&rule.action) else {
            return Err(format!("unknown action {}", quote(&rule.action)));
        };
        // Needs a capability no sandbox has: never applies.
        if rule.includes.as_ref().is_some_and(|i| !i.caps.is_empty()) || !allowed {
            continue;
        }
        let args = rule.args.as_deref().unwrap_or(&[]);
        for name in rule.names.iter().chain(rule.name.iter()) {
            let finding = match name.as_str() {
                "clone" | "unshare" if masks_namespace_flags(args) => None,
                "clone" => Some("new namespaces (no filter clearing the namespace flags)"),
                "personality"
                    if !args.is_empty()
                        && args.iter().all(|a| {
                            a.index == 0
                                && a.op == "SCMP_CMP_EQ"
                                && PERSONALITY_ALLOWED.contains(&a.value)
                        }) =>
                {
                    None
                }
                "personality" => Some("execution domains beyond Docker's allowed values"),
                other => DANGEROUS_SYSCALLS
                    .iter()
                    .find(|(n, _)| *n == other)
                    .map(|(_, why)| *why),
            };
            if let Some(why) = finding {
                let line = format!("allows {name}: {why}");
                if !findings.contains(&line) {
                    findings.push(line);
                }
            }
        }
    }
    Ok(findings)
}

/// The checks of one `seccompProfile` value (already known not to be `unconfined`). `builtin`
/// is Docker's own default. Otherwise an absolute path to a readable JSON profile; a
/// permissive one is refused unless `allow_permissive`, and then its findings are returned as
/// the warning to show.
pub fn validate_seccomp_file(value: &str, allow_permissive: bool) -> Result<Vec<String>, Refusal> {
    if value.trim() == "builtin" {
        return Ok(Vec::new());
    }
    let bad = |problem: String| {
        Refusal::new(
            RefusalCode::BadSeccompProfile,
            value,
            format!("seccompProfile {} {problem}", quote(value)),
            "point seccompProfile at an absolute path of a readable Docker seccomp profile \
             (JSON), or remove it to use Docker's default",
        )
    };
    if !value.starts_with('/') {
        return Err(bad("is not an absolute path".into()));
    }
    let text = read_capped(value).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let findings = seccomp_findings(&text).map_err(|e| bad(format!("is not usable: {e}")))?;
    if findings.is_empty() || allow_permissive {
        return Ok(findings);
    }
    Err(Refusal::new(
        RefusalCode::PermissiveSeccomp,
        value,
        format!(
            "seccompProfile {} re-allows what Docker's default profile refuses: {}",
            quote(value),
            findings.join("; ")
        ),
        "use a profile whose defaultAction refuses (SCMP_ACT_ERRNO) and that allows none of \
         these, remove seccompProfile to use Docker's default, or set \
         dangerouslyAllowPermissiveSeccomp: true",
    ))
}

/// A profile is small; a huge or special file is not one.
fn read_capped(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    const CAP: u64 = 1 << 20;
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    f.take(CAP + 1).read_to_string(&mut text)?;
    if text.len() as u64 > CAP {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(json: &str) -> Vec<String> {
        seccomp_findings(json).unwrap()
    }

    const DENY: &str = r#""defaultAction":"SCMP_ACT_ERRNO""#;

    #[test]
    fn default_actions() {
        assert!(findings(&format!("{{{DENY}}}")).is_empty());
        for a in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"] {
            let f = findings(&format!(r#"{{"defaultAction":"{a}"}}"#));
            assert_eq!(f.len(), 1, "{a}");
            assert!(f[0].contains("defaultAction"), "{f:?}");
        }
        for a in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"] {
            assert!(findings(&format!(r#"{{"defaultAction":"{a}"}}"#)).is_empty());
        }
        assert!(seccomp_findings(r#"{"defaultAction":"SCMP_ACT_WHATEVER"}"#).is_err());
        assert!(seccomp_findings("not json").is_err());
        assert!(seccomp_findings("{}").is_err());
        assert!(
            seccomp_findings(&format!(
                r#"{{{DENY},"syscalls":[{{"names":["x"],"action":"NOPE"}}]}}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn dangerous_syscalls_are_found_by_name_and_old_form() {
        for (name, _) in DANGEROUS_SYSCALLS {
            let j = format!(
                r#"{{{DENY},"syscalls":[{{"names":["read","{name}"],"action":"SCMP_ACT_ALLOW"}}]}}"#
            );
            let f = findings(&j);
            assert_eq!(f.len(), 1, "{name}: {f:?}");
            assert!(f[0].starts_with(&format!("allows {name}:")), "{f:?}");
            let old =
                format!(r#"{{{DENY},"syscalls":[{{"name":"{name}","action":"SCMP_ACT_LOG"}}]}}"#);
            assert_eq!(findings(&old).len(), 1, "{name}");
            let denied = format!(
                r#"{{{DENY},"syscalls":[{{"names":["{name}"],"action":"SCMP_ACT_ERRNO"}}]}}"#
            );
            assert!(findings(&denied).is_empty(), "{name}");
        }
        let harmless = format!(
            r#"{{{DENY},"syscalls":[{{"names":["read","write","openat"],"action":"SCMP_ACT_ALLOW"}}]}}"#
        );
        assert!(findings(&harmless).is_empty());
    }

    #[test]
    fn capability_gated_rules_never_apply() {
        let j = format!(
            r#"{{{DENY},"syscalls":[{{"names":["mount","unshare","bpf"],"action":"SCMP_ACT_ALLOW","includes":{{"caps":["CAP_SYS_ADMIN"]}}}}]}}"#
        );
        assert!(findings(&j).is_empty());
        let j = format!(
            r#"{{{DENY},"syscalls":[{{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{{"arches":["amd64"]}}}}]}}"#
        );
        assert_eq!(findings(&j).len(), 1);
    }

    #[test]
    fn clone_needs_dockers_namespace_filter() {
        let bare =
            format!(r#"{{{DENY},"syscalls":[{{"names":["clone"],"action":"SCMP_ACT_ALLOW"}}]}}"#);
        assert_eq!(findings(&bare).len(), 1);
        // Docker's default rule.
        let docker = format!(
            r#"{{{DENY},"syscalls":[{{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}}]}}]}}"#
        );
        assert!(findings(&docker).is_empty());
        // A mask missing CLONE_NEWUSER.
        let partial = format!(
            r#"{{{DENY},"syscalls":[{{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":{},"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}}]}}]}}"#,
            CLONE_NAMESPACE_FLAGS & !0x1000_0000
        );
        assert_eq!(findings(&partial).len(), 1);
        let clone3 =
            format!(r#"{{{DENY},"syscalls":[{{"names":["clone3"],"action":"SCMP_ACT_ALLOW"}}]}}"#);
        assert_eq!(findings(&clone3).len(), 1);
    }

    #[test]
    fn rules_in_the_form_of_dockers_default_profile() {
        // Excerpts of moby's default.json: capability-gated namespace calls, the clone filter,
        // clone3 answered with ENOSYS, personality by value — none is a finding; its
        // minKernel-gated ptrace rule is.
        let j = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
            {"names":["read","write","openat"],"action":"SCMP_ACT_ALLOW"},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
            {"names":["bpf","clone","clone3","fsconfig","mount","setns","umount2","unshare"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
            {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}],"excludes":{"caps":["CAP_SYS_ADMIN"],"arches":["s390","s390x"]}},
            {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38,"excludes":{"caps":["CAP_SYS_ADMIN"]}}
        ]}"#;
        assert!(findings(j).is_empty(), "{:?}", findings(j));
        let with_ptrace = j.replace(
            r#"{"names":["read","write","openat"],"action":"SCMP_ACT_ALLOW"},"#,
            r#"{"names":["read","write","openat"],"action":"SCMP_ACT_ALLOW"},{"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}},"#,
        );
        assert_eq!(
            findings(&with_ptrace),
            ["allows ptrace: tracing other processes"]
        );
    }

    #[test]
    fn personality_only_with_dockers_values() {
        let ok = format!(
            r#"{{{DENY},"syscalls":[{{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":8,"op":"SCMP_CMP_EQ"}}]}}]}}"#
        );
        assert!(findings(&ok).is_empty());
        let any = format!(
            r#"{{{DENY},"syscalls":[{{"names":["personality"],"action":"SCMP_ACT_ALLOW"}}]}}"#
        );
        assert_eq!(findings(&any).len(), 1);
        let other = format!(
            r#"{{{DENY},"syscalls":[{{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":4194304,"op":"SCMP_CMP_EQ"}}]}}]}}"#
        );
        assert_eq!(findings(&other).len(), 1);
    }

    #[test]
    fn files() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).display().to_string();
        std::fs::write(p("strict.json"), format!("{{{DENY}}}")).unwrap();
        std::fs::write(p("allow.json"), r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        std::fs::write(p("junk.json"), "]").unwrap();
        assert_eq!(validate_seccomp_file(&p("strict.json"), false), Ok(vec![]));
        assert_eq!(validate_seccomp_file("builtin", false), Ok(vec![]));
        let r = validate_seccomp_file(&p("allow.json"), false).unwrap_err();
        assert_eq!(r.code, RefusalCode::PermissiveSeccomp);
        assert!(
            r.fix.contains("dangerouslyAllowPermissiveSeccomp"),
            "{}",
            r.fix
        );
        assert_eq!(
            validate_seccomp_file(&p("allow.json"), true).unwrap().len(),
            1
        );
        for bad in [
            p("junk.json"),
            p("missing.json"),
            "relative.json".into(),
            d.path().display().to_string(),
        ] {
            let r = validate_seccomp_file(&bad, true).unwrap_err();
            assert_eq!(r.code, RefusalCode::BadSeccompProfile, "{bad}");
        }
    }
}
