//! Calls as one resource in three modes (`wait`, `stream`, `start`), each a task of the service
//! that owns an agent connection: output goes into the call's bounded event log (followers,
//! NDJSON streams, offsets) and its head/tail capture (the result); a dropped owner kills the
//! call's whole tree (the agent does, when its connection ends); `detached` calls live in their
//! agent and are found again after a restart.

use super::error::ApiError;
use super::log::EventLog;
use super::{App, SessionBody};
use crate::exec::capture::HeadTail;
use crate::exec::{ExecOutcome, ExecRequest, Via};
use crate::supervisor::now_ms;
use crate::supervisor::service::{AgentCall, Prepared};
use base64::Engine as _;
use clawden_agent::client::Canceller;
use clawden_agent::proto::{EndReason, Lifetime, OutStream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per call: the event log's budget and the output kept for `/output` reads (per stream).
pub const LOG_CAP_BYTES: usize = 1 << 20;
pub const OUTPUT_WINDOW_BYTES: usize = 1 << 20;

/// Finished calls kept for queries: at most this many (the newest) ...
pub const MAX_FINISHED_CALLS: usize = 1024;
/// ... holding at most this much of their output and events in all.
pub const MAX_FINISHED_BYTES: usize = 128 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Wait,
    Stream,
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LifetimeBody {
    #[default]
    Connection,
    Detached,
}

/// `stdin`: `"closed"`, `"stream"`, or `{"text": …}` / `{"b64": …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StdinBody {
    Keyword(String),
    Data(StdinData),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinData {
    pub text: Option<String>,
    pub b64: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CallBody {
    pub session: SessionBody,
    pub command: Option<String>,
    pub argv: Option<Vec<String>>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub stdin: Option<StdinBody>,
    pub timeout_ms: Option<u64>,
    pub wait_ms: Option<u64>,
    pub lifetime: Option<LifetimeBody>,
    pub mode: Option<Mode>,
    pub max_output_bytes: Option<u64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Output kept for `/output?offset=`: the last bytes of one stream and where they start.
#[derive(Default)]
struct Window {
    bytes: VecDeque<u8>,
    total: u64,
}

impl Window {
    fn push(&mut self, b: &[u8]) {
        self.total += b.len() as u64;
        self.bytes.extend(b);
        let over = self.bytes.len().saturating_sub(OUTPUT_WINDOW_BYTES);
        self.bytes.drain(..over);
    }
    fn start(&self) -> u64 {
        self.total - self.bytes.len() as u64
    }
}

#[derive(Default)]
struct State {
    agent_call_id: Option<String>,
    pid: Option<i32>,
    target: Option<crate::exec::agent::AgentTarget>,
    canceller: Option<Canceller>,
    stdin: Option<Arc<tokio::net::unix::pipe::Sender>>,
    abort: Option<tokio::task::AbortHandle>,
    result: Option<Value>,
    finished: Option<Instant>,
    out: Option<HeadTail>,
    err: Option<HeadTail>,
    windows: [Window; 2],
    killed: bool,
    attach_token: Option<String>,
}

/// One call of the service.
pub struct Call {
    pub id: String,
    pub session: SessionBody,
    pub sandbox: String,
    pub lifetime: LifetimeBody,
    pub created_ms: u64,
    pub labels: BTreeMap<String, String>,
    pub log: EventLog,
    st: Mutex<State>,
    done: tokio::sync::watch::Sender<bool>,
}

impl Call {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_started(&self, agent_call_id: &str, pid: i32) {
        {
            let mut st = self.st();
            st.agent_call_id = Some(agent_call_id.to_string());
            st.pid = Some(pid);
        }
        self.log
            .push(json!({"type": "started", "callId": self.id, "pid": pid}));
    }

    fn on_output(&self, stream: OutStream, b: &[u8]) {
        let i = (stream == OutStream::Stderr) as usize;
        {
            let mut st = self.st();
            let cap = if i == 0 { &mut st.out } else { &mut st.err };
            if let Some(h) = cap {
                h.push(b);
            }
            st.windows[i].push(b);
        }
        let name = if i == 0 { "stdout" } else { "stderr" };
        let ev = match std::str::from_utf8(b) {
            Ok(t) => json!({"type": name, "text": t}),
            Err(_) => {
                json!({"type": name, "b64": base64::engine::general_purpose::STANDARD.encode(b)})
            }
        };
        self.log.push(ev);
    }

    pub fn is_running(&self) -> bool {
        !*self.done.borrow()
    }

    pub fn result(&self) -> Option<Value> {
        self.st().result.clone()
    }

    /// The call's public description.
    pub fn info(&self) -> Value {
        let st = self.st();
        json!({
            "callId": self.id,
            "session": self.session,
            "sandbox": self.sandbox,
            "state": if st.result.is_some() { "exited" } else { "running" },
            "lifetime": self.lifetime,
            "createdMs": self.created_ms,
            "pid": st.pid,
            "labels": self.labels,
            "stdoutBytes": st.windows[0].total,
            "stderrBytes": st.windows[1].total,
            "lastSeq": self.log.after(u64::MAX).last_seq,
            "result": st.result,
        })
    }

    /// Kill the call's whole tree (idempotent). Returns at once; the call's task reports the end.
    pub fn kill(self: &Arc<Self>, app: &Arc<App>) {
        let (canceller, target, agent_id, abort, lifetime) = {
            let mut st = self.st();
            if st.result.is_some() {
                return;
            }
            st.killed = true;
            (
                st.canceller.take(),
                st.target.clone(),
                st.agent_call_id.clone(),
                st.abort.clone(),
                self.lifetime,
            )
        };
        if lifetime == LifetimeBody::Detached
            && let (Some(t), Some(id)) = (target, agent_id)
        {
            // The agent kills it; our attach then reports the end.
            let pool = app.sup.agent_pool().clone();
            tokio::spawn(async move {
                let _ = pool.with_client(&t, move |c| c.kill(&id)).await;
            });
            return;
        }
        if let Some(c) = canceller {
            // A `connection` call: the agent kills the tree when its connection ends.
            c.cancel();
        } else if let Some(a) = abort {
            a.abort();
        }
    }

    /// Send a signal to the call (its whole tree with `tree`).
    pub async fn signal(&self, app: &App, signal: i32, tree: bool) -> Result<(), ApiError> {
        let (target, id) = {
            let st = self.st();
            (st.target.clone(), st.agent_call_id.clone())
        };
        let (Some(t), Some(id)) = (target, id) else {
            return Err(ApiError::conflict(
                "this call cannot take signals (it has not started, or it does not run in an agent)",
            ));
        };
        app.sup
            .agent_pool()
            .with_client(&t, move |c| c.signal(&id, signal, tree))
            .await
            .map_err(|e| match e {
                crate::exec::agent::AgentCallError::Refused(r) => ApiError::from_class(&r),
                other => ApiError::internal(other.to_string()),
            })
    }

    /// Write to the call's stdin (`eof`: close it after).
    pub async fn write_stdin(&self, data: &[u8], eof: bool) -> Result<(), ApiError> {
        let pipe = self.st().stdin.clone();
        let Some(pipe) = pipe else {
            return Err(ApiError::conflict(
                "this call's stdin is not open (start it with \"stdin\": \"stream\"; detached calls take stdin at start only)",
            ));
        };
        let mut off = 0;
        while off < data.len() {
            pipe.writable()
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            match pipe.try_write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(ApiError::conflict(format!(
                        "the call's stdin is closed: {e}"
                    )));
                }
            }
        }
        if eof {
            self.st().stdin = None;
        }
        Ok(())
    }

    /// Output bytes of one stream from `offset` (clamped to what is still kept).
    pub fn output(&self, stderr: bool, offset: u64, max: usize) -> (u64, Vec<u8>, u64) {
        let st = self.st();
        let w = &st.windows[stderr as usize];
        let start = offset.max(w.start());
        let skip = (start - w.start()) as usize;
        let bytes: Vec<u8> = w.bytes.iter().skip(skip).take(max).copied().collect();
        (start, bytes, w.total)
    }

    /// The captured head and tail of both streams (taken once, at the end), and whether the
    /// call was killed on request.
    fn take_capture(&self) -> (HeadTail, HeadTail, bool) {
        let mut st = self.st();
        (
            st.out.take().unwrap_or_else(|| HeadTail::new(0)),
            st.err.take().unwrap_or_else(|| HeadTail::new(0)),
            st.killed,
        )
    }

    /// Wait until the call ended, at most `d`.
    pub async fn wait(&self, d: Duration) -> bool {
        let mut rx = self.done.subscribe();
        let _ = tokio::time::timeout(d, rx.wait_for(|v| *v)).await;
        !self.is_running()
    }

    /// The attach token of a `start` call (shown once, in the 201).
    pub fn st_attach_token(&self) -> Option<String> {
        self.st().attach_token.clone()
    }

    /// Take the one-time attach token (it is valid once).
    pub fn take_attach_token(&self, token: &str) -> bool {
        let mut st = self.st();
        if st.attach_token.as_deref() == Some(token) && !token.is_empty() {
            st.attach_token = None;
            return true;
        }
        false
    }

    fn finish(&self, result: Value, exit_event: Value) {
        {
            let mut st = self.st();
            st.result = Some(result);
            st.finished = Some(Instant::now());
            st.stdin = None;
            st.canceller = None;
            st.out = None;
            st.err = None;
        }
        self.log.close_with(exit_event);
        self.done.send_replace(true);
    }
}

/// Every call the service knows, and the caps on running ones.
pub struct Registry {
    calls: Mutex<HashMap<String, Arc<Call>>>,
    global: Arc<Semaphore>,
    per_sandbox: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_per_sandbox: usize,
    retention: Duration,
}

impl Registry {
    pub fn new(max_calls: usize, max_per_sandbox: usize, retention: Duration) -> Self {
        Registry {
            calls: Default::default(),
            global: Arc::new(Semaphore::new(max_calls)),
            per_sandbox: Default::default(),
            max_per_sandbox,
            retention,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Call>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Call>> {
        self.prune();
        self.map().get(id).cloned()
    }

    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }

    pub fn all(&self) -> Vec<Arc<Call>> {
        self.prune();
        let mut v: Vec<_> = self.map().values().cloned().collect();
        v.sort_by_key(|c| (c.created_ms, c.id.clone()));
        v
    }

    /// Finished calls past the retention period are forgotten, and the oldest finished ones
    /// beyond [`MAX_FINISHED_CALLS`] or [`MAX_FINISHED_BYTES`] (memory stays flat however many
    /// calls a gateway makes).
    fn prune(&self) {
        let keep = self.retention;
        let mut map = self.map();
        map.retain(|_, c| c.st().finished.is_none_or(|t| t.elapsed() < keep));
        let mut finished: Vec<(Instant, String, usize)> = map
            .values()
            .filter_map(|c| {
                let st = c.st();
                let size = st.windows[0].bytes.len()
                    + st.windows[1].bytes.len()
                    + st.result.as_ref().map_or(0, |r| {
                        r["stdout"].as_str().map_or(0, str::len)
                            + r["stderr"].as_str().map_or(0, str::len)
                    })
                    + c.log.bytes();
                st.finished.map(|t| (t, c.id.clone(), size))
            })
            .collect();
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut total = 0usize;
        for (i, (_, id, size)) in finished.into_iter().enumerate() {
            total = total.saturating_add(size);
            if i >= MAX_FINISHED_CALLS || total > MAX_FINISHED_BYTES {
                map.remove(&id);
            }
        }
    }

    /// A slot for one more running call in `sandbox`, or `429`.
    pub fn admit(&self, sandbox: &str) -> Result<[OwnedSemaphorePermit; 2], ApiError> {
        let g = self.global.clone().try_acquire_owned().map_err(|_| {
            ApiError::too_many(
                "the service runs its maximum number of calls (serve.maxCalls)",
                1,
            )
        })?;
        let sem = self
            .per_sandbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sandbox.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_sandbox)))
            .clone();
        let s = sem.try_acquire_owned().map_err(|_| {
            ApiError::too_many(
                format!("{sandbox} runs its maximum number of calls (serve.maxCallsPerSandbox)"),
                1,
            )
        })?;
        Ok([g, s])
    }

    fn insert(&self, call: Arc<Call>) {
        self.prune();
        self.map().insert(call.id.clone(), call);
    }

    /// Every call still running (for shutdown).
    pub fn running(&self) -> Vec<Arc<Call>> {
        self.map()
            .values()
            .filter(|c| c.is_running())
            .cloned()
            .collect()
    }
}

