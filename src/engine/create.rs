//! The plan → Docker create body translation. Pure: every hardening setting is visible here.

use crate::decide::ContainerSpec;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTypeEnum, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum,
};
use std::collections::{BTreeMap, HashMap};

pub fn create_body(spec: &ContainerSpec, labels: &BTreeMap<String, String>) -> ContainerCreateBody {
    let mounts = spec
        .engine_mounts()
        .iter()
        .map(|m| Mount {
            target: Some(m.container.clone()),
            source: Some(m.host.to_string_lossy().into_owned()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(m.access.read_only()),
            bind_options: Some(MountBindOptions {
                propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let host_config = HostConfig {
        mounts: Some(mounts),
        tmpfs: Some(
            spec.tmpfs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        readonly_rootfs: Some(spec.read_only_root),
        network_mode: Some(spec.network.clone()),
        cap_drop: Some(spec.cap_drop.clone()),
        cap_add: Some(vec![]),
        security_opt: Some(spec.security_opt.clone()),
        privileged: Some(false),
        memory: Some(spec.memory as i64),
        memory_swap: Some(spec.memory_swap as i64),
        nano_cpus: Some(spec.nano_cpus as i64),
        pids_limit: Some(spec.pids_limit as i64),
        ulimits: Some(
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        ),
        init: Some(true),
        cgroupns_mode: Some(bollard::models::HostConfigCgroupnsModeEnum::PRIVATE),
        runtime: Some(crate::decide::plan::RUNTIME.into()),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ipc_mode: Some("private".into()),
        publish_all_ports: Some(false),
        dns: if spec.dns.is_empty() {
            None
        } else {
            Some(spec.dns.clone())
        },
        extra_hosts: if spec.extra_hosts.is_empty() {
            None
        } else {
            Some(spec.extra_hosts.clone())
        },
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.cmd.clone()),
        entrypoint: Some(vec![]),
        user: Some(spec.user.clone()),
        working_dir: Some(spec.workdir.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        network_disabled: Some(spec.network == "none"),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The Engine API takes a seccomp profile's JSON, not its path (the docker CLI reads the file):
/// `seccomp=/path/profile.json` becomes `seccomp=<contents>`. `unconfined` never gets here (the
/// validator refuses it); `builtin`/`default` pass through.
pub fn inline_seccomp(opts: &[String]) -> Result<Vec<String>, String> {
    opts.iter()
        .map(|o| match o.strip_prefix("seccomp=") {
            Some(v) if v.starts_with('/') => {
                let text = std::fs::read_to_string(v)
                    .map_err(|e| format!("cannot read seccompProfile {v}: {e}"))?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| format!("seccompProfile {v} is not JSON: {e}"))?;
                Ok(format!("seccomp={text}"))
            }
            _ => Ok(o.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_paths_are_inlined() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.json");
        std::fs::write(&p, r#"{"defaultAction":"SCMP_ACT_ERRNO"}"#).unwrap();
        let opts = vec![
            "no-new-privileges".to_string(),
            format!("seccomp={}", p.display()),
        ];
        assert_eq!(
            inline_seccomp(&opts).unwrap(),
            [
                "no-new-privileges".to_string(),
                r#"seccomp={"defaultAction":"SCMP_ACT_ERRNO"}"#.to_string()
            ]
        );
        assert!(inline_seccomp(&["seccomp=/nonexistent/x.json".to_string()]).is_err());
        std::fs::write(&p, "not json").unwrap();
        assert!(inline_seccomp(&[format!("seccomp={}", p.display())]).is_err());
        assert_eq!(
            inline_seccomp(&["seccomp=builtin".to_string()]).unwrap(),
            ["seccomp=builtin"]
        );
    }
}
