//! Container settings from config: network, seccomp/AppArmor, capDrop, env names, tmpfs.

use super::code::{Refusal, RefusalCode, quote};
use super::container_path::normalize_container_path;

/// "host" any case → NetworkHost always; "container:x" → NetworkContainerJoin unless allowed;
/// "none", "bridge", named networks ok; empty → InvalidNetwork.
///
/// Surrounding whitespace and case are ignored when looking for `host` / `container:` so that
/// no spelling slips through; anything accepted must be a plain Docker network name.
pub fn validate_network(network: &str, allow_container_join: bool) -> Result<(), Refusal> {
    let trimmed = network.trim();
    let lower = trimmed.to_ascii_lowercase();
    let shown = quote(network);
    if lower == "host" {
        return Err(Refusal::new(
            RefusalCode::NetworkHost,
            network,
            format!("network {shown} shares the host's network namespace; it is always refused"),
            "set network to \"none\" (the default) or a named Docker network such as \"bridge\"",
        ));
    }
    if let Some(id) = lower.strip_prefix("container:") {
        if !allow_container_join {
            return Err(Refusal::new(
                RefusalCode::NetworkContainerJoin,
                network,
                format!("network {shown} joins another container's network namespace"),
                "set network to \"none\" or a named network, or set \
                 dangerouslyAllowContainerNamespaceJoin: true (lifts only this check)",
            ));
        }
        let exact_prefix = trimmed == network && network.starts_with("container:");
        if exact_prefix && is_docker_name(id) {
            return Ok(());
        }
        return Err(invalid_network(
            network,
            "is not of the form \"container:<name or id>\"",
        ));
    }
    if network.is_empty() {
        return Err(invalid_network(network, "is empty"));
    }
    if !is_docker_name(network) {
        return Err(invalid_network(
            network,
            "is not a valid Docker network name",
        ));
    }
    Ok(())
}

fn invalid_network(network: &str, problem: &str) -> Refusal {
    Refusal::new(
        RefusalCode::InvalidNetwork,
        network,
        format!("network {} {problem}", quote(network)),
        "set network to \"none\" (the default), \"bridge\", or the name of an existing Docker network",
    )
}

/// Docker object names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_docker_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// "unconfined" (any case/whitespace) → UnconfinedProfile. Also catches the
/// `seccomp=unconfined` / `apparmor=unconfined` security-opt spelling.
pub fn validate_security_profile(key: &str, value: &str) -> Result<(), Refusal> {
    let lower = value.trim().to_ascii_lowercase();
    let bare = lower
        .split_once('=')
        .map(|(_, v)| v.trim())
        .unwrap_or(lower.as_str());
    if bare == "unconfined" {
        return Err(Refusal::new(
            RefusalCode::UnconfinedProfile,
            value,
            format!(
                "{key} {} turns the kernel's confinement off; unconfined profiles are always refused",
                quote(value)
            ),
            format!(
                "remove {key} to use Docker's default profile, or point it at a custom profile"
            ),
        ));
    }
    Ok(())
}

/// Must contain ALL (case-insensitive).
pub fn validate_cap_drop(cap_drop: &[String]) -> Result<(), Refusal> {
    if cap_drop
        .iter()
        .any(|c| c.trim().eq_ignore_ascii_case("ALL"))
    {
        return Ok(());
    }
    let value = serde_json::to_string(cap_drop).unwrap_or_else(|_| format!("{cap_drop:?}"));
    Err(Refusal::new(
        RefusalCode::CapDropIncomplete,
        value.clone(),
        format!("capDrop {value} does not drop ALL capabilities"),
        "set capDrop to [\"ALL\"] (the default)",
    ))
}

/// Empty, contains '=' or NUL, or not `[A-Za-z_][A-Za-z0-9_]*` → InvalidEnvName.
pub fn validate_env_name(name: &str) -> Result<(), Refusal> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.contains('=') {
        "contains '='"
    } else if name.contains('\0') {
        "contains a NUL character"
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        "starts with a digit"
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        "contains characters other than A-Z, a-z, 0-9 and '_'"
    } else {
        return Ok(());
    };
    Err(Refusal::new(
        RefusalCode::InvalidEnvName,
        name,
        format!("environment variable name {} {problem}", quote(name)),
        "use a name of the form [A-Za-z_][A-Za-z0-9_]*, e.g. \"MY_VAR\"",
    ))
}

