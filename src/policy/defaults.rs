//! Smart defaults, in force when `policy.exec` is not configured: destructive system commands
//! are denied; commands that send data off the machine need approval in direct sessions.

use super::pattern::normalize;
use super::shell::{Analysis, Invocation};
use crate::validate::lexical_normalize;
use std::path::Path;

/// One default rule that matched: its id (`defaults.exec.deny.<id>`) and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultHit {
    pub id: &'static str,
    pub detail: String,
}

const POWER: &[&str] = &["shutdown", "reboot", "halt", "poweroff"];

/// Block devices (`/dev/sda`, `/dev/nvme0n1`, …), not `/dev/null` and friends.
pub fn is_block_device(p: &str) -> bool {
    let Some(dev) = p.strip_prefix("/dev/") else {
        return false;
    };
    [
        "sd", "hd", "vd", "xvd", "nvme", "mmcblk", "loop", "dm-", "md", "disk/", "mapper/", "sr",
    ]
    .iter()
    .any(|b| dev.starts_with(b))
}

/// `/`, `/*`, `~`, `~/`, `~/*`, the home, `/home/u/..` … : what recursive removal must not take.
fn is_root_or_home(target: &str, home: Option<&str>) -> bool {
    let t = target.trim_end_matches('*');
    let norm = lexical_normalize(Path::new(if t.is_empty() { "/" } else { t }));
    if norm == Path::new("/") || t == "~" || t == "~/" {
        return true;
    }
    home.is_some_and(|h| norm == lexical_normalize(Path::new(h)))
}

/// Destructive commands (always denied by default).
pub fn destructive(a: &Analysis, home: Option<&str>) -> Vec<DefaultHit> {
    let mut out = Vec::new();
    for inv in &a.invocations {
        out.extend(destructive_one(inv, home));
    }
    for r in &a.redirects {
        if let Some(t) = r.target.text.as_deref().filter(|t| is_block_device(t)) {
            out.push(DefaultHit {
                id: "blockDeviceWrite",
                detail: format!("output redirected to the block device {t}"),
            });
        }
    }
    out
}

fn destructive_one(inv: &Invocation, home: Option<&str>) -> Option<DefaultHit> {
    let p = inv.program.as_str();
    let n = normalize(p, &inv.args);
    let words = || n.positionals.iter().flatten();
    let hit = |id, detail: String| Some(DefaultHit { id, detail });
    if p == "rm"
        && (n.flags.contains("-r") || n.flags.contains("--no-preserve-root"))
        && let Some(t) = words().find(|t| is_root_or_home(t, home))
    {
        return hit("recursiveRemoveRootOrHome", format!("rm -r of {t}"));
    }
    if p.starts_with("mkfs") || p == "mke2fs" || p == "wipefs" {
        return hit("mkfs", format!("{p} formats a filesystem"));
    }
    if p == "dd"
        && let Some(t) = words()
            .find_map(|w| w.strip_prefix("of="))
            .filter(|t| is_block_device(t))
    {
        return hit(
            "blockDeviceWrite",
            format!("dd writes to the block device {t}"),
        );
    }
    if matches!(p, "tee" | "cp" | "shred" | "cat" | "mv" | "truncate")
        && let Some(t) = words().find(|t| is_block_device(t))
    {
        return hit(
            "blockDeviceWrite",
            format!("{p} writes to the block device {t}"),
        );
    }
    if POWER.contains(&p) {
        return hit("shutdown", format!("{p} stops the machine"));
    }
    if p == "systemctl" && words().any(|w| POWER.contains(&w.as_str()) || w == "kexec") {
        return hit("shutdown", "systemctl stops the machine".into());
    }
    if matches!(p, "init" | "telinit") && words().any(|w| w == "0" || w == "6") {
        return hit(
            "shutdown",
            format!("{p} changes the runlevel to halt or reboot"),
        );
    }
    None
}

/// Commands that send data off the machine (ask, in direct sessions).
pub fn exfiltration(a: &Analysis) -> Vec<DefaultHit> {
    a.invocations.iter().filter_map(exfil_one).collect()
}

fn exfil_one(inv: &Invocation) -> Option<DefaultHit> {
    let p = inv.program.as_str();
    let n = normalize(p, &inv.args);
    let words: Vec<&str> = n.positionals.iter().flatten().map(String::as_str).collect();
    let hit = |detail: String| {
        Some(DefaultHit {
            id: "sendsData",
            detail,
        })
    };
    match p {
        "curl" if ["-d", "-T", "-F"].iter().any(|f| n.flags.contains(*f)) => {
            hit("curl uploads data".into())
        }
        "wget"
            if n.flags
                .iter()
                .any(|f| f.starts_with("--post-") || f == "--body-data" || f == "--body-file") =>
        {
            hit("wget posts data".into())
        }
        "scp" | "sftp" | "nc" | "ncat" | "netcat" | "socat" => {
            hit(format!("{p} sends data over the network"))
        }
        "rsync" if words.iter().any(|w| is_remote(w)) => hit("rsync to a remote host".into()),
        "git" if words.contains(&"push") => hit("git push sends commits to a remote".into()),
        _ => None,
    }
}

/// `host:path`, `user@host:path`, `rsync://…` (not `./a:b` or `/a:b`).
fn is_remote(w: &str) -> bool {
    if w.contains("://") {
        return true;
    }
    match w.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/'),
        None => false,
    }
}
