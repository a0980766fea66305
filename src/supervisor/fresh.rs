//! Verified sandboxes, kept while the engine's event stream says nothing happened to them.
//!
//! Every use of a sandbox checks its security baseline against the engine's facts. Asking the
//! engine (`inspect`) costs about a millisecond on this machine — a third of a whole call
//! through the agent. A long-lived supervisor (the library, `clawden serve`) therefore watches
//! the engine's container events and reuses facts it verified only while
//! - its watcher is subscribed, and was subscribed before the inspect that produced them,
//! - no event about that container (update, die, rename, network connect, …) has arrived since
//!   that inspect began, and
//! - they are younger than [`MAX_AGE`].
//!
//! Anything else inspects again. An ended or failed stream forgets everything. A one-shot
//! process (the CLI) never watches: a watcher starts on the second use of the same container.
//! The parts of a check that read live host state (the mounts' inodes as the container sees
//! them) still run on every use.
//!
//! What this trades: an engine-side change reaches the supervisor with the event's delivery
//! delay (well under a millisecond here), and a call that starts inside that window runs on the
//! facts from before it. Only someone with the engine's socket (root-equivalent) can change a
//! running container; a sandbox cannot.

use crate::engine::{ContainerEngine, ContainerFacts};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The oldest verified facts a use may rely on without asking the engine again.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// How far back the watcher asks the engine to replay events: it covers the time between
/// starting to watch and the subscription taking effect.
const REPLAY: Duration = Duration::from_secs(2);

/// More remembered event IDs than this: forget them all (and every verified container).
const MAX_TRACKED: usize = 10_000;

/// After a stream ended or failed, no new watcher for this long (an engine whose event stream
/// fails at once would otherwise be asked again on every use).
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Taken before an inspect whose facts may be remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    seq: u64,
}

struct Entry {
    facts: ContainerFacts,
    config_hash: String,
    at: Instant,
    ticket: Ticket,
}

#[derive(Default)]
struct Inner {
    /// Bumped whenever a watcher subscribes or its stream ends.
    generation: u64,
    /// A watcher is subscribed (its events arrive).
    watching: bool,
    /// A watcher was started (subscribed or subscribing).
    started: bool,
    /// Events seen in this generation, numbered from 1.
    seq: u64,
    /// The number of the last event about each container ID.
    last_event: HashMap<String, u64>,
    /// Verified facts by container name.
    verified: HashMap<String, Entry>,
    /// Container names this supervisor has verified at least once.
    seen: HashSet<String>,
    /// The watcher task, aborted when the supervisor goes.
    task: Option<tokio::task::AbortHandle>,
    /// When the last stream ended (a new watcher waits [`RETRY_AFTER`]).
    ended_at: Option<Instant>,
}

impl Inner {
    fn unchanged_since(&self, id: &str, t: Ticket) -> bool {
        self.watching
            && t.generation == self.generation
            && self.last_event.get(id).is_none_or(|s| *s <= t.seq)
    }
}

/// The verified-facts memory of one supervisor. `Send + Sync`.
#[derive(Default)]
pub struct Fresh {
    inner: Mutex<Inner>,
}

impl Fresh {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take before the inspect whose facts will be passed to [`Fresh::remember`].
    pub fn ticket(&self) -> Ticket {
        let i = self.lock();
        Ticket {
            generation: i.generation,
            seq: i.seq,
        }
    }

    /// The facts verified for `name` under this configuration, if nothing can have changed
    /// them since.
    pub fn lookup(&self, name: &str, config_hash: &str) -> Option<ContainerFacts> {
        let i = self.lock();
        let e = i.verified.get(name)?;
        (e.config_hash == config_hash
            && e.at.elapsed() < MAX_AGE
            && i.unchanged_since(&e.facts.id, e.ticket))
        .then(|| e.facts.clone())
    }

    /// Facts that passed every check for `name`. Returns `true` when a watcher should be
    /// started now (a repeated use, and none runs).
    pub fn remember(
        &self,
        name: &str,
        facts: &ContainerFacts,
        config_hash: &str,
        ticket: Ticket,
    ) -> bool {
        let mut i = self.lock();
        if facts.running && i.unchanged_since(&facts.id, ticket) {
            i.verified.insert(
                name.to_string(),
                Entry {
                    facts: facts.clone(),
                    config_hash: config_hash.to_string(),
                    at: Instant::now(),
                    ticket,
                },
            );
        }
        if i.seen.len() >= MAX_TRACKED {
            i.seen.clear();
        }
        let again = !i.seen.insert(name.to_string());
        let may_retry = i.ended_at.is_none_or(|t| t.elapsed() >= RETRY_AFTER);
        if again && !i.started && may_retry {
            i.started = true;
            return true;
        }
        false
    }

