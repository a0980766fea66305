//! Finding, reading and layering config files.

use super::schema::FileConfig;
use std::path::{Path, PathBuf};

/// Built-in profiles, shipped in `profiles/` and compiled in so the binary works anywhere.
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../../profiles/default.json5")),
    ("strict", include_str!("../../profiles/strict.json5")),
    ("ci", include_str!("../../profiles/ci.json5")),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: not valid JSON5: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
    #[error(
        "unknown profile {name:?} (built-in profiles: {available}; or give a path to a .json5 file)"
    )]
    UnknownProfile { name: String, available: String },
}

impl ConfigError {
    /// The full key path for `Invalid`, for tests and JSON output.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The process environment that config lookup depends on, captured once so lookup stays pure.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub clawden_config: Option<PathBuf>,
    pub clawden_home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// clawden runs as root: its default state lives in `/var/lib/clawden`, since root's home is
    /// a blocked mount source.
    pub is_root: bool,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            clawden_config: var("CLAWDEN_CONFIG"),
            clawden_home: var("CLAWDEN_HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_state_home: var("XDG_STATE_HOME"),
            home: var("HOME"),
            is_root: nix::unistd::geteuid().is_root(),
        }
    }

    fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(|| PathBuf::from("/root"))
    }

    /// `CLAWDEN_HOME`, else `$XDG_STATE_HOME/clawden`, else `/var/lib/clawden` for root, else
    /// `~/.local/state/clawden`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(h) = &self.clawden_home {
            return h.clone();
        }
        if self.is_root && self.xdg_state_home.is_none() {
            return PathBuf::from("/var/lib/clawden");
        }
        let base = self
            .xdg_state_home
            .clone()
            .unwrap_or_else(|| self.home().join(".local/state"));
        base.join("clawden")
    }

    /// The default user config path: `$XDG_CONFIG_HOME/clawden/config.json5`.
    pub fn default_config_path(&self) -> PathBuf {
        let base = self
            .xdg_config_home
            .clone()
            .unwrap_or_else(|| self.home().join(".config"));
        base.join("clawden/config.json5")
    }

    /// Expand a leading `~/` in an operator-written host path (workspace, workspaceRoot).
    pub fn expand_tilde(&self, p: &str) -> PathBuf {
        if p == "~" {
            self.home()
        } else if let Some(rest) = p.strip_prefix("~/") {
            self.home().join(rest)
        } else {
            PathBuf::from(p)
        }
    }
}

/// Where the user's config file comes from: `--config`, `CLAWDEN_CONFIG`, or the default path.
/// The first two must exist; the default path may be absent (then all defaults apply).
pub fn find_config_path(explicit: Option<&Path>, env: &Env) -> Option<(PathBuf, bool)> {
    if let Some(p) = explicit {
        return Some((p.to_path_buf(), true));
    }
    if let Some(p) = &env.clawden_config {
        return Some((p.clone(), true));
    }
    let p = env.default_config_path();
    Some((p, false))
}

/// One parsed config source. Layers are applied lowest first: a profile, then the user's file.
#[derive(Debug, Clone)]
pub struct ConfigLayer {
    /// Where it came from, for provenance in `explain` (`profile strict`, a file path).
    pub origin: String,
    pub file: FileConfig,
}

/// Every layer that makes up the configuration, lowest first.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub layers: Vec<ConfigLayer>,
    pub config_path: Option<PathBuf>,
    pub profile: Option<String>,
}

/// Parse JSON5 text into the schema, with errors naming the full key path.
pub fn parse_config(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
    let value: serde_json::Value = json5::from_str(text).map_err(|e| ConfigError::Syntax {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            key: "(top level)".into(),
            message: "the config must be a JSON5 object".into(),
        });
    }
    let mut file = serde_path_to_error::deserialize::<_, FileConfig>(value).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message: humanize_serde_message(&e.inner().to_string()),
        }
    })?;
    if let Some(agents) = file.agents.as_mut().filter(|a| a.entries.is_some()) {
        agents.entries_order = entries_order(text);
    }
    Ok(file)
}

