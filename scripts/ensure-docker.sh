#!/usr/bin/env bash
# Make sure a Docker Engine answers on this machine and a static busybox is at /bin/busybox
# (the minimal sandbox image is built from it). Idempotent; needs root for installs; no systemd.
#
# Environment:
#   DOCKERD_LOG           where a dockerd started here logs (default /var/log/clawden-dockerd.log)
#   DOCKERD_WAIT_SECONDS  how long to wait for `docker info` after starting dockerd (default 60)
#   DOCKERD_PIDFILE       dockerd's pid file (default /var/run/docker.pid, dockerd's own default)
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { printf 'ensure-docker: ERROR: %s\n' "$*" >&2; exit 1; }

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/clawden-dockerd.log}"
DOCKERD_WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"
DOCKERD_PIDFILE="${DOCKERD_PIDFILE:-/var/run/docker.pid}"
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        apt_updated=1
    fi
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
}

docker_ok() { docker info >/dev/null 2>&1; }

# Exit 0 if the ELF file $1 has no PT_INTERP program header (i.e. is statically linked), 1 if it
# has one, 2 if it is not a little-endian ELF we can read. Uses only od (coreutils), so it works
# without binutils (readelf) or file(1).
elf_is_static() {
    local f="$1" magic class phoff phentsize phnum i ptype
    [ -r "$f" ] || return 2
    magic=$(od -An -tx1 -N4 "$f" | tr -d ' \n')
    [ "$magic" = "7f454c46" ] || return 2
    [ "$(od -An -tu1 -j5 -N1 "$f" | tr -d ' \n')" = 1 ] || return 2   # EI_DATA: little-endian
    class=$(od -An -tu1 -j4 -N1 "$f" | tr -d ' \n')
    if [ "$class" = 2 ]; then          # ELF64
        phoff=$(od -An -tu8 -j32 -N8 "$f" | tr -d ' \n')
        phentsize=$(od -An -tu2 -j54 -N2 "$f" | tr -d ' \n')
        phnum=$(od -An -tu2 -j56 -N2 "$f" | tr -d ' \n')
    elif [ "$class" = 1 ]; then        # ELF32
        phoff=$(od -An -tu4 -j28 -N4 "$f" | tr -d ' \n')
        phentsize=$(od -An -tu2 -j42 -N2 "$f" | tr -d ' \n')
        phnum=$(od -An -tu2 -j44 -N2 "$f" | tr -d ' \n')
    else
        return 2
    fi
    for ((i = 0; i < phnum; i++)); do
        ptype=$(od -An -tu4 -j$((phoff + i * phentsize)) -N4 "$f" | tr -d ' \n')
        [ "$ptype" = 3 ] && return 1   # PT_INTERP: dynamically linked
    done
    return 0
}

ensure_busybox() {
    local bb=/bin/busybox rc=0
    if [ "$(id -u)" != 0 ] && ! { [ -e "$bb" ] && elf_is_static "$bb"; }; then
        # clawden takes busybox out of Debian's package itself (apt-get download, no root).
        log "no static $bb and not root: clawden fetches busybox-static from the package archive when it builds the image"
        return 0
    fi
    if [ -e "$bb" ]; then
        elf_is_static "$bb" || rc=$?
        if [ "$rc" = 0 ]; then
            return 0
        fi
        log "$bb is not a static binary (check returned $rc); installing busybox-static"
    else
        log "$bb missing; installing busybox-static"
    fi
    apt_install busybox-static
    rc=0
    elf_is_static "$bb" || rc=$?
    [ "$rc" = 0 ] || die "$bb is still not a static binary after installing busybox-static"
    log "static busybox ready: $("$bb" 2>&1 | head -n1)"
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

ensure_docker() {
    if docker_ok; then
        return 0
    fi
    log "docker info failed; trying to bring up a Docker Engine"

    if ! command -v dockerd >/dev/null 2>&1; then
        log "dockerd not found; installing Debian's docker.io"
        apt_install docker.io
    fi
    command -v docker >/dev/null 2>&1 || apt_install docker.io
    command -v dockerd >/dev/null 2>&1 || die "dockerd still not found after installing docker.io"

    # A dockerd that is already running (e.g. still starting up) is waited for, not duplicated.
    local pidfile="$DOCKERD_PIDFILE" pid=""
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if pid_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = dockerd ]; then
            log "dockerd already running as pid $pid; waiting for it"
        else
            log "removing stale $pidfile (pid '${pid}' not running)"
            rm -f "$pidfile"
            pid=""
        fi
    fi

    if [ -z "$pid" ]; then
        mkdir -p "$(dirname "$DOCKERD_LOG")"
        log "starting dockerd in the background (log: $DOCKERD_LOG)"
        # setsid + nohup: dockerd outlives this script and the CI step that ran it.
        nohup setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
        pid=$!
    fi

    local waited=0
    until docker_ok; do
        if [ "$waited" -ge "$DOCKERD_WAIT_SECONDS" ]; then
            log "docker info still failing after ${DOCKERD_WAIT_SECONDS}s; last lines of $DOCKERD_LOG:"
            tail -n 40 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "Docker Engine did not come up"
        fi
        if ! pid_alive "$pid" && [ ! -f "$pidfile" ]; then
            log "dockerd (pid $pid) exited; last lines of $DOCKERD_LOG:"
            tail -n 40 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "dockerd exited during start-up"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "Docker Engine up after ${waited}s: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo '?')"
}

ensure_docker
ensure_busybox
