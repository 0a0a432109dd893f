#!/bin/sh
# spec/bench/run.sh -- `make bench`: rigatoni_store against redis-benchmark.
#
# Starts a throwaway redis-server on a random free loopback port (no
# persistence, own temp dir, always stopped on exit), then measures, each
# over BENCH_ROUNDS rounds (default 5; medians reported), with the baseline
# measured on the same server in the same run:
#   1. Lua module, sequential save_resume_token / get_resume_token ops/s
#      vs redis-benchmark -c 1 -t set,get -d <token size>      (target >= 0.9)
#   2. C core, 16 threads through one rs_store (pool_size 16), save_raw /
#      get_raw ops/s vs redis-benchmark -c 16 -t set,get       (target >= 0.8)
#   3. listing BENCH_LIST_TOKENS (100,000) tokens with the streaming Lua
#      iterator (batch 1000): seconds, and peak RSS of the process
#      (target < 32 MiB); baselines: redis-cli --scan (keys only) and a Lua
#      process that only loads the module and opens a store.
# Prints a table and writes it to build/bench/results.txt.
#
# Knobs: BENCH_ROUNDS, BENCH_LUA_OPS (50000), BENCH_THREAD_OPS (200000),
# BENCH_LIST_TOKENS (100000), BENCH_RSS=vmhwm (peak RSS from /proc instead
# of /usr/bin/time, Debian package `time`), BENCH_STRICT=1 (exit 1 when a
# target is missed).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

ROUNDS=${BENCH_ROUNDS:-5}
LUA_OPS=${BENCH_LUA_OPS:-50000}
THREADS=16
THREAD_OPS=${BENCH_THREAD_OPS:-200000}
LIST_TOKENS=${BENCH_LIST_TOKENS:-100000}
LIST_BATCH=1000
RSS_LIMIT_KIB=32768
OUTDIR=build/bench
LUA=${LUA:-lua5.4}
LUA_CPATH="$ROOT/build/?.so;;"
export LUA_CPATH

for tool in redis-server redis-cli redis-benchmark "$LUA" cc pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found" >&2; exit 2; }
done
if [ ! -f build/rigatoni_store.so ] || [ ! -f build/librigatoni_store.a ]; then
    echo "bench: run make first" >&2; exit 2
fi
mkdir -p "$OUTDIR"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rigatoni-bench.XXXXXX")
SERVER_PID=
PORT=

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    i=0
    while kill -0 "$SERVER_PID" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.1; i=$((i + 1))
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# A random port in 20000..49999 that nothing answers on; then our server
# must be the one answering (its INFO process_id is our pid).
start_server() {
    tries=0
    while [ $tries -lt 20 ]; do
        tries=$((tries + 1))
        r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
        PORT=$((20000 + r % 30000))
        if redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then continue; fi
        redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$TMP" --daemonize no --logfile "$TMP/redis.log" &
        SERVER_PID=$!
        i=0
        while [ $i -lt 50 ]; do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
            if [ "$(cli ping 2>/dev/null)" = PONG ]; then
                if cli info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$SERVER_PID"; then
                    return 0
                fi
                break
            fi
            sleep 0.1; i=$((i + 1))
        done
        stop_server
    done
    echo "bench: could not start redis-server" >&2
    exit 1
}

# median V1 V2 ... (numeric)
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) { print "nan"; exit }
              if (NR % 2) print a[(NR + 1) / 2]
              else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# redis_bench CLIENTS REQUESTS -> "SET_RPS GET_RPS"
redis_bench() {
    redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$1" -n "$2" -t set,get -d "$SIZE" -q 2>/dev/null |
        tr '\r' '\n' | awk '
            $1 == "SET:" && $3 == "requests" { set = $2 }
            $1 == "GET:" && $3 == "requests" { get = $2 }
            END { if (set == "" || get == "") exit 1; print set, get }'
}

now() { date +%s.%N; }

URL=
echo "bench: building build/bench/threads" >&2
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Icore spec/bench/threads.c -o "$OUTDIR/threads" \
    $(pkg-config --cflags --libs hiredis hiredis_ssl libbson-1.0) \
    build/librigatoni_store.a $(pkg-config --libs hiredis hiredis_ssl libbson-1.0) \
    -lssl -lcrypto -lpthread -lm

