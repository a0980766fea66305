//! Sandbox images, built locally through the Engine build API from a tar context (no registry).
//! `minimal`: the files in `images/minimal/` (compiled in) plus the host's static busybox.

use std::path::Path;

pub const MINIMAL_TAG: &str = "clawden-sandbox:minimal";
const MINIMAL_DOCKERFILE: &[u8] = include_bytes!("../images/minimal/Dockerfile");
const MINIMAL_PASSWD: &[u8] = include_bytes!("../images/minimal/etc/passwd");
const MINIMAL_GROUP: &[u8] = include_bytes!("../images/minimal/etc/group");
/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no static busybox found at {0}")]
    NoBusybox(String),
    #[error("{path} is dynamically linked; the scratch image needs a static busybox")]
    NotStatic { path: String },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot assemble the build context: {0}")]
    Tar(String),
}

impl ImageError {
    pub fn fix(&self) -> &'static str {
        "apt-get install busybox-static (or run scripts/ensure-docker.sh)"
    }
}

/// Whether an ELF file has no program interpreter (PT_INTERP), i.e. is statically linked.
pub fn elf_is_static(bytes: &[u8]) -> Result<bool, String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff =
        u64::from_le_bytes(bytes[0x20..0x28].try_into().map_err(|_| "bad header")?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let Some(t) = bytes.get(o..o + 4) else {
            return Err("truncated program headers".into());
        };
        if u32::from_le_bytes(t.try_into().map_err(|_| "bad header")?) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn find_busybox() -> Result<(String, Vec<u8>), ImageError> {
    for p in BUSYBOX_PATHS {
        if let Ok(bytes) = std::fs::read(p) {
            match elf_is_static(&bytes) {
                Ok(true) => return Ok((p.to_string(), bytes)),
                Ok(false) => {
                    return Err(ImageError::NotStatic {
                        path: p.to_string(),
                    });
                }
                Err(m) => {
                    return Err(ImageError::Read {
                        path: p.to_string(),
                        message: m,
                    });
                }
            }
        }
    }
    Err(ImageError::NoBusybox(BUSYBOX_PATHS.join(" or ")))
}

fn add(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), ImageError> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    builder
        .append_data(&mut h, Path::new(path), data)
        .map_err(|e| ImageError::Tar(e.to_string()))
}

/// The tar build context of `clawden-sandbox:minimal`.
pub fn minimal_context() -> Result<Vec<u8>, ImageError> {
    let (_, busybox) = find_busybox()?;
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "Dockerfile", MINIMAL_DOCKERFILE, 0o644)?;
    add(&mut b, "etc/passwd", MINIMAL_PASSWD, 0o644)?;
    add(&mut b, "etc/group", MINIMAL_GROUP, 0o644)?;
    add(&mut b, "busybox", &busybox, 0o755)?;
    b.into_inner().map_err(|e| ImageError::Tar(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_static_detection() {
        // The test binary itself is dynamically linked (Rust's default on glibc).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_is_static(&me), Ok(false));
        assert!(elf_is_static(b"#!/bin/sh\n").is_err());
        assert!(elf_is_static(&[0x7f, b'E', b'L', b'F']).is_err());
    }

    #[test]
    fn minimal_context_has_the_files() {
        let Ok(ctx) = minimal_context() else {
            panic!(
                "static busybox missing: {}",
                ImageError::NoBusybox(String::new()).fix()
            );
        };
        let mut a = tar::Archive::new(ctx.as_slice());
        let mut names: Vec<(String, u32)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("Dockerfile".into(), 0o644),
                ("busybox".into(), 0o755),
                ("etc/group".into(), 0o644),
                ("etc/passwd".into(), 0o644)
            ]
        );
    }
}
