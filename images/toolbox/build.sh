#!/usr/bin/env bash
# Build clawden-sandbox:toolbox end to end with no container registry:
# Debian packages -> rootfs.tar (build-rootfs.sh) -> `docker import` as clawden-toolbox-base
# -> `docker build` of this directory. Takes under a minute with a nearby Debian mirror.
#   images/toolbox/build.sh [TAG]     (default TAG: clawden-sandbox:toolbox)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="${1:-clawden-sandbox:toolbox}"
base=clawden-toolbox-base

log() { printf 'toolbox: %s\n' "$*" >&2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/clawden-toolbox.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Images this build replaces; removed afterwards so rebuilds do not pile up (rootfs.tar is
# not bit-reproducible, so every build is a new image).
old_ids="$(docker image inspect --format '{{.Id}}' "$tag" "$base" 2>/dev/null || true)"

start=$(date +%s)
"$here/build-rootfs.sh" "$work"
log "docker import $work/rootfs.tar $base"
docker import \
    --message "clawden toolbox rootfs (mmdebstrap)" \
    "$work/rootfs.tar" "$base" >/dev/null
rm -f "$work/rootfs.tar"
log "docker build -t $tag $here"
docker build -t "$tag" "$here" >&2
for id in $old_ids; do
    docker image inspect "$id" >/dev/null 2>&1 || continue   # already gone with its child
    if [ -z "$(docker image inspect --format '{{join .RepoTags ","}}' "$id")" ]; then
        docker rmi "$id" >/dev/null 2>&1 || log "note: could not remove replaced image $id (in use?)"
    fi
done
log "built $tag in $(( $(date +%s) - start ))s: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
