#!/bin/sh
# SPDX-License-Identifier: MIT
# spec/bench/metrics_bench.sh -- what metrics cost: ops/s with metrics on
# vs compiled out (-DRS_NO_METRICS), same server, same run.
#
# Builds the core a second time with -DRS_NO_METRICS into
# build/bench/nometrics/, links spec/bench/threads.c against both cores,
# starts a throwaway redis-server (random free loopback port, no
# persistence, own temp dir, stopped on exit), then runs both binaries
# alternately, BENCH_ROUNDS rounds (default 5), for THREADS = 16 and 1, and
# reports the medians and the overhead in % (target < 3%): the median of
# the per-round overheads, each from two runs back to back, which drift on
# a busy machine hurts less than comparing the two medians. Also times the
# bare recording hook (spec/bench/metrics_hook.c: rs_metrics_begin/end,
# no I/O) in ns per call. Prints a table and writes it to
# build/bench/metrics_results.txt.
#
# Knobs: BENCH_ROUNDS (5), BENCH_THREAD_OPS (200000), BENCH_ONE_OPS (50000),
# BENCH_SIZE (value bytes, 64), BENCH_STRICT=1 (exit 1 when the target is missed).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

ROUNDS=${BENCH_ROUNDS:-5}
THREAD_OPS=${BENCH_THREAD_OPS:-200000}
ONE_OPS=${BENCH_ONE_OPS:-50000}
SIZE=${BENCH_SIZE:-64}
TARGET_PCT=3
OUTDIR=build/bench
NOMET=$OUTDIR/nometrics

for tool in redis-server redis-cli cc pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || { echo "metrics bench: $tool not found" >&2; exit 2; }
done
[ -f build/librigatoni_store.a ] || { echo "metrics bench: run make first" >&2; exit 2; }
mkdir -p "$NOMET/obj"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rigatoni-metrics-bench.XXXXXX")
SERVER_PID=
PORT=

. spec/bench/lib.sh
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP




