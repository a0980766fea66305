//! The `/v1` routes (api/openapi.yaml is their contract), the request-id, peer/role and
//! idempotency layers, and the handlers.

use super::calls::{self, CallBody, KillOnDrop, Mode};
use super::error::{ApiError, ErrorBody};
use super::peer::{Peer, Role};
use super::strict::{StrictJson, StrictQuery};
use super::{API_VERSION, App, CAPABILITIES, SessionBody, StoredResponse};
use crate::supervisor::files::{ReadRequest, WriteRequest};
use crate::supervisor::ops::Selector;
use crate::supervisor::service::{FileOp, FileOpResult, WriteOptions};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

type AppState = State<Arc<App>>;

/// The OpenAPI document, committed as YAML, served as JSON.
pub const OPENAPI_YAML: &str = include_str!("../../api/openapi.yaml");

/// Which roles may call a route (`GET`s also `reader`).
pub fn roles_for(method: &Method, path: &str) -> &'static [Role] {
    use Role::*;
    let read = method == Method::GET || method == Method::HEAD;
    match path {
        "/_ping" | "/v1/version" | "/v1/openapi.json" | "/v1/health" => {
            &[Gateway, Approver, Operator, Reader]
        }
        "/v1/events" => &[Gateway, Approver, Operator, Reader],
        "/v1/audit" => &[Operator, Reader],
        "/v1/doctor" | "/v1/sandboxes/recreate" | "/v1/sandboxes/prune" => &[Operator],
        "/v1/sandboxes" | "/v1/sandboxes/{name}" if read => &[Operator, Gateway, Reader],
        "/v1/sandboxes/{name}" => &[Operator],
        _ if read => &[Gateway, Reader],
        _ => &[Gateway],
    }
}

/// Every route of the router (method, path), for the OpenAPI test.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/_ping"),
    ("get", "/v1/version"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/health"),
    ("post", "/v1/doctor"),
    ("post", "/v1/sessions/resolve"),
    ("post", "/v1/sandboxes/ensure"),
    ("get", "/v1/sandboxes"),
    ("get", "/v1/sandboxes/{name}"),
    ("delete", "/v1/sandboxes/{name}"),
    ("post", "/v1/sandboxes/recreate"),
    ("post", "/v1/sandboxes/prune"),
    ("post", "/v1/calls"),
    ("get", "/v1/calls"),
    ("get", "/v1/calls/{id}"),
    ("delete", "/v1/calls/{id}"),
    ("get", "/v1/calls/{id}/events"),
    ("get", "/v1/calls/{id}/output"),
    ("post", "/v1/calls/{id}/stdin"),
    ("post", "/v1/calls/{id}/signal"),
    ("post", "/v1/calls/{id}/attach"),
    ("get", "/v1/files"),
    ("head", "/v1/files"),
    ("put", "/v1/files"),
    ("get", "/v1/files/stat"),
    ("get", "/v1/files/list"),
    ("post", "/v1/files/mkdir"),
    ("post", "/v1/files/remove"),
    ("post", "/v1/files/rename"),
    ("get", "/v1/events"),
    ("get", "/v1/audit"),
];

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_ping", get(ping))
        .route("/v1/version", get(version))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/health", get(health))
        .route("/v1/doctor", post(doctor))
        .route("/v1/sessions/resolve", post(resolve))
        .route("/v1/sandboxes/ensure", post(ensure))
        .route("/v1/sandboxes", get(sandboxes_list))
        .route(
            "/v1/sandboxes/{name}",
            get(sandbox_get).delete(sandbox_delete),
        )
        .route("/v1/sandboxes/recreate", post(recreate))
        .route("/v1/sandboxes/prune", post(prune))
        .route("/v1/calls", post(call_create).get(calls_list))
        .route("/v1/calls/{id}", get(call_get).delete(call_delete))
        .route("/v1/calls/{id}/events", get(call_events))
        .route("/v1/calls/{id}/output", get(call_output))
        .route("/v1/calls/{id}/stdin", post(call_stdin))
        .route("/v1/calls/{id}/signal", post(call_signal))
        .route("/v1/calls/{id}/attach", post(call_attach))
        .route("/v1/files", get(file_get).head(file_head).put(file_put))
        .route("/v1/files/stat", get(file_stat))
        .route("/v1/files/list", get(file_list))
        .route("/v1/files/mkdir", post(file_mkdir))
        .route("/v1/files/remove", post(file_remove))
        .route("/v1/files/rename", post(file_rename))
        .route("/v1/events", get(events))
        .route("/v1/audit", get(audit))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(request_id))
        .layer(axum::extract::DefaultBodyLimit::max(512 << 20))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route").fix("see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
    .fix("see /v1/openapi.json")
}

