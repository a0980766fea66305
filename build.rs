//! Builds the static `clawden-agent` binary (crates/agent-bin) and puts it next to clawden's own
//! binaries (`target/<profile>/clawden-agent`), where clawden finds it.
//!
//! Why a nested cargo and not `+crt-static` in `.cargo/config.toml`: that flag, set for the gnu
//! target, also applies to proc-macro crates and breaks them. The nested build gets its own
//! `CARGO_ENCODED_RUSTFLAGS` and its own target dir, so nothing leaks either way. The jobserver
//! (`CARGO_MAKEFLAGS`) is kept so the nested build shares the outer build's job slots.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=crates/agent");
    println!("cargo:rerun-if-changed=crates/agent-bin");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let profile_dir = profile_dir(&out_dir, &root);
    let target_dir = profile_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target"));
    let agent_target = target_dir.join("agent-build");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--manifest-path"])
        .arg(root.join("crates/agent-bin/Cargo.toml"))
        .args(["--target", TARGET, "--target-dir"])
        .arg(&agent_target);
    // Nothing of the outer build's configuration may leak into the nested one.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let drop = key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_TARGET_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_ENCODED_")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "RUSTC_LINKER"
            );
        if drop {
            cmd.env_remove(key);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");

    let status = cmd
        .status()
        .expect("run the nested cargo build of clawden-agent");
    assert!(
        status.success(),
        "building the static clawden-agent failed ({status})"
    );

    let built = agent_target.join(TARGET).join("release/clawden-agent");
    let dest = profile_dir.join("clawden-agent");
    // Copy through a temp name and rename, so a concurrently running test never sees half a file.
    // (Unique per build-script run: `cargo build` and `cargo clippy` may run side by side.)
    let tmp = profile_dir.join(format!(".clawden-agent.tmp.{}", std::process::id()));
    std::fs::copy(&built, &tmp).expect("copy clawden-agent");
    std::fs::rename(&tmp, &dest).expect("install clawden-agent");
}

/// `target/<profile>` (or `$CARGO_TARGET_DIR/<profile>`), from `OUT_DIR` =
/// `<target>/<profile>/build/clawden-<hash>/out` (with `--target T`: `<target>/T/<profile>/…`).
fn profile_dir(out_dir: &Path, root: &Path) -> PathBuf {
    if let Some(dir) = out_dir.ancestors().nth(3) {
        return dir.to_path_buf();
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let profile = env::var("PROFILE").unwrap_or_else(|_| "debug".into());
    target.join(profile)
}