/// The keys of `agents.entries` in the order the text writes them (a JSON value sorts them).
/// The text has parsed already, so a failure here only loses the order.
fn entries_order(text: &str) -> Vec<String> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(k) = m.next_key::<String>()? {
                        m.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    #[derive(serde::Deserialize)]
    struct Agents {
        entries: Option<Keys>,
    }
    #[derive(serde::Deserialize)]
    struct Top {
        agents: Option<Agents>,
    }
    json5::from_str::<Top>(text)
        .ok()
        .and_then(|t| t.agents)
        .and_then(|a| a.entries)
        .map(|k| k.0)
        .unwrap_or_default()
}

/// serde says "unknown field `memroy`, expected one of ..."; operators think in keys.
fn humanize_serde_message(m: &str) -> String {
    if let Some(rest) = m.strip_prefix("unknown field ") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e);
        return match expected {
            Some(e) => format!("unknown key (expected {e})"),
            None => "unknown key".to_string(),
        };
    }
    if let Some(rest) = m.strip_prefix("unknown variant ") {
        return format!("unknown value {rest}");
    }
    if m.starts_with("data did not match any variant of untagged enum UlimitValue") {
        return "a ulimit is a number or { soft, hard }".to_string();
    }
    m.to_string()
}

/// Parse a YAML `--policy` file (the `policy`/`users` shape of clawden's config, at the top
/// level), with errors naming the full key path like the JSON5 config.
///
/// YAML comes from `serde_norway`: `serde_yaml` is archived and `serde_yml` is deprecated (a shim
/// over another library), while `serde_norway` is a maintained fork of `serde_yaml` with the
/// same API and libyaml-based parser.
pub fn parse_policy_yaml(
    text: &str,
    origin: &str,
) -> Result<crate::policy::PolicyFile, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, crate::policy::PolicyFile>(de).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().to_string();
        if key == "." && !message.starts_with("unknown field") {
            return ConfigError::Syntax {
                origin: origin.to_string(),
                message,
            };
        }
        ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message: humanize_serde_message(&message),
        }
    })
}

/// Read and parse a `--policy` file into a layer; push it last on [`LoadedConfig::layers`] so
/// it sits above the config file and profile.
pub fn load_policy_file(path: &Path) -> Result<ConfigLayer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    let file = parse_policy_yaml(&text, &origin)?;
    Ok(ConfigLayer {
        origin,
        file: FileConfig {
            policy: file.policy,
            users: file.users,
            ..Default::default()
        },
    })
}