fn new_call(
    id: String,
    body: &CallBody,
    sandbox: String,
    lifetime: LifetimeBody,
    max_output: usize,
) -> Arc<Call> {
    let (tx, _) = tokio::sync::watch::channel(false);
    Arc::new(Call {
        id,
        session: body.session.clone(),
        sandbox,
        lifetime,
        created_ms: now_ms(),
        labels: body.labels.clone(),
        // Everything the agent sends (head and tail, each ≤ max_output, encoded) fits: a slow
        // stream reader loses nothing, and memory stays bounded per call.
        log: EventLog::new(LOG_CAP_BYTES.max(max_output.saturating_mul(8) + (64 << 10))),
        st: Mutex::new(State {
            out: Some(HeadTail::new(max_output)),
            err: Some(HeadTail::new(max_output)),
            ..Default::default()
        }),
        done: tx,
    })
}

/// The end reason's API spelling.
fn reason_str(r: EndReason) -> &'static str {
    match r {
        EndReason::Exited => "exited",
        EndReason::Signaled => "signaled",
        EndReason::Timeout => "timeout",
        EndReason::Killed => "killed",
        EndReason::Oom => "oom",
        EndReason::StartFailed => "start_failed",
        EndReason::Lost => "lost",
    }
}

/// The wait-mode result: `exec --json`'s shape plus `callId` and `endReason`.
fn result_json(id: &str, o: &ExecOutcome, reason: &str) -> Value {
    let mut v = crate::cli::calls_json(o);
    if let Value::Object(m) = &mut v {
        m.insert("callId".into(), Value::from(id));
        m.insert("endReason".into(), Value::from(reason));
    }
    v
}