/// Outermost: a request id on every response, and in every error body.
async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut resp = next.run(req).await;
    if let Some(ErrorBody(mut e)) = resp.extensions_mut().remove::<ErrorBody>() {
        e.request_id = Some(id.clone());
        let headers = resp.headers().clone();
        resp = e.into_response();
        resp.extensions_mut().remove::<ErrorBody>();
        for (k, v) in headers.iter() {
            if k != header::CONTENT_LENGTH && k != header::CONTENT_TYPE {
                resp.headers_mut().insert(k.clone(), v.clone());
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("clawden-request-id", v);
    }
    resp
}

/// The peer's roles for this route, the audit scope, and idempotency of creating POSTs.
async fn guard(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<Peer>,
    matched: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    let roles = match app.check_peer(&peer) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let need = roles_for(req.method(), matched.as_str());
    if !need.iter().any(|r| roles.contains(r)) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "uid {} has no role that may {} {} (needs one of: {})",
                peer.uid,
                req.method(),
                matched.as_str(),
                need.iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .fix("give this uid the role in serve.peers")
        .into_response();
    }
    let caller = crate::audit::Caller {
        uid: peer.uid,
        pid: peer.pid,
    };
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let creating = req.method() == Method::POST || req.method() == Method::PUT;
    match key {
        Some(k) if creating => {
            crate::audit::CALLER
                .scope(caller, idempotent(app, peer.uid, k, req, next))
                .await
        }
        _ => crate::audit::CALLER.scope(caller, next.run(req)).await,
    }
}

/// Run a creating request once per (peer uid, key): a retry gets the first response; the same
/// key with another request is `409 idempotency_conflict`.
async fn idempotent(app: Arc<App>, uid: u32, key: String, req: Request, next: Next) -> Response {
    if key.is_empty() || key.len() > 255 {
        return ApiError::bad_request("Idempotency-Key must be 1 to 255 characters")
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return ApiError::bad_request("cannot read the body").into_response();
    };
    let mut h = sha2::Sha256::new();
    h.update(parts.method.as_str());
    h.update(parts.uri.to_string());
    h.update(&bytes);
    let digest: [u8; 32] = h.finalize().into();
    let slot = {
        let mut m = app.idempotency.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.clear();
        }
        m.entry((uid, key.clone())).or_default().clone()
    };
    let mut stored = slot.lock().await;
    if let Some(s) = stored.as_ref() {
        if s.digest != digest {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "this Idempotency-Key was used for another request",
            )
            .fix("use a new key for a new request")
            .into_response();
        }
        let mut r = Response::new(Body::from(s.body.clone()));
        *r.status_mut() = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
        if let Ok(v) = HeaderValue::from_str(&s.content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r.headers_mut()
            .insert("idempotent-replay", HeaderValue::from_static("true"));
        return r;
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let resp = next.run(req).await;
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Streams are not stored (a retry of a stream starts nothing new: it conflicts).
    if ct.starts_with("application/x-ndjson") {
        *stored = Some(StoredResponse {
            digest,
            status: 409,
            content_type: "application/json".into(),
            body: serde_json::to_vec(&json!({"error": {"code": "idempotency_conflict", "message": "a streamed call is not replayed; follow it with GET /v1/calls/{id}/events", "fix": "", "retryable": false}})).unwrap_or_default(),
        });
        return resp;
    }
    let (rparts, rbody) = resp.into_parts();
    let Ok(rbytes) = axum::body::to_bytes(rbody, 512 << 20).await else {
        return ApiError::internal("cannot buffer the response").into_response();
    };
    if !rparts.status.is_server_error() && rparts.status != StatusCode::TOO_MANY_REQUESTS {
        *stored = Some(StoredResponse {
            digest,
            status: rparts.status.as_u16(),
            content_type: ct,
            body: rbytes.to_vec(),
        });
    }
    Response::from_parts(rparts, Body::from(rbytes))
}

// ---- service ----------------------------------------------------------------------------------

async fn ping() -> &'static str {
    "OK"
}

async fn version(State(app): AppState) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "apiVersion": API_VERSION,
        "capabilities": CAPABILITIES,
        "engine": app.engine,
    }))
}

async fn openapi() -> Result<Json<Value>, ApiError> {
    let v: Value = serde_norway::from_str(OPENAPI_YAML)
        .map_err(|e| ApiError::internal(format!("api/openapi.yaml: {e}")))?;
    Ok(Json(v))
}