fn load_profile(name: &str) -> Result<ConfigLayer, ConfigError> {
    if let Some((_, text)) = BUILTIN_PROFILES.iter().find(|(n, _)| *n == name) {
        let origin = format!("profile {name}");
        return Ok(ConfigLayer {
            file: parse_config(text, &origin)?,
            origin,
        });
    }
    if name.contains('/') || name.ends_with(".json5") || name.ends_with(".json") {
        let path = PathBuf::from(name);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let origin = format!("profile {}", path.display());
        return Ok(ConfigLayer {
            file: parse_config(&text, &origin)?,
            origin,
        });
    }
    Err(ConfigError::UnknownProfile {
        name: name.to_string(),
        available: BUILTIN_PROFILES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Load the profile (if any) and the user's config file (if any).
pub fn load(
    explicit: Option<&Path>,
    profile: Option<&str>,
    env: &Env,
) -> Result<LoadedConfig, ConfigError> {
    let mut loaded = LoadedConfig {
        profile: profile.map(str::to_string),
        ..Default::default()
    };
    if let Some(name) = profile {
        loaded.layers.push(load_profile(name)?);
    }
    if let Some((path, required)) = find_config_path(explicit, env) {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let origin = path.display().to_string();
                loaded.layers.push(ConfigLayer {
                    file: parse_config(&text, &origin)?,
                    origin,
                });
                loaded.config_path = Some(path);
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(text: &str) -> String {
        parse_config(text, "t")
            .unwrap_err()
            .key()
            .unwrap()
            .to_string()
    }

    #[test]
    fn unknown_sandbox_key_names_full_path() {
        let e =
            parse_config("{agents:{defaults:{sandbox:{docker:{memroy:'1g'}}}}}", "t").unwrap_err();
        assert_eq!(e.key(), Some("agents.defaults.sandbox.docker.memroy"));
        assert!(e.to_string().contains("unknown key"), "{e}");
    }

    #[test]
    fn wrong_types_name_full_path() {
        assert_eq!(
            key_of("{agents:{defaults:{sandbox:{docker:{pidsLimit:'many'}}}}}"),
            "agents.defaults.sandbox.docker.pidsLimit"
        );
        assert_eq!(
            key_of("{agents:{defaults:{sandbox:{mode:'sometimes'}}}}"),
            "agents.defaults.sandbox.mode"
        );
        assert_eq!(
            key_of("{agents:{list:[{id:'a'},{id:'b',sandbox:{scope:'galaxy'}}]}}"),
            "agents.list[1].sandbox.scope"
        );
        assert_eq!(
            key_of("{agents:{entries:{work:{sandbox:{docker:{memory:'lots'}}}}}}"),
            "agents.entries.work.sandbox.docker.memory"
        );
        assert_eq!(
            key_of("{agents:{defaults:{sandbox:{docker:{cpus:0}}}}}"),
            "agents.defaults.sandbox.docker.cpus"
        );
        assert_eq!(
            key_of("{tools:{sandbox:{tools:{alow:['x']}}}}"),
            "tools.sandbox.tools.alow"
        );
    }

    #[test]
    fn unrelated_openclaw_keys_are_ignored() {
        let text = r#"{
            // an OpenClaw file carries much more than the sandbox
            gateway: { port: 18789 },
            channels: { telegram: { enabled: true } },
            agents: { defaults: { model: "x", workspace: "~/ws", sandbox: { mode: "non-main" } },
                      list: [{ id: "work", name: "Work", identity: {}, sandbox: { scope: "session" } }] },
            session: { mainKey: "main", dmScope: "main" },
        }"#;
        let cfg = parse_config(text, "t").unwrap();
        let agents = cfg.agents.unwrap();
        assert_eq!(agents.list.unwrap()[0].id, "work");
        assert_eq!(
            agents.defaults.unwrap().sandbox.unwrap().mode,
            Some(super::super::schema::Mode::NonMain)
        );
    }

    #[test]
    fn syntax_errors_and_non_objects_are_reported() {
        assert!(matches!(
            parse_config("{agents:", "t"),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(matches!(
            parse_config("[1,2]", "t"),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn builtin_profiles_parse() {
        for (name, _) in BUILTIN_PROFILES {
            load_profile(name).unwrap_or_else(|e| panic!("profile {name}: {e}"));
        }
        assert!(matches!(
            load_profile("nope"),
            Err(ConfigError::UnknownProfile { .. })
        ));
    }

    #[test]
    fn lookup_order_and_state_dir() {
        let env = Env {
            clawden_config: Some("/c/env.json5".into()),
            xdg_config_home: Some("/x".into()),
            home: Some("/h".into()),
            ..Default::default()
        };
        assert_eq!(
            find_config_path(Some(Path::new("/flag.json5")), &env),
            Some(("/flag.json5".into(), true))
        );
        assert_eq!(
            find_config_path(None, &env),
            Some(("/c/env.json5".into(), true))
        );
        let env2 = Env {
            clawden_config: None,
            ..env.clone()
        };
        assert_eq!(
            find_config_path(None, &env2),
            Some(("/x/clawden/config.json5".into(), false))
        );
        assert_eq!(env2.state_dir(), PathBuf::from("/h/.local/state/clawden"));
        let env3 = Env {
            clawden_home: Some("/state".into()),
            ..env2
        };
        assert_eq!(env3.state_dir(), PathBuf::from("/state"));
        assert_eq!(env3.expand_tilde("~/ws"), PathBuf::from("/h/ws"));
        assert_eq!(env3.expand_tilde("/abs"), PathBuf::from("/abs"));
        let root = Env {
            is_root: true,
            home: Some("/root".into()),
            ..Default::default()
        };
        assert_eq!(root.state_dir(), PathBuf::from("/var/lib/clawden"));
    }

    #[test]
    fn missing_default_file_means_defaults_but_explicit_must_exist() {
        let env = Env {
            xdg_config_home: Some("/nonexistent-clawden-test".into()),
            ..Default::default()
        };
        let loaded = load(None, None, &env).unwrap();
        assert!(loaded.layers.is_empty());
        assert!(matches!(
            load(
                Some(Path::new("/nonexistent-clawden-test/x.json5")),
                None,
                &env
            ),
            Err(ConfigError::Read { .. })
        ));
    }
}
