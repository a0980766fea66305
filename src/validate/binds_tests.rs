//! Table and real-filesystem tests for `docker.binds` (security.md "Config and bind mounts").

use super::*;
use crate::validate::blocked::{BLOCKED_HOME_ENTRIES, BLOCKED_SYSTEM_PATHS};
use crate::validate::check_managed_source;
use proptest::prelude::*;
use std::os::unix::fs::symlink;
use tempfile::TempDir;

/// A scratch host: `<root>/ws` is the allowed root (with `data/`, `file.txt`),
/// `<root>/home/u` a home directory with real secrets, `<root>/outside` a dir outside the
/// allowed roots. Tempdirs live under /tmp, which is not blocked.
struct Host {
    _dir: TempDir,
    root: PathBuf,
    ws: PathBuf,
    home: PathBuf,
    roots: Vec<PathBuf>,
    reserved: Vec<String>,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let ws = root.join("ws");
        let home = root.join("home/u");
        std::fs::create_dir_all(ws.join("data")).unwrap();
        std::fs::write(ws.join("file.txt"), b"x").unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        for d in [".ssh", ".aws", ".docker", "project"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        std::fs::write(home.join(".docker/config.json"), b"{}").unwrap();
        Host {
            _dir: dir,
            roots: vec![ws.clone()],
            reserved: vec!["/workspace".into(), "/agent".into(), "/tmp".into()],
            root,
            ws,
            home,
        }
    }

    fn ctx(&self) -> HostContext {
        HostContext::for_tests(vec![self.home.clone(), PathBuf::from("/home/tester")])
    }

    fn policy(&self, allow_external: bool, allow_reserved: bool) -> BindPolicy<'_> {
        BindPolicy {
            allowed_roots: &self.roots,
            reserved_targets: &self.reserved,
            allow_external_sources: allow_external,
            allow_reserved_targets: allow_reserved,
        }
    }

    /// Expand `{ws}`, `{home}`, `{root}` in a spec.
    fn spec(&self, s: &str) -> String {
        s.replace("{ws}", self.ws.to_str().unwrap())
            .replace("{home}", self.home.to_str().unwrap())
            .replace("{root}", self.root.to_str().unwrap())
    }

    fn refuse(&self, spec: &str, ext: bool, res: bool) -> Refusal {
        let spec = self.spec(spec);
        match validate_bind(&spec, &self.ctx(), &self.policy(ext, res)) {
            Ok(b) => panic!("{spec:?} was accepted: {b:?}"),
            Err(r) => {
                assert_eq!(r.value, spec, "refusal names the entry");
                assert!(!r.message.is_empty() && !r.fix.is_empty());
                r
            }
        }
    }

    fn accept(&self, spec: &str, ext: bool, res: bool) -> ValidatedBind {
        let spec = self.spec(spec);
        validate_bind(&spec, &self.ctx(), &self.policy(ext, res))
            .unwrap_or_else(|r| panic!("{spec:?} was refused: {r:?}"))
    }
}

use RefusalCode::*;