/// Parse a tmpfs entry `"TARGET[:opts]"`; returns (normalised target, options) where options ALWAYS include nosuid,nodev and a size= cap (default_size_bytes if absent). Refuse "suid", "dev", non-absolute targets.
///
/// Options are checked against an allow-list; `size=0` and `nr_inodes=0` (which mean
/// "unlimited" to the kernel) are refused, as is a zero `default_size_bytes`. `exec` is
/// allowed: agents build and run binaries in /tmp, and they can already execute from the
/// writable workspace.
pub fn parse_tmpfs(spec: &str, default_size_bytes: u64) -> Result<(String, String), Refusal> {
    let bad = |problem: String, fix: &str| {
        Refusal::new(
            RefusalCode::InvalidTmpfs,
            spec,
            format!("tmpfs {} {problem}", quote(spec)),
            fix,
        )
    };
    const FORM: &str =
        "write the entry as \"/container/path\" or \"/container/path:size=64m,mode=1777\"";
    let (raw_target, raw_opts) = spec.split_once(':').unwrap_or((spec, ""));
    let target = normalize_container_path(raw_target)
        .map_err(|r| bad(format!("has a bad target: {}", r.message), FORM))?;

    let mut opts: Vec<String> = vec!["nosuid".to_string(), "nodev".to_string()];
    let mut has_size = false;
    if !raw_opts.is_empty() {
        for opt in raw_opts.split(',') {
            let opt = opt.trim();
            let (name, val) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            let ok = match (name, val) {
                ("nosuid" | "nodev", None) => continue,
                ("suid" | "dev", None) => {
                    return Err(bad(
                        format!(
                            "asks for option {}, which would allow setuid binaries or device nodes",
                            quote(opt)
                        ),
                        "remove the option: every tmpfs is mounted nosuid,nodev",
                    ));
                }
                (
                    "ro" | "rw" | "exec" | "noexec" | "noatime" | "relatime" | "strictatime"
                    | "nodiratime",
                    None,
                ) => true,
                ("size", Some(v)) => {
                    if has_size {
                        return Err(bad("sets size= more than once".to_string(), FORM));
                    }
                    has_size = true;
                    is_positive_size(v, true)
                }
                ("nr_inodes", Some(v)) => is_positive_size(v, false),
                ("mode", Some(v)) => {
                    (3..=4).contains(&v.len()) && v.bytes().all(|b| (b'0'..=b'7').contains(&b))
                }
                ("uid" | "gid", Some(v)) => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
                _ => false,
            };
            if !ok {
                return Err(bad(
                    format!("has unsupported or malformed option {}", quote(opt)),
                    "use only ro, rw, exec, noexec, noatime, relatime, strictatime, nodiratime, \
                     size=<n>[k|m|g|%] (n > 0), nr_inodes=<n>[k|m|g] (n > 0), mode=<octal>, uid=<n>, gid=<n>",
                ));
            }
            if !opts.iter().any(|o| o == opt) {
                opts.push(opt.to_string());
            }
        }
    }
    if !has_size {
        if default_size_bytes == 0 {
            return Err(bad(
                "has no size= cap and the default tmpfs size is 0 (unlimited)".to_string(),
                "add size=<n>[k|m|g] to the entry, or configure a non-zero default tmpfs size",
            ));
        }
        opts.push(format!("size={default_size_bytes}"));
    }
    Ok((target, opts.join(",")))
}

