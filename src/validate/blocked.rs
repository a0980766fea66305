//! The blocked host-path table and the facts about the host it is built from.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::hostpath::{canonicalize_through_ancestor, lexical_normalize};

/// Host paths that are never a bind source, nor inside one (sandbox.md §5).
pub const BLOCKED_SYSTEM_PATHS: &[&str] = &[
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/root",
    "/boot",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
    "/var/snap/docker",
    "/run/containerd",
    "/run/podman",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/etc/docker",
];

/// Secrets and container-engine state inside every home directory.
pub const BLOCKED_HOME_ENTRIES: &[&str] = &[
    ".ssh",
    ".aws",
    ".gnupg",
    ".docker",
    ".config",
    ".cargo",
    ".npm",
    ".netrc",
    ".kube",
    ".local/share/containers",
    ".local/share/docker",
];

/// Where home directories live when /etc/passwd does not list the user: `/home/*/<entry>`.
const HOME_BASE: &str = "/home";

/// Facts about the host that the blocked-path rules need. Built once; cheap to clone.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// Every home directory known: /etc/passwd homes, $HOME, /root.
    pub home_dirs: Vec<PathBuf>,
    /// More blocked paths: clawden's own state files, the DOCKER_HOST unix socket path,
    /// XDG_RUNTIME_DIR sockets.
    pub extra_blocked: Vec<PathBuf>,
}

impl HostContext {
    /// Reads /etc/passwd (tolerating its absence), `$HOME`, adds `/root`; adds `DOCKER_HOST`'s
    /// path if it is `unix://`, and the `XDG_RUNTIME_DIR` directory (rootless Docker/podman
    /// sockets, the user D-Bus).
    pub fn from_system(extra_blocked: Vec<PathBuf>) -> Self {
        let passwd = std::fs::read_to_string("/etc/passwd").ok();
        Self::from_parts(
            passwd.as_deref(),
            std::env::var_os("HOME"),
            std::env::var_os("DOCKER_HOST"),
            std::env::var_os("XDG_RUNTIME_DIR"),
            extra_blocked,
        )
    }

    /// A context with exactly these home directories and no extra blocked paths.
    pub fn for_tests(home_dirs: Vec<PathBuf>) -> Self {
        HostContext {
            home_dirs,
            extra_blocked: Vec::new(),
        }
    }

    /// The pure part of [`HostContext::from_system`].
    pub(crate) fn from_parts(
        passwd: Option<&str>,
        home: Option<OsString>,
        docker_host: Option<OsString>,
        xdg_runtime_dir: Option<OsString>,
        mut extra_blocked: Vec<PathBuf>,
    ) -> Self {
        let mut homes: Vec<PathBuf> = Vec::new();
        let mut add_home = |p: PathBuf| {
            if p.is_absolute() && !homes.contains(&p) {
                homes.push(p);
            }
        };
        for line in passwd.unwrap_or("").lines() {
            // name:passwd:uid:gid:gecos:home:shell
            if let Some(dir) = line.split(':').nth(5).filter(|d| !d.is_empty()) {
                add_home(PathBuf::from(dir));
            }
        }
        if let Some(h) = home.filter(|h| !h.is_empty()) {
            add_home(PathBuf::from(h));
        }
        add_home(PathBuf::from("/root"));

        if let Some(sock) = docker_host
            .as_deref()
            .and_then(OsStr::to_str)
            .and_then(|h| h.strip_prefix("unix://"))
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
        {
            extra_blocked.push(sock);
        }
        if let Some(dir) = xdg_runtime_dir
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.as_os_str() != "/")
        {
            extra_blocked.push(dir);
        }
        HostContext {
            home_dirs: homes,
            extra_blocked,
        }
    }
}

/// One component of a blocked pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(OsString),
    /// Exactly one path component, whatever it is.
    Any,
}

/// A blocked path, possibly with `*` components.
#[derive(Debug, Clone)]
pub(crate) struct BlockedEntry {
    segs: Vec<Seg>,
    /// The path as configured, e.g. `/var/run` or `/home/*/.ssh`.
    pub shown: String,
    /// When this entry is the canonical form of another: that entry's `shown`.
    pub canonical_of: Option<String>,
}

impl BlockedEntry {
    fn new(segs: Vec<Seg>, canonical_of: Option<String>) -> Self {
        let shown = render(&segs);
        BlockedEntry {
            segs,
            shown,
            canonical_of,
        }
    }

    /// `/var/run`, or `/run` (where "/var/run" resolves)`.
    pub fn describe(&self) -> String {
        let shown = super::code::quote(&self.shown);
        match &self.canonical_of {
            Some(orig) => format!("{shown} (where {} resolves)", super::code::quote(orig)),
            None => shown,
        }
    }
}

