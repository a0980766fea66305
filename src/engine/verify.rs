//! The container baseline of security.md, checked on what `docker inspect` reports — pure, so the
//! supervisor refuses a container that does not match its plan and tests assert the same rules.

use crate::decide::ContainerSpec;
use serde_json::Value;
use std::collections::BTreeSet;

/// One way an inspected container differs from the baseline or from its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub field: &'static str,
    pub detail: String,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    s(v, path).and_then(Value::as_str).unwrap_or("")
}

fn i64_at(v: &Value, path: &[&str]) -> i64 {
    s(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn strings_at(v: &Value, path: &[&str]) -> Vec<String> {
    s(v, path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn empty_or_null(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::String(x)) => x.is_empty(),
        _ => false,
    }
}

/// Check an inspect document (Docker's JSON) against the baseline and the plan.
/// `root_allowed`: the operator configured a root user explicitly.
pub fn verify(inspect: &Value, spec: &ContainerSpec) -> Vec<Mismatch> {
    let mut bad = Vec::new();
    let mut check = |ok: bool, field: &'static str, detail: String| {
        if !ok {
            bad.push(Mismatch { field, detail });
        }
    };
    let hc = &["HostConfig"];
    let h = |k: &'static str| -> Vec<&'static str> { vec![hc[0], k] };

    check(
        s(inspect, &h("Privileged")) == Some(&Value::Bool(false)),
        "HostConfig.Privileged",
        "must be false".into(),
    );
    let cap_drop: Vec<String> = strings_at(inspect, &h("CapDrop"))
        .iter()
        .map(|c| c.to_ascii_uppercase())
        .collect();
    check(
        cap_drop == ["ALL"],
        "HostConfig.CapDrop",
        format!("must be [\"ALL\"], is {cap_drop:?}"),
    );
    check(
        empty_or_null(s(inspect, &h("CapAdd"))),
        "HostConfig.CapAdd",
        "must be empty".into(),
    );
    check(
        s(inspect, &h("ReadonlyRootfs")) == Some(&Value::Bool(spec.read_only_root)),
        "HostConfig.ReadonlyRootfs",
        format!("must be {}", spec.read_only_root),
    );
    // tmpfs: exactly the planned entries, each with a size cap, nosuid and nodev.
    let tmpfs = s(inspect, &h("Tmpfs")).and_then(Value::as_object);
    let got: BTreeSet<String> = tmpfs
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let want: BTreeSet<String> = spec.tmpfs.keys().cloned().collect();
    check(
        got == want,
        "HostConfig.Tmpfs",
        format!("targets {got:?}, planned {want:?}"),
    );
    for (target, opts) in tmpfs.into_iter().flatten() {
        let o = opts.as_str().unwrap_or("");
        let has = |x: &str| {
            o.split(',')
                .any(|p| p == x || p.starts_with(&format!("{x}=")))
        };
        check(
            has("size") && has("nosuid") && has("nodev"),
            "HostConfig.Tmpfs",
            format!("{target} options {o:?} lack size/nosuid/nodev"),
        );
    }
    let sec = strings_at(inspect, &h("SecurityOpt"));
    check(
        sec.iter()
            .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true"),
        "HostConfig.SecurityOpt",
        format!("lacks no-new-privileges: {sec:?}"),
    );
    for o in &sec {
        let l = o.to_ascii_lowercase();
        check(
            !(l.contains("unconfined")
                || l.starts_with("systempaths=")
                || l == "label=disable"
                || l == "label:disable"
                || l == "no-new-privileges:false"),
            "HostConfig.SecurityOpt",
            format!("forbidden option {o:?}"),
        );
    }
    check(
        !str_at(inspect, &["AppArmorProfile"]).eq_ignore_ascii_case("unconfined"),
        "AppArmorProfile",
        "must not be unconfined".into(),
    );
    let net = str_at(inspect, &h("NetworkMode"));
    check(
        net == spec.network,
        "HostConfig.NetworkMode",
        format!("is {net:?}, planned {:?}", spec.network),
    );
    check(
        !net.eq_ignore_ascii_case("host"),
        "HostConfig.NetworkMode",
        "must never be host".into(),
    );
    check(
        str_at(inspect, &h("PidMode")).is_empty(),
        "HostConfig.PidMode",
        "must be empty".into(),
    );
    check(
        str_at(inspect, &h("UTSMode")).is_empty(),
        "HostConfig.UTSMode",
        "must be empty".into(),
    );
    let ipc = str_at(inspect, &h("IpcMode"));
    check(
        matches!(ipc, "private" | "none" | ""),
        "HostConfig.IpcMode",
        format!("is {ipc:?}"),
    );
    check(
        str_at(inspect, &h("UsernsMode")) != "host",
        "HostConfig.UsernsMode",
        "must not be host".into(),
    );
    check(
        str_at(inspect, &h("CgroupParent")).is_empty(),
        "HostConfig.CgroupParent",
        "must be empty".into(),
    );
    let memory = i64_at(inspect, &h("Memory"));
    check(
        memory > 0 && memory as u64 == spec.memory,
        "HostConfig.Memory",
        format!("is {memory}, planned {}", spec.memory),
    );
    let swap = i64_at(inspect, &h("MemorySwap"));
    check(
        swap > 0 && swap as u64 == spec.memory_swap,
        "HostConfig.MemorySwap",
        format!("is {swap}, planned {}", spec.memory_swap),
    );
    let cpus = i64_at(inspect, &h("NanoCpus"));
    check(
        cpus > 0 && cpus as u64 == spec.nano_cpus,
        "HostConfig.NanoCpus",
        format!("is {cpus}, planned {}", spec.nano_cpus),
    );
    let pids = i64_at(inspect, &h("PidsLimit"));
    check(
        pids > 0 && pids as u64 == spec.pids_limit,
        "HostConfig.PidsLimit",
        format!("is {pids}, planned {}", spec.pids_limit),
    );
    check(
        s(inspect, &h("Init")) == Some(&Value::Bool(true)),
        "HostConfig.Init",
        "must be true".into(),
    );
    let restart = str_at(inspect, &["HostConfig", "RestartPolicy", "Name"]);
    check(
        matches!(restart, "no" | ""),
        "HostConfig.RestartPolicy",
        format!("is {restart:?}"),
    );
    check(
        empty_or_null(s(inspect, &h("PortBindings"))),
        "HostConfig.PortBindings",
        "must be empty".into(),
    );
    check(
        !s(inspect, &h("PublishAllPorts"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        "HostConfig.PublishAllPorts",
        "must be false".into(),
    );
    check(
        empty_or_null(s(inspect, &h("Devices"))),
        "HostConfig.Devices",
        "must be empty".into(),
    );
    check(
        empty_or_null(s(inspect, &h("DeviceCgroupRules"))),
        "HostConfig.DeviceCgroupRules",
        "must be empty".into(),
    );
    check(
        empty_or_null(s(inspect, &h("DeviceRequests"))),
        "HostConfig.DeviceRequests",
        "must be empty".into(),
    );
    let log = str_at(inspect, &["HostConfig", "LogConfig", "Type"]);
    check(
        log == "none",
        "HostConfig.LogConfig",
        format!("driver is {log:?}, planned none"),
    );
    let user = str_at(inspect, &["Config", "User"]);
    check(
        user == spec.user,
        "Config.User",
        format!("is {user:?}, planned {:?}", spec.user),
    );
    // Mounts: exactly the plan's binds, rprivate, read-only where planned.
    let mounts = s(inspect, &["Mounts"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let got: BTreeSet<(String, String, bool)> = mounts
        .iter()
        .map(|m| {
            (
                str_at(m, &["Source"]).to_string(),
                str_at(m, &["Destination"]).to_string(),
                s(m, &["RW"]).and_then(Value::as_bool).unwrap_or(true),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, bool)> = spec
        .mounts
        .iter()
        .map(|m| {
            (
                m.host.to_string_lossy().into_owned(),
                m.container.clone(),
                !m.access.read_only(),
            )
        })
        .collect();
    check(
        got == want,
        "Mounts",
        format!("are {got:?}, planned {want:?}"),
    );
    for m in &mounts {
        check(
            str_at(m, &["Type"]) == "bind",
            "Mounts",
            format!("{} is not a bind mount", str_at(m, &["Destination"])),
        );
        check(
            str_at(m, &["Propagation"]) == "rprivate",
            "Mounts",
            format!(
                "{} propagation is {:?}",
                str_at(m, &["Destination"]),
                str_at(m, &["Propagation"])
            ),
        );
    }
    bad
}
