//! The blocked host-path table and the facts about the host it is built from.
//!
//! The table is about what a path *is* (security.md, principle 5), not how it is spelled: system
//! directories, kernel interfaces, container-engine sockets and state, and in every home
//! directory each file or directory that authenticates a host user or runs as one (shell startup
//! files, directories on `PATH`, code that tools load, credentials of package managers, clouds
//! and git). A source is refused when it equals, lies under or contains an entry, whatever the
//! `dangerously*` settings say: `dangerouslyAllowExternalBindSources` lifts only the
//! allowed-roots rule, never this table. The same table applies to the clawden-managed
//! workspaces (agent workspace, `workspaceRoot`).
//!
//! Deliberately *not* blocked: `/tmp`, `/var/tmp`, `/mnt`, `/media`, `/home/<user>/<project>`
//! and `/srv`. `/srv` is the FHS place for site data and the usual home of the project data an
//! operator binds; a directory there that a web server executes is the operator's call (binding
//! anything outside the workspaces still needs `dangerouslyAllowExternalBindSources`).
//! `/var/lib/clawden` (clawden's own default state directory when it runs as root) is exempt
//! from the `/var/lib` entry only: its state files stay blocked through the host context.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::hostpath::{canonicalize_through_ancestor, lexical_normalize};

/// What a blocked path is: shown in refusals so the operator sees why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    /// `/` itself.
    HostRoot,
    /// Host configuration (`/etc`).
    HostConfig,
    /// Kernel interfaces: `/proc`, `/sys`, `/dev`.
    Kernel,
    /// Runtime state and sockets: `/run`, `/var/run`.
    Runtime,
    /// A container engine's socket, state or configuration.
    EngineState,
    /// Programs, libraries and data that the host runs (as root or as other users).
    SystemDir,
    /// System state, logs, spools, caches and mail.
    SystemState,
    /// Root's home, boot files.
    Privileged,
    /// A file a host user's shell (or login) runs by itself.
    ShellStartup,
    /// A directory on a host user's `PATH`, or code their tools load.
    UserCode,
    /// Configuration that a host user's tools execute or trust (git, editors, desktop).
    UserToolConfig,
    /// Credentials or secrets of a host user (package managers, clouds, git, ssh, gpg).
    Credentials,
    /// A path this host marks as blocked: clawden's own state, the engine's socket,
    /// `XDG_RUNTIME_DIR`.
    HostSpecific,
}

impl BlockKind {
    /// How a refusal describes it.
    pub fn describe(self) -> &'static str {
        match self {
            BlockKind::HostRoot => "the host's root",
            BlockKind::HostConfig => "host configuration",
            BlockKind::Kernel => "a kernel interface",
            BlockKind::Runtime => "runtime state and sockets",
            BlockKind::EngineState => "a container engine's socket or state",
            BlockKind::SystemDir => "a system directory of programs the host runs",
            BlockKind::SystemState => "system state, logs or spools",
            BlockKind::Privileged => "root's home or boot files",
            BlockKind::ShellStartup => "a shell startup file of a host user",
            BlockKind::UserCode => "programs or code a host user runs",
            BlockKind::UserToolConfig => "configuration a host user's tools execute",
            BlockKind::Credentials => "credentials of a host user",
            BlockKind::HostSpecific => "clawden's state, the engine socket or the runtime dir",
        }
    }
}

/// One row of the blocked tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub path: &'static str,
    pub kind: BlockKind,
}

const fn b(path: &'static str, kind: BlockKind) -> Blocked {
    Blocked { path, kind }
}

use BlockKind as K;