/// How a source relates to a blocked entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    Equal,
    Under,
    Covers,
}

/// The blocked-path table for one host context, lexical and canonical forms of every entry.
#[derive(Debug, Clone)]
pub(crate) struct BlockedTable {
    entries: Vec<BlockedEntry>,
}

impl BlockedTable {
    pub fn build(ctx: &HostContext) -> Self {
        let mut base: Vec<Vec<Seg>> = Vec::new();
        let mut add = |segs: Vec<Seg>| {
            if !base.contains(&segs) {
                base.push(segs);
            }
        };
        for p in BLOCKED_SYSTEM_PATHS {
            add(literal_segs(Path::new(p)));
        }
        for home in &ctx.home_dirs {
            if home.is_absolute() {
                for entry in BLOCKED_HOME_ENTRIES {
                    add(literal_segs(&home.join(entry)));
                }
            }
        }
        for entry in BLOCKED_HOME_ENTRIES {
            let mut segs = literal_segs(Path::new(HOME_BASE));
            segs.push(Seg::Any);
            segs.extend(literal_segs(Path::new(entry)));
            add(segs);
        }
        for p in &ctx.extra_blocked {
            if p.is_absolute() {
                add(literal_segs(p));
            }
        }

        let mut entries: Vec<BlockedEntry> = base
            .iter()
            .map(|s| BlockedEntry::new(s.clone(), None))
            .collect();
        // Canonical forms: /var/run -> /run, a symlinked home, a dotfile symlinked elsewhere.
        // Only the literal prefix before a `*` can be resolved.
        for segs in &base {
            let lit_len = segs.iter().take_while(|s| matches!(s, Seg::Lit(_))).count();
            let prefix = render(&segs[..lit_len]);
            let Ok(canon) = canonicalize_through_ancestor(Path::new(&prefix)) else {
                continue;
            };
            let mut canon_segs = literal_segs(&canon);
            canon_segs.extend_from_slice(&segs[lit_len..]);
            if canon_segs != *segs && !entries.iter().any(|e| e.segs == canon_segs) {
                entries.push(BlockedEntry::new(canon_segs, Some(render(segs))));
            }
        }
        BlockedTable { entries }
    }

    /// The first entry that `path` equals or is under; failing that, the first one it covers.
    /// `path` must be absolute and lexically normal.
    pub fn check(&self, path: &Path) -> Option<(Relation, &BlockedEntry)> {
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut covered = None;
        for entry in &self.entries {
            match relation(&comps, &entry.segs) {
                Some(r @ (Relation::Equal | Relation::Under)) => return Some((r, entry)),
                Some(Relation::Covers) if covered.is_none() => covered = Some(entry),
                _ => {}
            }
        }
        covered.map(|e| (Relation::Covers, e))
    }

    #[cfg(test)]
    pub fn shown(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.shown.as_str()).collect()
    }
}

fn relation(path: &[&OsStr], pattern: &[Seg]) -> Option<Relation> {
    let matches = |a: &OsStr, s: &Seg| match s {
        Seg::Any => true,
        Seg::Lit(l) => l == a,
    };
    let common = path.len().min(pattern.len());
    if !path
        .iter()
        .zip(pattern)
        .take(common)
        .all(|(a, s)| matches(a, s))
    {
        return None;
    }
    if pattern.is_empty() {
        // `/` blocks only by equality; everything is under it.
        return path.is_empty().then_some(Relation::Equal);
    }
    match path.len().cmp(&pattern.len()) {
        std::cmp::Ordering::Equal => Some(Relation::Equal),
        std::cmp::Ordering::Greater => Some(Relation::Under),
        std::cmp::Ordering::Less => Some(Relation::Covers),
    }
}

fn literal_segs(p: &Path) -> Vec<Seg> {
    lexical_normalize(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Seg::Lit(n.to_os_string())),
            _ => None,
        })
        .collect()
}

