//! Operator commands on existing sandboxes: list, recreate, prune. Docker labels say which
//! sandboxes exist; the state file says when each was last used; the current config says what
//! each should look like and how long it may live.

use super::state::lock_name;
use super::{Supervisor, SupervisorError, io, now_ms};
use crate::config::resolve::normalize_agent_id;
use crate::engine::ContainerSummary;
use serde::Serialize;
use std::collections::BTreeMap;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// One sandbox as `clawden list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    pub name: String,
    pub id: String,
    pub scope_key: String,
    pub agent_id: String,
    pub running: bool,
    /// The image the container was created from (as named then).
    pub image: String,
    /// The container's image ID equals the current ID of the image its agent's config names.
    pub image_matches: bool,
    /// The container's `clawden.configHash` equals the hash of today's plan for its scope key.
    pub config_current: bool,
    pub age_seconds: u64,
    pub idle_seconds: u64,
    /// What to do when the sandbox is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Which sandboxes `clawden recreate` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every sandbox of this configuration (its `clawden.owner` label).
    All,
    /// The sandbox whose scope key is exactly this (as `list` shows it); if there is none, the
    /// sandbox that serves this session under the current config.
    Session(String),
    /// Every sandbox of this agent (label `clawden.agentId`) that this configuration owns.
    Agent(String),
}

/// A sandbox that was (or, in a dry run, would be) removed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub name: String,
    pub scope_key: String,
    pub agent_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<PruneReason>,
}

/// Why prune removes a sandbox.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "rule")]
pub enum PruneReason {
    /// Not used for longer than `idleHours`.
    #[serde(rename_all = "camelCase")]
    Idle { idle_seconds: u64, idle_hours: u64 },
    /// Created longer ago than `maxAgeDays`.
    #[serde(rename_all = "camelCase")]
    MaxAge { age_seconds: u64, max_age_days: u64 },
    /// A disposable sandbox (`clawden run`) whose clawden is gone.
    RunGone,
}

impl std::fmt::Display for PruneReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneReason::Idle {
                idle_seconds,
                idle_hours,
            } => write!(
                f,
                "idle {} > idleHours {idle_hours}",
                human_duration(*idle_seconds)
            ),
            PruneReason::MaxAge {
                age_seconds,
                max_age_days,
            } => write!(
                f,
                "age {} > maxAgeDays {max_age_days}",
                human_duration(*age_seconds)
            ),
            PruneReason::RunGone => write!(f, "its `clawden run` is gone"),
        }
    }
}

/// The prune rule (sandbox.md §1, §4): older than `max_age_days`, or idle longer than
/// `idle_hours`; 0 disables each. Age wins when both apply. Times in ms since the epoch; a clock
/// that went backwards counts as zero elapsed. `last_used_ms`: from the state file, else the
/// creation time (the caller decides).
pub fn prune_decision(
    now_ms: u64,
    created_ms: u64,
    last_used_ms: u64,
    idle_hours: u64,
    max_age_days: u64,
) -> Option<PruneReason> {
    let age = now_ms.saturating_sub(created_ms);
    let idle = now_ms.saturating_sub(last_used_ms);
    if max_age_days > 0 && age > max_age_days.saturating_mul(DAY_MS) {
        return Some(PruneReason::MaxAge {
            age_seconds: age / 1000,
            max_age_days,
        });
    }
    if idle_hours > 0 && idle > idle_hours.saturating_mul(HOUR_MS) {
        return Some(PruneReason::Idle {
            idle_seconds: idle / 1000,
            idle_hours,
        });
    }
    None
}

/// `3d4h`, `5h12m`, `7m`, `42s`: the two largest units.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

fn label<'a>(c: &'a ContainerSummary, k: &str) -> &'a str {
    c.labels.get(k).map(String::as_str).unwrap_or("")
}

/// Creation time: the `clawden.createdAtMs` label, else the engine's creation time.
fn created_ms(c: &ContainerSummary) -> u64 {
    label(c, "clawden.createdAtMs")
        .parse()
        .unwrap_or_else(|_| (c.created_unix.max(0) as u64).saturating_mul(1000))
}

