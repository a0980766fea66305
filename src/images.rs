//! Sandbox images, built locally through the Engine build API from a tar context (no registry).
//! `minimal`: the files in `images/minimal/` (compiled in) plus the host's static busybox.
//! `toolbox`: a Debian root filesystem made by `images/toolbox/build-rootfs.sh` (compiled in, run
//! with bash), imported through the Engine API (`POST /images/create?fromSrc=-`), then
//! `images/toolbox/Dockerfile` built on top through the build API.

use std::path::Path;

pub const MINIMAL_TAG: &str = "clawden-sandbox:minimal";
const MINIMAL_DOCKERFILE: &[u8] = include_bytes!("../images/minimal/Dockerfile");
const MINIMAL_PASSWD: &[u8] = include_bytes!("../images/minimal/etc/passwd");
const MINIMAL_GROUP: &[u8] = include_bytes!("../images/minimal/etc/group");
pub const TOOLBOX_TAG: &str = "clawden-sandbox:toolbox";
/// The imported rootfs the toolbox Dockerfile builds `FROM` (repository, tag).
pub const TOOLBOX_BASE: (&str, &str) = ("clawden-toolbox-base", "latest");
const TOOLBOX_DOCKERFILE: &[u8] = include_bytes!("../images/toolbox/Dockerfile");
const TOOLBOX_ROOTFS_SCRIPT: &str = include_str!("../images/toolbox/build-rootfs.sh");
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
    #[error("building the toolbox root filesystem failed: {0}")]
    Rootfs(String),
}

impl ImageError {
    pub fn fix(&self) -> &'static str {
        match self {
            ImageError::Rootfs(_) => {
                "run as root with Debian's apt configured (mmdebstrap is installed if missing); see images/README.md"
            }
            ImageError::Tar(_) => "report this: the build context could not be assembled",
            _ => {
                "apt-get install busybox-static (or run scripts/ensure-docker.sh); without it clawden fetches the package with apt-get download, which needs apt's package lists"
            }
        }
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

/// Where to look for a static busybox: `$CLAWDEN_BUSYBOX_PATHS` (colon-separated; empty: look
/// nowhere on the host), else [`BUSYBOX_PATHS`].
fn busybox_paths() -> Vec<String> {
    match std::env::var("CLAWDEN_BUSYBOX_PATHS") {
        Ok(v) => v
            .split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => BUSYBOX_PATHS.iter().map(|p| p.to_string()).collect(),
    }
}

fn static_busybox(path: &str, bytes: Vec<u8>) -> Result<(String, Vec<u8>), ImageError> {
    match elf_is_static(&bytes) {
        Ok(true) => Ok((path.to_string(), bytes)),
        Ok(false) => Err(ImageError::NotStatic {
            path: path.to_string(),
        }),
        Err(m) => Err(ImageError::Read {
            path: path.to_string(),
            message: m,
        }),
    }
}

fn find_busybox() -> Result<(String, Vec<u8>), ImageError> {
    find_busybox_in(&busybox_paths())
}

fn find_busybox_in(paths: &[String]) -> Result<(String, Vec<u8>), ImageError> {
    for p in paths {
        if let Ok(bytes) = std::fs::read(p) {
            match static_busybox(p, bytes) {
                Ok(found) => return Ok(found),
                // A distribution's dynamic busybox cannot run in a scratch image.
                Err(e) => tracing::info!("{e}; trying Debian's busybox-static package"),
            }
        }
    }
    // Not installed: take the binary out of Debian's package without installing anything
    // (`apt-get download` and `dpkg-deb -x` need no root), so a bare Debian/Ubuntu host with
    // Docker can build the image.
    match busybox_from_package() {
        Ok(found) => Ok(found),
        Err(why) => {
            tracing::debug!("busybox-static from the package archive: {why}");
            Err(ImageError::NoBusybox(format!(
                "{} (and fetching Debian's busybox-static package failed: {why})",
                if paths.is_empty() {
                    "no host path".to_string()
                } else {
                    paths.join(" or ")
                }
            )))
        }
    }
}

/// `busybox` from Debian's `busybox-static` package: downloaded into a temporary directory
/// and unpacked there, never installed.
fn busybox_from_package() -> Result<(String, Vec<u8>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let run = |cmd: &mut std::process::Command| -> Result<(), String> {
        let o = cmd
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    };
    run(std::process::Command::new("apt-get").args(["download", "busybox-static"]))?;
    let deb = std::fs::read_dir(dir.path())
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    run(std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg("root"))?;
    for p in BUSYBOX_PATHS {
        let inside = dir.path().join("root").join(p.trim_start_matches('/'));
        if let Ok(bytes) = std::fs::read(&inside) {
            let shown = format!(
                "{} (from {})",
                p,
                deb.file_name().unwrap_or_default().to_string_lossy()
            );
            return static_busybox(&shown, bytes).map_err(|e| e.to_string());
        }
    }
    Err("the package holds no busybox binary".into())
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
    minimal_context_and_source().map(|(c, _)| c)
}

/// [`minimal_context`], and where its busybox came from (a host path, or the package).
pub fn minimal_context_and_source() -> Result<(Vec<u8>, String), ImageError> {
    let (source, busybox) = find_busybox()?;
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "Dockerfile", MINIMAL_DOCKERFILE, 0o644)?;
    add(&mut b, "etc/passwd", MINIMAL_PASSWD, 0o644)?;
    add(&mut b, "etc/group", MINIMAL_GROUP, 0o644)?;
    add(&mut b, "busybox", &busybox, 0o755)?;
    b.into_inner()
        .map(|c| (c, source))
        .map_err(|e| ImageError::Tar(e.to_string()))
}

