#!/usr/bin/env bash
# Run the whole test suite (unit, integration incl. the Docker ones, doc tests) and close with
# one plain summary line "tests: N passed, N failed, N skipped" summed over every test binary,
# so the last line is never a per-binary "0 passed" from a target that has no tests.
# Extra arguments go to both cargo test invocations (e.g. --release). Exit status: cargo's.
set -euo pipefail

CARGO="${CARGO:-cargo}"
out="$(mktemp "${TMPDIR:-/tmp}/clawden-cargo-test.XXXXXX")"
trap 'rm -f "$out"' EXIT

status=0
run() { "$@" 2>&1 | tee -a "$out" || { s=$?; [ "$status" -ne 0 ] || status=$s; }; }
# Every crate of the workspace (clawden and the in-container agent), every target.
run "$CARGO" test --workspace --no-fail-fast --all-targets "$@"
run "$CARGO" test --workspace --no-fail-fast --doc "$@"
# The exec and file suites once more on the fallback path (the Engine API's exec, as when a
# sandbox's agent cannot be reached), so both call paths are proven on every run.
CLAWDEN_FORCE_ENGINE_EXEC=1 run "$CARGO" test --no-fail-fast "$@" \
    --test docker_exec --test docker_files --test hostile_implicit_exec --test hostile_supervisor \
    -- --test-threads=2

# "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
awk '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            n = $i + 0
            if ($(i+1) ~ /^passed/)  p += n
            if ($(i+1) ~ /^failed/)  f += n
            if ($(i+1) ~ /^ignored/) s += n
        }
        seen = 1
    }
    END {
        printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s
    }
' "$out"
if [ "$status" -ne 0 ]; then
    echo "cargo test failed (exit $status)" >&2
fi
exit "$status"