/// Every config/bind case of security.md, plus one per code, with the default policy.
#[test]
fn refusal_table_default_policy() {
    let h = Host::new();
    let cases: &[(&str, RefusalCode)] = &[
        // Docker socket and blocked roots.
        ("/var/run/docker.sock:/var/run/docker.sock", BlockedPath),
        ("/run/docker.sock:/mnt/d", BlockedPath),
        ("/:/host", BlockedPath),
        ("/var:/mnt/var:ro", CoversBlockedPath),
        ("/var/lib:/mnt/lib", BlockedPath),
        ("/home:/mnt/home", CoversBlockedPath),
        ("/home/anyuser:/mnt/h", CoversBlockedPath),
        ("{home}:/mnt/home", CoversBlockedPath),
        ("{root}/home:/mnt/home", CoversBlockedPath),
        ("$HOME:/mnt/home", NonAbsolute),
        ("$HOME/project:/mnt/p", NonAbsolute),
        ("/home/u/proj/../../../etc:/mnt/etc", BlockedPath),
        ("//etc//passwd:/mnt/passwd", BlockedPath),
        ("/etc/:/mnt/etc", BlockedPath),
        ("/./etc/.:/mnt/etc", BlockedPath),
        ("/proc/1/root:/mnt/r", BlockedPath),
        ("/proc/self/cwd:/mnt/cwd", BlockedPath),
        ("/sys:/mnt/sys", BlockedPath),
        ("/dev:/mnt/dev", BlockedPath),
        ("/dev/null:/mnt/null", BlockedPath),
        ("/boot:/mnt/boot", BlockedPath),
        ("/root:/mnt/root", BlockedPath),
        ("/run:/mnt/run", BlockedPath),
        ("/var/lib/docker:/mnt/docker", BlockedPath),
        ("/var/lib/containerd:/mnt/c", BlockedPath),
        ("/etc/docker/daemon.json:/mnt/d", BlockedPath),
        // Home secrets: literal `~` is never expanded; expanded paths are blocked.
        ("~/.ssh:/mnt/ssh", NonAbsolute),
        ("~/.aws:/mnt/aws", NonAbsolute),
        ("~/.docker/config.json:/mnt/c.json", NonAbsolute),
        ("~/x:/mnt/x", NonAbsolute),
        ("{home}/.ssh:/mnt/ssh", BlockedPath),
        ("{home}/.aws:/mnt/aws", BlockedPath),
        ("{home}/.docker/config.json:/mnt/c.json", BlockedPath),
        ("{home}/.docker:/mnt/d", BlockedPath),
        ("{home}/.config/gh/hosts.yml:/mnt/h", BlockedPath),
        ("{home}/.local:/mnt/l", CoversBlockedPath),
        ("/home/tester/.ssh:/mnt/ssh", BlockedPath),
        ("/home/not-in-passwd/.kube/config:/mnt/k", BlockedPath),
        ("/home/not-in-passwd/.netrc:/mnt/n", BlockedPath),
        // Not an absolute host path.
        ("relative/path:/mnt/x", NonAbsolute),
        ("./data:/mnt/x", NonAbsolute),
        ("../ws:/mnt/x", NonAbsolute),
        ("myvolume:/mnt/x", NonAbsolute),
        (":/mnt/x", NonAbsolute),
        // Missing sources: Docker would create them.
        ("{ws}/does-not-exist:/mnt/x", MissingSource),
        ("{ws}/file.txt/below:/mnt/x", MissingSource),
        // Malformed bind strings.
        ("", BadBindSpec),
        ("{ws}/data", BadBindSpec),
        ("{ws}/data:/mnt/x:ro:extra", BadBindSpec),
        ("{ws}/data:/mnt/x:ro:rshared", BadBindSpec),
        ("{ws}/data:", BadBindSpec),
        ("{ws}/data:/mnt/x\0", BadBindSpec),
        ("{ws}/da\nta:/mnt/x", BadBindSpec),
        ("{ws}/data:/mnt/x:rshared", BadBindMode),
        ("{ws}/data:/mnt/x:ro,rshared", BadBindMode),
        ("{ws}/data:/mnt/x:z", BadBindMode),
        ("{ws}/data:/mnt/x:Z", BadBindMode),
        ("{ws}/data:/mnt/x:shared", BadBindMode),
        ("{ws}/data:/mnt/x:rslave", BadBindMode),
        ("{ws}/data:/mnt/x:RO", BadBindMode),
        ("{ws}/data:/mnt/x:", BadBindMode),
        // Targets.
        ("{ws}/data:/proc", ReservedTarget),
        ("{ws}/data:/", ReservedTarget),
        ("{ws}/data:/etc/passwd", ReservedTarget),
        ("{ws}/data:/workspace", ReservedTarget),
        ("{ws}/data:/workspace/sub", ReservedTarget),
        ("{ws}/data:/agent", ReservedTarget),
        ("{ws}/data:/tmp/x", ReservedTarget),
        ("{ws}/data:/var", ReservedTarget),
        ("{ws}/data:/usr/local/bin", ReservedTarget),
        ("{ws}/data:/lib64", ReservedTarget),
        ("{ws}/data://proc/../sys/", ReservedTarget),
        ("{ws}/data:mnt/x", NonAbsolute),
        // Allowed roots.
        ("{root}/outside:/mnt/x", OutsideAllowedRoots),
        ("{ws}/../outside:/mnt/x", OutsideAllowedRoots),
    ];
    for (spec, code) in cases {
        let r = h.refuse(spec, false, false);
        assert_eq!(r.code, *code, "{spec:?}: {r:?}");
    }
}

