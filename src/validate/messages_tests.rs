//! Snapshot of the user-visible refusals: one or more per code, as JSON.

use std::path::PathBuf;

use super::*;

#[test]
fn refusal_messages() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let ws = root.join("ws");
    std::fs::create_dir_all(ws.join("data")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(ws.join("agent.sock")).unwrap();
    let roots = vec![ws.clone()];
    let reserved = vec!["/workspace".to_string(), "/agent".to_string()];
    let policy = BindPolicy {
        allowed_roots: &roots,
        reserved_targets: &reserved,
        allow_external_sources: false,
        allow_reserved_targets: false,
    };
    let ctx = HostContext::for_tests(vec![PathBuf::from("/home/alice")]);
    let ws_s = ws.to_str().unwrap();
    let root_s = root.to_str().unwrap();

    let binds = [
        "/var:/mnt/var:ro".to_string(),
        "/etc/passwd:/mnt/passwd".to_string(),
        "/home:/mnt/home".to_string(),
        "~/.ssh:/mnt/ssh".to_string(),
        "myvolume:/data".to_string(),
        format!("{ws_s}/missing:/mnt/m"),
        format!("{ws_s}/agent.sock:/mnt/s"),
        format!("{root_s}/outside:/mnt/o"),
        format!("{ws_s}/data:/workspace/sub"),
        format!("{ws_s}/data:/usr"),
        format!("{ws_s}/data:/mnt/x:rshared"),
        format!("{ws_s}/data:/mnt/x:ro:z"),
        format!("{ws_s}/data:/mnt/a"),
        format!("{ws_s}/data:/mnt/a/"),
    ];
    let (_, mut refusals) = validate_binds(&binds, &ctx, &policy);
    refusals.extend(
        [
            check_managed_source("/home/alice".as_ref(), "sandbox.workspaceRoot", &ctx),
            validate_network("host", false).map(|_| PathBuf::new()),
            validate_network("container:db", false).map(|_| PathBuf::new()),
            validate_network("", false).map(|_| PathBuf::new()),
            validate_security_profile("seccompProfile", "unconfined").map(|_| PathBuf::new()),
            validate_cap_drop(&[]).map(|_| PathBuf::new()),
            validate_env_name("A=B").map(|_| PathBuf::new()),
            parse_tmpfs("/tmp:suid", 1 << 20).map(|_| PathBuf::new()),
            normalize_container_path("/a\nb").map(|_| PathBuf::new()),
        ]
        .into_iter()
        .map(|r| r.unwrap_err()),
    );
    let json = serde_json::to_string_pretty(&refusals)
        .unwrap()
        .replace(root_s, "[TMP]");
    insta::assert_snapshot!(json);
}
