//! Real responses of a running `clawden serve` (the real binary on a real socket, the real
//! engine) validated against `api/openapi.yaml`: every route of the spec is exercised at least
//! once with a success and, where cheap, with errors; each JSON body is checked against the
//! schema the spec gives for its path, method, status and media type (`default` → the `Error`
//! schema), each NDJSON line against the stream's event schema. A status or media type the spec
//! does not declare fails the test, and so does a route of the spec no request reached.

mod common;

use common::serve::Server;
use common::{World, sweep};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

// ---- the spec ---------------------------------------------------------------------------------

struct Spec {
    doc: Value,
}

impl Spec {
    fn load() -> Spec {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/api/openapi.yaml"))
                .unwrap();
        Spec {
            doc: serde_norway::from_str(&text).expect("api/openapi.yaml parses"),
        }
    }

    /// Follow a local `$ref` (`#/components/...`).
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let ptr = r.strip_prefix('#').expect("a local $ref");
                self.deref(
                    self.doc
                        .pointer(ptr)
                        .unwrap_or_else(|| panic!("dangling $ref {r}")),
                )
            }
            None => v,
        }
    }

    /// Every (method, path) of the spec.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, ops) in self.doc["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                if m != "parameters" {
                    out.insert((m.clone(), path.clone()));
                }
            }
        }
        out
    }

    /// The response object for (path, method, status): the status's own, else `default`.
    fn response(&self, path: &str, method: &str, status: u16) -> &Value {
        let op = self
            .doc
            .pointer(&format!("/paths/{}/{method}", path.replace('/', "~1")))
            .unwrap_or_else(|| panic!("the spec has no {method} {path}"));
        let rs = &op["responses"];
        let r = rs
            .get(status.to_string())
            .or_else(|| rs.get("default"))
            .unwrap_or_else(|| {
                panic!("{method} {path}: the spec declares no {status} nor default")
            });
        self.deref(r)
    }

    /// A validator for `schema`, its `$ref`s resolved in the spec's components.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = schema.clone();
        root.as_object_mut()
            .expect("a schema object")
            .insert("components".into(), self.doc["components"].clone());
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("bad schema {schema}: {e}"))
    }

    /// Why `instance` does not match `schema` (empty: it matches).
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        self.validator(schema)
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    fn schema(&self, name: &str) -> Value {
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}

// ---- the client -------------------------------------------------------------------------------

struct Reply {
    status: u16,
    media: String,
    headers: Value,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The complete NDJSON lines (a stream cut by a client timeout may end mid-line).
    fn lines(&self) -> Vec<Value> {
        let complete = match self.body.rfind('\n') {
            Some(i) => &self.body[..i],
            None => "",
        };
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers[name].get(0).and_then(Value::as_str)
    }
}

const MARK: &str = "\n--clawden-write-out--\n";

struct Client<'a> {
    server: &'a Server,
    spec: &'a Spec,
    /// (method, path, status) of every checked response.
    seen: RefCell<BTreeSet<(String, String, u16)>>,
}