    /// `name` is gone or must be inspected on its next use.
    pub fn forget(&self, name: &str) {
        self.lock().verified.remove(name);
    }

    fn subscribed(&self) {
        let mut i = self.lock();
        i.generation += 1;
        i.seq = 0;
        i.last_event.clear();
        i.verified.clear();
        i.watching = true;
    }

    fn event(&self, id: &str) {
        let mut i = self.lock();
        if i.last_event.len() >= MAX_TRACKED {
            // Too many to track: nothing verified survives, and numbering starts again.
            i.generation += 1;
            i.seq = 0;
            i.last_event.clear();
            i.verified.clear();
        }
        i.seq += 1;
        let seq = i.seq;
        i.last_event.insert(id.to_string(), seq);
        i.verified.retain(|_, e| e.facts.id != id);
    }

    fn ended(&self) {
        let mut i = self.lock();
        i.generation += 1;
        i.watching = false;
        i.started = false;
        i.last_event.clear();
        i.verified.clear();
        i.task = None;
        i.ended_at = Some(Instant::now());
    }

    /// Start watching `engine`'s container events (inside a tokio runtime). An engine that
    /// cannot report events leaves every use inspecting; so does a stream that ends, until a
    /// later repeated use starts a new watcher.
    pub fn watch(self: &Arc<Self>, engine: Arc<dyn ContainerEngine>) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(REPLAY)
            .as_secs_f64();
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut stream = match engine.watch(since).await {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!("cannot watch the engine's events: {e}");
                    me.ended();
                    return;
                }
            };
            me.subscribed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => me.event(&ev.id),
                    Err(e) => {
                        tracing::debug!("the engine's event stream failed: {e}");
                        break;
                    }
                }
            }
            me.ended();
        });
        self.lock().task = Some(task.abort_handle());
    }

    /// Stop watching (the supervisor is dropped).
    pub fn stop(&self) {
        if let Some(t) = self.lock().task.take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str) -> ContainerFacts {
        ContainerFacts {
            id: id.into(),
            name: "c".into(),
            running: true,
            ..Default::default()
        }
    }

    #[test]
    fn nothing_is_reused_without_a_watcher() {
        let f = Fresh::default();
        let t = f.ticket();
        assert!(!f.remember("c", &facts("a"), "h", t), "first use");
        assert!(f.lookup("c", "h").is_none());
        assert!(
            f.remember("c", &facts("a"), "h", f.ticket()),
            "second use starts a watcher"
        );
        assert!(f.lookup("c", "h").is_none(), "not subscribed yet");
        assert!(
            !f.remember("c", &facts("a"), "h", f.ticket()),
            "only one watcher"
        );
    }

    #[test]
    fn an_event_about_the_container_drops_its_facts_also_during_the_inspect() {
        let f = Fresh::default();
        f.subscribed();
        let t = f.ticket();
        f.remember("c", &facts("a"), "h", t);
        assert!(f.lookup("c", "h").is_some());
        assert!(f.lookup("c", "other-config").is_none());
        f.event("b");
        assert!(f.lookup("c", "h").is_some(), "another container's event");
        f.event("a");
        assert!(f.lookup("c", "h").is_none());
        // An event between the ticket (before the inspect) and remembering it.
        let t = f.ticket();
        f.event("a");
        f.remember("c", &facts("a"), "h", t);
        assert!(f.lookup("c", "h").is_none());
        f.remember("c", &facts("a"), "h", f.ticket());
        assert!(f.lookup("c", "h").is_some());
    }

    #[test]
    fn a_stream_that_ends_forgets_everything_and_old_tickets_stay_void() {
        let f = Fresh::default();
        f.subscribed();
        let old = f.ticket();
        f.remember("c", &facts("a"), "h", old);
        f.ended();
        assert!(f.lookup("c", "h").is_none());
        // A repeated use right after an end starts no new watcher (it waits RETRY_AFTER).
        assert!(!f.remember("c", &facts("a"), "h", f.ticket()));
        f.subscribed();
        f.remember("c", &facts("a"), "h", old);
        assert!(
            f.lookup("c", "h").is_none(),
            "a ticket from before the subscription"
        );
        let mut stopped = facts("a");
        stopped.running = false;
        f.remember("c", &stopped, "h", f.ticket());
        assert!(
            f.lookup("c", "h").is_none(),
            "a stopped container is never kept"
        );
        f.remember("c", &facts("a"), "h", f.ticket());
        f.forget("c");
        assert!(f.lookup("c", "h").is_none());
    }
}