/// Host paths that are never a bind source, nor inside one, nor contained in one (sandbox.md §5).
/// Order matters only for messages: the first entry a path is at or under is named, else the
/// first one it contains.
pub const BLOCKED_SYSTEM_PATHS: &[Blocked] = &[
    b("/", K::HostRoot),
    b("/etc", K::HostConfig),
    b("/proc", K::Kernel),
    b("/sys", K::Kernel),
    b("/dev", K::Kernel),
    b("/root", K::Privileged),
    b("/boot", K::Privileged),
    b("/efi", K::Privileged),
    b("/run", K::Runtime),
    b("/var/run", K::Runtime),
    b("/var/lib/docker", K::EngineState),
    b("/var/lib/containerd", K::EngineState),
    b("/var/lib/containers", K::EngineState),
    b("/var/snap/docker", K::EngineState),
    b("/run/containerd", K::EngineState),
    b("/run/podman", K::EngineState),
    b("/var/run/docker.sock", K::EngineState),
    b("/run/docker.sock", K::EngineState),
    b("/etc/docker", K::EngineState),
    // What the host runs: merged-/usr or not, every spelling is listed (a symlinked one is
    // also added in its canonical form when the table is built).
    b("/usr", K::SystemDir),
    b("/bin", K::SystemDir),
    b("/sbin", K::SystemDir),
    b("/lib", K::SystemDir),
    b("/lib32", K::SystemDir),
    b("/lib64", K::SystemDir),
    b("/libx32", K::SystemDir),
    b("/opt", K::SystemDir),
    b("/snap", K::SystemDir),
    b("/nix", K::SystemDir),
    b("/var/www", K::SystemDir),
    b("/var/lib", K::SystemState),
    b("/var/log", K::SystemState),
    b("/var/spool", K::SystemState),
    b("/var/cache", K::SystemState),
    b("/var/backups", K::SystemState),
    b("/var/mail", K::SystemState),
    b("/var/crash", K::SystemState),
    b("/var/opt", K::SystemState),
    b("/var/local", K::SystemState),
    b("/var/snap", K::SystemState),
];