/// The tar build context of `clawden-sandbox:toolbox`: its Dockerfile (no COPY; everything
/// comes from the imported rootfs).
pub fn toolbox_context() -> Result<Vec<u8>, ImageError> {
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "Dockerfile", TOOLBOX_DOCKERFILE, 0o644)?;
    b.into_inner().map_err(|e| ImageError::Tar(e.to_string()))
}

/// Run the compiled-in `build-rootfs.sh` with bash into `out_dir`; every line it prints goes to
/// `progress`. Returns the path of the tarball (`out_dir/rootfs.tar`).
pub async fn build_toolbox_rootfs(
    out_dir: &Path,
    progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
) -> Result<std::path::PathBuf, ImageError> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let script = out_dir.join("build-rootfs.sh");
    std::fs::write(&script, TOOLBOX_ROOTFS_SCRIPT)
        .map_err(|e| ImageError::Rootfs(format!("cannot write {}: {e}", script.display())))?;
    let mut child = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(out_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ImageError::Rootfs(format!("cannot run bash: {e}")))?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ImageError::Rootfs("no output pipes".into()));
    };
    // Both streams to progress; the last lines are kept for the error message.
    let mut lines = std::pin::pin!(futures_util::stream::select(
        tokio_stream_lines(BufReader::new(out).lines()),
        tokio_stream_lines(BufReader::new(err).lines()),
    ));
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    use futures_util::StreamExt;
    while let Some(line) = lines.next().await {
        progress(&line);
        if tail.len() == 5 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| ImageError::Rootfs(e.to_string()))?;
    let tarball = out_dir.join("rootfs.tar");
    if !status.success() || !tarball.is_file() {
        return Err(ImageError::Rootfs(format!(
            "build-rootfs.sh exited with {status}: {}",
            Vec::from(tail).join(" | ")
        )));
    }
    Ok(tarball)
}

fn tokio_stream_lines<R: tokio::io::AsyncBufRead + Unpin + Send + 'static>(
    lines: tokio::io::Lines<R>,
) -> impl futures_util::Stream<Item = String> + Send {
    futures_util::stream::unfold(lines, |mut l| async move {
        match l.next_line().await {
            Ok(Some(line)) => Some((line, l)),
            _ => None,
        }
    })
}

/// Why a toolbox build failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolboxError {
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Engine(#[from] crate::engine::EngineError),
}

/// Build `clawden-sandbox:toolbox` end to end: rootfs (Debian packages) → import as
/// `clawden-toolbox-base` → the Dockerfile on top. Returns the new image's ID.
pub async fn build_toolbox(
    engine: &dyn crate::engine::ContainerEngine,
    progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
) -> Result<String, ToolboxError> {
    let work = tempfile::Builder::new()
        .prefix("clawden-toolbox.")
        .tempdir()
        .map_err(|e| ImageError::Rootfs(format!("cannot make a work directory: {e}")))?;
    progress("step 1/3: Debian root filesystem (build-rootfs.sh)");
    let tarball = build_toolbox_rootfs(work.path(), progress).await?;
    let (repo, tag) = TOOLBOX_BASE;
    progress(&format!(
        "step 2/3: import {} as {repo}:{tag}",
        tarball.display()
    ));
    engine.import_rootfs(repo, tag, &tarball, progress).await?;
    let _ = std::fs::remove_file(&tarball);
    progress(&format!("step 3/3: build {TOOLBOX_TAG}"));
    Ok(engine
        .build_image(TOOLBOX_TAG, toolbox_context()?, progress)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host where busybox-static was never installed: the binary comes out of the package
    /// archive (apt-get download + dpkg-deb, no root, nothing installed).
    #[test]
    fn without_a_host_busybox_the_package_is_unpacked_not_installed() {
        let (shown, bytes) = find_busybox_in(&[]).expect("busybox from the package archive");
        assert!(shown.contains("busybox-static"), "{shown}");
        assert_eq!(elf_is_static(&bytes), Ok(true));
        assert!(bytes.len() > 500_000);
        let missing = vec!["/nonexistent/busybox".to_string()];
        assert!(find_busybox_in(&missing).is_ok());
    }

    #[test]
    fn elf_static_detection() {
        // The test binary itself is dynamically linked (Rust's default on glibc).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_is_static(&me), Ok(false));
        assert!(elf_is_static(b"#!/bin/sh\n").is_err());
        assert!(elf_is_static(&[0x7f, b'E', b'L', b'F']).is_err());
    }

    #[test]
    fn toolbox_context_is_the_dockerfile_on_the_imported_base() {
        let ctx = toolbox_context().unwrap();
        let mut a = tar::Archive::new(ctx.as_slice());
        let entries: Vec<(String, u32, Vec<u8>)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                    data,
                )
            })
            .collect();
        assert_eq!(entries.len(), 1);
        let (name, mode, data) = &entries[0];
        assert_eq!((name.as_str(), *mode), ("Dockerfile", 0o644));
        let text = String::from_utf8(data.clone()).unwrap();
        // The Dockerfile builds on exactly the image the import step tags, and copies nothing
        // from the context (which holds only the Dockerfile).
        let from: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("FROM "))
            .collect();
        assert_eq!(from, [format!("FROM {}", TOOLBOX_BASE.0)]);
        assert!(!text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("COPY ") || l.starts_with("ADD ")
        }));
        assert!(text.contains("LABEL clawden.image=toolbox"));
    }

    #[test]
    fn toolbox_rootfs_script_is_the_checked_in_one() {
        assert!(TOOLBOX_ROOTFS_SCRIPT.starts_with("#!/usr/bin/env bash"));
        assert!(TOOLBOX_ROOTFS_SCRIPT.contains("mmdebstrap"));
        assert!(TOOLBOX_ROOTFS_SCRIPT.contains("rootfs.tar"));
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
