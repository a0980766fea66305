//! Is the engine a local one? (sandbox.md §5, issue 7 item 7.)
//!
//! clawden decides on *this* host: it canonicalises bind sources, reads `/etc/passwd` for the
//! blocklist, creates workspace directories and does file I/O here. If the container runs on
//! another machine, all of that is checked against the wrong filesystem. Until remote engines
//! are supported, only an engine reached through a unix socket of this host is accepted:
//!
//! 1. `DOCKER_HOST` is unset or `unix://PATH` — `tcp://`, `http(s)://`, `ssh://`, `npipe://`
//!    and anything else are refused (`remote_engine`) before any connection is made.
//! 2. The socket's peer, read with `SO_PEERCRED` on a connection, is a process visible in our
//!    pid namespace (pid > 0: an engine in another pid namespace is reached through a socket
//!    mounted in from elsewhere) running as root (a rootful engine) or as the socket's owner (a
//!    rootless engine, whose socket its user owns). A socket some other user serves, e.g. a
//!    forwarder someone else left in /tmp, is refused.
//! 3. It answers `/version` as a Docker engine, within a few seconds, and the kernel it reports
//!    is this host's kernel. This catches the usual forwarders (`ssh -L sock:…`, `socat`) to a
//!    machine with another kernel; a forwarder to a twin with the same kernel release is beyond
//!    what a client can tell, and is a documented limit.
//!
//! A missing socket or a refused connection means "no engine here" (`engine_unreachable`),
//! not a remote one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The default socket when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// What `DOCKER_HOST` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// Anything that is not a local unix socket, with the reason.
    NotLocal(String),
}

/// Parse `DOCKER_HOST` (pure). Empty or unset → the default socket.
pub fn parse_docker_host(value: Option<&str>) -> Endpoint {
    let v = value.map(str::trim).unwrap_or("");
    if v.is_empty() {
        return Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET));
    }
    if let Some(path) = v.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Endpoint::Unix(PathBuf::from(path))
        } else {
            Endpoint::NotLocal(format!(
                "DOCKER_HOST {v:?} is not an absolute unix socket path"
            ))
        };
    }
    let scheme = v.split_once("://").map(|(s, _)| s).unwrap_or("");
    let why = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "http" | "https" => "a TCP endpoint (possibly another machine)",
        "ssh" => "an ssh endpoint (another machine)",
        "npipe" => "a Windows named pipe",
        "fd" => "an inherited file descriptor",
        _ => "not of the form unix:///path/to/socket",
    };
    Endpoint::NotLocal(format!(
        "DOCKER_HOST {v:?} is {why}; remote engines are not supported yet"
    ))
}

/// Who serves a unix socket, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SocketPeer {
    pub socket: PathBuf,
    pub socket_owner_uid: u32,
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl SocketPeer {
    /// `unix:///var/run/docker.sock (owner uid 0), served by pid 812 uid 0`.
    pub fn describe(&self) -> String {
        format!(
            "unix://{} (owner uid {}), served by pid {} uid {}",
            self.socket.display(),
            self.socket_owner_uid,
            self.pid,
            self.uid
        )
    }
}

/// Rule 2 (pure): the peer must be visible and run as root or as the socket's owner.
pub fn peer_rule(pid: i32, peer_uid: u32, socket_owner_uid: u32) -> Result<(), String> {
    if pid <= 0 {
        return Err(
            "the process serving the socket is not visible in this pid namespace (an engine \
             of another host or container, reached through a mounted socket)"
                .into(),
        );
    }
    if peer_uid != 0 && peer_uid != socket_owner_uid {
        return Err(format!(
            "the socket is served by uid {peer_uid}, which is neither root nor the socket's owner \
             (uid {socket_owner_uid})"
        ));
    }
    Ok(())
}