start_server
URL="redis://127.0.0.1:$PORT"
echo "bench: redis-server $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/') pid $SERVER_PID on 127.0.0.1:$PORT, $ROUNDS rounds" >&2

SIZE=$("$LUA" spec/bench/lua_ops.lua "$URL" size)

# ---- 1. Lua module, sequential ---------------------------------------------
L_SET=; L_GET=; B1_SET=; B1_GET=
r=1
while [ $r -le "$ROUNDS" ]; do
    s=$("$LUA" spec/bench/lua_ops.lua "$URL" set "$LUA_OPS")
    g=$("$LUA" spec/bench/lua_ops.lua "$URL" get "$LUA_OPS")
    b=$(redis_bench 1 "$LUA_OPS") || { echo "bench: redis-benchmark failed" >&2; exit 1; }
    L_SET="$L_SET $s"; L_GET="$L_GET $g"
    B1_SET="$B1_SET ${b% *}"; B1_GET="$B1_GET ${b#* }"
    echo "bench: [1] round $r: lua set $s get $g | redis-benchmark -c1 $b" >&2
    r=$((r + 1))
done

# ---- 2. C core, 16 threads -------------------------------------------------
C_SET=; C_GET=; B16_SET=; B16_GET=
r=1
while [ $r -le "$ROUNDS" ]; do
    out=$("$OUTDIR/threads" "$PORT" "$THREADS" "$THREAD_OPS" "$SIZE" 2>"$TMP/threads.err") ||
        { cat "$TMP/threads.err" >&2; exit 1; }
    s=$(echo "$out" | awk '$1 == "set" { print $2 }')
    g=$(echo "$out" | awk '$1 == "get" { print $2 }')
    b=$(redis_bench "$THREADS" "$THREAD_OPS") || { echo "bench: redis-benchmark failed" >&2; exit 1; }
    C_SET="$C_SET $s"; C_GET="$C_GET $g"
    B16_SET="$B16_SET ${b% *}"; B16_GET="$B16_GET ${b#* }"
    echo "bench: [2] round $r: C x$THREADS set $s get $g | redis-benchmark -c$THREADS $b" >&2
    r=$((r + 1))
done

# ---- 3. listing ------------------------------------------------------------
cli flushall >/dev/null
t0=$(now)
"$LUA" spec/bench/gen_tokens.lua "$LIST_TOKENS" | cli --pipe >"$TMP/pipe.log" 2>&1 ||
    { cat "$TMP/pipe.log" >&2; exit 1; }
t1=$(now)
loaded=$(cli dbsize)
[ "$loaded" -ge "$LIST_TOKENS" ] || { echo "bench: loaded only $loaded keys" >&2; exit 1; }
echo "bench: [3] loaded $loaded tokens in $(echo "$t0 $t1" | awk '{ printf "%.2f", $2 - $1 }') s" >&2

if [ "${BENCH_RSS:-}" != vmhwm ] && [ -x /usr/bin/time ] && /usr/bin/time -f %M true >/dev/null 2>&1; then
    RSS_HOW="/usr/bin/time %M"
else
    RSS_HOW="VmHWM"
fi
# run_lua_list MODE -> "seconds rss_kib"
run_lua_list() {
    if [ "$RSS_HOW" = VmHWM ]; then
        line=$("$LUA" spec/bench/lua_list.lua "$URL" "$1" "$LIST_TOKENS" "$LIST_BATCH")
        echo "$line" | awk '{ print $2, $3 }'
    else
        line=$(/usr/bin/time -f %M -o "$TMP/rss" "$LUA" spec/bench/lua_list.lua "$URL" "$1" "$LIST_TOKENS" "$LIST_BATCH")
        echo "${line#* }" | awk -v rss="$(tail -n 1 "$TMP/rss")" '{ print $1, rss }'
    fi
}
LIST_S=; LIST_RSS=; SCAN_S=; IDLE_RSS=
r=1
while [ $r -le "$ROUNDS" ]; do
    l=$(run_lua_list list)
    i=$(run_lua_list idle)
    t0=$(now)
    n=$(cli --scan --pattern 'rigatoni:resume_token:*' | wc -l)
    t1=$(now)
    [ "$n" -ge "$LIST_TOKENS" ] || { echo "bench: redis-cli --scan saw $n keys" >&2; exit 1; }
    sc=$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')
    LIST_S="$LIST_S ${l% *}"; LIST_RSS="$LIST_RSS ${l#* }"
    SCAN_S="$SCAN_S $sc"; IDLE_RSS="$IDLE_RSS ${i#* }"
    echo "bench: [3] round $r: lua list ${l% *} s, ${l#* } KiB | redis-cli --scan $sc s | idle ${i#* } KiB" >&2
    r=$((r + 1))
