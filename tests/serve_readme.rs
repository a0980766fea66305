//! The README's `curl --unix-socket` examples for `clawden serve`, run as they stand: the first
//! ```sh block of the section "## The service (`clawden serve`) for a gateway" is taken from
//! README.md and each of its lines is run with `sh -c` against a real `serve` (real engine, real
//! socket) — `$S` is the test's socket, `CALL_ID` and `TOKEN` come from the latest
//! `"mode":"start"` answer before the line, `notes.txt` is made in the working directory, and
//! `clawden` is the binary under test on `PATH`. Every curl must answer 2xx with a sensible body.

mod common;

use common::serve::Server;
use common::{World, sweep};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

/// The first ```sh block of the README's service section, line by line.
fn readme_block() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n## The service (`clawden serve`) for a gateway\n")
        .expect("the README's service section");
    let section = &readme[start + 1..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    let open = section
        .find("\n```sh\n")
        .expect("a ```sh block in the section")
        + 7;
    let len = section[open..].find("\n```").expect("the block's end");
    section[open..open + len]
        .lines()
        .map(str::to_string)
        .collect()
}

/// A line run with `sh -c`: exit code, stdout, stderr.
fn sh(line: &str, sock: &Path, dir: &Path) -> (Option<i32>, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_clawden")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("sh")
        .args(["-c", line])
        .current_dir(dir)
        .env("S", sock)
        .env("PATH", path)
        .env_remove("CLAWDEN_ATTACH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const MARK: &str = "\n--clawden-status--";

fn ndjson(body: &str) -> Vec<Value> {
    let complete = body.rfind('\n').map_or("", |i| &body[..i]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn the_readme_service_examples_work_as_written() {
    let sw = sweep("svrdm");
    let world = World::new();
    let server = Server::start(&world, &sw.prefix);
    let dir = world.path("cwd");
    std::fs::create_dir(&dir).unwrap();
    let notes = "remember: the README is tested\n";
    std::fs::write(dir.join("notes.txt"), notes).unwrap();

    let block = readme_block();
    assert_eq!(
        block.first().map(String::as_str),
        Some("S=/run/clawden/clawden.sock"),
        "the block starts by naming the socket"
    );
    let mut call_id: Option<String> = None;
    let mut token: Option<String> = None;
    let mut ran = Vec::new();
    for raw in &block[1..] {
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let mut line = raw.clone();
        if line.contains("CALL_ID") {
            let id = call_id
                .as_deref()
                .unwrap_or_else(|| panic!("{raw}: CALL_ID before any \"mode\":\"start\" request"));
            line = line.replace("CALL_ID", id);
        }
        if line.contains("TOKEN") {
            let t = token
                .as_deref()
                .unwrap_or_else(|| panic!("{raw}: TOKEN before any \"mode\":\"start\" request"));
            line = line.replacen(
                "CLAWDEN_ATTACH_TOKEN=TOKEN",
                &format!("CLAWDEN_ATTACH_TOKEN={t}"),
                1,
            );
        }

        if !line.starts_with("curl ") {
            // The shim: stdio piped, the call's exit code.
            assert!(
                line.contains("clawden attach"),
                "a line the test does not know: {raw}"
            );
            let (code, out, err) = sh(&line, &server.sock, &dir);
            assert_eq!(out, "hello world\n", "{raw}: {err}");
            assert_eq!(code, Some(3), "{raw}: the call's exit code; {err}");
            token = None;
            ran.push("attach");
            continue;
        }

        // curl: its status after the body; a follow never ends by itself, so it is cut short.
        let follow = line.contains("follow=true");
        let extra = if follow { "--max-time 3 " } else { "" };
        let line = line.replacen(
            "curl ",
            &format!(
                "curl {extra}-w '{}%{{http_code}}' ",
                MARK.replace('\n', "\\n")
            ),
            1,
        );
        let (code, out, err) = sh(&line, &server.sock, &dir);
        let (body, status) = out
            .rsplit_once(MARK)
            .unwrap_or_else(|| panic!("{raw}: no status ({code:?}): {out}{err}"));
        let status: u16 = status.trim().parse().unwrap();
        assert!((200..300).contains(&status), "{raw}: {status} {body}");
        if follow {
            assert_eq!(code, Some(28), "{raw}: cut by --max-time: {err}");
        } else {
            assert_eq!(code, Some(0), "{raw}: {err}");
        }

        if line.contains(r#""mode":"stream""#) || follow {
            let events = ndjson(body);
            assert_eq!(
                events.first().map(|e| e["type"].clone()),
                Some("started".into()),
                "{raw}: {body}"
            );
            assert!(
                events.iter().all(|e| e["type"].is_string()),
                "{raw}: {body}"
            );
            let out: String = events
                .iter()
                .filter(|e| e["type"] == "stdout")
                .filter_map(|e| e["text"].as_str())
                .collect();
            if follow {
                // The detached loop prints the date every 2 s.
                assert!(!out.is_empty(), "{raw}: {body}");
                ran.push("follow");
            } else {
                assert_eq!(out, "step 1\nstep 2\nstep 3\n", "{raw}: {body}");
                let last = events.last().unwrap();
                assert_eq!(last["type"], "exit", "{raw}: {body}");
                assert_eq!(last["exitCode"], 0, "{raw}: {body}");
                ran.push("stream");
            }
            continue;
        }
        if line.contains("http://x/v1/files?") && !line.contains("-XPUT") {
            assert_eq!(body, notes, "{raw}");
            ran.push("get file");
            continue;
        }
        let v: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{raw}: not JSON ({e}): {body}"));
        assert!(v.get("error").is_none(), "{raw}: {v}");
        if line.contains("/v1/version") {
            assert_eq!(v["apiVersion"], "1", "{v}");
            assert!(
                v["capabilities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c == "calls.attach"),
                "{v}"
            );
            ran.push("version");
        } else if line.contains(r#""mode":"start""#) {
            assert_eq!(status, 201, "{raw}: {v}");
            call_id = Some(v["callId"].as_str().expect("callId").to_string());
            token = Some(v["attachToken"].as_str().expect("attachToken").to_string());
            ran.push("start");
        } else if line.contains("/signal") {
            assert_eq!(v["signal"], 15, "{v}");
            ran.push("signal");
        } else if line.contains("-XDELETE") {
            assert_eq!(v["callId"].as_str(), call_id.as_deref(), "{v}");
            // The detached loop ended by the TERM before it.
            assert_eq!(v["result"]["endReason"], "signaled", "{v}");
            ran.push("delete");
        } else if line.contains("-XPUT") {
            assert_eq!(status, 201, "{raw}: {v}");
            assert_eq!(v["created"], true, "{v}");
            assert!(v["etag"].is_string(), "{v}");
            ran.push("put");
        } else if line.contains("-XPOST http://x/v1/calls ") {
            // wait: the result.
            assert_eq!(v["exitCode"], 0, "{v}");
            assert_eq!(v["endReason"], "exited", "{v}");
            assert!(v["stdout"].as_str().unwrap().contains(".."), "ls -la: {v}");
            ran.push("wait");
        } else {
            panic!("a line the test does not know: {raw}");
        }
    }
    assert_eq!(
        ran,
        [
            "version", "wait", "stream", "start", "follow", "signal", "delete", "start", "attach",
            "put", "put", "get file"
        ],
        "every kind of example ran"
    );
}