fn exit_event(o: &ExecOutcome, reason: &str) -> Value {
    json!({
        "type": "exit",
        "exitCode": o.exit_code,
        "signal": o.signal,
        "endReason": reason,
        "durationMs": o.duration_ms,
        "stdoutBytes": o.stdout_bytes,
        "stderrBytes": o.stderr_bytes,
        "stdoutTruncated": o.stdout_truncated,
        "stderrTruncated": o.stderr_truncated,
        "timedOut": o.timed_out,
        "via": o.via,
    })
}

/// How long past a call's deadline and grace the service waits for its agent's answer.
const BACKSTOP_SLACK: Duration = Duration::from_secs(5);

/// Start a call: admitted, prepared (plan, validation, ensure), then run by a task. Returns
/// the call once it is registered and running.
pub async fn start(app: &Arc<App>, body: CallBody) -> Result<Arc<Call>, ApiError> {
    let command = match (&body.command, &body.argv) {
        (Some(c), None) => c.clone(),
        (None, Some(a)) => crate::exec::argv::command_from_words(a),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"command\" (a shell string) or \"argv\"",
            ));
        }
    };
    let lifetime = body.lifetime.unwrap_or_default();
    let (stdin_data, stdin_stream) = match &body.stdin {
        None => (None, false),
        Some(StdinBody::Keyword(k)) if k == "closed" => (None, false),
        Some(StdinBody::Keyword(k)) if k == "stream" => (None, true),
        Some(StdinBody::Keyword(k)) => {
            return Err(ApiError::bad_request(format!(
                "stdin {k:?}: use \"closed\", \"stream\", {{\"text\": …}} or {{\"b64\": …}}"
            )));
        }
        Some(StdinBody::Data(StdinData {
            text: Some(t),
            b64: None,
        })) => (Some(t.clone().into_bytes()), false),
        Some(StdinBody::Data(StdinData {
            text: None,
            b64: Some(b),
        })) => (
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| ApiError::bad_request(format!("stdin.b64: {e}")))?,
            ),
            false,
        ),
        Some(StdinBody::Data(_)) => {
            return Err(ApiError::bad_request(
                "stdin: give exactly one of text or b64",
            ));
        }
    };
    if stdin_stream && lifetime == LifetimeBody::Detached {
        return Err(ApiError::bad_request(
            "a detached call takes stdin at start only (\"closed\", text or b64)",
        ));
    }
    let req = ExecRequest {
        session: Some(body.session.key.clone()),
        agent: body.session.agent_id.clone(),
        command: command.clone(),
        workdir: body.cwd.clone(),
        env: body.env.clone(),
        stdin: stdin_data,
        timeout: body.timeout_ms.map(Duration::from_millis),
        ..Default::default()
    };
    // The sandbox the call counts against.
    let (eff, plan) = app.sup.plan(req.session.as_deref(), req.agent.as_deref())?;
    let sandbox = if plan.sandboxed {
        plan.container.name.clone()
    } else {
        format!("host:{}", plan.session.key)
    };
    let permits = app.admit(&sandbox)?;
    let agent_lifetime = match lifetime {
        LifetimeBody::Connection => Lifetime::Connection,
        LifetimeBody::Detached => Lifetime::Detached,
    };
    let prepared = app
        .sup
        .prepare_call_planned(&eff, plan, &req, body.argv.clone(), agent_lifetime)
        .await?;
    if stdin_stream && matches!(prepared, Prepared::Other) {
        return Err(ApiError::from_class(&crate::validate::Refusal {
            code: crate::validate::RefusalCode::Unsupported,
            value: "stdin".into(),
            message:
                "streamed stdin needs the sandbox's agent (direct sessions take stdin at start)"
                    .into(),
            fix: "send stdin as text or b64 with the call".into(),
        }));
    }
    let id = crate::exec::new_call_id();
    let mut max_output = eff.calls.max_output_bytes.value.0 as usize;
    if let Some(m) = body.max_output_bytes {
        max_output = max_output.min(m as usize);
    }
    let call = new_call(id, &body, sandbox, lifetime, max_output);
    // The call's own task writes its audit line: with the peer of this request.
    let caller = crate::audit::CALLER.try_with(|c| *c).ok();
    if matches!(body.mode, Some(Mode::Start)) {
        call.st().attach_token = Some(uuid::Uuid::new_v4().simple().to_string());
    }
    app.calls.insert(call.clone());
    app.events
        .push(json!({"type": "call.started", "callId": call.id, "sandbox": call.sandbox}));
    match prepared {
        Prepared::Agent(ac) => {
            let stdin_fd = if stdin_stream {
                let (tx, rx) = tokio::net::unix::pipe::pipe()
                    .map_err(|e| ApiError::internal(format!("cannot make a stdin pipe: {e}")))?;
                let fd = rx
                    .into_blocking_fd()
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                call.st().stdin = Some(Arc::new(tx));
                Some(fd)
            } else {
                None
            };
            call.st().target = Some(ac.target.clone());
            let task = tokio::spawn(in_caller_scope(
                caller,
                run_agent(app.clone(), call.clone(), *ac, stdin_fd, command, permits),
            ));
            call.st().abort = Some(task.abort_handle());
        }
        Prepared::Other => {
            let app2 = app.clone();
            let call2 = call.clone();
            let task = tokio::spawn(in_caller_scope(caller, async move {
                let _permits = permits;
                run_other(app2, call2, req).await;
            }));
            call.st().abort = Some(task.abort_handle());
        }
    }
    Ok(call)
}

