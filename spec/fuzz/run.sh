#!/bin/sh
# SPDX-License-Identifier: MIT
# spec/fuzz/run.sh SECONDS TARGET... -- runs the libFuzzer targets built by
# `make fuzz-build` (build-fuzz/fuzz/fuzz_TARGET).
#
# For each target: first every input of spec/fuzz/regress/TARGET/ is replayed
# (crashes found earlier, kept as regression inputs), then the target fuzzes
# for SECONDS starting from spec/fuzz/corpus/TARGET/ (read only: new inputs
# go to build-fuzz/corpus/TARGET/, crashes to build-fuzz/artifacts/TARGET/).
# Prints one line per target: "fuzz TARGET: ok, N executions in S s" or
# "fuzz TARGET: FAILED ...". Exit status 0 when every target passed. POSIX sh.

set -u
cd "$(dirname "$0")/../.." || exit 2
[ $# -ge 2 ] || { echo "usage: $0 SECONDS TARGET..." >&2; exit 2; }
seconds=$1
shift

# Every finding fails the run: ASan/UBSan reports, leaks, timeouts, OOM.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

status=0
for t in "$@"; do
    bin=build-fuzz/fuzz/fuzz_$t
    if [ ! -x "$bin" ]; then
        echo "fuzz $t: FAILED (no $bin; run make fuzz-build)"
        status=1
        continue
    fi
    work=build-fuzz/corpus/$t
    art=build-fuzz/artifacts/$t
    log=build-fuzz/fuzz_$t.log
    mkdir -p "$work" "$art" "spec/fuzz/regress/$t"
    # Regression inputs: each file runs once.
    regress=$(find "spec/fuzz/regress/$t" -type f | sort)
    if [ -n "$regress" ]; then
        # shellcheck disable=SC2086
        if ! "$bin" -runs=1 $regress >"$log" 2>&1; then
            echo "fuzz $t: FAILED on a regression input (log: $log)"
            tail -n 30 "$log"
            status=1
            continue
        fi
    fi
    if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
              -max_len=8192 -print_final_stats=1 -artifact_prefix="$art/" \
              "$work" "spec/fuzz/corpus/$t" "spec/fuzz/regress/$t" >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        echo "fuzz $t: ok, ${execs:-?} executions in ${seconds}s"
    else
        echo "fuzz $t: FAILED (log: $log, inputs in $art/)"
        grep -E 'ERROR|SUMMARY|runtime error|fuzz_' "$log" | head -n 10
        status=1
    fi
done
exit $status
