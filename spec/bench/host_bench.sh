#!/bin/sh
# spec/bench/host_bench.sh -- the `rigatoni-store` host and its scripts.
#
#   1. migrate of MIGRATE_TOKENS (100,000) tokens between two local
#      redis-servers: tokens/s (target >= 50,000/s), against a baseline of
#      `redis-cli --scan` + DUMP/PTTL/RESTORE in a shell loop on the same
#      data. The loop spawns three redis-cli per key, so it is capped at
#      BASELINE_KEYS (2,000) keys and its rate extrapolated (said so below).
#   2. `list --format jsonl` of LIST_TOKENS (1,000,000) tokens: seconds and
#      peak RSS (target < 64 MiB: the walk keeps 16 bytes per name it met,
#      32 MiB at 1,000,000; core/seen_set.c), output to /dev/null.
#   3. start-up of the host for a trivial script (`-e 'return 0'`): hyperfine
#      when installed, else the mean of STARTUP_RUNS (100) runs (target < 10 ms);
#      baseline: the plain interpreter, `lua5.4 -e 'return 0'`, measured alike.
#
# Servers: random free loopback ports, no persistence, own temp dir, always
# stopped on exit. Prints a table and writes build/bench/host_results.txt.
# When BENCH_ROWS names a file (spec/bench/run.sh sets it), the results are
# also appended there as rows of run.sh's table (tab separated: metric, ours,
# baseline, op, target, unit).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

MIGRATE_TOKENS=${MIGRATE_TOKENS:-100000}
LIST_TOKENS=${LIST_TOKENS:-1000000}
BASELINE_KEYS=${BASELINE_KEYS:-2000}
STARTUP_RUNS=${STARTUP_RUNS:-100}
BIN=$ROOT/build/rigatoni-store
OUTDIR=build/bench
LUA_CPATH="$ROOT/build/?.so;;"
export LUA_CPATH

