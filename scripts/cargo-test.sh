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
"$CARGO" test --no-fail-fast --all-targets "$@" 2>&1 | tee -a "$out" || status=$?
"$CARGO" test --no-fail-fast --doc "$@" 2>&1 | tee -a "$out" || { s=$?; [ "$status" -ne 0 ] || status=$s; }

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
