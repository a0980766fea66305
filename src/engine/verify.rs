//! The container baseline of security.md, checked on what `docker inspect` reports — pure, so the
//! supervisor refuses a container that does not match its plan and tests assert the same rules.

use super::facts::ContainerFacts;
use crate::decide::ContainerSpec;
use crate::decide::plan::{CGROUPNS_MODE, RUNTIME};
use std::collections::BTreeSet;

/// One way an inspected container differs from the baseline or from its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub field: &'static str,
    pub detail: String,
    /// Part of the security baseline (or of the mounts). Only non-security drift is tolerated
    /// on a container in use; a security mismatch is never run in.
    pub security: bool,
}

/// The paths Docker masks by default (`/proc/kcore` & co.): every one must still be masked.
pub const REQUIRED_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
/// The paths Docker makes read-only by default.
pub const REQUIRED_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The mounts of a plan as `(source, destination, writable)`, in the engine's terms.
pub fn planned_mounts(spec: &ContainerSpec) -> BTreeSet<(String, String, bool)> {
    spec.engine_mounts()
        .iter()
        .map(|m| {
            (
                m.host.to_string_lossy().into_owned(),
                m.container.clone(),
                !m.access.read_only(),
            )
        })
        .collect()
}

/// The mounts a container has, in the same form.
pub fn actual_mounts(f: &ContainerFacts) -> BTreeSet<(String, String, bool)> {
    f.mounts
        .iter()
        .map(|m| (m.source.clone(), m.destination.clone(), m.rw))
        .collect()
}

