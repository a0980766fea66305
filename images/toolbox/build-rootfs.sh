#!/usr/bin/env bash
# Build the root filesystem of the toolbox sandbox image as a tarball, with no container
# registry: mmdebstrap installs Debian packages from the same Debian mirror(s) this host's apt
# already uses (read from apt's own configuration, so no host name is written down here).
#
#   images/toolbox/build-rootfs.sh OUT_DIR        -> OUT_DIR/rootfs.tar
#   docker import OUT_DIR/rootfs.tar clawden-toolbox-base
#
# Environment:
#   SUITE               Debian suite (default: this host's VERSION_CODENAME, e.g. bookworm)
#   TOOLBOX_PACKAGES    packages to include (default below)
#   TOOLBOX_VARIANT     mmdebstrap variant (default: apt = Essential packages + apt)
#   TOOLBOX_SOURCES     a sources.list / deb822 file to use instead of the host's Debian entries
# Needs root (mmdebstrap's root mode). Installs Debian's mmdebstrap if it is missing.
set -euo pipefail

log() { printf 'build-rootfs: %s\n' "$*" >&2; }
die() { printf 'build-rootfs: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
out_dir="$1"
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root)"

DEFAULT_PACKAGES="bash coreutils findutils grep sed gawk diffutils patch less procps file
    tar gzip xz-utils bzip2 unzip git python3 ripgrep jq curl ca-certificates"
TOOLBOX_PACKAGES="${TOOLBOX_PACKAGES:-$DEFAULT_PACKAGES}"
TOOLBOX_VARIANT="${TOOLBOX_VARIANT:-apt}"

if [ -z "${SUITE:-}" ]; then
    # shellcheck disable=SC1091
    SUITE="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [ -n "$SUITE" ] || die "cannot tell the host's Debian codename; set SUITE"
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
if ! command -v mmdebstrap >/dev/null 2>&1; then
    log "installing Debian's mmdebstrap"
    apt-get update -qq >&2 && apt_updated=1
    apt-get install -y -qq --no-install-recommends mmdebstrap >&2 || die "cannot install mmdebstrap"
fi

# The host's Debian repositories for SUITE (and SUITE-updates, SUITE-security, ...), exactly as
# apt resolved them: one "deb URI RELEASE COMPONENT" line per repository and component.
host_debian_sources() {
    # shellcheck disable=SC2016  # $(...) here are apt's format fields, not shell
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
        'Identifier: Packages' 'Origin: Debian' 2>/dev/null |
        awk -v s="$SUITE" '$2 == s || index($2, s "-") == 1' | sort -u
}

mirrors=()
if [ -n "${TOOLBOX_SOURCES:-}" ]; then
    [ -f "$TOOLBOX_SOURCES" ] || die "TOOLBOX_SOURCES=$TOOLBOX_SOURCES is not a file"
    mirrors+=("$TOOLBOX_SOURCES")
else
    entries="$(host_debian_sources)"
    if [ -z "$entries" ] && [ "$apt_updated" = 0 ]; then
        log "no Debian package lists for $SUITE yet; apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        entries="$(host_debian_sources)"
    fi
    [ -n "$entries" ] || die "apt has no Debian repository for suite $SUITE configured; set TOOLBOX_SOURCES"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    opts=""
    [ -f "$keyring" ] && opts="[signed-by=$keyring] "
    while read -r uri release component; do
        mirrors+=("deb ${opts}${uri} ${release} ${component}")
    done <<<"$entries"
fi

# Carry over the host's apt settings that decide whether the mirror can be reached at all.
aptopts=()
for key in Acquire::Check-Valid-Until Acquire::Check-Date Acquire::http::Proxy Acquire::https::Proxy; do
    val="$(apt-config dump "$key" 2>/dev/null | awk -v k="$key" '$1 == k { $1 = ""; sub(/^ /, ""); sub(/;$/, ""); print; exit }')"
    [ -n "$val" ] && aptopts+=(--aptopt="$key $val;")
done

# shellcheck disable=SC2206
pkgs=($TOOLBOX_PACKAGES)
include="$(IFS=,; echo "${pkgs[*]}")"

mkdir -p "$out_dir"
tarball="$out_dir/rootfs.tar"
rm -f "$tarball"

log "suite $SUITE, variant $TOOLBOX_VARIANT, ${#pkgs[@]} packages, ${#mirrors[@]} source entries"
for m in "${mirrors[@]}"; do log "  source: $m"; done

start=$(date +%s)
# shellcheck disable=SC2016  # "$1" in the hooks is expanded by mmdebstrap's hook shell
mmdebstrap \
    --mode=root \
    --variant="$TOOLBOX_VARIANT" \
    --include="$include" \
    --format=tar \
    "${aptopts[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -f "$1"/etc/hostname "$1"/etc/resolv.conf' \
    --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
    "$SUITE" "$tarball" "${mirrors[@]}"
log "wrote $tarball ($(du -h "$tarball" | cut -f1)) in $(( $(date +%s) - start ))s"
