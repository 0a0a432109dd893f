#!/bin/sh
# SPDX-License-Identifier: MIT
# cluster_bench.sh -- Redis Cluster figures of issue 6, on a throwaway
# 3-master/3-replica cluster on loopback (stopped by the trap):
#   1. C core, 16 threads, set/get ops/s vs `redis-benchmark --cluster -c 16`
#      on the same cluster in the same run (target ratio >= 0.8);
#   2. listing 100,000 tokens across the cluster through the Lua iterator:
#      time and peak RSS.
# Medians of BENCH_ROUNDS (default 3). Run from the repository root after
# `make`; results also go to build/bench/cluster_results.txt.
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${BENCH_ROUNDS:-3}
OPS=${BENCH_CLUSTER_OPS:-100000}
TOKENS=${BENCH_LIST_TOKENS:-100000}
SIZE=111
OUT=build/bench
mkdir -p "$OUT"
TMP=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

. spec/bench/lib.sh

# ---- the cluster ------------------------------------------------------------
NODES=""
for i in 0 1 2 3 4 5; do
    port=$(start_redis "$TMP/n$i" --cluster-enabled yes \
        --cluster-config-file "$TMP/n$i/nodes.conf" --loglevel warning) || exit 1
    PIDS="$PIDS $(cat "$TMP/n$i/pid")"
    NODES="$NODES 127.0.0.1:$port"
done
# shellcheck disable=SC2086
redis-cli --cluster create $NODES --cluster-replicas 1 --cluster-yes >"$TMP/create.log" 2>&1
NODES=${NODES# }
FIRST=${NODES%% *}
FIRST_PORT=${FIRST#*:}
n=0
until redis-cli --cluster check "$FIRST" 2>/dev/null | grep -q "All 16384 slots covered"; do
    n=$((n + 1))
    [ $n -lt 150 ] || { echo "cluster not ok; redis-cli --cluster create said:" >&2; cat "$TMP/create.log" >&2; exit 1; }
    sleep 0.2
done
# Slots assigned is not enough: every node must also say cluster_state:ok
# (else the first writes meet CLUSTERDOWN).
for node in $NODES; do
    n=0
    until redis-cli -p "${node#*:}" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'; do
        n=$((n + 1)); [ $n -lt 150 ] || { echo "cluster_state not ok on $node" >&2; exit 1; }; sleep 0.2
    done
done
URL="redis://$(printf '%s' "$NODES" | tr ' ' ',')"


# ---- 1. 16 threads vs redis-benchmark --cluster -c 16 ------------------------
# Built afresh into the temp dir: a build/bench/threads left by an older
# threads.c may not know BENCH_URL.
# shellcheck disable=SC2046
cc -O2 -std=c11 -D_GNU_SOURCE -Icore spec/bench/threads.c -o "$TMP/threads" \
    build/librigatoni_store.a $(pkg-config --libs hiredis hiredis_ssl libbson-1.0) -lssl -lcrypto -lpthread -lm
C_SET="" C_GET="" B_SET="" B_GET=""
r=0
while [ $r -lt "$ROUNDS" ]; do
    out=$(BENCH_URL="$URL" BENCH_CLUSTER=1 "$TMP/threads" 0 16 "$OPS" "$SIZE")
    C_SET="$C_SET $(echo "$out" | awk '/^set/ {print $2}')"
    C_GET="$C_GET $(echo "$out" | awk '/^get/ {print $2}')"
    rb=$(redis-benchmark --cluster -h 127.0.0.1 -p "$FIRST_PORT" -c 16 -n "$OPS" -d "$SIZE" -t set,get -q 2>/dev/null | tr '\r' '\n')
    B_SET="$B_SET $(echo "$rb" | awk '/^ *SET: [0-9.]+ requests per second/ {print $2}')"
    B_GET="$B_GET $(echo "$rb" | awk '/^ *GET: [0-9.]+ requests per second/ {print $2}')"
    r=$((r + 1))
done
cs=$(median $C_SET); cg=$(median $C_GET)
bs=$(median $B_SET); bg=$(median $B_GET)

# ---- 2. listing 100,000 tokens across the cluster -----------------------------
cat >"$TMP/load.lua" <<'LUA'
local rs = require "rigatoni_store"
local s = rs.new{ url = arg[1], cluster_mode = true }
local n, batch = tonumber(arg[2]), {}
for i = 1, n do
  batch[#batch + 1] = { "bench" .. i, rs.bson.encode{ _data = ("82%016X"):format(i) } }
  if #batch == 1000 or i == n then s:save_many(batch) batch = {} end
end
LUA
cat >"$TMP/list.lua" <<'LUA'
local rs = require "rigatoni_store"
local system = require "system"
local s = rs.new{ url = arg[1], cluster_mode = true }
local t0, n = system.gettime(), 0
for _ in s:resume_tokens{ batch = 1000 } do n = n + 1 end
io.write(("%d %.3f\n"):format(n, system.gettime() - t0))
LUA
LUA_CPATH="build/?.so;;" lua5.4 "$TMP/load.lua" "$URL" "$TOKENS"
LIST_T="" LIST_RSS=""
r=0
while [ $r -lt "$ROUNDS" ]; do
    res=$(LUA_CPATH="build/?.so;;" /usr/bin/time -f "%M" -o "$TMP/rss" lua5.4 "$TMP/list.lua" "$URL")
    [ "$(echo "$res" | cut -d' ' -f1)" -ge "$TOKENS" ] || { echo "listing saw $res" >&2; exit 1; }
    LIST_T="$LIST_T $(echo "$res" | cut -d' ' -f2)"
    LIST_RSS="$LIST_RSS $(awk '{printf "%.1f", $1/1024}' "$TMP/rss")"
    r=$((r + 1))
done
lt=$(median $LIST_T); lr=$(median $LIST_RSS)

{
    printf '%-58s %12s %12s %7s\n' "cluster metric (median of $ROUNDS)" ours baseline ratio
    printf '%-58s %12.0f %12.0f %7.2f\n' "C 16 threads set ops/s (vs rb --cluster -c16 SET)" "$cs" "$bs" "$(echo "$cs $bs" | awk '{print $1/$2}')"
    printf '%-58s %12.0f %12.0f %7.2f\n' "C 16 threads get ops/s (vs rb --cluster -c16 GET)" "$cg" "$bg" "$(echo "$cg $bg" | awk '{print $1/$2}')"
    printf '%-58s %12s\n' "list $TOKENS tokens across 3 masters, seconds" "$lt"
    printf '%-58s %12s\n' "list $TOKENS tokens, peak RSS MiB (target < 32)" "$lr"
} | tee "$OUT/cluster_results.txt"

# Rows for spec/bench/run.sh's table (tab separated; see run.sh).
if [ -n "${BENCH_ROWS:-}" ]; then
    {
        printf 'cluster 16 threads save_raw ops/s (vs rb --cluster)\t%s\t%s\tratio>=\t0.8\t\n' "$cs" "$bs"
        printf 'cluster 16 threads get_raw ops/s (vs rb --cluster)\t%s\t%s\tratio>=\t0.8\t\n' "$cg" "$bg"
        printf 'cluster list %s tokens, s\t%s\t0\tinfo\t0\t\n' "$TOKENS" "$lt"
        printf 'cluster list peak RSS MiB\t%s\t0\tabs<\t32\tMiB\n' "$lr"
    } >>"$BENCH_ROWS"
fi
