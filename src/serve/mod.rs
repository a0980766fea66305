//! `clawden serve`: one supervisor, its state and its agent connections kept alive behind a
//! Unix socket (HTTP/1.1 + JSON, never TCP), for a gateway that hands clawden every tool call
//! (service.md). Identity is `SO_PEERCRED`, read once per connection; roles come from
//! `serve.peers`; every audit line carries the peer.

// Handlers return the error envelope by value: it is built once per failed request, and boxing
// it would only move the allocation.
#![allow(clippy::result_large_err)]

pub mod attach;
pub mod calls;
pub mod error;
pub mod log;
pub mod peer;
pub mod routes;
pub mod socket;
pub mod strict;

use crate::supervisor::Supervisor;
use error::ApiError;
use peer::{Peer, PeerRule, Role};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API's version (paths are under `/v1`).
pub const API_VERSION: &str = "1";

/// What the service can do, for `GET /v1/version`.
/// The service's own event log (`GET /v1/events`) keeps at most this much JSON: the newest few
/// thousand events, a bounded share of the service's memory whatever the call rate.
pub const SERVICE_EVENTS_BYTES: usize = 1 << 20;

pub const CAPABILITIES: &[&str] = &[
    "calls.wait",
    "calls.stream",
    "calls.start",
    "calls.detached",
    "calls.stdin",
    "calls.signal",
    "calls.attach",
    "files.etag",
    "files.exclusive",
    "files.cas",
    "events",
    "idempotency",
];

/// `{"key": "...", "agentId": "..."}`: the session a request is for.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionBody {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// The service's settings (`serve` in the config, defaults here).
#[derive(Debug, Clone)]
pub struct Settings {
    pub peers: Vec<PeerRule>,
    pub allow_other_pid_namespaces: bool,
    pub max_calls: usize,
    pub max_calls_per_sandbox: usize,
    pub heartbeat: Duration,
    pub retention: Duration,
}

impl Settings {
    /// From the config's `serve` section (the last layer that has one), for a service started
    /// by `uid`.
    pub fn from_config(cfg: &crate::config::LoadedConfig, uid: u32) -> Result<Self, String> {
        let s = cfg
            .layers
            .iter()
            .rev()
            .find_map(|l| l.file.serve.clone())
            .unwrap_or_default();
        let peers = match &s.peers {
            None => vec![PeerRule {
                uid,
                gid: None,
                roles: Role::ALL.to_vec(),
            }],
            Some(list) => {
                let mut out = Vec::new();
                for (i, p) in list.iter().enumerate() {
                    let mut roles = Vec::new();
                    for r in &p.roles {
                        roles.push(Role::parse(r).ok_or_else(|| {
                            format!("serve.peers[{i}].roles: unknown role {r:?} (gateway, approver, operator, reader)")
                        })?);
                    }
                    out.push(PeerRule {
                        uid: p.uid,
                        gid: p.gid,
                        roles,
                    });
                }
                out
            }
        };
        let positive = |v: Option<usize>, d: usize, name: &str| match v {
            Some(0) => Err(format!("serve.{name} must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(d),
        };
        Ok(Settings {
            peers,
            allow_other_pid_namespaces: s.allow_other_pid_namespaces.unwrap_or(false),
            max_calls: positive(s.max_calls, 64, "maxCalls")?,
            max_calls_per_sandbox: positive(s.max_calls_per_sandbox, 8, "maxCallsPerSandbox")?,
            heartbeat: Duration::from_secs(s.heartbeat_seconds.unwrap_or(15).max(1)),
            retention: Duration::from_secs(s.retention_seconds.unwrap_or(600)),
        })
    }
}

/// A stored response for an `Idempotency-Key` (per peer uid and key).
#[derive(Clone)]
pub struct StoredResponse {
    pub digest: [u8; 32],
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One key's stored response; held locked while its first request runs.
pub type IdempotencySlot = Arc<tokio::sync::Mutex<Option<StoredResponse>>>;

/// The service's state, shared by every request.
pub struct App {
    pub sup: Arc<Supervisor>,
    pub settings: Settings,
    pub calls: calls::Registry,
    pub events: log::EventLog,
    pub idempotency: Mutex<HashMap<(u32, String), IdempotencySlot>>,
    pub engine: serde_json::Value,
    pub shutting_down: std::sync::atomic::AtomicBool,
}

impl App {
    pub fn new(sup: Arc<Supervisor>, settings: Settings, engine: serde_json::Value) -> Arc<Self> {
        Arc::new(App {
            calls: calls::Registry::new(
                settings.max_calls,
                settings.max_calls_per_sandbox,
                settings.retention,
            ),
            events: log::EventLog::new(SERVICE_EVENTS_BYTES),
            idempotency: Default::default(),
            sup,
            settings,
            engine,
            shutting_down: Default::default(),
        })
    }

    /// A slot for one more running call, or `429` (or `503` while shutting down).
    pub fn admit(&self, sandbox: &str) -> Result<[tokio::sync::OwnedSemaphorePermit; 2], ApiError> {
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the service is shutting down",
            )
            .fix("retry against the next service instance"));
        }
        self.calls.admit(sandbox)
    }

    /// The roles of a peer, or the refusal of a peer that has none here.
    pub fn check_peer(&self, peer: &Peer) -> Result<Vec<Role>, ApiError> {
        if peer.other_pid_namespace && !self.settings.allow_other_pid_namespaces {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "peer_refused",
                "callers from another pid namespace (e.g. a container) are refused",
            )
            .fix("call from the host, or set serve.allowOtherPidNamespaces"));
        }
        Ok(peer::roles_of(&self.settings.peers, peer))
    }
}

/// Run the service until SIGTERM/SIGINT: stop accepting, end connection-bound calls, leave
/// detached calls to their agents, exit 0.
pub async fn run(
    sup: Supervisor,
    settings: Settings,
    listener: socket::Bound,
    engine: serde_json::Value,
) -> std::io::Result<()> {
    let app = App::new(Arc::new(sup), settings, engine);
    let found = calls::rediscover(&app).await;
    if found > 0 {
        tracing::info!("found {found} detached call(s) in the sandboxes' agents");
    }
    let router = routes::router(app.clone());
    let shutdown = {
        let app = app.clone();
        async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            app.shutting_down
                .store(true, std::sync::atomic::Ordering::SeqCst);
            for c in app.calls.running() {
                if c.lifetime == calls::LifetimeBody::Connection {
                    c.kill(&app);
                }
            }
        }
    };
    eprintln!("clawden serve: listening on {}", listener.path.display());
    let l = listener.listener;
    let serve = axum::serve(l, router.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown);
    // Streams of detached calls would hold a graceful shutdown forever: bound it.
    let app2 = app.clone();
    let r = tokio::select! {
        r = serve => r,
        _ = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if app2.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    break;
                }
            }
        } => Ok(()),
    };
    // Connection-bound calls end with their agents' connections; give them a moment.
    for c in app.calls.running() {
        if c.lifetime == calls::LifetimeBody::Connection {
            c.wait(Duration::from_secs(3)).await;
        }
    }
    drop(listener.lock);
    r
}
