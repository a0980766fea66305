//! `clawden image build minimal` on a host where busybox-static was never installed (the
//! README's first command on a bare machine): the binary comes out of Debian's package.

use std::process::Command;

#[test]
fn the_minimal_image_builds_without_a_host_busybox() {
    let o = Command::new(env!("CARGO_BIN_EXE_clawden"))
        .args(["image", "build", "minimal", "--json"])
        // Look nowhere on the host: as if the package were absent.
        .env("CLAWDEN_BUSYBOX_PATHS", "")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["image"], "clawden-sandbox:minimal");
    assert!(
        j["busybox"].as_str().unwrap().contains("busybox-static"),
        "{j}"
    );
    // The image works: its shell runs.
    let o = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "clawden-sandbox:minimal",
            "sh",
            "-c",
            "echo ok",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n", "{o:?}");
}
