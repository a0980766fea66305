//! Who is calling: `SO_PEERCRED` read once at accept into a typed [`Peer`], and the roles the
//! config gives that uid (and gid).

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use serde::Serialize;
use tokio::net::UnixListener;

/// The credentials of a connection's peer, as the kernel reported them at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// As this process sees it (`None` when the kernel could not map it here).
    pub pid: Option<i32>,
    /// The peer runs in another pid namespace (e.g. a container handed the socket). A container
    /// peer's pid is still visible from the host's namespace, so the kernel's pid alone does
    /// not tell: its `/proc/<pid>/ns/pid` is compared with ours. Unknown counts as other.
    pub other_pid_namespace: bool,
    /// The credentials could not be read: the peer gets no role at all.
    #[serde(skip)]
    pub unknown: bool,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => {
                let pid = c.pid().filter(|p| *p > 0);
                Peer {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid,
                    other_pid_namespace: pid.is_none_or(|p| !same_pid_namespace(p)),
                    unknown: false,
                }
            }
            Err(_) => Peer {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
                other_pid_namespace: true,
                unknown: true,
            },
        }
    }
}

/// Does process `pid` share our pid namespace (same nsfs inode)?
fn same_pid_namespace(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    match (ns(&format!("/proc/{pid}/ns/pid")), ns("/proc/self/ns/pid")) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// What a peer may do (service.md "Transport and identity").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// resolve, ensure, calls, files, policy check
    Gateway,
    /// resolve approvals
    Approver,
    /// list, recreate, prune, doctor, audit
    Operator,
    /// GET
    Reader,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Approver, Role::Operator, Role::Reader];

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "gateway" => Role::Gateway,
            "approver" => Role::Approver,
            "operator" => Role::Operator,
            "reader" => Role::Reader,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Reader => "reader",
        }
    }
}

/// One rule of `serve.peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRule {
    pub uid: u32,
    pub gid: Option<u32>,
    pub roles: Vec<Role>,
}

/// The roles of `peer` under `rules` (every matching rule adds its roles).
pub fn roles_of(rules: &[PeerRule], peer: &Peer) -> Vec<Role> {
    if peer.unknown {
        return vec![];
    }
    let mut out: Vec<Role> = rules
        .iter()
        .filter(|r| r.uid == peer.uid && r.gid.is_none_or(|g| g == peer.gid))
        .flat_map(|r| r.roles.iter().copied())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_match_uid_and_optional_gid() {
        let rules = vec![
            PeerRule {
                uid: 1000,
                gid: None,
                roles: vec![Role::Gateway],
            },
            PeerRule {
                uid: 1000,
                gid: Some(50),
                roles: vec![Role::Operator, Role::Gateway],
            },
        ];
        let p = |uid, gid| Peer {
            uid,
            gid,
            pid: Some(1),
            other_pid_namespace: false,
            unknown: false,
        };
        assert_eq!(roles_of(&rules, &p(1000, 1)), vec![Role::Gateway]);
        assert_eq!(
            roles_of(&rules, &p(1000, 50)),
            vec![Role::Gateway, Role::Operator]
        );
        assert!(roles_of(&rules, &p(1001, 50)).is_empty());
        let mut unknown = p(1000, 50);
        unknown.unknown = true;
        assert!(roles_of(&rules, &unknown).is_empty());
    }

    #[test]
    fn our_own_namespace_is_ours_and_a_missing_process_is_not() {
        assert!(same_pid_namespace(std::process::id() as i32));
        assert!(!same_pid_namespace(i32::MAX));
    }
}
