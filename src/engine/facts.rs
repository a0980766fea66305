//! What the engine reports about a container, as a typed value. The engine adapter turns its own
//! inspect format into [`ContainerFacts`] (where another engine's differences are absorbed), and
//! everything above the seam — ensure, drift, the baseline verifier, call routing — reads only
//! this, never raw inspect JSON.

use serde_json::Value;
use std::collections::BTreeMap;

/// One mount as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountFact {
    pub typ: String,
    pub source: String,
    pub destination: String,
    pub rw: bool,
    pub propagation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UlimitFact {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// The facts of one container that clawden decides on.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerFacts {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    /// Host pid of the container's first process (its init), when running.
    pub pid: Option<u32>,
    /// The image name the container was created from, and the image ID it runs.
    pub image: String,
    pub image_id: String,
    pub user: String,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub readonly_rootfs: bool,
    pub tmpfs: BTreeMap<String, String>,
    pub security_opt: Vec<String>,
    pub apparmor_profile: String,
    pub network_mode: String,
    /// The networks it is attached to (`NetworkSettings.Networks`' names).
    pub networks: Vec<String>,
    pub pid_mode: String,
    pub uts_mode: String,
    pub ipc_mode: String,
    pub userns_mode: String,
    pub cgroup_parent: String,
    pub cgroupns_mode: String,
    pub runtime: String,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub init: bool,
    pub restart_policy: String,
    pub has_port_bindings: bool,
    pub publish_all_ports: bool,
    pub has_devices: bool,
    pub has_device_cgroup_rules: bool,
    pub has_device_requests: bool,
    pub log_driver: String,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: Vec<UlimitFact>,
    pub mounts: Vec<MountFact>,
    /// Host path of the file the engine wrote the container's exit/OOM state to is not needed;
    /// whether the engine says the container was OOM-killed is.
    pub oom_killed: bool,
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

fn string(v: &Value, path: &[&str]) -> String {
    at(v, path)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn int(v: &Value, path: &[&str]) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn boolean(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn strings(v: &Value, path: &[&str]) -> Vec<String> {
    at(v, path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: &Value, path: &[&str]) -> BTreeMap<String, String> {
    at(v, path)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Present and not empty (`null`, `[]`, `{}` and `""` count as absent).
fn non_empty(v: &Value, path: &[&str]) -> bool {
    match at(v, path) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

impl ContainerFacts {
    /// From the Docker Engine API's container inspect document (also what Podman's compatible
    /// API returns). Missing fields read as empty/zero/false, which the verifier then refuses
    /// where the baseline needs a value.
    pub fn from_docker_inspect(v: &Value) -> Self {
        let hc = |k: &'static str| -> [&'static str; 2] { ["HostConfig", k] };
        let pid = int(v, &["State", "Pid"]);
        ContainerFacts {
            id: string(v, &["Id"]),
            name: string(v, &["Name"]).trim_start_matches('/').to_string(),
            labels: string_map(v, &["Config", "Labels"]),
            running: boolean(v, &["State", "Running"]),
            pid: (pid > 0).then_some(pid as u32),
            image: string(v, &["Config", "Image"]),
            image_id: string(v, &["Image"]),
            user: string(v, &["Config", "User"]),
            cmd: strings(v, &["Config", "Cmd"]),
            entrypoint: strings(v, &["Config", "Entrypoint"]),
            privileged: boolean(v, &hc("Privileged")),
            cap_add: strings(v, &hc("CapAdd")),
            cap_drop: strings(v, &hc("CapDrop")),
            readonly_rootfs: boolean(v, &hc("ReadonlyRootfs")),
            tmpfs: string_map(v, &hc("Tmpfs")),
            security_opt: strings(v, &hc("SecurityOpt")),
            apparmor_profile: string(v, &["AppArmorProfile"]),
            network_mode: string(v, &hc("NetworkMode")),
            networks: at(v, &["NetworkSettings", "Networks"])
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            pid_mode: string(v, &hc("PidMode")),
            uts_mode: string(v, &hc("UTSMode")),
            ipc_mode: string(v, &hc("IpcMode")),
            userns_mode: string(v, &hc("UsernsMode")),
            cgroup_parent: string(v, &hc("CgroupParent")),
            cgroupns_mode: string(v, &hc("CgroupnsMode")),
            runtime: string(v, &hc("Runtime")),
            memory: int(v, &hc("Memory")),
            memory_swap: int(v, &hc("MemorySwap")),
            nano_cpus: int(v, &hc("NanoCpus")),
            pids_limit: int(v, &hc("PidsLimit")),
            init: boolean(v, &hc("Init")),
            restart_policy: string(v, &["HostConfig", "RestartPolicy", "Name"]),
            has_port_bindings: non_empty(v, &hc("PortBindings")),
            publish_all_ports: boolean(v, &hc("PublishAllPorts")),
            has_devices: non_empty(v, &hc("Devices")),
            has_device_cgroup_rules: non_empty(v, &hc("DeviceCgroupRules")),
            has_device_requests: non_empty(v, &hc("DeviceRequests")),
            log_driver: string(v, &["HostConfig", "LogConfig", "Type"]),
            masked_paths: strings(v, &hc("MaskedPaths")),
            readonly_paths: strings(v, &hc("ReadonlyPaths")),
            sysctls: string_map(v, &hc("Sysctls")),
            ulimits: at(v, &hc("Ulimits"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|u| UlimitFact {
                            name: string(u, &["Name"]),
                            soft: int(u, &["Soft"]),
                            hard: int(u, &["Hard"]),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            mounts: at(v, &["Mounts"])
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|m| MountFact {
                            typ: string(m, &["Type"]),
                            source: string(m, &["Source"]),
                            destination: string(m, &["Destination"]),
                            // A mount without an RW field is treated as writable (fail closed).
                            rw: at(m, &["RW"]).and_then(Value::as_bool).unwrap_or(true),
                            propagation: string(m, &["Propagation"]),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            oom_killed: boolean(v, &["State", "OOMKilled"]),
        }
    }

    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_inspect() {
        let v: Value = serde_json::json!({
            "Id": "abc", "Name": "/x", "Image": "sha256:1",
            "State": {"Running": true, "Pid": 42, "OOMKilled": false},
            "Config": {"Image": "img:1", "User": "1000:1000", "Labels": {"a": "b"}, "Cmd": ["c"]},
            "HostConfig": {"CapDrop": ["ALL"], "Memory": 5, "MaskedPaths": ["/proc/kcore"],
                "Sysctls": {"net.x": "1"}, "PortBindings": {}, "Devices": null,
                "Ulimits": [{"Name": "fsize", "Soft": 1, "Hard": 2}],
                "RestartPolicy": {"Name": "no"}, "LogConfig": {"Type": "none"}},
            "Mounts": [{"Type": "bind", "Source": "/s", "Destination": "/d", "Propagation": "rprivate"}]
        });
        let f = ContainerFacts::from_docker_inspect(&v);
        assert_eq!(f.name, "x");
        assert_eq!(f.pid, Some(42));
        assert!(f.running);
        assert_eq!(f.image, "img:1");
        assert_eq!(f.image_id, "sha256:1");
        assert_eq!(f.label("a"), Some("b"));
        assert_eq!(f.cap_drop, ["ALL"]);
        assert!(!f.has_port_bindings && !f.has_devices);
        assert_eq!(f.masked_paths, ["/proc/kcore"]);
        assert_eq!(f.sysctls.get("net.x").map(String::as_str), Some("1"));
        assert_eq!(f.ulimits[0].hard, 2);
        assert_eq!(f.restart_policy, "no");
        // No RW field: writable (fail closed).
        assert!(f.mounts[0].rw);
    }

    #[test]
    fn missing_everything_reads_as_empty() {
        let f = ContainerFacts::from_docker_inspect(&Value::Null);
        assert_eq!(f, ContainerFacts::default());
    }
}