/// Run `f` with the request's caller as the audit scope (spawned tasks do not inherit it).
async fn in_caller_scope<F: std::future::Future<Output = ()>>(
    caller: Option<crate::audit::Caller>,
    f: F,
) {
    match caller {
        Some(c) => crate::audit::CALLER.scope(c, f).await,
        None => f.await,
    }
}

/// Run a call in its agent; the task ends when the call did.
async fn run_agent(
    app: Arc<App>,
    call: Arc<Call>,
    ac: AgentCall,
    stdin: Option<std::os::fd::OwnedFd>,
    command: String,
    _permits: [OwnedSemaphorePermit; 2],
) {
    let started = Instant::now();
    let pool = app.sup.agent_pool().clone();
    let c2 = call.clone();
    let areq = ac.request.clone();
    let run = pool.with_client(&ac.target, move |c| {
        if let Ok(k) = c.canceller() {
            c2.st().canceller = Some(k);
        }
        if c2.st().killed {
            return Err(clawden_agent::client::ClientError::Io(
                std::io::Error::other("killed before it started"),
            ));
        }
        match areq.lifetime {
            Lifetime::Connection => c.exec_interactive(
                &areq,
                stdin,
                &mut |id, pid| c2.on_started(id, pid),
                &mut |s, b| c2.on_output(s, b),
            ),
            Lifetime::Detached => {
                let s = c.start_detached(&areq)?;
                c2.on_started(&s.call_id, s.pid);
                c.attach(&s.call_id, &mut |s, b| c2.on_output(s, b))
            }
        }
    });
    let backstop = ac.limits.timeout + crate::exec::reaper::GRACE + BACKSTOP_SLACK;
    let r = tokio::time::timeout(backstop, run).await;
    let (out, err, killed) = call.take_capture();
    let container = ac.ensured.container_name.as_str();
    // Without an agent report: what the host captured, and how the call was lost.
    let unreported = |out, err, timed_out: bool, died: bool| {
        ExecOutcome::from_capture(
            out,
            err,
            if timed_out {
                (None, Some(9))
            } else {
                (None, None)
            },
            started,
            crate::exec::CallEnd {
                timed_out,
                container_died: died,
                container_name: Some(container.to_string()),
                via: Via::Agent,
                ..Default::default()
            },
        )
    };
    let (outcome, reason) = match r {
        Ok(Ok(x)) => (
            crate::exec::agent::outcome_of(out, err, &x, started, container),
            reason_str(x.exit.reason).to_string(),
        ),
        Ok(Err(crate::exec::agent::AgentCallError::Refused(r))) => {
            let err = ApiError::from_class(&r);
            call.finish(
                json!({"callId": call.id, "endReason": "start_failed", "error": err}),
                json!({"type": "error", "error": err}),
            );
            app.events
                .push(json!({"type": "call.exited", "callId": call.id}));
            return;
        }
        Ok(Err(_)) if killed => (unreported(out, err, false, false), "killed".to_string()),
        Ok(Err(_)) => {
            // The connection broke: the agent (the container's main process) is gone.
            app.sup.sandbox_lost(&ac.ensured).await;
            (
                unreported(out, err, false, true),
                "container_died".to_string(),
            )
        }
        Err(_) => {
            tracing::warn!(
                "sandbox {container}: its agent did not end call {} in time; the sandbox is removed",
                call.id
            );
            let _ = app
                .sup
                .remove_sandbox(&ac.ensured.container_id, &ac.ensured.container_name)
                .await;
            (unreported(out, err, true, false), "timeout".to_string())
        }
    };
    app.sup.audit_finished(
        &ac.plan,
        &command,
        outcome.exit_code,
        outcome.stdout_bytes + outcome.stderr_bytes,
        started,
    );
    call.finish(
        result_json(&call.id, &outcome, &reason),
        exit_event(&outcome, &reason),
    );
    app.events
        .push(json!({"type": "call.exited", "callId": call.id, "endReason": reason}));
}

