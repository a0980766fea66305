#!/usr/bin/env bash
# Make sure the Rust toolchain the build needs is here: cargo, rustfmt, clippy.
# Missing components are added with rustup when rustup exists; cargo-nextest is optional.
# Idempotent and silent when everything is present.
set -euo pipefail

log() { printf 'ensure-toolchain: %s\n' "$*" >&2; }
die() { printf 'ensure-toolchain: ERROR: %s\n' "$*" >&2; exit 1; }

# rustup's default install location, in case the caller's PATH lacks it.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    log "cargo found in ${CARGO_HOME:-$HOME/.cargo}/bin (not on the caller's PATH)"
fi

command -v cargo >/dev/null 2>&1 \
    || die "cargo not found (no toolchain can be downloaded here; install Rust with rustup or Debian's cargo)"

have_rustup=0
command -v rustup >/dev/null 2>&1 && have_rustup=1

# component <cargo subcommand probe> <rustup component name>
ensure_component() {
    local probe="$1" component="$2"
    if cargo "$probe" --version >/dev/null 2>&1; then
        return 0
    fi
    if [ "$have_rustup" = 1 ]; then
        log "adding rustup component $component"
        rustup component add "$component" >&2 || die "rustup component add $component failed"
        cargo "$probe" --version >/dev/null 2>&1 || die "cargo $probe still unusable after adding $component"
    else
        die "cargo $probe not available and rustup not found (Debian: apt-get install rustfmt rust-clippy)"
    fi
}

ensure_component fmt rustfmt
ensure_component clippy clippy

if ! cargo nextest --version >/dev/null 2>&1; then
    log "note: cargo-nextest not found (optional; 'make test' uses cargo test)"
fi
exit 0