#[test]
fn accepted_table() {
    let h = Host::new();
    let cases: &[(&str, &str, &str, bool)] = &[
        ("{ws}/data:/mnt/data", "{ws}/data", "/mnt/data", false),
        ("{ws}/data:/mnt/data:rw", "{ws}/data", "/mnt/data", false),
        ("{ws}/data:/mnt/data:ro", "{ws}/data", "/mnt/data", true),
        ("{ws}/data/:/mnt//data/./", "{ws}/data", "/mnt/data", false),
        ("{ws}/./data/../data:/mnt/d", "{ws}/data", "/mnt/d", false),
        ("{ws}/file.txt:/mnt/f:ro", "{ws}/file.txt", "/mnt/f", true),
        ("{ws}:/mnt/ws", "{ws}", "/mnt/ws", false),
        (
            "{ws}/data:/home/node/data",
            "{ws}/data",
            "/home/node/data",
            false,
        ),
        ("{ws}/data:/tmpdata", "{ws}/data", "/tmpdata", false),
    ];
    for (spec, source, target, ro) in cases {
        let b = h.accept(spec, false, false);
        assert_eq!(b.spec, h.spec(spec));
        assert_eq!(b.source, PathBuf::from(h.spec(source)), "{spec}");
        assert_eq!(b.target, *target, "{spec}");
        assert_eq!(b.read_only, *ro, "{spec}");
    }
}