/// Inside every home directory (each `/etc/passwd` home, `$HOME`, `/root`, and `/home/*`):
/// whatever authenticates a host user or runs as one.
pub const BLOCKED_HOME_ENTRIES: &[Blocked] = &[
    // Credentials and secrets. `.ssh` first: it is the entry named when a home is refused.
    b(".ssh", K::Credentials),
    b(".aws", K::Credentials),
    b(".gnupg", K::Credentials),
    b(".docker", K::Credentials),
    b(".config", K::UserToolConfig), // gcloud, gh, git, fish, systemd user units, autostart
    b(".cargo", K::UserCode),        // bin/ on PATH, credentials.toml
    b(".npm", K::Credentials),
    b(".netrc", K::Credentials),
    b(".kube", K::Credentials),
    b(".local/share/containers", K::EngineState),
    b(".local/share/docker", K::EngineState),
    b(".local/share/keyrings", K::Credentials),
    b(".npmrc", K::Credentials),
    b(".yarnrc", K::Credentials),
    b(".yarnrc.yml", K::Credentials),
    b(".pypirc", K::Credentials),
    b(".pip", K::Credentials),
    b(".gem", K::Credentials),
    b(".nuget", K::Credentials),
    b(".m2", K::Credentials),
    b(".gradle", K::Credentials),
    b(".pgpass", K::Credentials),
    b(".my.cnf", K::Credentials),
    b(".git-credentials", K::Credentials),
    b(".azure", K::Credentials),
    b(".gcloud", K::Credentials),
    b(".oci", K::Credentials),
    b(".s3cfg", K::Credentials),
    b(".boto", K::Credentials),
    b(".passwd-s3fs", K::Credentials),
    b(".terraform.d", K::Credentials),
    b(".terraformrc", K::Credentials),
    b(".vault-token", K::Credentials),
    b(".password-store", K::Credentials),
    b(".pki", K::Credentials),
    b(".mozilla", K::Credentials),
    b(".thunderbird", K::Credentials),
    b(".vagrant.d", K::Credentials),
    b(".minikube", K::Credentials),
    b(".Xauthority", K::Credentials),
    b(".ICEauthority", K::Credentials),
    b(".k5login", K::Credentials),
    b(".rhosts", K::Credentials),
    b(".shosts", K::Credentials),
    b(".bash_history", K::Credentials),
    b(".zsh_history", K::Credentials),
    b(".psql_history", K::Credentials),
    b(".mysql_history", K::Credentials),
    b(".python_history", K::Credentials),
    // Run by a shell or a login by themselves.
    b(".profile", K::ShellStartup),
    b(".bashrc", K::ShellStartup),
    b(".bash_profile", K::ShellStartup),
    b(".bash_login", K::ShellStartup),
    b(".bash_logout", K::ShellStartup),
    b(".bash_aliases", K::ShellStartup),
    b(".zshrc", K::ShellStartup),
    b(".zprofile", K::ShellStartup),
    b(".zshenv", K::ShellStartup),
    b(".zlogin", K::ShellStartup),
    b(".zlogout", K::ShellStartup),
    b(".login", K::ShellStartup),
    b(".logout", K::ShellStartup),
    b(".cshrc", K::ShellStartup),
    b(".tcshrc", K::ShellStartup),
    b(".kshrc", K::ShellStartup),
    b(".mkshrc", K::ShellStartup),
    b(".shrc", K::ShellStartup),
    b(".inputrc", K::ShellStartup),
    b(".pam_environment", K::ShellStartup),
    b(".xprofile", K::ShellStartup),
    b(".xinitrc", K::ShellStartup),
    b(".xsession", K::ShellStartup),
    b(".xsessionrc", K::ShellStartup),
    b(".forward", K::ShellStartup), // may pipe mail into a command
    // On PATH, or code that a user's tools load.
    b("bin", K::UserCode),
    b(".local/bin", K::UserCode),
    b(".local/lib", K::UserCode), // Python user site-packages
    b(".local/share/systemd", K::UserCode),
    b(".local/share/applications", K::UserCode),
    b(".rustup", K::UserCode),
    b("go", K::UserCode),
    b(".nvm", K::UserCode),
    b(".pyenv", K::UserCode),
    b(".rbenv", K::UserCode),
    b(".sdkman", K::UserCode),
    b(".deno", K::UserCode),
    b(".bun", K::UserCode),
    b(".volta", K::UserCode),
    b(".node_modules", K::UserCode),
    // Configuration that tools execute or trust.
    b(".gitconfig", K::UserToolConfig),
    b(".hgrc", K::UserToolConfig),
    b(".vimrc", K::UserToolConfig),
    b(".vim", K::UserToolConfig),
    b(".emacs", K::UserToolConfig),
    b(".emacs.d", K::UserToolConfig),
    b(".tmux.conf", K::UserToolConfig),
    b(".screenrc", K::UserToolConfig),
    b(".gdbinit", K::UserToolConfig),
    b(".ipython", K::UserToolConfig),
    b(".Rprofile", K::UserToolConfig),
    b(".wgetrc", K::UserToolConfig),
    b(".curlrc", K::UserToolConfig),
    b(".ansible", K::UserToolConfig),
];

/// Directories exempt from one broad entry: (the entry, the exempt directory). The exempt
/// directory and what lies under it are not blocked *by that entry* (any other entry still
/// applies); a path containing the entry is still refused.
const EXEMPT: &[(&str, &str)] = &[
    // clawden's own default state dir when it runs as root (`Env::state_dir`): its workspaces
    // live there. Its state files are blocked through `HostContext::extra_blocked`.
    ("/var/lib", "/var/lib/clawden"),
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
    /// The table built from the fields above, on first use (a few thousand entries: every
    /// home times every home entry, with canonical forms). Build a new context rather than
    /// changing the fields of a used one.
    table: std::sync::OnceLock<std::sync::Arc<BlockedTable>>,
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
        Self::new(home_dirs, Vec::new())
    }

    /// A context with exactly these home directories and extra blocked paths.
    pub fn new(home_dirs: Vec<PathBuf>, extra_blocked: Vec<PathBuf>) -> Self {
        HostContext {
            home_dirs,
            extra_blocked,
            table: Default::default(),
        }
    }

    /// The blocked-path table of this context (built once).
    pub(crate) fn table(&self) -> std::sync::Arc<BlockedTable> {
        self.table
            .get_or_init(|| std::sync::Arc::new(BlockedTable::build(self)))
            .clone()
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
        HostContext::new(homes, extra_blocked)
    }
}

