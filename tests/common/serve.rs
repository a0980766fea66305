//! A `clawden serve` of the binary under test on a test world's socket (real engine), killed
//! on drop: what the service's end-to-end tests start.

use super::World;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub sock: PathBuf,
}

impl Server {
    /// Serve a config of `world` whose sandboxes carry `prefix` (heartbeats every second).
    pub fn start(world: &World, prefix: &str) -> Server {
        let config = world.path("config.json5");
        let text = format!(
            r#"{{ agents: {{ defaults: {{ workspace: "{ws}", sandbox: {{ mode: "all", workspaceRoot: "{root}", docker: {{ containerPrefix: "{prefix}" }} }} }} }}, serve: {{ heartbeatSeconds: 1 }} }}"#,
            ws = world.path("ws").display(),
            root = world.path("sandboxes").display(),
        );
        std::fs::write(&config, text).unwrap();
        let sock = world.path("run/clawden.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_clawden"))
            .arg("--config")
            .arg(&config)
            .args(["serve", "--socket"])
            .arg(&sock)
            .env("CLAWDEN_HOME", world.path("state"))
            .env_remove("CLAWDEN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server { child, sock };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if UnixStream::connect(&s.sock).is_ok() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not come up");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