async fn health(State(app): AppState) -> Response {
    let engine = app.sup.engine().list_sandboxes().await;
    let running = app.calls.running().len();
    let ok = engine.is_ok();
    let body = json!({
        "ok": ok,
        "engine": match &engine { Ok(_) => json!({"reachable": true}), Err(e) => json!({"reachable": false, "error": e.to_string()}) },
        "runningCalls": running,
        "shuttingDown": app.shutting_down.load(std::sync::atomic::Ordering::SeqCst),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DoctorBody {
    agent: Option<String>,
}

async fn doctor(
    State(app): AppState,
    StrictJson(b): StrictJson<DoctorBody>,
) -> Json<crate::doctor::Report> {
    let report = crate::doctor::run(
        Ok(app.sup.engine().clone()),
        app.sup.config().clone(),
        app.sup.env().clone(),
        b.agent.as_deref(),
    )
    .await;
    Json(report)
}

// ---- sessions and sandboxes -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SessionOnly {
    session: SessionBody,
}

async fn resolve(
    State(app): AppState,
    StrictJson(b): StrictJson<SessionOnly>,
) -> Result<Json<Value>, ApiError> {
    let (eff, plan) = app
        .sup
        .plan(Some(&b.session.key), b.session.agent_id.as_deref())?;
    let files = app
        .sup
        .config()
        .layers
        .iter()
        .map(|l| l.origin.clone())
        .collect();
    let e = crate::explain::explain(&eff, &plan, files);
    Ok(Json(serde_json::to_value(e).unwrap_or_default()))
}

async fn ensure(
    State(app): AppState,
    StrictJson(b): StrictJson<SessionOnly>,
) -> Result<Json<Value>, ApiError> {
    let (_, plan) = app
        .sup
        .plan(Some(&b.session.key), b.session.agent_id.as_deref())?;
    if !plan.sandboxed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_sandboxed",
            format!(
                "session {:?} is not sandboxed (it runs on the host)",
                plan.session.key
            ),
        )
        .fix("see POST /v1/sessions/resolve; set mode to \"all\" to sandbox it"));
    }
    let e = app.sup.ensure_plan(&plan).await?;
    let mounts: Vec<Value> = plan
        .container
        .mounts
        .iter()
        .filter(|m| {
            !matches!(
                m.source,
                crate::decide::MountSource::AgentBinary | crate::decide::MountSource::AgentChannel
            )
        })
        .map(
            |m| json!({"host": m.host, "container": m.container, "readOnly": m.access.read_only()}),
        )
        .collect();
    Ok(Json(json!({
        "name": e.container_name,
        "id": e.container_id,
        "running": true,
        "created": e.created,
        "image": e.image,
        "workdir": plan.container.workdir,
        "user": plan.container.user,
        "scopeKey": e.scope_key,
        "mounts": mounts,
        "warnings": e.warnings,
    })))
}

async fn sandboxes_list(State(app): AppState) -> Result<Json<Value>, ApiError> {
    let list = app.sup.list().await?;
    Ok(Json(json!({ "sandboxes": list })))
}

async fn sandbox_get(
    State(app): AppState,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let list = app.sup.list().await?;
    let s = list
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no sandbox {name:?} of this configuration")))?;
    Ok(Json(serde_json::to_value(s).unwrap_or_default()))
}