for tool in redis-server redis-cli lua5.4; do
    command -v "$tool" >/dev/null 2>&1 || { echo "host_bench: $tool not found" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "host_bench: $BIN missing (run make)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rs-host-bench.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ns() { date +%s%N; }

. spec/bench/lib.sh
A=$(start_redis "$TMP/a"); PIDS="$PIDS $(cat "$TMP/a/pid")"
B=$(start_redis "$TMP/b"); PIDS="$PIDS $(cat "$TMP/b/pid")"

load() {   # port count
    lua5.4 spec/bench/gen_tokens.lua "$2" | redis-cli -p "$1" --pipe >/dev/null
}

# ---- 1. migrate ------------------------------------------------------------
load "$A" "$MIGRATE_TOKENS"
# Half of them with a TTL, so PTTL is carried for real.
redis-cli -p "$A" EVAL "local n=0 for i=1,tonumber(ARGV[1]),2 do redis.call('EXPIRE', string.format('rigatoni:resume_token:bench_coll_%06d', i), 86400) n=n+1 end return n" 0 "$MIGRATE_TOKENS" >/dev/null

t0=$(now_ns)
"$BIN" -q -u "redis://127.0.0.1:$A" migrate --to "redis://127.0.0.1:$B" >"$TMP/migrate.out"
t1=$(now_ns)
migrate_s=$(echo "$t0 $t1" | awk '{printf "%.3f", ($2-$1)/1e9}')
migrate_rate=$(echo "$MIGRATE_TOKENS $migrate_s" | awk '{printf "%.0f", $1/$2}')
copied=$(redis-cli -p "$B" DBSIZE)

# Baseline: the shell loop, first BASELINE_KEYS keys, into a fresh db 1 of B.
redis-cli -p "$A" --scan --pattern 'rigatoni:resume_token:*' | head -n "$BASELINE_KEYS" >"$TMP/keys"
t0=$(now_ns)
while IFS= read -r k; do
    ttl=$(redis-cli -p "$A" PTTL "$k")
    [ "$ttl" -lt 0 ] && ttl=0
    redis-cli -p "$A" --raw DUMP "$k" | head -c -1 >"$TMP/dump"
    redis-cli -p "$B" -n 1 -x RESTORE "$k" "$ttl" <"$TMP/dump" >/dev/null
done <"$TMP/keys"
t1=$(now_ns)
base_n=$(wc -l <"$TMP/keys")
base_s=$(echo "$t0 $t1" | awk '{printf "%.3f", ($2-$1)/1e9}')
base_rate=$(echo "$base_n $base_s" | awk '{printf "%.0f", $1/$2}')
base_check=$(redis-cli -p "$B" -n 1 DBSIZE)

# ---- 2. list --format jsonl ---------------------------------------------------
redis-cli -p "$A" FLUSHALL >/dev/null
load "$A" "$LIST_TOKENS"
t0=$(now_ns)
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$TMP/rss" "$BIN" -q -u "redis://127.0.0.1:$A" list --format jsonl >"$TMP/list.out"
    list_rss_kib=$(tail -n 1 "$TMP/rss")
else
    "$BIN" -q -u "redis://127.0.0.1:$A" list --format jsonl >"$TMP/list.out"
    list_rss_kib="?"
fi
t1=$(now_ns)
list_s=$(echo "$t0 $t1" | awk '{printf "%.2f", ($2-$1)/1e9}')
list_lines=$(wc -l <"$TMP/list.out")
rm -f "$TMP/list.out"

# ---- 3. start-up -----------------------------------------------------------------
# mean_ms CMD... -> mean wall time of one run, in ms
mean_ms() {
    if command -v hyperfine >/dev/null 2>&1; then
        hyperfine -N --warmup 10 --export-json "$TMP/hf.json" "$*" >/dev/null
        lua5.4 -e 'local s=io.open(arg[1]):read("a") print(string.format("%.2f", tonumber(s:match([["mean":%s*([%d.e-]+)]]))*1000))' "$TMP/hf.json"
    else
        t0=$(now_ns)
        i=0
        while [ "$i" -lt "$STARTUP_RUNS" ]; do "$@"; i=$((i + 1)); done
        t1=$(now_ns)
        echo "$t0 $t1 $STARTUP_RUNS" | awk '{printf "%.2f", ($2-$1)/1e6/$3}'
    fi
}
if command -v hyperfine >/dev/null 2>&1; then
    startup_how="hyperfine"
    startup_ms=$(mean_ms "$BIN -e 'return 0'")
    lua_ms=$(mean_ms "lua5.4 -e 'return 0'")
else
    startup_how="mean of $STARTUP_RUNS runs"
    startup_ms=$(mean_ms "$BIN" -e 'return 0')
    lua_ms=$(mean_ms lua5.4 -e 'return 0')
fi

mkdir -p "$OUTDIR"
{
    echo "rigatoni-store host benchmarks ($(date -u +%Y-%m-%dT%H:%M:%SZ), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'))"
    printf '%-52s %s\n' "migrate $MIGRATE_TOKENS tokens (copied $copied)" "$migrate_s s, $migrate_rate tokens/s (target >= 50000)"
    printf '%-52s %s\n' "baseline scan+DUMP/RESTORE loop, $base_n keys" "$base_s s, $base_rate keys/s (restored $base_check; extrapolated to $MIGRATE_TOKENS: $(echo "$MIGRATE_TOKENS $base_rate" | awk '{printf "%.0f", $1/$2}') s)"
    printf '%-52s %s\n' "migrate speed-up over the baseline" "$(echo "$migrate_rate $base_rate" | awk '{printf "%.0fx", $1/$2}')"
    printf '%-52s %s\n' "list --format jsonl, $LIST_TOKENS tokens ($list_lines lines)" "$list_s s, peak RSS $list_rss_kib KiB (target < 65536)"
    printf '%-52s %s\n' "start-up, -e 'return 0' ($startup_how)" "$startup_ms ms (target < 10; lua5.4 -e alone: $lua_ms ms)"
} | tee "$OUTDIR/host_results.txt"

if [ -n "${BENCH_ROWS:-}" ]; then
    {
        printf 'host migrate %s tokens/s (vs DUMP/RESTORE loop)\t%s\t%s\tabs>=\t50000\ttokens/s\n' \
            "$MIGRATE_TOKENS" "$migrate_rate" "$base_rate"
        printf 'host list --format jsonl %s tokens, s\t%s\t0\tinfo\t0\t\n' "$LIST_TOKENS" "$list_s"
        if [ "$list_rss_kib" != "?" ]; then
            printf 'host list peak RSS MiB\t%s\t0\tabs<\t64\tMiB\n' \
                "$(echo "$list_rss_kib" | awk '{printf "%.2f", $1/1024}')"
        fi
        printf 'host start-up ms (vs lua5.4 -e alone)\t%s\t%s\tabs<\t10\tms\n' "$startup_ms" "$lua_ms"
    } >>"$BENCH_ROWS"
fi