# ---- build: the core without metrics, and the bench binaries -----------------
DEPS="hiredis hiredis_ssl libbson-1.0"
# shellcheck disable=SC2046,SC2086
CFLAGS_COMMON="-std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wno-unused-parameter $(pkg-config --cflags $DEPS) -Icore"
# shellcheck disable=SC2086
LIBS="$(pkg-config --libs $DEPS) -lssl -lcrypto -lpthread -lm"
echo "metrics bench: building the core with -DRS_NO_METRICS into $NOMET" >&2
rm -f "$NOMET/obj/"*.o "$NOMET/librigatoni_store.a"
for src in core/*.c; do
    obj="$NOMET/obj/$(basename "$src" .c).o"
    # shellcheck disable=SC2086
    cc $CFLAGS_COMMON -fPIC -DRS_NO_METRICS -c "$src" -o "$obj"
done
ar rcs "$NOMET/librigatoni_store.a" "$NOMET"/obj/*.o
# shellcheck disable=SC2086
cc $CFLAGS_COMMON spec/bench/threads.c -o "$OUTDIR/threads_metrics" build/librigatoni_store.a $LIBS
# shellcheck disable=SC2086
cc $CFLAGS_COMMON spec/bench/threads.c -o "$NOMET/threads" "$NOMET/librigatoni_store.a" $LIBS
# shellcheck disable=SC2086
cc $CFLAGS_COMMON spec/bench/metrics_hook.c -o "$OUTDIR/metrics_hook" build/librigatoni_store.a $LIBS

start_server
echo "metrics bench: redis-server pid $SERVER_PID on 127.0.0.1:$PORT, $ROUNDS rounds" >&2

# run_threads BINARY THREADS OPS -> "SET GET"
run_threads() {
    out=$("$1" "$PORT" "$2" "$3" "$SIZE" 2>"$TMP/threads.err") || { cat "$TMP/threads.err" >&2; exit 1; }
    echo "$out" | awk '$1 == "set" { s = $2 } $1 == "get" { g = $2 } END { print s, g }'
}

# measure THREADS OPS LABEL -> sets ON_SET ON_GET OFF_SET OFF_GET (lists)
measure() {
    ON_SET=; ON_GET=; OFF_SET=; OFF_GET=
    r=1
    while [ $r -le "$ROUNDS" ]; do
        # alternate which goes first, so a drift of the machine hits both alike
        if [ $((r % 2)) -eq 1 ]; then
            on=$(run_threads "$OUTDIR/threads_metrics" "$1" "$2"); off=$(run_threads "$NOMET/threads" "$1" "$2")
        else
            off=$(run_threads "$NOMET/threads" "$1" "$2"); on=$(run_threads "$OUTDIR/threads_metrics" "$1" "$2")
        fi
        ON_SET="$ON_SET ${on% *}"; ON_GET="$ON_GET ${on#* }"
        OFF_SET="$OFF_SET ${off% *}"; OFF_GET="$OFF_GET ${off#* }"
        echo "metrics bench: [$3] round $r: metrics on $on | off $off (set get ops/s)" >&2
        r=$((r + 1))
    done
}

FAILED=0
TABLE="$TMP/table"
{
    echo "rigatoni_store metrics overhead  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(uname -n), $(nproc 2>/dev/null || echo '?') CPUs"
    echo "spec/bench/threads.c, values of $SIZE bytes, $ROUNDS alternating rounds; ops/s: medians;"
    echo "overhead: median over rounds of (off - on) / off, both runs of a round back to back"
    echo
    printf '%-34s %12s %12s %9s  %s\n' "ops/s" "metrics on" "compiled out" "overhead" "target < ${TARGET_PCT}%"
} >"$TABLE"

# row LABEL "ON1 ON2 ..." "OFF1 OFF2 ..." (same round order)
row() {
    on=$(median $2); off=$(median $3)
    # shellcheck disable=SC2086
    pct=$(median $(awk -v a="$2" -v b="$3" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) printf "%.2f\n", (y[i] > 0) ? (y[i] - x[i]) / y[i] * 100 : 0 }'))
    ok=$(awk -v p="$pct" -v t="$TARGET_PCT" 'BEGIN { print (p < t) ? "PASS" : "FAIL" }')
    [ "$ok" = FAIL ] && FAILED=1
    printf '%-34s %12.0f %12.0f %8s%%  %s\n' "$1" "$on" "$off" "$pct" "$ok" >>"$TABLE"
}

measure 16 "$THREAD_OPS" x16
# shellcheck disable=SC2086
{ row "16 threads save_raw" "$ON_SET" "$OFF_SET"; row "16 threads get_raw" "$ON_GET" "$OFF_GET"; }
ROUNDS_16="  x16 on set:$ON_SET | off set:$OFF_SET
  x16 on get:$ON_GET | off get:$OFF_GET"
measure 1 "$ONE_OPS" x1
# shellcheck disable=SC2086
{ row "1 thread save_raw" "$ON_SET" "$OFF_SET"; row "1 thread get_raw" "$ON_GET" "$OFF_GET"; }

HOOK1=$("$OUTDIR/metrics_hook" "$PORT" 1 5000000 | awk '{ print $2 }')
HOOK16=$("$OUTDIR/metrics_hook" "$PORT" 16 1000000 | awk '{ print $2 }')
stop_server
{
    echo
    echo "recording hook alone (rs_metrics_begin + rs_metrics_end, no I/O): $HOOK1 ns/call (1 thread), $HOOK16 ns/call (16 threads, same op kind)"
    awk -v h="$HOOK1" -v o="$(median $ON_GET)" 'BEGIN { printf "estimated overhead, 1 thread: hook / time per call = %.1f ns / %.1f us = %.2f%%\n", h, 1e6 / o, h * o / 1e7 }'
    echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
    echo "rounds:"
    echo "$ROUNDS_16"
    echo "  x1 on set:$ON_SET | off set:$OFF_SET"
    echo "  x1 on get:$ON_GET | off get:$OFF_GET"
} >>"$TABLE"
cp "$TABLE" "$OUTDIR/metrics_results.txt"
cat "$TABLE"
echo "(written to $OUTDIR/metrics_results.txt)"
if [ "$FAILED" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
    exit 1
fi
exit 0
