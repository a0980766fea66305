//! Sets `CLAWDEN_AGENT_SOURCE_HASH`: a hash of this crate's sources, so the agent's build id
//! (in its hello) changes whenever its code does, and host and agent built from the same tree
//! agree on it.

use std::path::Path;

/// FNV-1a, 64 bit: stable across Rust versions (unlike `DefaultHasher`).
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, files);
        } else {
            files.push(p);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.push(root.join("Cargo.toml"));
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in files {
        if let (Ok(rel), Ok(data)) = (f.strip_prefix(root), std::fs::read(&f)) {
            fnv(&mut h, rel.to_string_lossy().as_bytes());
            fnv(&mut h, &[0]);
            fnv(&mut h, &data);
        }
    }
    println!("cargo:rustc-env=CLAWDEN_AGENT_SOURCE_HASH={h:016x}");
}