async fn sandbox_delete(
    State(app): AppState,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let all = app.sup.select(&Selector::All).await?;
    let targets: Vec<_> = all.into_iter().filter(|c| c.name == name).collect();
    if targets.is_empty() {
        return Err(ApiError::not_found(format!(
            "no sandbox {name:?} of this configuration"
        )));
    }
    for c in app.calls.running() {
        if c.sandbox == name {
            c.kill(&app);
        }
    }
    let removed = app.sup.remove_sandboxes(&targets).await?;
    app.events
        .push(json!({"type": "sandbox.removed", "name": name}));
    Ok(Json(json!({ "removed": removed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecreateBody {
    session: Option<String>,
    agent: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn recreate(
    State(app): AppState,
    StrictJson(b): StrictJson<RecreateBody>,
) -> Result<Json<Value>, ApiError> {
    let sel = match (b.session, b.agent, b.all) {
        (Some(s), None, false) => Selector::Session(s),
        (None, Some(a), false) => Selector::Agent(a),
        (None, None, true) => Selector::All,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of session, agent or all: true",
            ));
        }
    };
    let targets = app.sup.select(&sel).await?;
    let removed = app.sup.remove_sandboxes(&targets).await?;
    for r in &targets {
        app.events
            .push(json!({"type": "sandbox.removed", "name": r.name}));
    }
    Ok(Json(json!({ "removed": removed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PruneBody {
    #[serde(default)]
    dry_run: bool,
}

async fn prune(
    State(app): AppState,
    StrictJson(b): StrictJson<PruneBody>,
) -> Result<Json<Value>, ApiError> {
    let removed = app
        .sup
        .prune(crate::supervisor::now_ms(), b.dry_run)
        .await?;
    Ok(Json(json!({ "removed": removed, "dryRun": b.dry_run })))
}

// ---- calls ------------------------------------------------------------------------------------

async fn call_create(
    State(app): AppState,
    StrictJson(b): StrictJson<CallBody>,
) -> Result<Response, ApiError> {
    let mode = b.mode.unwrap_or_default();
    let wait = b.wait_ms.map(Duration::from_millis);
    let call = calls::start(&app, b).await?;
    match mode {
        Mode::Start => {
            let token = call.st_attach_token();
            Ok((
                StatusCode::CREATED,
                Json(json!({"callId": call.id, "attachToken": token, "state": "running"})),
            )
                .into_response())
        }
        Mode::Wait => {
            let mut guard = KillOnDrop {
                call: Some(call.clone()),
                app: app.clone(),
            };
            let ended = call
                .wait(wait.unwrap_or(Duration::from_secs(24 * 3600)))
                .await;
            guard.disarm();
            if ended {
                let r = call.result().unwrap_or(Value::Null);
                if r.get("error").is_some() {
                    // It never started: the refusal, as any other error.
                    let mut e: ApiError = serde_json::from_value::<ErrorShape>(r["error"].clone())
                        .map(ErrorShape::into_api)
                        .unwrap_or_else(|_| ApiError::internal("the call failed to start"));
                    e.details = json!({"callId": call.id});
                    return Err(e);
                }
                Ok(Json(r).into_response())
            } else {
                let mut info = call.info();
                if let Value::Object(m) = &mut info {
                    let (_, out, _) = call.output(false, 0, 64 << 10);
                    let (_, err, _) = call.output(true, 0, 64 << 10);
                    m.insert(
                        "stdout".into(),
                        Value::from(String::from_utf8_lossy(&out).into_owned()),
                    );
                    m.insert(
                        "stderr".into(),
                        Value::from(String::from_utf8_lossy(&err).into_owned()),
                    );
                }
                Ok((StatusCode::ACCEPTED, Json(info)).into_response())
            }
        }
        Mode::Stream => Ok(stream_events(app, call, 0, true, true)),
    }
}

/// An error as stored in a call's result.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorShape {
    code: String,
    message: String,
    #[serde(default)]
    fix: String,
}

impl ErrorShape {
    fn into_api(self) -> ApiError {
        let class = if self.code == "config_problems" {
            crate::exit_codes::ErrorClass::ConfigProblems
        } else {
            crate::exit_codes::ErrorClass::Refused
        };
        ApiError::new(
            super::error::status_of(&self.code, class),
            &self.code,
            self.message,
        )
        .fix(self.fix)
    }
}

/// An NDJSON response from a stream of ready lines.
fn ndjson<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

/// One heartbeat line; its `seq` is that of the last event sent before it (where to resume
/// with `after=`).
fn heartbeat_line(seq: u64) -> Vec<u8> {
    format!("{{\"type\":\"heartbeat\",\"seq\":{seq}}}\n").into_bytes()
}

/// NDJSON of a call's events after `after`, heartbeats on silence; `owns`: the stream owns a
/// `connection` call (it is killed when the client goes away before the end).
fn stream_events(
    app: Arc<App>,
    call: Arc<calls::Call>,
    after: u64,
    follow: bool,
    owns: bool,
) -> Response {
    let heartbeat = app.settings.heartbeat;
    let guard = KillOnDrop {
        call: owns.then(|| call.clone()),
        app: app.clone(),
    };
    struct S {
        call: Arc<calls::Call>,
        seq: u64,
        done: bool,
        guard: KillOnDrop,
    }
    let st = S {
        call,
        seq: after,
        done: false,
        guard,
    };
    let stream = futures_util::stream::unfold(st, move |mut s| async move {
        if s.done {
            return None;
        }
        let b = s.call.log.wait_after(s.seq, heartbeat).await;
        let mut out = Vec::new();
        if b.missed > 0 && s.seq + 1 < b.last_seq {
            out.extend_from_slice(
                json!({"type": "gap", "missed": b.missed, "seq": s.seq})
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'\n');
        }
        for e in &b.events {
            out.extend_from_slice(e.to_string().as_bytes());
            out.push(b'\n');
        }
        if let Some(last) = b.events.last().and_then(|e| e["seq"].as_u64()) {
            s.seq = last;
        }
        if b.events.is_empty() && !b.closed {
            if !follow {
                s.done = true;
                s.guard.disarm();
                return Some((Ok::<_, std::io::Error>(Bytes::new()), s));
            }
            out.extend_from_slice(&heartbeat_line(s.seq));
        }
        if b.closed && s.seq >= b.last_seq {
            s.done = true;
            s.guard.disarm();
        }
        Some((Ok(Bytes::from(out)), s))
    });
    ndjson(stream)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallsQuery {
    session: Option<String>,
    state: Option<String>,
}

async fn calls_list(
    State(app): AppState,
    StrictQuery(q): StrictQuery<CallsQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &q.state
        && s != "running"
        && s != "exited"
    {
        return Err(ApiError::bad_request("state: running or exited"));
    }
    let list: Vec<Value> = app
        .calls
        .all()
        .into_iter()
        .filter(|c| q.session.as_ref().is_none_or(|s| &c.session.key == s))
        .map(|c| c.info())
        .filter(|i| q.state.as_ref().is_none_or(|s| i["state"] == s.as_str()))
        .collect();
    Ok(Json(json!({ "calls": list })))
}

fn find_call(app: &App, id: &str) -> Result<Arc<calls::Call>, ApiError> {
    app.calls.get(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no call {id:?} (finished calls are kept for serve.retentionSeconds)"
        ))
    })
}

async fn call_get(State(app): AppState, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(find_call(&app, &id)?.info()))
}

async fn call_delete(
    State(app): AppState,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find_call(&app, &id)?;
    c.kill(&app);
    let ended = c.wait(Duration::from_secs(10)).await;
    if !ended {
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            "the call did not end within 10 s of its kill",
        ));
    }
    app.calls.forget(&id);
    Ok(Json(json!({"callId": id, "result": c.result()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    follow: bool,
}

async fn call_events(
    State(app): AppState,
    Path(id): Path<String>,
    StrictQuery(q): StrictQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let c = find_call(&app, &id)?;
    Ok(stream_events(app, c, q.after, q.follow, false))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OutputQuery {
    stream: Option<String>,
    #[serde(default)]
    offset: u64,
    length: Option<u64>,
}

async fn call_output(
    State(app): AppState,
    Path(id): Path<String>,
    StrictQuery(q): StrictQuery<OutputQuery>,
) -> Result<Response, ApiError> {
    let c = find_call(&app, &id)?;
    let stderr = match q.stream.as_deref() {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "stream {other:?}: stdout or stderr"
            )));
        }
    };
    let max = q.length.unwrap_or(1 << 20).min(1 << 20) as usize;
    let (start, bytes, total) = c.output(stderr, q.offset, max);
    let mut r = Response::new(Body::from(bytes));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("clawden-offset", HeaderValue::from(start));
    h.insert("clawden-total", HeaderValue::from(total));
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StdinQuery {
    #[serde(default)]
    eof: bool,
}

async fn call_stdin(
    State(app): AppState,
    Path(id): Path<String>,
    StrictQuery(q): StrictQuery<StdinQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let c = find_call(&app, &id)?;
    c.write_stdin(&body, q.eof).await?;
    Ok(Json(
        json!({"callId": id, "written": body.len(), "eof": q.eof}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SignalBody {
    signal: Value,
    #[serde(default = "yes")]
    tree: bool,
}

fn yes() -> bool {
    true
}

async fn call_signal(
    State(app): AppState,
    Path(id): Path<String>,
    StrictJson(b): StrictJson<SignalBody>,
) -> Result<Json<Value>, ApiError> {
    let c = find_call(&app, &id)?;
    let sig = match &b.signal {
        Value::Number(n) => n.as_i64().and_then(|n| calls::parse_signal(&n.to_string())),
        Value::String(s) => calls::parse_signal(s),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request("signal: a name (TERM) or number (15)"))?;
    c.signal(&app, sig, b.tree).await?;
    Ok(Json(json!({"callId": id, "signal": sig})))
}

/// `POST /v1/calls/{id}/attach`: with the call's one-time token, `101` and a framed two-way
/// stream (see [`super::attach`]).
async fn call_attach(
    State(app): AppState,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let c = find_call(&app, &id)?;
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(super::attach::PROTOCOL));
    if !wants {
        return Err(ApiError::bad_request(format!(
            "attach upgrades the connection: send Connection: Upgrade and Upgrade: {}",
            super::attach::PROTOCOL
        )));
    }
    let token = req
        .headers()
        .get(super::attach::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !c.take_attach_token(&token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "no valid attach token for this call (it is given once, by mode \"start\", and is good for one attach)",
        )
        .fix("start the call with mode \"start\" and pass its attachToken in Clawden-Attach-Token"));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => super::attach::pump(app, c, hyper_util::rt::TokioIo::new(up)).await,
            Err(e) => {
                tracing::warn!("attach of call {}: the upgrade failed: {e}", c.id);
                // Nobody holds the call: a connection call ends like a dropped client's.
                drop(KillOnDrop { call: Some(c), app });
            }
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    r.headers_mut().insert(
        header::UPGRADE,
        HeaderValue::from_static(super::attach::PROTOCOL),
    );
    Ok(r)
}

// ---- files ------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileQuery {
    session: String,
    agent: Option<String>,
    path: String,
    #[serde(default)]
    offset: u64,
    length: Option<u64>,
    #[serde(default)]
    mkdir: bool,
    max_entries: Option<u64>,
}

async fn file_get(
    State(app): AppState,
    StrictQuery(q): StrictQuery<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let r = app
        .sup
        .read_tagged(ReadRequest {
            session: Some(q.session),
            agent: q.agent,
            path: q.path,
            offset: q.offset,
            length: q.length,
        })
        .await?;
    if let (Some(etag), Some(inm)) = (&r.etag, headers.get(header::IF_NONE_MATCH))
        && inm.to_str().ok() == Some(&quote(etag))
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        resp.headers_mut().insert(header::ETAG, hv(&quote(etag)));
        return Ok(resp);
    }
    let mut resp = Response::new(Body::from(r.content));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(e) = &r.etag {
        h.insert(header::ETAG, hv(&quote(e)));
    }
    h.insert("clawden-size", HeaderValue::from(r.size));
    h.insert(
        "clawden-truncated",
        HeaderValue::from_static(if r.truncated { "true" } else { "false" }),
    );
    Ok(resp)
}

fn quote(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').to_string()
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

async fn file_head(
    State(app): AppState,
    StrictQuery(q): StrictQuery<FileQuery>,
) -> Result<Response, ApiError> {
    let st = stat_of(&app, &q).await?;
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(header::ETAG, hv(&quote(&st.etag)));
    h.insert("clawden-size", HeaderValue::from(st.size));
    h.insert("clawden-kind", hv(&st.kind));
    Ok(resp)
}

async fn stat_of(app: &App, q: &FileQuery) -> Result<clawden_agent::proto::FileStat, ApiError> {
    match app
        .sup
        .file_op(Some(&q.session), q.agent.as_deref(), &q.path, FileOp::Stat)
        .await?
    {
        FileOpResult::Stat(s) => Ok(s),
        _ => Err(ApiError::internal("stat returned something else")),
    }
}

async fn file_stat(
    State(app): AppState,
    StrictQuery(q): StrictQuery<FileQuery>,
) -> Result<Json<Value>, ApiError> {
    let s = stat_of(&app, &q).await?;
    Ok(Json(json!({
        "path": q.path, "kind": s.kind, "size": s.size, "mode": s.mode, "uid": s.uid,
        "gid": s.gid, "mtimeNs": s.mtime_ns, "etag": s.etag,
    })))
}

async fn file_list(
    State(app): AppState,
    StrictQuery(q): StrictQuery<FileQuery>,
) -> Result<Json<Value>, ApiError> {
    let max_entries = q.max_entries.unwrap_or(10_000).min(100_000);
    match app
        .sup
        .file_op(
            Some(&q.session),
            q.agent.as_deref(),
            &q.path,
            FileOp::List { max_entries },
        )
        .await?
    {
        FileOpResult::List { entries, truncated } => Ok(Json(
            json!({"path": q.path, "entries": entries, "truncated": truncated}),
        )),
        _ => Err(ApiError::internal("list returned something else")),
    }
}

async fn file_put(
    State(app): AppState,
    StrictQuery(q): StrictQuery<FileQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let exclusive = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim() == "*");
    if headers.contains_key(header::IF_NONE_MATCH) && exclusive != Some(true) {
        return Err(ApiError::bad_request(
            "If-None-Match on PUT takes only \"*\" (create, never replace)",
        ));
    }
    let expected_etag = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(unquote);
    let r = app
        .sup
        .write_tagged(
            WriteRequest {
                session: Some(q.session),
                agent: q.agent,
                path: q.path,
                content: body.to_vec(),
                mkdir: q.mkdir,
            },
            WriteOptions {
                mkdir: q.mkdir,
                exclusive: exclusive == Some(true),
                expected_etag,
            },
        )
        .await?;
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (
        status,
        Json(json!({"path": r.path, "bytes": r.bytes, "created": r.created, "etag": r.etag})),
    )
        .into_response();
    if let Some(e) = &r.etag {
        resp.headers_mut().insert(header::ETAG, hv(&quote(e)));
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileOpBody {
    session: SessionBody,
    path: String,
    #[serde(default)]
    parents: bool,
    to: Option<String>,
    #[serde(default)]
    no_replace: bool,
}

async fn file_op(app: &App, b: FileOpBody, op: FileOp) -> Result<Json<Value>, ApiError> {
    app.sup
        .file_op(
            Some(&b.session.key),
            b.session.agent_id.as_deref(),
            &b.path,
            op,
        )
        .await?;
    Ok(Json(json!({"path": b.path, "ok": true})))
}

async fn file_mkdir(
    State(app): AppState,
    StrictJson(b): StrictJson<FileOpBody>,
) -> Result<Json<Value>, ApiError> {
    let parents = b.parents;
    file_op(&app, b, FileOp::Mkdir { parents }).await
}

async fn file_remove(
    State(app): AppState,
    StrictJson(b): StrictJson<FileOpBody>,
) -> Result<Json<Value>, ApiError> {
    file_op(&app, b, FileOp::Remove).await
}

async fn file_rename(
    State(app): AppState,
    StrictJson(b): StrictJson<FileOpBody>,
) -> Result<Json<Value>, ApiError> {
    let Some(to) = b.to.clone() else {
        return Err(ApiError::bad_request("rename needs \"to\""));
    };
    let no_replace = b.no_replace;
    file_op(&app, b, FileOp::Rename { to, no_replace }).await
}

// ---- events and audit -------------------------------------------------------------------------

async fn events(State(app): AppState, StrictQuery(q): StrictQuery<EventsQuery>) -> Response {
    if !q.follow {
        // Long-poll: what is there after `after`, waiting up to one heartbeat for something.
        let b = app.events.wait_after(q.after, app.settings.heartbeat).await;
        return Json(json!({"events": b.events, "lastSeq": b.last_seq, "missed": b.missed}))
            .into_response();
    }
    let heartbeat = app.settings.heartbeat;
    let stream = futures_util::stream::unfold((app, q.after), move |(app, seq)| async move {
        let b = app.events.wait_after(seq, heartbeat).await;
        let mut out = Vec::new();
        let mut next = seq;
        for e in &b.events {
            out.extend_from_slice(e.to_string().as_bytes());
            out.push(b'\n');
            next = e["seq"].as_u64().unwrap_or(next);
        }
        if b.events.is_empty() {
            out.extend_from_slice(&heartbeat_line(next));
        }
        Some((Ok::<_, std::io::Error>(Bytes::from(out)), (app, next)))
    });
    ndjson(stream)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuditQuery {
    since_ms: Option<u64>,
    #[serde(default)]
    denied: bool,
}

async fn audit(State(app): AppState, StrictQuery(q): StrictQuery<AuditQuery>) -> Json<Value> {
    let since = q
        .since_ms
        .unwrap_or_else(|| crate::supervisor::now_ms().saturating_sub(3600 * 1000));
    let entries: Vec<_> = app
        .sup
        .audit_log()
        .read_since(since)
        .into_iter()
        .filter(|e| !q.denied || e.decision != "allowed")
        .collect();
    Json(json!({ "entries": entries }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::Settings;
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    fn spec() -> Value {
        serde_norway::from_str(OPENAPI_YAML).unwrap()
    }

    fn app(peers: Vec<crate::serve::peer::PeerRule>) -> Arc<App> {
        let engine = Arc::new(crate::engine::fake::FakeEngine::with_images(&[]));
        let sup = crate::supervisor::Supervisor::new(
            engine,
            crate::config::LoadedConfig::default(),
            crate::config::Env::default(),
        );
        let settings = Settings {
            peers,
            allow_other_pid_namespaces: false,
            max_calls: 4,
            max_calls_per_sandbox: 2,
            heartbeat: Duration::from_secs(15),
            retention: Duration::from_secs(60),
        };
        App::new(Arc::new(sup), settings, Value::Null)
    }

    async fn call(app: &Arc<App>, method: &str, path: &str, peer: Peer) -> (StatusCode, Value) {
        let uri = path.replace("{name}", "x").replace("{id}", "x");
        let mut req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(uri)
            .body(Body::from("{}"))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let r = router(app.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    fn peer(uid: u32, pid: Option<i32>) -> Peer {
        Peer {
            uid,
            gid: uid,
            pid,
            other_pid_namespace: pid.is_none(),
            unknown: false,
        }
    }

    #[test]
    fn the_spec_and_the_router_have_the_same_routes() {
        let spec = spec();
        let mut in_spec = BTreeSet::new();
        for (path, ops) in spec["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                if m != "parameters" {
                    in_spec.insert((m.clone(), path.clone()));
                }
            }
        }
        let in_code: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(in_spec, in_code);
    }

    #[test]
    fn every_error_code_of_the_spec_exists_and_every_refusal_is_in_the_spec() {
        let spec = spec();
        let in_spec: BTreeSet<String> = spec["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let mut in_code: BTreeSet<String> = crate::validate::RefusalCode::ALL
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        in_code.extend(
            super::super::error::SERVICE_CODES
                .iter()
                .map(|s| s.to_string()),
        );
        let mut all = in_code.clone();
        all.extend(
            super::super::error::OTHER_CODES
                .iter()
                .map(|s| s.to_string()),
        );
        let unknown: Vec<_> = in_spec.difference(&all).collect();
        assert!(
            unknown.is_empty(),
            "in the spec, not in the code: {unknown:?}"
        );
        let missing: Vec<_> = in_code.difference(&in_spec).collect();
        assert!(
            missing.is_empty(),
            "in the code, not in the spec: {missing:?}"
        );
    }

    #[tokio::test]
    async fn every_route_is_routed_and_role_checked() {
        // A peer with no role: every real route answers 403 forbidden (never 404/405).
        let a = app(vec![]);
        for (m, p) in ROUTES {
            let (status, body) = call(&a, m, p, peer(4242, Some(7))).await;
            if *m == "head" {
                assert_eq!(status, StatusCode::FORBIDDEN, "{m} {p}");
                continue;
            }
            assert_eq!(status, StatusCode::FORBIDDEN, "{m} {p}: {body}");
            assert_eq!(body["error"]["code"], "forbidden", "{m} {p}");
            assert!(body["error"]["requestId"].is_string());
        }
        let (status, body) = call(&a, "get", "/v1/nope", peer(4242, Some(7))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }

    #[tokio::test]
    async fn roles_decide_and_other_pid_namespaces_are_refused() {
        use crate::serve::peer::{PeerRule, Role};
        let a = app(vec![
            PeerRule {
                uid: 10,
                gid: None,
                roles: vec![Role::Reader],
            },
            PeerRule {
                uid: 11,
                gid: None,
                roles: vec![Role::Operator],
            },
        ]);
        // A reader may GET but not start calls or remove sandboxes.
        assert_eq!(
            call(&a, "get", "/v1/version", peer(10, Some(1))).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&a, "post", "/v1/calls", peer(10, Some(1))).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&a, "delete", "/v1/sandboxes/{name}", peer(10, Some(1)))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        // An operator may not run calls either.
        assert_eq!(
            call(&a, "post", "/v1/calls", peer(11, Some(1))).await.0,
            StatusCode::FORBIDDEN
        );
        // Another pid namespace (pid unknown) is refused whatever its uid.
        let (s, b) = call(&a, "get", "/v1/version", peer(10, None)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["error"]["code"], "peer_refused");
    }

    #[tokio::test]
    async fn unknown_fields_are_named() {
        use crate::serve::peer::{PeerRule, Role};
        let a = app(vec![PeerRule {
            uid: 1,
            gid: None,
            roles: Role::ALL.to_vec(),
        }]);
        let mut req = Request::builder()
            .method("POST")
            .uri("/v1/calls")
            .body(Body::from(
                r#"{"session":{"key":"s"},"command":"true","timeoutMS":5}"#,
            ))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(peer(1, Some(1))));
        let r = router(a.clone()).oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let b: Value =
            serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap())
                .unwrap();
        assert_eq!(b["error"]["code"], "unknown_field");
        assert_eq!(b["error"]["details"]["field"], "timeoutMS");
        // Nested too, with its path.
        let mut req = Request::builder()
            .method("POST")
            .uri("/v1/sessions/resolve")
            .body(Body::from(r#"{"session":{"key":"s","agent":"x"}}"#))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(peer(1, Some(1))));
        let r = router(a).oneshot(req).await.unwrap();
        let b: Value =
            serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap())
                .unwrap();
        assert_eq!(b["error"]["code"], "unknown_field");
        assert_eq!(b["error"]["details"]["field"], "session.agent");
    }
}