/// One component of a blocked pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// What it is.
    pub kind: BlockKind,
    /// When this entry is the canonical form of another: that entry's `shown`.
    pub canonical_of: Option<String>,
    /// Directories under this entry that it does not block (see [`EXEMPT`]).
    exempt: Vec<Vec<Seg>>,
}

impl BlockedEntry {
    fn new(segs: Vec<Seg>, kind: BlockKind, canonical_of: Option<String>) -> Self {
        let shown = render(&segs);
        BlockedEntry {
            segs,
            shown,
            kind,
            canonical_of,
            exempt: Vec::new(),
        }
    }

    /// `"/usr" (a system directory …)`, or `"/run" (runtime state …; where "/var/run" resolves)`.
    pub fn describe(&self) -> String {
        let shown = super::code::quote(&self.shown);
        let what = self.kind.describe();
        match &self.canonical_of {
            Some(orig) => format!(
                "{shown} ({what}; where {} resolves)",
                super::code::quote(orig)
            ),
            None => format!("{shown} ({what})"),
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
        Self::build_with(ctx, true)
    }

    /// `skip_inside_system: false` builds every home's entries (the reference the skipping
    /// build is tested against).
    fn build_with(ctx: &HostContext, skip_inside_system: bool) -> Self {
        let mut base: Vec<(Vec<Seg>, BlockKind)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut add = |segs: Vec<Seg>, kind: BlockKind| {
            if seen.insert(segs.clone()) {
                base.push((segs, kind));
            }
        };
        for p in BLOCKED_SYSTEM_PATHS {
            add(literal_segs(Path::new(p.path)), p.kind);
        }
        // Each home entry's segments once (this table is built in every clawden process:
        // normalising thousands of joined paths was most of a CLI call's CPU).
        let entry_segs: Vec<(Vec<Seg>, BlockKind)> = BLOCKED_HOME_ENTRIES
            .iter()
            .map(|e| (literal_segs(Path::new(e.path)), e.kind))
            .collect();
        // A home that lies inside a blocked system directory, lexically and resolved (e.g.
        // `/bin`, `/var/lib/postgresql`, `/root`), needs no entries of its own: whatever is
        // under or covers one of them is refused by that directory first (system entries come
        // first in the table). Most of /etc/passwd's homes are such; skipping them saves
        // most of the `lstat`s of building the table, which happens in every clawden process.
        let mut memo = CanonMemo::default();
        let system: Vec<Vec<Seg>> = BLOCKED_SYSTEM_PATHS
            .iter()
            .flat_map(|p| {
                let lexical = literal_segs(Path::new(p.path));
                let canonical = canonical_memo(Path::new(p.path), &mut memo)
                    .map(|c| literal_segs(&c))
                    .unwrap_or_else(|| lexical.clone());
                [lexical, canonical]
            })
            .filter(|segs| !segs.is_empty())
            .collect();
        let inside_system = |p: &Path| {
            let comps: Vec<&OsStr> = p
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect();
            let in_exempt = EXEMPT.iter().any(|(_, dir)| {
                matches!(
                    relation(&comps, &literal_segs(Path::new(dir))),
                    Some(Relation::Equal | Relation::Under)
                )
            });
            !in_exempt
                && system.iter().any(|segs| {
                    matches!(
                        relation(&comps, segs),
                        Some(Relation::Equal | Relation::Under)
                    )
                })
        };
        for home in &ctx.home_dirs {
            if !home.is_absolute() {
                continue;
            }
            let lexical = PathBuf::from(render(&literal_segs(home)));
            let resolved = canonical_memo(&lexical, &mut memo);
            if skip_inside_system
                && inside_system(&lexical)
                && resolved.as_deref().is_some_and(inside_system)
            {
                continue;
            }
            {
                let home_segs = literal_segs(home);
                for (segs, kind) in &entry_segs {
                    let mut full = home_segs.clone();
                    full.extend(segs.iter().cloned());
                    add(full, *kind);
                }
            }
        }
        for (segs, kind) in &entry_segs {
            let mut full = literal_segs(Path::new(HOME_BASE));
            full.push(Seg::Any);
            full.extend(segs.iter().cloned());
            add(full, *kind);
        }
        for p in &ctx.extra_blocked {
            if p.is_absolute() {
                add(literal_segs(p), BlockKind::HostSpecific);
            }
        }

        let exempt_entries: Vec<(Vec<Seg>, &str)> = EXEMPT
            .iter()
            .map(|(entry, dir)| (literal_segs(Path::new(entry)), *dir))
            .collect();
        let exempt_of = |segs: &[Seg]| -> Vec<Vec<Seg>> {
            exempt_entries
                .iter()
                .filter(|(entry, _)| entry.as_slice() == segs)
                .flat_map(|(_, dir)| {
                    let lexical = literal_segs(Path::new(dir));
                    let canonical = canonicalize_through_ancestor(Path::new(dir))
                        .map(|c| literal_segs(&c))
                        .unwrap_or_else(|_| lexical.clone());
                    [lexical, canonical]
                })
                .collect()
        };
        let mut entries: Vec<BlockedEntry> = base
            .iter()
            .map(|(s, kind)| {
                let mut e = BlockedEntry::new(s.clone(), *kind, None);
                e.exempt = exempt_of(s);
                e
            })
            .collect();
        // Canonical forms: /var/run -> /run, /bin -> /usr/bin, a symlinked home, a dotfile
        // symlinked elsewhere. Only the literal prefix before a `*` can be resolved.
        for (segs, kind) in &base {
            let lit_len = segs.iter().take_while(|s| matches!(s, Seg::Lit(_))).count();
            let prefix = render(&segs[..lit_len]);
            let Some(canon) = canonical_memo(Path::new(&prefix), &mut memo) else {
                continue;
            };
            let mut canon_segs = literal_segs(&canon);
            canon_segs.extend_from_slice(&segs[lit_len..]);
            if canon_segs != *segs && seen.insert(canon_segs.clone()) {
                let mut e = BlockedEntry::new(canon_segs, *kind, Some(render(segs)));
                e.exempt = exempt_of(segs);
                entries.push(e);
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
                Some(Relation::Under)
                    if entry.exempt.iter().any(|x| {
                        matches!(relation(&comps, x), Some(Relation::Equal | Relation::Under))
                    }) => {}
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

/// [`canonicalize_through_ancestor`] of a lexically normal absolute path, memoised by parent:
/// thousands of entries share a few homes, so each entry costs at most one `lstat` (none below
/// a missing directory) unless it is a symlink. `None` when it cannot be resolved (a loop).
fn canonical_memo(p: &Path, memo: &mut CanonMemo) -> Option<PathBuf> {
    canonical_memo_inner(p, memo).map(|(c, _)| c)
}

/// Lexical path → (canonical path, whether it exists as a directory), or `None` for a loop;
/// and the listings of directories read so far.
#[derive(Default)]
struct CanonMemo {
    resolved: std::collections::HashMap<PathBuf, Option<(PathBuf, bool)>>,
    /// Name → file type of each directory's entries (`None`: it could not be listed).
    listings: std::collections::HashMap<
        PathBuf,
        Option<std::collections::HashMap<OsString, std::fs::FileType>>,
    >,
}

impl CanonMemo {
    /// The file type of `dir/name` without following it: from one listing of `dir` (a home
    /// has ~140 entries to look up, most of them absent), else from `lstat`.
    fn kind(&mut self, dir: &Path, name: &OsStr) -> Option<std::fs::FileType> {
        let listing = self.listings.entry(dir.to_path_buf()).or_insert_with(|| {
            let rd = std::fs::read_dir(dir).ok()?;
            let mut m = std::collections::HashMap::new();
            for e in rd {
                let e = e.ok()?;
                m.insert(e.file_name(), e.file_type().ok()?);
            }
            Some(m)
        });
        match listing {
            Some(m) => m.get(name).copied(),
            None => std::fs::symlink_metadata(dir.join(name))
                .ok()
                .map(|m| m.file_type()),
        }
    }
}

fn canonical_memo_inner(p: &Path, memo: &mut CanonMemo) -> Option<(PathBuf, bool)> {
    if let Some(c) = memo.resolved.get(p) {
        return c.clone();
    }
    let resolved = match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => match canonical_memo_inner(parent, memo) {
            None => None,
            // Below a missing directory (or a file) nothing exists: appended as is.
            Some((cp, false)) => Some((cp.join(name), false)),
            Some((cp, true)) => {
                let joined = cp.join(name);
                match memo.kind(&cp, name) {
                    Some(t) if t.is_symlink() => {
                        canonicalize_through_ancestor(&joined).ok().map(|c| {
                            let exists = c.is_dir();
                            (c, exists)
                        })
                    }
                    Some(t) => Some((joined, t.is_dir())),
                    None => Some((joined, false)),
                }
            }
        },
        _ => canonicalize_through_ancestor(p).ok().map(|c| (c, true)),
    };
    memo.resolved.insert(p.to_path_buf(), resolved.clone());
    resolved
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
            ("/var/lib", Some((Relation::Equal, "/var/lib"))),
            ("/var/lib/clawden", None),
            ("/var/lib/clawden/sandboxes/x", None),
            ("/var/lib/clawdenx", Some((Relation::Under, "/var/lib"))),
            ("/var/lib/dpkg/info", Some((Relation::Under, "/var/lib"))),
            ("/usr/local/bin", Some((Relation::Under, "/usr"))),
            ("/usr/share", Some((Relation::Under, "/usr"))),
            ("/opt", Some((Relation::Equal, "/opt"))),
            ("/var/log/syslog", Some((Relation::Under, "/var/log"))),
            (
                "/home/alice/.bashrc",
                Some((Relation::Equal, "/home/alice/.bashrc")),
            ),
            (
                "/home/alice/.local/bin/x",
                Some((Relation::Under, "/home/alice/.local/bin")),
            ),
            (
                "/home/anyone/.npmrc",
                Some((Relation::Equal, "/home/*/.npmrc")),
            ),
            ("/home/alice/.bashrc.d", None),
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
    fn homes_inside_system_directories_add_nothing_a_check_would_see() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(real.join("home/u/dotfiles")).unwrap();
        std::os::unix::fs::symlink(real.join("home/u/dotfiles"), real.join("home/u/.config"))
            .unwrap();
        std::os::unix::fs::symlink(real.join("home/u"), real.join("linked-home")).unwrap();
        let mut homes: Vec<PathBuf> = [
            "/",
            "/root",
            "/bin",
            "/usr/sbin",
            "/dev",
            "/var/lib/postgresql",
            "/var/cache/man",
            "/var/mail",
            "/var/lib/clawden/u",
            "/nonexistent",
            "/run/ircd",
            "/var/www",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        homes.push(real.join("home/u"));
        homes.push(real.join("linked-home"));
        let ctx = HostContext::new(homes, vec![real.join("state.json")]);
        let full = BlockedTable::build_with(&ctx, false);
        let fast = BlockedTable::build(&ctx);
        assert!(fast.entries.len() < full.entries.len());
        // Every entry of the full table, with its wildcards filled in, a child and its parent.
        let mut probes: Vec<PathBuf> = Vec::new();
        for e in &full.entries {
            let p = PathBuf::from(e.shown.replace('*', "anyone"));
            probes.push(p.join("child"));
            if let Some(parent) = p.parent() {
                probes.push(parent.to_path_buf());
            }
            probes.push(p);
        }
        probes.extend(
            [
                "/",
                "/var",
                "/var/lib",
                "/var/lib/clawden",
                "/tmp/x",
                "/home",
            ]
            .map(PathBuf::from),
        );
        for p in &probes {
            let want = full.check(p).map(|(r, e)| (r, e.shown.clone()));
            let got = fast.check(p).map(|(r, e)| (r, e.shown.clone()));
            assert_eq!(got, want, "{}", p.display());
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
        let ctx = HostContext::new(
            vec![PathBuf::from("relative/home")],
            vec![PathBuf::from("/srv/clawden/state.json")],
        );
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