/// Run a call that has no agent (direct sessions, sandboxes on the Engine API path).
async fn run_other(app: Arc<App>, call: Arc<Call>, req: ExecRequest) {
    call.log.push(json!({"type": "started", "callId": call.id}));
    let c2 = call.clone();
    let sink = move |is_err: bool, b: &[u8]| {
        let s = if is_err {
            OutStream::Stderr
        } else {
            OutStream::Stdout
        };
        c2.on_output(s, b);
    };
    match app.sup.exec_streaming(req, Some(&sink)).await {
        Ok(o) => {
            let reason = if o.timed_out {
                "timeout"
            } else if o.oom_killed {
                "oom"
            } else if o.container_died {
                "container_died"
            } else if o.signal.is_some() {
                "signaled"
            } else {
                "exited"
            };
            call.finish(result_json(&call.id, &o, reason), exit_event(&o, reason));
        }
        Err(e) => {
            let err = ApiError::from_class(&e);
            call.finish(
                json!({"callId": call.id, "endReason": "start_failed", "error": err}),
                json!({"type": "error", "error": err}),
            );
        }
    }
    app.events
        .push(json!({"type": "call.exited", "callId": call.id}));
}

/// Kills a `connection` call when the request that owns it goes away before it ended.
pub struct KillOnDrop {
    pub call: Option<Arc<Call>>,
    pub app: Arc<App>,
}