done

stop_server

# ---- report ----------------------------------------------------------------
FAILED=0
TABLE="$TMP/table"
# row METRIC OURS BASELINE TARGET_OP TARGET (TARGET_OP: ratio>= | abs< | info)
row() {
    mark=$(awk -v o="$2" -v b="$3" -v op="$4" -v t="$5" 'BEGIN {
        ratio = (b > 0) ? o / b : 0
        if (op == "ratio>=") print (ratio >= t) ? "PASS" : "FAIL"
        else if (op == "abs<") print (o < t) ? "PASS" : "FAIL"
        else print "-" }')
    [ "$mark" = FAIL ] && FAILED=1
    awk -v m="$1" -v o="$2" -v b="$3" -v op="$4" -v t="$5" -v mark="$mark" -v unit="${6:-}" 'BEGIN {
        ratio = (b > 0) ? o / b : 0
        if (op == "ratio>=") tgt = sprintf("ratio >= %.2f", t)
        else if (op == "abs<") tgt = sprintf("< %g %s", t, unit)
        else tgt = "-"
        fmt = (o >= 1000) ? "%12.0f" : "%12.2f"
        printf "%-44s " fmt " " fmt " %7.2f  %-16s %s\n", m, o, b, ratio, tgt, mark }' >>"$TABLE"
}
{
    echo "rigatoni_store benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(uname -n), $(nproc 2>/dev/null || echo '?') CPUs"
    echo "redis-server on 127.0.0.1:$PORT, $ROUNDS rounds, medians; token $SIZE bytes of BSON; ratio = ours / baseline"
    echo
    printf '%-44s %12s %12s %7s  %-16s %s\n' metric ours baseline ratio target ok
    printf '%-44s %12s %12s %7s  %-16s %s\n' "------" "----" "--------" "-----" "------" "--"
} >"$TABLE"
# shellcheck disable=SC2086
{
    row "Lua save_resume_token ops/s (vs rb -c1 SET)" "$(median $L_SET)" "$(median $B1_SET)" "ratio>=" 0.9
    row "Lua get_resume_token ops/s (vs rb -c1 GET)" "$(median $L_GET)" "$(median $B1_GET)" "ratio>=" 0.9
    row "C $THREADS threads save_raw ops/s (vs rb -c$THREADS SET)" "$(median $C_SET)" "$(median $B16_SET)" "ratio>=" 0.8
    row "C $THREADS threads get_raw ops/s (vs rb -c$THREADS GET)" "$(median $C_GET)" "$(median $B16_GET)" "ratio>=" 0.8
    row "list $LIST_TOKENS tokens, s (vs redis-cli --scan)" "$(median $LIST_S)" "$(median $SCAN_S)" info 0
    row "list peak RSS MiB (vs idle Lua+module)" \
        "$(median $LIST_RSS | awk '{ print $1 / 1024 }')" "$(median $IDLE_RSS | awk '{ print $1 / 1024 }')" "abs<" "$((RSS_LIMIT_KIB / 1024))" MiB
}
{
    echo
    echo "peak RSS measured with $RSS_HOW; listing: resume_tokens{batch = $LIST_BATCH}, decoded tokens"
    echo "rounds:"
    echo "  lua set:$L_SET | rb -c1 set:$B1_SET"
    echo "  lua get:$L_GET | rb -c1 get:$B1_GET"
    echo "  C set:$C_SET | rb -c$THREADS set:$B16_SET"
    echo "  C get:$C_GET | rb -c$THREADS get:$B16_GET"
    echo "  list s:$LIST_S | scan s:$SCAN_S"
    echo "  list KiB:$LIST_RSS | idle KiB:$IDLE_RSS"
} >>"$TABLE"
cp "$TABLE" "$OUTDIR/results.txt"
cat "$TABLE"
echo "(written to $OUTDIR/results.txt)"

if [ "$FAILED" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
    exit 1
fi
exit 0