#[test]
fn covers_message_names_entry_rule_and_fix() {
    let h = Host::new();
    let r = h.refuse("/var:/mnt/var:ro", false, false);
    assert_eq!(
        r.message,
        r#"bind mount "/var:/mnt/var:ro" covers blocked path "/var/run" (runtime state and sockets)"#
    );
    assert!(r.fix.contains("narrower"), "{}", r.fix);

    let r = h.refuse("/etc/passwd:/mnt/p", false, false);
    assert!(
        r.message.contains(r#""/etc/passwd:/mnt/p""#),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(r#"blocked path "/etc""#),
        "{}",
        r.message
    );
    assert!(r.fix.contains("docker.binds"), "{}", r.fix);

    let r = h.refuse("~/.ssh:/mnt/ssh", false, false);
    assert!(
        r.message.contains("use an absolute host path"),
        "{}",
        r.message
    );

    let r = h.refuse("{ws}/data:/mnt/x:rshared", false, false);
    assert!(r.message.contains(r#""rshared""#), "{}", r.message);

    let r = h.refuse("{root}/outside:/mnt/x", false, false);
    assert!(
        r.fix.contains("dangerouslyAllowExternalBindSources"),
        "{}",
        r.fix
    );

    let r = h.refuse("{ws}/data:/proc", false, false);
    assert!(r.message.contains(r#""/proc""#), "{}", r.message);
    assert!(
        r.fix.contains("dangerouslyAllowReservedContainerTargets"),
        "{}",
        r.fix
    );
}

#[test]
fn real_home_from_system_is_refused() {
    // `$HOME` as the real home path string (the literal `$HOME` is NonAbsolute above).
    let ctx = HostContext::from_system(vec![]);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_string());
    let roots = [PathBuf::from("/")];
    let policy = BindPolicy {
        allowed_roots: &roots,
        reserved_targets: &[],
        allow_external_sources: true,
        allow_reserved_targets: true,
    };
    let r = validate_bind(&format!("{home}:/mnt/home"), &ctx, &policy).unwrap_err();
    assert!(
        matches!(r.code, BlockedPath | CoversBlockedPath),
        "{home}: {r:?}"
    );
    let r = validate_bind(&format!("{home}/.ssh:/mnt/ssh"), &ctx, &policy).unwrap_err();
    assert_eq!(r.code, BlockedPath, "{r:?}");
}

/// Each dangerously* flag lifts only its own rule.
#[test]
fn flags_lift_only_their_own_rule() {
    let h = Host::new();
    let fifo = h.ws.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let still_refused: &[(&str, RefusalCode)] = &[
        ("/etc:/mnt/etc", BlockedPath),
        ("/var/run/docker.sock:/mnt/docker.sock", BlockedPath),
        ("/var:/mnt/var", CoversBlockedPath),
        ("{home}/.ssh:/mnt/ssh", BlockedPath),
        ("~/.ssh:/mnt/ssh", NonAbsolute),
        ("{root}/nope:/mnt/nope", MissingSource),
        ("{ws}/fifo:/mnt/fifo", SpecialFile),
        ("{ws}/data:/mnt/x:rshared", BadBindMode),
        ("{ws}/data:/mnt/x:ro:x", BadBindSpec),
    ];
    for (ext, res) in [(true, false), (false, true), (true, true)] {
        for (spec, code) in still_refused {
            let r = h.refuse(spec, ext, res);
            assert_eq!(r.code, *code, "{spec} ext={ext} res={res}");
        }
    }
    // allow_external_sources lifts the allowed-roots rule, not the reserved-target rule.
    let b = h.accept("{root}/outside:/mnt/x", true, false);
    assert_eq!(b.source, h.root.join("outside"));
    assert_eq!(
        h.refuse("{root}/outside:/proc", true, false).code,
        ReservedTarget
    );
    // allow_reserved_targets lifts the reserved-target rule, not the allowed-roots rule.
    assert_eq!(h.accept("{ws}/data:/proc/x", false, true).target, "/proc/x");
    assert_eq!(
        h.accept("{ws}/data:/etc/passwd", false, true).target,
        "/etc/passwd"
    );
    assert_eq!(
        h.refuse("{root}/outside:/proc", false, true).code,
        OutsideAllowedRoots
    );
}

#[test]
fn symlink_to_etc_in_workspace_is_refused() {
    let h = Host::new();
    symlink("/etc", h.ws.join("etc-link")).unwrap();
    for spec in [
        "{ws}/etc-link:/mnt/e",
        "{ws}/etc-link/passwd:/mnt/p",
        "{ws}/etc-link/:/mnt/e",
    ] {
        let r = h.refuse(spec, false, false);
        assert_eq!(r.code, BlockedPath, "{spec}: {r:?}");
        assert!(r.message.contains("resolves to"), "{}", r.message);
    }
    // Even when the external-source flag is set.
    assert_eq!(
        h.refuse("{ws}/etc-link:/mnt/e", true, true).code,
        BlockedPath
    );
}

#[test]
fn relative_symlinks_climbing_out() {
    let h = Host::new();
    let depth = h.ws.components().count();
    symlink("../".repeat(depth + 2) + "etc", h.ws.join("up-etc")).unwrap();
    symlink("../outside", h.ws.join("up-outside")).unwrap();
    symlink("data", h.ws.join("in")).unwrap();
    assert_eq!(
        h.refuse("{ws}/up-etc/shadow:/mnt/s", false, false).code,
        BlockedPath
    );
    assert_eq!(
        h.refuse("{ws}/up-outside:/mnt/o", false, false).code,
        OutsideAllowedRoots
    );
    // A relative link that stays inside is fine, and Docker gets the canonical path.
    assert_eq!(
        h.accept("{ws}/in:/mnt/in", false, false).source,
        h.ws.join("data")
    );
}

#[test]
fn missing_leaf_behind_symlinked_parent_into_var_run() {
    let h = Host::new();
    symlink("/var/run", h.ws.join("run-link")).unwrap();
    // Blocked (canonical) comes before MissingSource.
    let r = h.refuse("{ws}/run-link/not-yet/leaf:/mnt/x", true, true);
    assert_eq!(r.code, BlockedPath, "{r:?}");
    // And a missing leaf behind a harmless symlinked parent is MissingSource.
    symlink(h.ws.join("data"), h.ws.join("data-link")).unwrap();
    assert_eq!(
        h.refuse("{ws}/data-link/not-yet:/mnt/x", false, false).code,
        MissingSource
    );
}

#[test]
fn sockets_and_fifos_are_special_files() {
    let h = Host::new();
    let _listener = std::os::unix::net::UnixListener::bind(h.ws.join("agent.sock")).unwrap();
    nix::unistd::mkfifo(
        &h.ws.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    symlink("agent.sock", h.ws.join("sock-link")).unwrap();
    for spec in [
        "{ws}/agent.sock:/mnt/s",
        "{ws}/pipe:/mnt/p",
        "{ws}/sock-link:/mnt/s",
    ] {
        let r = h.refuse(spec, false, false);
        assert_eq!(r.code, SpecialFile, "{spec}: {r:?}");
    }
    assert!(
        h.refuse("{ws}/agent.sock:/mnt/s", false, false)
            .message
            .contains("socket")
    );
    assert!(
        h.refuse("{ws}/pipe:/mnt/p", false, false)
            .message
            .contains("FIFO")
    );
}

#[test]
fn symlink_loop_is_refused() {
    let h = Host::new();
    symlink("loop-b", h.ws.join("loop-a")).unwrap();
    symlink("loop-a", h.ws.join("loop-b")).unwrap();
    let r = h.refuse("{ws}/loop-a:/mnt/x", true, true);
    assert_eq!(r.code, MissingSource);
    assert!(r.message.contains("cannot be resolved"), "{}", r.message);
}

#[test]
fn allowed_roots_compare_canonical_forms() {
    let h = Host::new();
    symlink(&h.ws, h.root.join("ws-link")).unwrap();
    let roots = vec![h.root.join("ws-link"), h.root.join("not-created-yet")];
    let reserved: Vec<String> = vec![];
    let policy = BindPolicy {
        allowed_roots: &roots,
        reserved_targets: &reserved,
        allow_external_sources: false,
        allow_reserved_targets: false,
    };
    let spec = format!("{}/data:/mnt/d", h.ws.display());
    assert_eq!(
        validate_bind(&spec, &h.ctx(), &policy).unwrap().source,
        h.ws.join("data")
    );
    let spec = format!("{}/ws-link/data:/mnt/d", h.root.display());
    assert_eq!(
        validate_bind(&spec, &h.ctx(), &policy).unwrap().source,
        h.ws.join("data")
    );
    // A sibling whose name merely starts with the root's name is outside.
    std::fs::create_dir(h.root.join("ws2")).unwrap();
    let spec = format!("{}/ws2:/mnt/d", h.root.display());
    assert_eq!(
        validate_bind(&spec, &h.ctx(), &policy).unwrap_err().code,
        OutsideAllowedRoots
    );
    // No roots at all: everything is outside.
    let none = BindPolicy {
        allowed_roots: &[],
        ..policy
    };
    let spec = format!("{}/data:/mnt/d", h.ws.display());
    assert_eq!(
        validate_bind(&spec, &h.ctx(), &none).unwrap_err().code,
        OutsideAllowedRoots
    );
}

#[test]
fn extra_blocked_paths_are_refused() {
    let h = Host::new();
    std::fs::write(h.ws.join("state.json"), b"{}").unwrap();
    let mut ctx = h.ctx();
    ctx.extra_blocked.push(h.ws.join("state.json"));
    let spec = format!("{}/state.json:/mnt/s", h.ws.display());
    assert_eq!(
        validate_bind(&spec, &ctx, &h.policy(false, false))
            .unwrap_err()
            .code,
        BlockedPath
    );
    let spec = format!("{}:/mnt/ws", h.ws.display());
    assert_eq!(
        validate_bind(&spec, &ctx, &h.policy(false, false))
            .unwrap_err()
            .code,
        CoversBlockedPath
    );
}

#[test]
fn list_reports_every_refusal_and_duplicates() {
    let h = Host::new();
    std::fs::create_dir(h.ws.join("other")).unwrap();
    let specs: Vec<String> = [
        "/etc:/mnt/etc",
        "{ws}/data:/mnt/a",
        "~/x:/mnt/x",
        "{ws}/other:/mnt/a/",
        "{ws}/other:/mnt/b:ro",
        "{ws}/data:/mnt//b",
        "{ws}/data:/mnt/a/nested",
    ]
    .iter()
    .map(|s| h.spec(s))
    .collect();
    let (ok, refused) = validate_binds(&specs, &h.ctx(), &h.policy(false, false));
    let codes: Vec<(&str, RefusalCode)> =
        refused.iter().map(|r| (r.value.as_str(), r.code)).collect();
    assert_eq!(
        codes,
        vec![
            (specs[0].as_str(), BlockedPath),
            (specs[2].as_str(), NonAbsolute),
            (specs[3].as_str(), DuplicateTarget),
            (specs[5].as_str(), DuplicateTarget),
        ]
    );
    let targets: Vec<&str> = ok.iter().map(|b| b.target.as_str()).collect();
    assert_eq!(targets, vec!["/mnt/a", "/mnt/b", "/mnt/a/nested"]);
    assert!(
        refused[2].message.contains(&specs[1]),
        "names the earlier entry: {}",
        refused[2].message
    );
}

#[test]
fn list_duplicate_against_reserved_when_reserved_allowed() {
    let h = Host::new();
    let specs: Vec<String> = [
        "{ws}/data:/workspace/",
        "{ws}/data:/agent",
        "{ws}/data:/workspace/sub",
    ]
    .iter()
    .map(|s| h.spec(s))
    .collect();
    let (ok, refused) = validate_binds(&specs, &h.ctx(), &h.policy(false, true));
    let codes: Vec<RefusalCode> = refused.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![DuplicateTarget, DuplicateTarget]);
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].target, "/workspace/sub");
    // Without the flag the same entries are ReservedTarget, once each.
    let (ok, refused) = validate_binds(&specs, &h.ctx(), &h.policy(false, false));
    assert!(ok.is_empty());
    assert_eq!(
        refused.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![ReservedTarget; 3]
    );
}

#[test]
fn list_and_single_agree() {
    let h = Host::new();
    let specs: Vec<String> = ["{ws}/data:/mnt/d:ro", "/var:/v"]
        .iter()
        .map(|s| h.spec(s))
        .collect();
    let (ok, refused) = validate_binds(&specs, &h.ctx(), &h.policy(false, false));
    assert_eq!(
        ok,
        vec![validate_bind(&specs[0], &h.ctx(), &h.policy(false, false)).unwrap()]
    );
    assert_eq!(
        refused,
        vec![validate_bind(&specs[1], &h.ctx(), &h.policy(false, false)).unwrap_err()]
    );
}

// ---- property tests -------------------------------------------------------------------------

/// Blocked paths from the table, without `/` (which blocks only by equality).
fn blocked_root() -> impl Strategy<Value = String> {
    let mut roots: Vec<String> = BLOCKED_SYSTEM_PATHS
        .iter()
        .filter(|p| p.path != "/")
        .map(|p| p.path.to_string())
        .collect();
    for e in BLOCKED_HOME_ENTRIES {
        roots.push(format!("/home/tester/{}", e.path));
    }
    let fixed = prop::sample::select(roots);
    let entries: Vec<&str> = BLOCKED_HOME_ENTRIES.iter().map(|e| e.path).collect();
    let wildcard = ("[a-z][a-z0-9_-]{0,7}", prop::sample::select(entries))
        .prop_map(|(user, e)| format!("/home/{user}/{e}"));
    prop_oneof![3 => fixed, 1 => wildcard]
}

/// Noise that does not change the path's meaning lexically.
fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_string()),
        Just("/".to_string()), // doubles the separator
        "[a-z]{1,6}".prop_map(|x| format!("{x}/..")),
    ]
}