impl KillOnDrop {
    pub fn disarm(&mut self) {
        self.call = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.call.take()
            && c.lifetime == LifetimeBody::Connection
            && c.is_running()
        {
            c.kill(&self.app);
        }
    }
}

/// After a restart: every detached call the agents of this configuration's sandboxes still
/// keep, registered again (output from now on; the agent re-streams what it kept).
pub async fn rediscover(app: &Arc<App>) -> usize {
    let mut found = 0;
    for (name, target) in app.sup.agent_targets().await {
        let pool = app.sup.agent_pool().clone();
        let Ok(list) = pool.with_client(&target, |c| c.list_calls()).await else {
            continue;
        };
        for info in list {
            let id = format!("{name}.{}", info.call_id);
            if app.calls.get(&id).is_some() {
                continue;
            }
            let body = CallBody {
                session: SessionBody {
                    key: String::new(),
                    agent_id: None,
                },
                command: None,
                argv: Some(info.argv.clone()),
                cwd: None,
                env: Default::default(),
                stdin: None,
                timeout_ms: None,
                wait_ms: None,
                lifetime: Some(LifetimeBody::Detached),
                mode: Some(Mode::Start),
                max_output_bytes: None,
                labels: Default::default(),
            };
            let call = new_call(id, &body, name.clone(), LifetimeBody::Detached, 1 << 20);
            {
                let mut st = call.st();
                st.agent_call_id = Some(info.call_id.clone());
                st.pid = Some(info.pid);
                st.target = Some(target.clone());
            }
            app.calls.insert(call.clone());
            found += 1;
            let app2 = app.clone();
            let t2 = target.clone();
            let agent_id = info.call_id.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let c2 = call.clone();
                let r = app2
                    .sup
                    .agent_pool()
                    .with_client(&t2, move |c| {
                        if let Ok(k) = c.canceller() {
                            c2.st().canceller = Some(k);
                        }
                        c.attach(&agent_id, &mut |s, b| c2.on_output(s, b))
                    })
                    .await;
                let (out, err, _) = call.take_capture();
                let (o, reason) = match &r {
                    Ok(x) => (
                        crate::exec::agent::outcome_of(out, err, x, started, &call.sandbox),
                        reason_str(x.exit.reason).to_string(),
                    ),
                    Err(_) => (
                        ExecOutcome::from_capture(
                            out,
                            err,
                            (None, None),
                            started,
                            crate::exec::CallEnd {
                                container_name: Some(call.sandbox.clone()),
                                via: Via::Agent,
                                ..Default::default()
                            },
                        ),
                        "lost".to_string(),
                    ),
                };
                call.finish(result_json(&call.id, &o, &reason), exit_event(&o, &reason));
            });
        }
    }
    found
}