/// Rule 3 (pure): the engine's kernel is this host's.
pub fn kernel_rule(engine_kernel: &str, host_kernel: &str) -> Result<(), String> {
    if engine_kernel.trim().is_empty() {
        return Err("the engine did not report its kernel version".into());
    }
    if engine_kernel.trim() != host_kernel.trim() {
        return Err(format!(
            "the engine runs kernel {engine_kernel:?}, this host runs {host_kernel:?}: the \
             socket forwards to another machine"
        ));
    }
    Ok(())
}

/// Why a socket check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketError {
    /// No engine listens here (missing socket, connection refused).
    Absent(String),
    /// Something listens, but it is not a local engine.
    NotLocal(String),
}

/// Connect to `path`, read the peer's credentials and apply [`peer_rule`].
pub fn check_socket(path: &Path) -> Result<SocketPeer, SocketError> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| SocketError::Absent(format!("{}: {e}", path.display())))?;
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotLocal(format!(
            "{} is not a socket",
            path.display()
        )));
    }
    let stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| SocketError::Absent(format!("cannot connect to {}: {e}", path.display())))?;
    let cred = getsockopt(&stream, PeerCredentials)
        .map_err(|e| SocketError::NotLocal(format!("SO_PEERCRED on {}: {e}", path.display())))?;
    let peer = SocketPeer {
        socket: path.to_path_buf(),
        socket_owner_uid: meta.uid(),
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    };
    peer_rule(peer.pid, peer.uid, peer.socket_owner_uid)
        .map_err(|r| SocketError::NotLocal(format!("{}: {r}", path.display())))?;
    Ok(peer)
}

/// This host's kernel release (`uname -r`).
pub fn host_kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_table() {
        let unix = |p: &str| Endpoint::Unix(PathBuf::from(p));
        assert_eq!(parse_docker_host(None), unix(DEFAULT_SOCKET));
        assert_eq!(parse_docker_host(Some("")), unix(DEFAULT_SOCKET));
        assert_eq!(
            parse_docker_host(Some("unix:///run/user/1000/docker.sock")),
            unix("/run/user/1000/docker.sock")
        );
        for remote in [
            "tcp://127.0.0.1:2375",
            "TCP://10.0.0.1:2376",
            "http://localhost:2375",
            "https://docker.example:2376",
            "ssh://user@host",
            "npipe:////./pipe/docker_engine",
            "fd://",
            "unix://relative.sock",
            "localhost:2375",
            "/var/run/docker.sock",
        ] {
            assert!(
                matches!(parse_docker_host(Some(remote)), Endpoint::NotLocal(_)),
                "{remote}"
            );
        }
    }

    #[test]
    fn peer_and_kernel_rules() {
        assert!(peer_rule(812, 0, 0).is_ok());
        assert!(
            peer_rule(812, 0, 1000).is_ok(),
            "rootful engine, socket chowned"
        );
        assert!(peer_rule(900, 1000, 1000).is_ok(), "rootless engine");
        assert!(peer_rule(0, 0, 0).is_err(), "peer in another pid namespace");
        assert!(
            peer_rule(900, 1001, 1000).is_err(),
            "another user's forwarder"
        );
        assert!(kernel_rule("6.1.0-18-amd64", "6.1.0-18-amd64").is_ok());
        assert!(kernel_rule("5.15.0-1", "6.1.0-18-amd64").is_err());
        assert!(kernel_rule("", "6.1.0").is_err());
    }

    #[test]
    fn a_plain_listener_passes_the_peer_rule_but_a_missing_socket_is_absent() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let peer = check_socket(&sock).unwrap();
        assert_eq!(peer.pid, std::process::id() as i32);
        assert!(matches!(
            check_socket(&d.path().join("none.sock")),
            Err(SocketError::Absent(_))
        ));
        std::fs::write(d.path().join("file"), b"").unwrap();
        assert!(matches!(
            check_socket(&d.path().join("file")),
            Err(SocketError::NotLocal(_))
        ));
    }
}