impl Client<'_> {
    /// `curl` over the socket: `METHOD http://x{url} ARGS…`.
    fn raw(&self, method: &str, url: &str, args: &[&str]) -> Reply {
        let mut c = Command::new("curl");
        c.args(["-s", "-m", "60", "--unix-socket"])
            .arg(&self.server.sock)
            .args([
                "-w",
                &format!("{MARK}%{{http_code}}\n%{{content_type}}\n%{{header_json}}"),
            ]);
        if method == "HEAD" {
            c.arg("-I");
        } else {
            c.args(["-X", method]);
        }
        let o = c.arg(format!("http://x{url}")).args(args).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, w) = out
            .rsplit_once(MARK)
            .unwrap_or_else(|| panic!("{method} {url}: no answer ({out})"));
        let mut w = w.splitn(3, '\n');
        let status = w.next().unwrap().trim().parse().unwrap();
        let media = w
            .next()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string();
        let headers = serde_json::from_str(w.next().unwrap()).unwrap_or(Value::Null);
        // `curl -I` prints the head as its body.
        let body = if method == "HEAD" { "" } else { body };
        Reply {
            status,
            media,
            headers,
            body: body.to_string(),
        }
    }

    /// A request whose answer must have status `want` and match the spec for (`path`, method).
    fn check(&self, method: &str, path: &str, url: &str, args: &[&str], want: u16) -> Reply {
        let r = self.raw(method, url, args);
        assert_eq!(r.status, want, "{method} {url}: {}", r.body);
        self.validate(method, path, &r);
        r
    }

    fn json(&self, method: &str, path: &str, url: &str, body: &Value, want: u16) -> Value {
        self.check(method, path, url, &["-d", &body.to_string()], want)
            .json()
    }

    /// Validate `r` against the spec's response for (`path`, `method`, status).
    fn validate(&self, method: &str, path: &str, r: &Reply) {
        let m = method.to_lowercase();
        assert!(
            r.header("clawden-request-id").is_some(),
            "{method} {path}: no Clawden-Request-Id"
        );
        let resp = self.spec.response(path, &m, r.status);
        self.validate_content(&format!("{method} {path} {}", r.status), resp, r, method);
        self.seen
            .borrow_mut()
            .insert((m, path.to_string(), r.status));
    }

    fn validate_content(&self, what: &str, resp: &Value, r: &Reply, method: &str) {
        let Some(content) = resp.get("content") else {
            assert!(
                r.body.is_empty(),
                "{what}: the spec gives no body: {}",
                r.body
            );
            return;
        };
        if method == "HEAD" {
            return;
        }
        let Some(media) = content.get(&r.media) else {
            panic!(
                "{what}: the server sent {:?}; the spec declares {:?}",
                r.media,
                content.as_object().unwrap().keys().collect::<Vec<_>>()
            );
        };
        let schema = &media["schema"];
        match r.media.as_str() {
            "application/json" => self.assert_valid(what, schema, &r.json()),
            "application/x-ndjson" => {
                let lines = r.lines();
                assert!(!lines.is_empty(), "{what}: an empty stream");
                for l in &lines {
                    self.assert_valid(what, schema, l);
                }
            }
            _ => assert_eq!(schema["type"], "string", "{what}: a raw body is a string"),
        }
    }

    fn assert_valid(&self, what: &str, schema: &Value, v: &Value) {
        let errors = self.spec.errors(schema, v);
        assert!(
            errors.is_empty(),
            "{what}: the body does not match the spec's {schema}:\n  {}\n{v:#}",
            errors.join("\n  ")
        );
    }
}

// ---- attach, spoken by hand -------------------------------------------------------------------

/// `POST /v1/calls/{id}/attach` on a raw connection: the status, the head, the frames
/// (type, payload) until `exit` or `error`, after writing `stdin` and its EOF.
fn attach(
    sock: &PathBuf,
    id: &str,
    token: &str,
    stdin: &[u8],
) -> (u16, String, Vec<(u8, Vec<u8>)>) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /v1/calls/{id}/attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: clawden-attach/1\r\nClawden-Attach-Token: {token}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut frames = Vec::new();
    if status != 101 {
        return (status, head, frames);
    }
    let frame = |kind: u8, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.push(kind);
        f.extend_from_slice(payload);
        f
    };
    s.write_all(&frame(1, stdin)).unwrap();
    s.write_all(&frame(2, b"")).unwrap();
    loop {
        let mut h = [0u8; 5];
        s.read_exact(&mut h).unwrap();
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).unwrap();
        let end = h[4] == 19 || h[4] == 20;
        frames.push((h[4], p));
        if end {
            return (status, head, frames);
        }
    }
}