/// Parse a signal name or number (`TERM`, `SIGTERM`, `15`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    let sig: nix::sys::signal::Signal = format!("SIG{name}").parse().ok()?;
    Some(sig as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("SIGKILL"), Some(9));
        assert_eq!(parse_signal("2"), Some(2));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("NOPE"), None);
    }

    #[test]
    fn finished_calls_are_kept_within_a_count_and_a_byte_budget() {
        let body: CallBody =
            serde_json::from_value(json!({"session": {"key": "s"}, "command": "true"})).unwrap();
        let reg = Registry::new(64, 8, Duration::from_secs(600));
        let running = new_call(
            "running".into(),
            &body,
            "sbx".into(),
            LifetimeBody::Connection,
            1024,
        );
        reg.insert(running.clone());
        for i in 0..MAX_FINISHED_CALLS + 100 {
            let c = new_call(
                format!("c{i}"),
                &body,
                "sbx".into(),
                LifetimeBody::Connection,
                1024,
            );
            c.finish(json!({"exitCode": 0}), json!({"type": "exit"}));
            reg.insert(c);
        }
        let all = reg.all();
        assert_eq!(
            all.len(),
            MAX_FINISHED_CALLS + 1,
            "the running one is never dropped"
        );
        assert!(reg.get("running").is_some());
        assert!(reg.get("c0").is_none(), "the oldest finished ones go first");
        assert!(reg.get(&format!("c{}", MAX_FINISHED_CALLS + 99)).is_some());
        // Big outputs: the byte budget holds long before the count does.
        let big = "x".repeat(16 << 20);
        for i in 0..20 {
            let c = new_call(
                format!("b{i}"),
                &body,
                "sbx".into(),
                LifetimeBody::Connection,
                1024,
            );
            c.finish(json!({"stdout": big}), json!({"type": "exit"}));
            reg.insert(c);
        }
        reg.prune();
        let kept = reg.all().iter().filter(|c| c.id.starts_with('b')).count();
        assert!(
            kept <= MAX_FINISHED_BYTES / (16 << 20),
            "{kept} big calls kept"
        );
        assert!(kept >= 1);
    }

    #[test]
    fn output_window_keeps_the_last_bytes_and_their_offset() {
        let mut w = Window::default();
        w.push(&vec![b'a'; OUTPUT_WINDOW_BYTES]);
        w.push(b"xyz");
        assert_eq!(w.total, OUTPUT_WINDOW_BYTES as u64 + 3);
        assert_eq!(w.start(), 3);
        assert_eq!(w.bytes.len(), OUTPUT_WINDOW_BYTES);
        assert_eq!(w.bytes.back(), Some(&b'z'));
    }
}