/// Check a container's facts against the baseline and the plan.
pub fn verify(f: &ContainerFacts, spec: &ContainerSpec) -> Vec<Mismatch> {
    let mut bad = Vec::new();
    let mut check = |ok: bool, field: &'static str, detail: String| {
        if !ok {
            bad.push(Mismatch {
                field,
                detail,
                security: true,
            });
        }
    };

    check(
        !f.privileged,
        "HostConfig.Privileged",
        "must be false".into(),
    );
    let cap_drop: Vec<String> = f.cap_drop.iter().map(|c| c.to_ascii_uppercase()).collect();
    check(
        cap_drop == ["ALL"],
        "HostConfig.CapDrop",
        format!("must be [\"ALL\"], is {cap_drop:?}"),
    );
    check(
        f.cap_add.is_empty(),
        "HostConfig.CapAdd",
        format!("must be empty, is {:?}", f.cap_add),
    );
    check(
        f.readonly_rootfs == spec.read_only_root,
        "HostConfig.ReadonlyRootfs",
        format!("must be {}", spec.read_only_root),
    );
    // tmpfs: exactly the planned entries, each with a size cap, nosuid and nodev.
    let got: BTreeSet<&String> = f.tmpfs.keys().collect();
    let want: BTreeSet<&String> = spec.tmpfs.keys().collect();
    check(
        got == want,
        "HostConfig.Tmpfs",
        format!("targets {got:?}, planned {want:?}"),
    );
    for (target, o) in &f.tmpfs {
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
    let sec = &f.security_opt;
    check(
        sec.iter()
            .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true"),
        "HostConfig.SecurityOpt",
        format!("lacks no-new-privileges: {sec:?}"),
    );
    for o in sec {
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
    // Exactly the planned options (a seccomp profile swapped behind our back is drift).
    let want_sec: BTreeSet<&str> = spec
        .security_opt
        .iter()
        .map(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k))
        .collect();
    let got_sec: BTreeSet<&str> = sec
        .iter()
        .map(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k))
        .collect();
    check(
        want_sec == got_sec,
        "HostConfig.SecurityOpt",
        format!("options {got_sec:?}, planned {want_sec:?}"),
    );
    check(
        !f.apparmor_profile.eq_ignore_ascii_case("unconfined"),
        "AppArmorProfile",
        "must not be unconfined".into(),
    );
    let net = &f.network_mode;
    check(
        *net == spec.network,
        "HostConfig.NetworkMode",
        format!("is {net:?}, planned {:?}", spec.network),
    );
    // `docker network connect` adds networks to a running container behind the mode's back.
    let extra: Vec<&String> = f.networks.iter().filter(|n| **n != spec.network).collect();
    check(
        extra.is_empty(),
        "NetworkSettings.Networks",
        format!("attached to {extra:?}, planned only {:?}", spec.network),
    );
    check(
        !net.eq_ignore_ascii_case("host"),
        "HostConfig.NetworkMode",
        "must never be host".into(),
    );
    check(
        f.pid_mode.is_empty(),
        "HostConfig.PidMode",
        format!("must be empty, is {:?}", f.pid_mode),
    );
    check(
        f.uts_mode.is_empty(),
        "HostConfig.UTSMode",
        format!("must be empty, is {:?}", f.uts_mode),
    );
    check(
        matches!(f.ipc_mode.as_str(), "private" | "none" | ""),
        "HostConfig.IpcMode",
        format!("is {:?}", f.ipc_mode),
    );
    check(
        f.userns_mode != "host",
        "HostConfig.UsernsMode",
        "must not be host".into(),
    );
    check(
        f.cgroup_parent.is_empty(),
        "HostConfig.CgroupParent",
        "must be empty".into(),
    );
    check(
        f.cgroupns_mode == CGROUPNS_MODE,
        "HostConfig.CgroupnsMode",
        format!("is {:?}, planned {CGROUPNS_MODE:?}", f.cgroupns_mode),
    );
    check(
        f.runtime == RUNTIME,
        "HostConfig.Runtime",
        format!("is {:?}, planned {RUNTIME:?}", f.runtime),
    );
    check(
        f.sysctls.is_empty(),
        "HostConfig.Sysctls",
        format!("must be empty, is {:?}", f.sysctls),
    );
    for p in REQUIRED_MASKED {
        check(
            f.masked_paths.iter().any(|m| m == p),
            "HostConfig.MaskedPaths",
            format!("{p} is not masked"),
        );
    }
    for p in REQUIRED_READONLY {
        check(
            f.readonly_paths.iter().any(|m| m == p),
            "HostConfig.ReadonlyPaths",
            format!("{p} is not read-only"),
        );
    }
    check(
        f.memory > 0 && f.memory as u64 == spec.memory,
        "HostConfig.Memory",
        format!("is {}, planned {}", f.memory, spec.memory),
    );
    check(
        f.memory_swap > 0 && f.memory_swap as u64 == spec.memory_swap,
        "HostConfig.MemorySwap",
        format!("is {}, planned {}", f.memory_swap, spec.memory_swap),
    );
    check(
        f.nano_cpus > 0 && f.nano_cpus as u64 == spec.nano_cpus,
        "HostConfig.NanoCpus",
        format!("is {}, planned {}", f.nano_cpus, spec.nano_cpus),
    );
    check(
        f.pids_limit > 0 && f.pids_limit as u64 == spec.pids_limit,
        "HostConfig.PidsLimit",
        format!("is {}, planned {}", f.pids_limit, spec.pids_limit),
    );
    for u in &spec.ulimits {
        check(
            f.ulimits
                .iter()
                .any(|g| g.name == u.name && g.soft == u.soft && g.hard == u.hard),
            "HostConfig.Ulimits",
            format!("{} {}:{} is not applied", u.name, u.soft, u.hard),
        );
    }
    check(f.init, "HostConfig.Init", "must be true".into());
    check(
        matches!(f.restart_policy.as_str(), "no" | ""),
        "HostConfig.RestartPolicy",
        format!("is {:?}", f.restart_policy),
    );
    check(
        !f.has_port_bindings,
        "HostConfig.PortBindings",
        "must be empty".into(),
    );
    check(
        !f.publish_all_ports,
        "HostConfig.PublishAllPorts",
        "must be false".into(),
    );
    check(!f.has_devices, "HostConfig.Devices", "must be empty".into());
    check(
        !f.has_device_cgroup_rules,
        "HostConfig.DeviceCgroupRules",
        "must be empty".into(),
    );
    check(
        !f.has_device_requests,
        "HostConfig.DeviceRequests",
        "must be empty".into(),
    );
    check(
        f.log_driver == "none",
        "HostConfig.LogConfig",
        format!("driver is {:?}, planned none", f.log_driver),
    );
    check(
        f.user == spec.user,
        "Config.User",
        format!("is {:?}, planned {:?}", f.user, spec.user),
    );
    // Mounts: exactly the plan's binds, rprivate, read-only where planned.
    let got = actual_mounts(f);
    let want = planned_mounts(spec);
    check(
        got == want,
        "Mounts",
        format!("are {got:?}, planned {want:?}"),
    );
    for m in &f.mounts {
        check(
            m.typ == "bind",
            "Mounts",
            format!("{} is not a bind mount", m.destination),
        );
        check(
            m.propagation == "rprivate",
            "Mounts",
            format!("{} propagation is {:?}", m.destination, m.propagation),
        );
    }
    // Not security: tolerated on a container in use until it is recreated.
    let mut drift = |ok: bool, field: &'static str, detail: String| {
        if !ok {
            bad.push(Mismatch {
                field,
                detail,
                security: false,
            });
        }
    };
    drift(
        f.image == spec.image,
        "Config.Image",
        format!("is {:?}, planned {:?}", f.image, spec.image),
    );
    drift(
        f.cmd == spec.cmd,
        "Config.Cmd",
        format!("is {:?}, planned {:?}", f.cmd, spec.cmd),
    );
    bad
}