/// `<digits>[k|m|g]` (or `%` when `percent_ok`), with a non-zero number: the kernel reads 0 as
/// "unlimited".
fn is_positive_size(v: &str, percent_ok: bool) -> bool {
    let digits = v.trim_end_matches(|c: char| {
        matches!(c, 'k' | 'K' | 'm' | 'M' | 'g' | 'G') || (percent_ok && c == '%')
    });
    let suffix_len = v.len() - digits.len();
    suffix_len <= 1
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefusalCode::*;

    #[test]
    fn network_table() {
        let cases: &[(&str, bool, Option<RefusalCode>)] = &[
            ("none", false, None),
            ("bridge", false, None),
            ("my-net_1.internal", false, None),
            ("host", false, Some(NetworkHost)),
            ("HOST", false, Some(NetworkHost)),
            ("Host", true, Some(NetworkHost)),
            (" host\n", true, Some(NetworkHost)),
            ("container:x", false, Some(NetworkContainerJoin)),
            ("CONTAINER:x", false, Some(NetworkContainerJoin)),
            ("container:", false, Some(NetworkContainerJoin)),
            ("container:x", true, None),
            ("container:0123abcd", true, None),
            ("container:", true, Some(InvalidNetwork)),
            ("Container:x", true, Some(InvalidNetwork)),
            ("container:x y", true, Some(InvalidNetwork)),
            ("", false, Some(InvalidNetwork)),
            ("  ", false, Some(InvalidNetwork)),
            (" none", false, Some(InvalidNetwork)),
            ("net\0x", false, Some(InvalidNetwork)),
            ("-net", false, Some(InvalidNetwork)),
        ];
        for (net, allow, want) in cases {
            let got = validate_network(net, *allow).err().map(|r| {
                assert_eq!(r.value, *net);
                r.code
            });
            assert_eq!(got, *want, "network {net:?} allow_join={allow}");
        }
    }

    #[test]
    fn network_messages_name_value_and_fix() {
        let r = validate_network("host", true).unwrap_err();
        assert!(r.message.contains(r#""host""#), "{}", r.message);
        let r = validate_network("container:x", false).unwrap_err();
        assert!(
            r.fix.contains("dangerouslyAllowContainerNamespaceJoin"),
            "{}",
            r.fix
        );
    }

    #[test]
    fn security_profile_table() {
        let cases: &[(&str, bool)] = &[
            ("unconfined", true),
            ("Unconfined", true),
            ("  UNCONFINED\t", true),
            ("seccomp=unconfined", true),
            ("apparmor = Unconfined", true),
            ("docker-default", false),
            ("/etc/clawden/seccomp.json", false),
            ("", false),
            ("unconfined-ish", false),
        ];
        for (value, refused) in cases {
            let got = validate_security_profile("seccompProfile", value);
            assert_eq!(got.is_err(), *refused, "{value:?}");
            if let Err(r) = got {
                assert_eq!(r.code, UnconfinedProfile);
                assert_eq!(r.value, *value);
                assert!(r.message.starts_with("seccompProfile "), "{}", r.message);
            }
        }
        let r = validate_security_profile("apparmorProfile", "unconfined").unwrap_err();
        assert!(r.message.contains("apparmorProfile") && r.fix.contains("apparmorProfile"));
    }

    #[test]
    fn cap_drop_table() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(Vec<String>, bool)] = &[
            (v(&["ALL"]), true),
            (v(&["all"]), true),
            (v(&["NET_RAW", "All"]), true),
            (v(&[" ALL "]), true),
            (v(&[]), false),
            (v(&["NET_RAW", "SYS_ADMIN"]), false),
            (v(&["CAP_ALL"]), false),
            (v(&["ALLX"]), false),
        ];
        for (caps, ok) in cases {
            let got = validate_cap_drop(caps);
            assert_eq!(got.is_ok(), *ok, "{caps:?}");
            if let Err(r) = got {
                assert_eq!(r.code, CapDropIncomplete);
            }
        }
        let r = validate_cap_drop(&[]).unwrap_err();
        assert_eq!(r.value, "[]");
        assert!(r.message.contains("[]") && r.fix.contains("ALL"));
    }

    #[test]
    fn env_name_table() {
        let ok = ["PATH", "_", "_x1", "a", "MY_VAR_2", "lower_case"];
        for name in ok {
            assert_eq!(validate_env_name(name), Ok(()), "{name:?}");
        }
        let bad = [
            "", "A=B", "=", "A\0B", "\0", "1ABC", "A-B", "A B", "A.B", "É", "A\n", "$HOME",
        ];
        for name in bad {
            let r = validate_env_name(name).unwrap_err();
            assert_eq!(r.code, InvalidEnvName, "{name:?}");
            assert_eq!(r.value, name);
        }
        assert!(
            validate_env_name("A\0B")
                .unwrap_err()
                .message
                .contains("\\0")
        );
    }

    #[test]
    fn tmpfs_accepted_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("/tmp", "/tmp", "nosuid,nodev,size=1024"),
            ("/tmp:", "/tmp", "nosuid,nodev,size=1024"),
            ("/tmp/", "/tmp", "nosuid,nodev,size=1024"),
            ("/var/tmp:size=64m", "/var/tmp", "nosuid,nodev,size=64m"),
            (
                "/run:rw,noexec,nosuid,size=10%",
                "/run",
                "nosuid,nodev,rw,noexec,size=10%",
            ),
            (
                "/tmp:exec,mode=1777,uid=1000,gid=1000",
                "/tmp",
                "nosuid,nodev,exec,mode=1777,uid=1000,gid=1000,size=1024",
            ),
            (
                "/cache:nodev,nr_inodes=10k,size=1g",
                "/cache",
                "nosuid,nodev,nr_inodes=10k,size=1g",
            ),
            (
                "/tmp:noexec,noexec",
                "/tmp",
                "nosuid,nodev,noexec,size=1024",
            ),
        ];
        for (spec, target, opts) in cases {
            let (t, o) = parse_tmpfs(spec, 1024).unwrap_or_else(|r| panic!("{spec}: {r:?}"));
            assert_eq!((t.as_str(), o.as_str()), (*target, *opts), "{spec}");
        }
    }

    #[test]
    fn tmpfs_refused_table() {
        let cases = [
            "",
            "tmp",
            "./tmp:size=1m",
            ":size=1m",
            "/tmp\0:size=1m",
            "/tmp:suid",
            "/tmp:dev",
            "/tmp:nosuid,suid",
            "/tmp:size=0",
            "/tmp:size=000",
            "/tmp:size=",
            "/tmp:size=1x",
            "/tmp:size=1mm",
            "/tmp:size=-1",
            "/tmp:size=1m,size=2m",
            "/tmp:nr_inodes=0",
            "/tmp:nr_inodes=5%",
            "/tmp:mode=99",
            "/tmp:mode=17777",
            "/tmp:uid=root",
            "/tmp:rshared",
            "/tmp:nr_blocks=0",
            "/tmp:huge=always",
            "/tmp:size=1m,,noexec",
            "/tmp:size=1m:extra",
        ];
        for spec in cases {
            let r = parse_tmpfs(spec, 1024).unwrap_err();
            assert_eq!(r.code, InvalidTmpfs, "{spec:?}");
            assert_eq!(r.value, spec);
        }
        let r = parse_tmpfs("/tmp", 0).unwrap_err();
        assert_eq!(r.code, InvalidTmpfs);
        assert!(
            parse_tmpfs("/tmp:size=1m", 0).is_ok(),
            "explicit size needs no default"
        );
        assert!(
            parse_tmpfs("/tmp:suid", 1)
                .unwrap_err()
                .message
                .contains("suid")
        );
    }

    #[test]
    fn tmpfs_options_always_have_caps() {
        for spec in ["/tmp", "/tmp:exec", "/tmp:rw,size=5m", "/a/b/../c:ro"] {
            let (_, opts) = parse_tmpfs(spec, 4096).unwrap();
            let list: Vec<&str> = opts.split(',').collect();
            assert!(
                list.contains(&"nosuid") && list.contains(&"nodev"),
                "{opts}"
            );
            assert_eq!(
                list.iter().filter(|o| o.starts_with("size=")).count(),
                1,
                "{opts}"
            );
        }
    }
}