/// `path` spelled with noise between components and an optional trailing slash.
fn respell(path: &str, noise: &[String], trailing: bool) -> String {
    let mut out = String::new();
    for (i, comp) in path.split('/').filter(|c| !c.is_empty()).enumerate() {
        out.push('/');
        if let Some(n) = noise.get(i).filter(|n| !n.is_empty()) {
            out.push_str(n);
            out.push('/');
        }
        out.push_str(comp);
    }
    if trailing {
        out.push('/');
    }
    out
}

fn all_open_policy() -> (Vec<PathBuf>, Vec<String>) {
    (vec![PathBuf::from("/")], vec![])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// No spelling of a path at or under a blocked root is ever accepted, whatever the flags.
    #[test]
    fn no_spelling_under_a_blocked_root_is_accepted(
        root in blocked_root(),
        suffix in prop::collection::vec("[a-zA-Z0-9_.-]{1,8}".prop_filter("not a dot segment", |s| s != "." && s != ".."), 0..4),
        noise in prop::collection::vec(noise(), 0..10),
        trailing in any::<bool>(),
        flags in (any::<bool>(), any::<bool>()),
    ) {
        // The one exempt directory (clawden's own root state dir) is not a spelling of /var/lib.
        prop_assume!(!(root == "/var/lib" && suffix.first().is_some_and(|s| s == "clawden")));
        let path = format!("{root}/{}", suffix.join("/"));
        let spelled = respell(&path, &noise, trailing);
        let ctx = HostContext::for_tests(vec![PathBuf::from("/home/tester")]);
        let (roots, reserved) = all_open_policy();
        let policy = BindPolicy {
            allowed_roots: &roots,
            reserved_targets: &reserved,
            allow_external_sources: flags.0,
            allow_reserved_targets: flags.1,
        };
        let spec = format!("{spelled}:/mnt/x");
        let r = validate_bind(&spec, &ctx, &policy);
        prop_assert!(r.is_err(), "{} accepted", spec);
        prop_assert_eq!(r.unwrap_err().code, BlockedPath, "{}", spec);
        let m = check_managed_source(Path::new(&spelled), "workspaceRoot", &ctx);
        prop_assert_eq!(m.map_err(|r| r.code), Err(BlockedPath), "{}", spelled);
    }

    /// Any strict ancestor (other than `/`) of a blocked root is refused as well.
    #[test]
    fn ancestors_of_blocked_roots_are_refused(
        root in blocked_root(),
        cut in any::<prop::sample::Index>(),
        noise in prop::collection::vec(noise(), 0..10),
        trailing in any::<bool>(),
    ) {
        let comps: Vec<&str> = root.split('/').filter(|c| !c.is_empty()).collect();
        let keep = 1 + cut.index(comps.len());
        let ancestor = format!("/{}", comps[..keep].join("/"));
        let spelled = respell(&ancestor, &noise, trailing);
        let ctx = HostContext::for_tests(vec![PathBuf::from("/home/tester")]);
        let (roots, reserved) = all_open_policy();
        let policy = BindPolicy {
            allowed_roots: &roots,
            reserved_targets: &reserved,
            allow_external_sources: true,
            allow_reserved_targets: true,
        };
        let r = validate_bind(&format!("{spelled}:/mnt/x"), &ctx, &policy);
        prop_assert!(
            matches!(r.as_ref().map_err(|r| r.code), Err(BlockedPath | CoversBlockedPath)),
            "{} -> {:?}", spelled, r
        );
    }

    /// Reached through a symlinked parent (a link to the entry's parent directory, or to the
    /// entry itself), with a missing or existing leaf: refused by the canonical check, whatever
    /// the flags, for binds and managed workspaces alike.
    #[test]
    fn symlinked_parents_of_blocked_roots_are_refused(
        root in blocked_root(),
        link_to_parent in any::<bool>(),
        suffix in prop::collection::vec("[a-z0-9_-]{1,8}", 0..3),
        flags in (any::<bool>(), any::<bool>()),
    ) {
        prop_assume!(!(root == "/var/lib" && suffix.first().is_some_and(|s| s == "clawden")));
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let root_path = Path::new(&root);
        let (target, rest) = if link_to_parent {
            let name = root_path.file_name().unwrap().to_str().unwrap().to_string();
            (root_path.parent().unwrap().to_path_buf(), format!("{name}/{}", suffix.join("/")))
        } else {
            (root_path.to_path_buf(), suffix.join("/"))
        };
        symlink(&target, base.join("link")).unwrap();
        let via = base.join("link").join(rest);
        let ctx = HostContext::for_tests(vec![PathBuf::from("/home/tester")]);
        let (roots, reserved) = all_open_policy();
        let policy = BindPolicy {
            allowed_roots: &roots,
            reserved_targets: &reserved,
            allow_external_sources: flags.0,
            allow_reserved_targets: flags.1,
        };
        let spec = format!("{}:/mnt/x", via.display());
        let r = validate_bind(&spec, &ctx, &policy).map_err(|r| r.code);
        prop_assert!(matches!(r, Err(BlockedPath | CoversBlockedPath)), "{} -> {:?}", spec, r);
        let m = check_managed_source(&via, "workspaceRoot", &ctx).map_err(|r| r.code);
        prop_assert!(matches!(m, Err(BlockedPath | CoversBlockedPath)), "{} -> {:?}", via.display(), m);
    }
}