/// A session that has `scope_key` as its scope key (if the config's scope is unchanged):
/// `agent:<id>` is agent scope (any session of the agent), `shared` is shared scope, anything
/// else is the session key itself. A `:workspace:<hash>` qualifier (the newer naming epoch)
/// is dropped: the plan of the session adds it again when the config asks for that epoch.
fn session_for_scope_key(scope_key: &str, agent_id: &str) -> (String, Option<String>) {
    let scope_key = crate::decide::naming::split_workspace_qualifier(scope_key).0;
    if scope_key == "shared" {
        return (format!("agent:{agent_id}:clawden-list"), None);
    }
    if let Some(id) = scope_key.strip_prefix("agent:")
        && !id.contains(':')
    {
        return (format!("agent:{id}:clawden-list"), None);
    }
    if scope_key.starts_with("agent:") {
        (scope_key.to_string(), None)
    } else {
        // `global` (session.scope "global") and other keys without an agent prefix.
        (scope_key.to_string(), Some(agent_id.to_string()))
    }
}

impl Supervisor {
    /// Every sandbox on the engine (label `clawden.sandbox=1`), compared with the current config.
    pub async fn list(&self) -> Result<Vec<SandboxInfo>, SupervisorError> {
        let now = now_ms();
        let (state, warning) = self.state.load();
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let mut image_ids: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut out = Vec::new();
        let mut found = self.engine.list_sandboxes().await?;
        found.sort_by(|a, b| a.name.cmp(&b.name));
        for c in found {
            let scope_key = label(&c, "clawden.scopeKey").to_string();
            let agent_id = label(&c, "clawden.agentId").to_string();
            let created = created_ms(&c);
            let last_used = state.last_used_ms.get(&c.name).copied().unwrap_or(created);
            let (session, agent) = session_for_scope_key(&scope_key, &agent_id);
            let plan = self.plan(Some(&session), agent.as_deref()).ok();
            let config_current = plan.as_ref().is_some_and(|(_, p)| {
                p.problems.is_empty()
                    && p.scope_key == scope_key
                    && p.container.name == c.name
                    && p.config_hash == label(&c, "clawden.configHash")
            });
            let image_matches = match &plan {
                Some((_, p)) => {
                    let want = &p.container.image;
                    if !image_ids.contains_key(want) {
                        image_ids.insert(want.clone(), self.engine.image_id(want).await?);
                    }
                    image_ids[want].as_deref() == Some(c.image_id.as_str())
                }
                None => false,
            };
            // When its tag has moved on, the engine lists the image by ID; the name it was
            // created from is still in the container's config.
            let image = if c.image.starts_with("sha256:") {
                self.engine
                    .inspect(&c.id)
                    .await?
                    .map(|f| f.image)
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| c.image.clone())
            } else {
                c.image.clone()
            };
            let recreate = format!("clawden recreate --session {scope_key}");
            let hint = match (config_current, image_matches) {
                (true, true) => None,
                (false, _) if plan.as_ref().is_some_and(|(_, p)| !p.problems.is_empty()) => {
                    Some(format!(
                        "its configuration has problems (see `clawden explain --session {session}`); then `{recreate}`"
                    ))
                }
                (false, _) => Some(format!(
                    "created with an older configuration; apply it with `{recreate}` (or it is recreated on next use when idle)"
                )),
                (true, false) => Some(format!(
                    "its image was rebuilt or changed since; use the new one with `{recreate}`"
                )),
            };
            out.push(SandboxInfo {
                name: c.name.clone(),
                id: c.id.clone(),
                scope_key,
                agent_id,
                running: c.running,
                image,
                image_matches,
                config_current,
                age_seconds: now.saturating_sub(created) / 1000,
                idle_seconds: now.saturating_sub(last_used) / 1000,
                hint,
            });
        }
        Ok(out)
    }

    /// The container name prefixes this config uses (global and per agent).
    pub fn own_prefixes(&self) -> Vec<String> {
        let mut agents = crate::config::resolve::known_agents(&self.config);
        agents.push(String::new()); // matches no agent section: the global settings
        let mut p: Vec<String> = agents
            .iter()
            .map(|a| {
                crate::config::resolve(&self.config, a, &self.env)
                    .docker
                    .container_prefix
                    .value
            })
            .collect();
        p.sort();
        p.dedup();
        p
    }

    /// The `clawden.owner` values of this configuration: one per container prefix it uses
    /// (see [`crate::decide::owner`]). `recreate --all` and `prune` act only on sandboxes
    /// carrying one of them — never judged by name prefix: another configuration's sandboxes
    /// (other state dir, unknown last use) are not this config's to judge, even when their
    /// names happen to start with one of our prefixes.
    pub fn own_owner_ids(&self) -> Vec<String> {
        let state_dir = self.env.state_dir();
        let mut ids: Vec<String> = self
            .own_prefixes()
            .iter()
            .map(|p| crate::decide::owner_id(&state_dir, p))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    async fn own_sandboxes(&self) -> Result<Vec<ContainerSummary>, SupervisorError> {
        let owners = self.own_owner_ids();
        let mut all = self.engine.list_sandboxes().await?;
        all.retain(|c| {
            owners
                .iter()
                .any(|o| label(c, crate::decide::OWNER_LABEL) == o)
        });
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The sandboxes a selector names (nothing is removed).
    pub async fn select(&self, sel: &Selector) -> Result<Vec<ContainerSummary>, SupervisorError> {
        if *sel == Selector::All {
            return self.own_sandboxes().await;
        }
        let mut all = self.engine.list_sandboxes().await?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(match sel {
            Selector::All => all,
            Selector::Agent(id) => {
                // Like --all: only this configuration's sandboxes of that agent.
                let id = normalize_agent_id(id);
                let owners = self.own_owner_ids();
                all.into_iter()
                    .filter(|c| label(c, "clawden.agentId") == id)
                    .filter(|c| {
                        owners
                            .iter()
                            .any(|o| label(c, crate::decide::OWNER_LABEL) == o)
                    })
                    .collect()
            }
            Selector::Session(key) => {
                // Only this configuration's sandboxes (another configuration's sandbox under the
                // same scope key is not ours to remove); one from before the owner label only
                // when it has exactly our container name.
                let owners = self.own_owner_ids();
                let key = key.trim().to_lowercase();
                let planned = self.plan(Some(&key), None).ok().map(|(_, p)| p);
                let ours = |c: &ContainerSummary| {
                    let owner = label(c, crate::decide::OWNER_LABEL);
                    if owner.is_empty() {
                        planned.as_ref().is_some_and(|p| c.name == p.container.name)
                    } else {
                        owners.iter().any(|o| owner == o)
                    }
                };
                let exact: Vec<_> = all
                    .iter()
                    .filter(|c| label(c, "clawden.scopeKey") == key && ours(c))
                    .cloned()
                    .collect();
                if !exact.is_empty() {
                    return Ok(exact);
                }
                let Some(plan) = planned.as_ref() else {
                    // The key's own error (malformed, unknown agent).
                    self.plan(Some(&key), None)?;
                    return Ok(vec![]);
                };
                all.iter()
                    .filter(|c| {
                        (label(c, "clawden.scopeKey") == plan.scope_key
                            || c.name == plan.container.name)
                            && ours(c)
                    })
                    .cloned()
                    .collect::<Vec<_>>()
            }
        })
    }

    /// Remove sandboxes (each under its ensure lock, so no ensure is mid-way) and forget them in
    /// the state file. They are recreated on next use.
    pub async fn remove_sandboxes(
        &self,
        targets: &[ContainerSummary],
    ) -> Result<Vec<Removed>, SupervisorError> {
        let mut removed = Vec::new();
        for c in targets {
            let _lock = self.lock(&c.name).await?;
            self.remove_sandbox(&c.id, &c.name).await?;
            self.forget(&c.name)?;
            removed.push(Removed {
                name: c.name.clone(),
                scope_key: label(c, "clawden.scopeKey").to_string(),
                agent_id: label(c, "clawden.agentId").to_string(),
                reason: None,
            });
        }
        Ok(removed)
    }

    /// Remove sandboxes idle longer than `idleHours` or older than `maxAgeDays`, each judged by
    /// its own agent's settings (shared scope: the global ones). Only this config's sandboxes
    /// (see [`Self::own_owner_ids`]). `dry_run`: only report.
    pub async fn prune(&self, now: u64, dry_run: bool) -> Result<Vec<Removed>, SupervisorError> {
        let all = self.own_sandboxes().await?;
        let mut out = Vec::new();
        for c in all {
            // A disposable sandbox in use by a live `clawden run` is that run's to remove.
            if super::run::Owner::parse(label(&c, super::run::OWNER_LABEL))
                .is_some_and(|o| o.alive())
            {
                continue;
            }
            let decide = |last_used: Option<u64>| {
                let (idle_h, age_d) = self.prune_settings(&c);
                let created = created_ms(&c);
                prune_decision(now, created, last_used.unwrap_or(created), idle_h, age_d)
            };
            if decide(self.state.load().0.last_used_ms.get(&c.name).copied()).is_none() {
                continue;
            }
            // Decide again under the ensure lock: a call may have used it meanwhile.
            let _lock = if dry_run {
                None
            } else {
                Some(self.lock(&c.name).await?)
            };
            let Some(reason) = decide(self.state.load().0.last_used_ms.get(&c.name).copied())
            else {
                continue;
            };
            if !dry_run {
                self.remove_sandbox(&c.id, &c.name).await?;
                self.forget(&c.name)?;
            }
            out.push(Removed {
                name: c.name.clone(),
                scope_key: label(&c, "clawden.scopeKey").to_string(),
                agent_id: label(&c, "clawden.agentId").to_string(),
                reason: Some(reason),
            });
        }
        if !dry_run {
            for (key, container) in self.sweep_runs().await? {
                out.push(Removed {
                    name: container.unwrap_or_else(|| key.clone()),
                    scope_key: key,
                    agent_id: String::new(),
                    reason: Some(PruneReason::RunGone),
                });
            }
            self.sweep_staging().await?;
        }
        Ok(out)
    }

    /// Unstage what belongs to sandboxes that no longer exist (removed behind clawden's back,
    /// or a clawden killed between staging and create): each under its name's ensure lock, so a
    /// sandbox being made right now is never touched. Returns the names cleaned.
    pub async fn sweep_staging(&self) -> Result<Vec<String>, SupervisorError> {
        let staging = self.state.dir().join("staging");
        let names: Vec<String> = match std::fs::read_dir(&staging) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect(),
            Err(_) => return Ok(vec![]),
        };
        let mut cleaned = Vec::new();
        for name in names {
            let _lock = self.lock(&name).await?;
            if self.engine.inspect(&name).await?.is_some() {
                continue;
            }
            let state_dir = self.state.dir().to_path_buf();
            let n = name.clone();
            tokio::task::spawn_blocking(move || super::mounting::cleanup(&state_dir, &n))
                .await
                .map_err(io)?
                .map_err(io)?;
            cleaned.push(name);
        }
        Ok(cleaned)
    }

    /// (idleHours, maxAgeDays) for a sandbox: its agent's effective settings; a shared sandbox
    /// uses the global ones (per-agent prune settings do not apply to shared scope).
    fn prune_settings(&self, c: &ContainerSummary) -> (u64, u64) {
        // Agent ids normalise to a non-empty string, so "" matches no agent section: the
        // result is the global settings.
        let agent = if label(c, "clawden.scopeKey") == "shared" {
            String::new()
        } else {
            normalize_agent_id(label(c, "clawden.agentId"))
        };
        let eff = crate::config::resolve(&self.config, &agent, &self.env);
        (eff.prune_idle_hours.value, eff.prune_max_age_days.value)
    }

    async fn lock(&self, name: &str) -> Result<nix::fcntl::Flock<std::fs::File>, SupervisorError> {
        let dir = self.state.dir().to_path_buf();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || lock_name(&dir, &name))
            .await
            .map_err(io)?
            .map_err(io)
    }

    fn forget(&self, name: &str) -> Result<(), SupervisorError> {
        if let Some(w) = self.state.forget(name).map_err(io)? {
            tracing::warn!("{w}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = HOUR_MS;
    const D: u64 = DAY_MS;

    #[test]
    fn prune_decision_table() {
        let now = 100 * D;
        // (created, last used, idleHours, maxAgeDays) → expected
        let cases: &[(u64, u64, u64, u64, Option<&str>)] = &[
            // fresh: nothing
            (now - H, now - H, 24, 7, None),
            // idle exactly at the limit: kept (strictly longer than)
            (now - 2 * D, now - 24 * H, 24, 7, None),
            (now - 2 * D, now - 24 * H - 1000, 24, 7, Some("idle")),
            // old but recently used: max age still applies
            (now - 8 * D, now - H, 24, 7, Some("maxAge")),
            (now - 7 * D, now - H, 24, 7, None),
            // both: age wins
            (now - 30 * D, now - 29 * D, 24, 7, Some("maxAge")),
            // 0 disables each rule
            (now - 30 * D, now - 29 * D, 0, 0, None),
            (now - 30 * D, now - 29 * D, 24, 0, Some("idle")),
            (now - 30 * D, now - H, 0, 7, Some("maxAge")),
            (now - 2 * D, now - 2 * D, 0, 7, None),
            // never used (the caller passes the creation time): idle counts from creation
            (now - 2 * D, now - 2 * D, 24, 7, Some("idle")),
            // clock went backwards / future timestamps: nothing
            (now + D, now + D, 1, 1, None),
            // huge limits do not overflow
            (0, 0, u64::MAX, u64::MAX, None),
        ];
        for &(created, used, idle_h, age_d, want) in cases {
            let got = prune_decision(now, created, used, idle_h, age_d);
            let rule = got.map(|r| match r {
                PruneReason::Idle { .. } => "idle",
                PruneReason::MaxAge { .. } => "maxAge",
                PruneReason::RunGone => "runGone",
            });
            assert_eq!(
                rule, want,
                "created {created} used {used} idle {idle_h}h age {age_d}d"
            );
        }
        assert_eq!(
            prune_decision(now, now - 3 * D, now - 30 * H, 24, 7),
            Some(PruneReason::Idle {
                idle_seconds: 30 * 3600,
                idle_hours: 24
            })
        );
        assert_eq!(
            prune_decision(now, now - 3 * D, now - 30 * H, 24, 7)
                .unwrap()
                .to_string(),
            "idle 1d6h > idleHours 24"
        );
    }

    #[test]
    fn scope_keys_map_back_to_a_session() {
        assert_eq!(
            session_for_scope_key("agent:coder", "coder"),
            ("agent:coder:clawden-list".into(), None)
        );
        assert_eq!(
            session_for_scope_key("agent:coder:group:x", "coder"),
            ("agent:coder:group:x".into(), None)
        );
        assert_eq!(
            session_for_scope_key("shared", "main"),
            ("agent:main:clawden-list".into(), None)
        );
        assert_eq!(
            session_for_scope_key("global", "main"),
            ("global".into(), Some("main".into()))
        );
        // The workspace-qualified epoch maps back to the same sessions.
        let q = ":workspace:0123456789abcdef0123456789abcdef";
        assert_eq!(
            session_for_scope_key(&format!("agent:coder{q}"), "coder"),
            ("agent:coder:clawden-list".into(), None)
        );
        assert_eq!(
            session_for_scope_key(&format!("agent:coder:group:x{q}"), "coder"),
            ("agent:coder:group:x".into(), None)
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(7 * 60 + 5), "7m");
        assert_eq!(human_duration(5 * 3600 + 12 * 60), "5h12m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600 + 9), "3d4h");
    }
}