fn wait_until(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < d {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

// ---- the tests --------------------------------------------------------------------------------

/// The validator rejects documents that break the spec, so the real test cannot pass vacuously.
#[test]
fn the_validator_rejects_documents_that_break_the_spec() {
    let spec = Spec::load();
    let error = spec.deref(&spec.doc["components"]["responses"]["Error"])["content"]
        ["application/json"]["schema"]
        .clone();
    let good =
        json!({"error": {"code": "not_found", "message": "m", "fix": "", "retryable": false}});
    assert!(spec.errors(&error, &good).is_empty());
    for bad in [
        json!({"error": {"code": "no_such_code", "message": "m", "fix": "", "retryable": false}}),
        json!({"error": {"code": "not_found", "message": "m"}}),
        json!({"message": "m"}),
    ] {
        assert!(!spec.errors(&error, &bad).is_empty(), "accepted {bad}");
    }
    // A response the spec does not declare falls back to `default`, the Error schema.
    let r = spec.response("/v1/calls", "post", 418);
    assert_eq!(r["content"]["application/json"]["schema"], error);
    // The nested $refs resolve: a result without its exit code, a stdout event without its seq,
    // an exit event without its end reason.
    let result = spec.schema("CallResult");
    assert!(!spec.errors(&result, &json!({"callId": "c"})).is_empty());
    let ev = spec.schema("CallEvent");
    assert!(spec.errors(&ev, &json!({"type": "heartbeat"})).is_empty());
    assert!(
        spec.errors(&ev, &json!({"type": "stdout", "seq": 2, "text": "a"}))
            .is_empty()
    );
    assert!(
        !spec
            .errors(&ev, &json!({"type": "stdout", "text": "a"}))
            .is_empty()
    );
    assert!(
        !spec
            .errors(&ev, &json!({"type": "exit", "seq": 3, "exitCode": 0}))
            .is_empty()
    );
    assert!(
        !spec
            .errors(&ev, &json!({"type": "bogus", "seq": 3}))
            .is_empty()
    );
}

#[test]
fn every_route_answers_as_the_spec_says() {
    let sw = sweep("svsch");
    let world = World::new();
    let server = Server::start(&world, &sw.prefix);
    let spec = Spec::load();
    let c = Client {
        server: &server,
        spec: &spec,
        seen: RefCell::new(BTreeSet::new()),
    };
    let s1 = json!({"key": "s1"});
    let unknown = |method: &str, path: &str, url: &str| {
        let e = c.json(method, path, url, &json!({"session": s1, "bogus": 1}), 400);
        assert_eq!(e["error"]["code"], "unknown_field", "{method} {url}: {e}");
    };

    // Service.
    let r = c.check("GET", "/_ping", "/_ping", &[], 200);
    assert_eq!(r.body, "OK");
    let v = c
        .check("GET", "/v1/version", "/v1/version", &[], 200)
        .json();
    assert_eq!(v["apiVersion"], "1");
    let served = c
        .check("GET", "/v1/openapi.json", "/v1/openapi.json", &[], 200)
        .json();
    assert_eq!(served, spec.doc, "GET /v1/openapi.json is api/openapi.yaml");
    let h = c.check("GET", "/v1/health", "/v1/health", &[], 200).json();
    assert_eq!(h["ok"], true);
    c.json("POST", "/v1/doctor", "/v1/doctor", &json!({}), 200);
    let e = c.json(
        "POST",
        "/v1/doctor",
        "/v1/doctor",
        &json!({"agnet": "x"}),
        400,
    );
    assert_eq!(e["error"]["details"]["field"], "agnet");

    // Sessions and sandboxes.
    let body = json!({ "session": s1 });
    c.json(
        "POST",
        "/v1/sessions/resolve",
        "/v1/sessions/resolve",
        &body,
        200,
    );
    unknown("POST", "/v1/sessions/resolve", "/v1/sessions/resolve");
    let sb = c.json(
        "POST",
        "/v1/sandboxes/ensure",
        "/v1/sandboxes/ensure",
        &body,
        200,
    );
    unknown("POST", "/v1/sandboxes/ensure", "/v1/sandboxes/ensure");
    let name = sb["name"].as_str().unwrap().to_string();
    assert!(name.starts_with(&sw.prefix), "{sb}");
    let l = c
        .check("GET", "/v1/sandboxes", "/v1/sandboxes", &[], 200)
        .json();
    assert!(
        l["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == name.as_str())
    );
    let one = format!("/v1/sandboxes/{name}");
    c.check("GET", "/v1/sandboxes/{name}", &one, &[], 200);
    let e = c
        .check(
            "GET",
            "/v1/sandboxes/{name}",
            "/v1/sandboxes/nope",
            &[],
            404,
        )
        .json();
    assert_eq!(e["error"]["code"], "not_found");

    // Calls: wait, its 202 when waitMs passes first, stream, start; strict bodies.
    let calls = "/v1/calls";
    let r = c.json(
        "POST",
        calls,
        calls,
        &json!({"session": s1, "command": "echo out; echo err >&2; exit 3"}),
        200,
    );
    assert_eq!(
        (r["exitCode"].clone(), r["stdout"].clone()),
        (json!(3), json!("out\n"))
    );
    let p = c.json(
        "POST",
        calls,
        calls,
        &json!({"session": s1, "command": "echo early; sleep 1", "waitMs": 300}),
        202,
    );
    assert!(p["callId"].is_string(), "{p}");
    let e = c.json(
        "POST",
        calls,
        calls,
        &json!({"session": s1, "command": "true", "timeoutMS": 5}),
        400,
    );
    assert_eq!(e["error"]["details"]["field"], "timeoutMS");
    let e = c.json(
        "POST",
        calls,
        calls,
        &json!({"session": s1, "command": "true", "argv": ["true"]}),
        400,
    );
    assert_eq!(e["error"]["code"], "invalid_request", "{e}");
    let stream = c.check(
        "POST",
        calls,
        calls,
        &[
            "-d",
            &json!({"session": s1, "command": "echo a; sleep 1.5; printf '\\377' >&2; echo b", "mode": "stream"})
                .to_string(),
        ],
        200,
    );
    let events = stream.lines();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"started"), "{types:?}");
    assert_eq!(types.last(), Some(&"exit"), "{types:?}");
    assert!(types.contains(&"heartbeat"), "{types:?}");
    assert!(events.iter().any(|e| e["b64"] == "/w=="), "{events:?}");
    // Events number themselves; a heartbeat repeats the seq of the last event sent.
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] != "heartbeat")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let key = ["-H", "Idempotency-Key: schema-1"];
    let first = json!({"session": s1, "command": "echo once"}).to_string();
    c.check("POST", calls, calls, &[key[0], key[1], "-d", &first], 200);
    let e = c
        .check(
            "POST",
            calls,
            calls,
            &[
                key[0],
                key[1],
                "-d",
                &json!({"session": s1, "command": "true"}).to_string(),
            ],
            409,
        )
        .json();
    assert_eq!(e["error"]["code"], "idempotency_conflict");

    // Process management on started calls: list, get, events, output, stdin, signal, delete.
    let start = |command: &str| -> (String, String) {
        let v = c.json(
            "POST",
            calls,
            calls,
            &json!({"session": s1, "command": command, "mode": "start", "stdin": "stream"}),
            201,
        );
        (
            v["callId"].as_str().unwrap().to_string(),
            v["attachToken"].as_str().unwrap().to_string(),
        )
    };
    let state = |id: &str| {
        c.check(
            "GET",
            "/v1/calls/{id}",
            &format!("/v1/calls/{id}"),
            &[],
            200,
        )
        .json()["state"]
            .clone()
    };
    let (cat, _) = start("cat; echo done >&2");
    let stdin_url = format!("/v1/calls/{cat}/stdin");
    let w = c
        .check(
            "POST",
            "/v1/calls/{id}/stdin",
            &stdin_url,
            &["--data-binary", "piped"],
            200,
        )
        .json();
    assert_eq!(w["written"], 5);
    c.check(
        "POST",
        "/v1/calls/{id}/stdin",
        &format!("{stdin_url}?eof=true"),
        &[],
        200,
    );
    c.check(
        "POST",
        "/v1/calls/{id}/stdin",
        "/v1/calls/nope/stdin",
        &["--data-binary", "x"],
        404,
    );
    assert!(wait_until(Duration::from_secs(10), || state(&cat) == "exited"));
    let listed = c
        .check("GET", calls, "/v1/calls?session=s1", &[], 200)
        .json();
    assert!(
        listed["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["callId"] == cat.as_str())
    );
    c.check("GET", calls, "/v1/calls?state=running", &[], 200);
    c.check("GET", calls, "/v1/calls?state=bogus", &[], 400);
    c.check("GET", "/v1/calls/{id}", "/v1/calls/nope", &[], 404);
    let ev = c.check(
        "GET",
        "/v1/calls/{id}/events",
        &format!("/v1/calls/{cat}/events?after=0"),
        &[],
        200,
    );
    assert_eq!(ev.lines().last().unwrap()["type"], "exit", "{}", ev.body);
    c.check(
        "GET",
        "/v1/calls/{id}/events",
        &format!("/v1/calls/{cat}/events?aftr=1"),
        &[],
        400,
    );
    c.check(
        "GET",
        "/v1/calls/{id}/events",
        "/v1/calls/nope/events",
        &[],
        404,
    );
    let out = c.check(
        "GET",
        "/v1/calls/{id}/output",
        &format!("/v1/calls/{cat}/output?stream=stdout&offset=1"),
        &[],
        200,
    );
    assert_eq!(out.body, "iped");
    c.check(
        "GET",
        "/v1/calls/{id}/output",
        &format!("/v1/calls/{cat}/output?stream=both"),
        &[],
        400,
    );
    let (sleeper, _) = start("sleep 300");
    let sig = format!("/v1/calls/{sleeper}/signal");
    let e = c.json(
        "POST",
        "/v1/calls/{id}/signal",
        &sig,
        &json!({"signal": "NOPE"}),
        400,
    );
    assert_eq!(e["error"]["code"], "invalid_request", "{e}");
    c.json(
        "POST",
        "/v1/calls/{id}/signal",
        &sig,
        &json!({"signal": "TERM", "tre": true}),
        400,
    );
    let s = c.json(
        "POST",
        "/v1/calls/{id}/signal",
        &sig,
        &json!({"signal": "TERM"}),
        200,
    );
    assert_eq!(s["signal"], 15);
    c.json(
        "POST",
        "/v1/calls/{id}/signal",
        "/v1/calls/nope/signal",
        &json!({"signal": 15}),
        404,
    );
    assert!(wait_until(Duration::from_secs(10), || state(&sleeper) == "exited"));
    let info = c
        .check(
            "GET",
            "/v1/calls/{id}",
            &format!("/v1/calls/{sleeper}"),
            &[],
            200,
        )
        .json();
    assert_eq!(info["result"]["endReason"], "signaled", "{info}");
    let d = c
        .check(
            "DELETE",
            "/v1/calls/{id}",
            &format!("/v1/calls/{sleeper}"),
            &[],
            200,
        )
        .json();
    assert_eq!(d["callId"], sleeper.as_str());
    c.check(
        "DELETE",
        "/v1/calls/{id}",
        &format!("/v1/calls/{sleeper}"),
        &[],
        404,
    );

    // Attach: 101 and frames (the exit frame is the stream's exit event); a used or wrong token
    // is refused; an unknown call is 404; no Upgrade is 400.
    let (id, token) = start("read l; echo got:$l; exit 4");
    let (status, head, frames) = attach(&server.sock, &id, &token, b"hi\n");
    assert_eq!(status, 101, "{head}");
    let resp = spec.response("/v1/calls/{id}/attach", "post", 101);
    assert!(resp.get("content").is_none());
    assert!(
        head.to_lowercase().contains("upgrade: clawden-attach/1"),
        "{head}"
    );
    assert!(
        head.to_lowercase().contains("clawden-request-id:"),
        "{head}"
    );
    c.seen
        .borrow_mut()
        .insert(("post".into(), "/v1/calls/{id}/attach".into(), 101));
    let out: Vec<u8> = frames
        .iter()
        .filter(|f| f.0 == 16)
        .flat_map(|f| f.1.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&out), "got:hi\n");
    let (kind, payload) = frames.last().unwrap();
    assert_eq!(*kind, 19, "{frames:?}");
    let exit: Value = serde_json::from_slice(payload).unwrap();
    c.assert_valid("attach exit frame", &spec.schema("CallEvent"), &exit);
    assert_eq!(exit["exitCode"], 4);
    let att = format!("/v1/calls/{id}/attach");
    let upgrade = [
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: clawden-attach/1",
        "-H",
    ];
    let mut used = upgrade.to_vec();
    let tok = format!("Clawden-Attach-Token: {token}");
    used.push(&tok);
    let e = c
        .check("POST", "/v1/calls/{id}/attach", &att, &used, 403)
        .json();
    assert_eq!(e["error"]["code"], "forbidden");
    let mut nope = upgrade.to_vec();
    nope.push("Clawden-Attach-Token: x");
    c.check(
        "POST",
        "/v1/calls/{id}/attach",
        "/v1/calls/nope/attach",
        &nope,
        404,
    );
    c.check("POST", "/v1/calls/{id}/attach", &att, &[], 400);

    // Files: put (201 created, 200 replaced), exclusive create, compare-and-swap, get, head,
    // stat, list, mkdir, rename, remove.
    let f = "/v1/files?session=s1&path=d/a.txt";
    let w = c
        .check(
            "PUT",
            "/v1/files",
            &format!("{f}&mkdir=true"),
            &["--data-binary", "one"],
            201,
        )
        .json();
    let etag = w["etag"].as_str().unwrap().to_string();
    let w = c
        .check(
            "PUT",
            "/v1/files",
            f,
            &[
                "-H",
                &format!("If-Match: \"{etag}\""),
                "--data-binary",
                "two",
            ],
            200,
        )
        .json();
    assert_eq!(w["created"], false);
    let e = c
        .check(
            "PUT",
            "/v1/files",
            f,
            &["-H", "If-None-Match: *", "--data-binary", "x"],
            409,
        )
        .json();
    assert_eq!(e["error"]["code"], "already_exists");
    c.check(
        "PUT",
        "/v1/files",
        f,
        &["-H", "If-Match: \"nope\"", "--data-binary", "x"],
        412,
    );
    let g = c.check("GET", "/v1/files", f, &[], 200);
    assert_eq!(g.body, "two");
    assert!(g.header("etag").is_some());
    c.check(
        "GET",
        "/v1/files",
        "/v1/files?session=s1&path=d/none",
        &[],
        404,
    );
    c.check("GET", "/v1/files", &format!("{f}&bogus=1"), &[], 400);
    let hd = c.check("HEAD", "/v1/files", f, &[], 200);
    assert_eq!(hd.header("clawden-size"), Some("3"));
    c.check(
        "HEAD",
        "/v1/files",
        "/v1/files?session=s1&path=d/none",
        &[],
        404,
    );
    let st = c
        .check(
            "GET",
            "/v1/files/stat",
            "/v1/files/stat?session=s1&path=d/a.txt",
            &[],
            200,
        )
        .json();
    assert_eq!(st["kind"], "file");
    c.check(
        "GET",
        "/v1/files/stat",
        "/v1/files/stat?session=s1&path=d/none",
        &[],
        404,
    );
    let ls = c
        .check(
            "GET",
            "/v1/files/list",
            "/v1/files/list?session=s1&path=d",
            &[],
            200,
        )
        .json();
    assert_eq!(ls["entries"][0]["name"], "a.txt");
    c.check(
        "GET",
        "/v1/files/list",
        "/v1/files/list?session=s1",
        &[],
        400,
    );
    let op = |route: &str, b: Value, want: u16| c.json("POST", route, route, &b, want);
    op(
        "/v1/files/mkdir",
        json!({"session": s1, "path": "d/e/f", "parents": true}),
        200,
    );
    op(
        "/v1/files/mkdir",
        json!({"session": s1, "path": "x", "parent": true}),
        400,
    );
    op(
        "/v1/files/rename",
        json!({"session": s1, "path": "d/a.txt", "to": "d/b.txt"}),
        200,
    );
    op(
        "/v1/files/rename",
        json!({"session": s1, "path": "d/b.txt"}),
        400,
    );
    op(
        "/v1/files/remove",
        json!({"session": s1, "path": "d/b.txt"}),
        200,
    );
    op(
        "/v1/files/remove",
        json!({"session": s1, "path": "d/b.txt"}),
        404,
    );

    // Events (long-poll JSON and NDJSON with follow) and audit.
    let page = c
        .check("GET", "/v1/events", "/v1/events?after=0", &[], 200)
        .json();
    assert!(!page["events"].as_array().unwrap().is_empty(), "{page}");
    let follow = c.raw("GET", "/v1/events?after=0&follow=true", &["-m", "3"]);
    assert_eq!(follow.status, 200);
    c.validate("GET", "/v1/events", &follow);
    assert!(
        follow.lines().iter().any(|e| e["type"] == "call.exited"),
        "{}",
        follow.body
    );
    c.check("GET", "/v1/events", "/v1/events?folow=true", &[], 400);
    let a = c.check("GET", "/v1/audit", "/v1/audit", &[], 200).json();
    assert!(!a["entries"].as_array().unwrap().is_empty());
    c.check("GET", "/v1/audit", "/v1/audit?since=1", &[], 400);

    // Sandboxes again: prune (dry run), recreate, delete.
    let p = c.json(
        "POST",
        "/v1/sandboxes/prune",
        "/v1/sandboxes/prune",
        &json!({"dryRun": true}),
        200,
    );
    assert_eq!(p["dryRun"], true);
    c.json(
        "POST",
        "/v1/sandboxes/prune",
        "/v1/sandboxes/prune",
        &json!({"dry_run": true}),
        400,
    );
    // (`all`: this configuration's sandboxes only; `session` matches by scope key across every
    // configuration on the engine, so a test must not use it.)
    let r = c.json(
        "POST",
        "/v1/sandboxes/recreate",
        "/v1/sandboxes/recreate",
        &json!({"all": true}),
        200,
    );
    let removed: Vec<&str> = r["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(removed, [name.as_str()], "{r}");
    c.json(
        "POST",
        "/v1/sandboxes/recreate",
        "/v1/sandboxes/recreate",
        &json!({}),
        400,
    );
    let sb = c.json(
        "POST",
        "/v1/sandboxes/ensure",
        "/v1/sandboxes/ensure",
        &body,
        200,
    );
    let one = format!("/v1/sandboxes/{}", sb["name"].as_str().unwrap());
    c.check("DELETE", "/v1/sandboxes/{name}", &one, &[], 200);
    c.check("DELETE", "/v1/sandboxes/{name}", &one, &[], 404);

    // No route and no method: the Error schema too.
    let error = spec.deref(&spec.doc["components"]["responses"]["Error"]);
    for (m, url, want) in [("GET", "/v1/nope", 404), ("PATCH", "/v1/calls", 405)] {
        let r = c.raw(m, url, &[]);
        assert_eq!(r.status, want, "{m} {url}: {}", r.body);
        c.validate_content(&format!("{m} {url}"), error, &r, m);
    }

    // Every operation of the spec was reached, with a success.
    let seen = c.seen.borrow();
    let missing: Vec<_> = spec
        .operations()
        .into_iter()
        .filter(|(m, p)| {
            !seen
                .iter()
                .any(|(sm, sp, s)| sm == m && sp == p && ((200..300).contains(s) || *s == 101))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "operations never answered with a success: {missing:?}"
    );
}