fn render(segs: &[Seg]) -> String {
    if segs.is_empty() {
        return "/".to_string();
    }
    let mut s = String::new();
    for seg in segs {
        s.push('/');
        match seg {
            Seg::Lit(l) => s.push_str(&l.to_string_lossy()),
            Seg::Any => s.push('*'),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> BlockedTable {
        BlockedTable::build(&HostContext::for_tests(vec![
            PathBuf::from("/home/alice"),
            PathBuf::from("/srv/users/bob"),
        ]))
    }

    #[test]
    fn relation_table() {
        let t = table();
        let cases: &[(&str, Option<(Relation, &str)>)] = &[
            ("/", Some((Relation::Equal, "/"))),
            ("/etc", Some((Relation::Equal, "/etc"))),
            ("/etc/passwd", Some((Relation::Under, "/etc"))),
            ("/etcetera", None),
            ("/var", Some((Relation::Covers, "/var/run"))),
            ("/var/lib", Some((Relation::Covers, "/var/lib/docker"))),
            (
                "/var/lib/docker/volumes",
                Some((Relation::Under, "/var/lib/docker")),
            ),
            ("/var/run/docker.sock", Some((Relation::Under, "/var/run"))),
            ("/var/tmp", None),
            ("/home", Some((Relation::Covers, "/home/alice/.ssh"))),
            ("/home/alice", Some((Relation::Covers, "/home/alice/.ssh"))),
            (
                "/home/alice/.ssh/id_ed25519",
                Some((Relation::Under, "/home/alice/.ssh")),
            ),
            (
                "/home/alice/.local",
                Some((Relation::Covers, "/home/alice/.local/share/containers")),
            ),
            ("/home/alice/project", None),
            (
                "/home/nobody-known",
                Some((Relation::Covers, "/home/*/.ssh")),
            ),
            (
                "/home/nobody-known/.aws/credentials",
                Some((Relation::Under, "/home/*/.aws")),
            ),
            ("/home/nobody-known/code", None),
            ("/srv", Some((Relation::Covers, "/srv/users/bob/.ssh"))),
            (
                "/srv/users/bob/.kube",
                Some((Relation::Equal, "/srv/users/bob/.kube")),
            ),
            ("/srv/users/bob/.sshx", None),
            ("/srv/data", None),
            ("/tmp/x", None),
        ];
        for (path, want) in cases {
            let got = t.check(Path::new(path)).map(|(r, e)| (r, e.shown.as_str()));
            assert_eq!(got, *want, "path {path}");
        }
    }

    #[test]
    fn canonical_forms_are_added() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("real-home")).unwrap();
        std::os::unix::fs::symlink(real.join("real-home"), real.join("home-link")).unwrap();
        let t = BlockedTable::build(&HostContext::for_tests(vec![real.join("home-link")]));
        let (rel, entry) = t.check(&real.join("real-home/.ssh/id_rsa")).unwrap();
        assert_eq!(rel, Relation::Under);
        assert_eq!(entry.shown, real.join("real-home/.ssh").to_string_lossy());
        assert_eq!(
            entry.canonical_of.as_deref(),
            Some(real.join("home-link/.ssh").to_string_lossy().as_ref())
        );
        assert!(entry.describe().contains("where"), "{}", entry.describe());
    }

    #[test]
    fn extra_blocked_and_non_absolute_homes() {
        let ctx = HostContext {
            home_dirs: vec![PathBuf::from("relative/home")],
            extra_blocked: vec![PathBuf::from("/srv/clawden/state.json")],
        };
        let t = BlockedTable::build(&ctx);
        assert!(t.shown().iter().all(|s| !s.contains("relative")));
        let (rel, e) = t.check(Path::new("/srv/clawden")).unwrap();
        assert_eq!(
            (rel, e.shown.as_str()),
            (Relation::Covers, "/srv/clawden/state.json")
        );
    }

    #[test]
    fn from_parts_reads_passwd_home_docker_host_and_xdg() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      alice:x:1000:1000::/home/alice:/bin/sh\n\
                      broken-line\n\
                      svc:x:999:999::relative:/bin/false\n\
                      empty:x:998:998:::/bin/false\n";
        let ctx = HostContext::from_parts(
            Some(passwd),
            Some("/data/me".into()),
            Some("unix:///srv/docker/docker.sock".into()),
            Some("/run/user/1000".into()),
            vec![PathBuf::from("/srv/clawden/state")],
        );
        assert_eq!(
            ctx.home_dirs,
            vec![
                PathBuf::from("/root"),
                PathBuf::from("/home/alice"),
                PathBuf::from("/data/me")
            ]
        );
        assert_eq!(
            ctx.extra_blocked,
            vec![
                PathBuf::from("/srv/clawden/state"),
                PathBuf::from("/srv/docker/docker.sock"),
                PathBuf::from("/run/user/1000"),
            ]
        );
    }

    #[test]
    fn from_parts_tolerates_absence_and_tcp_docker_host() {
        let ctx =
            HostContext::from_parts(None, None, Some("tcp://10.0.0.1:2375".into()), None, vec![]);
        assert_eq!(ctx.home_dirs, vec![PathBuf::from("/root")]);
        assert!(ctx.extra_blocked.is_empty());
    }

    #[test]
    fn from_system_always_knows_root() {
        let ctx = HostContext::from_system(vec![]);
        assert!(ctx.home_dirs.contains(&PathBuf::from("/root")));
    }
}
