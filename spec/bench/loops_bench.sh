#!/bin/sh
# SPDX-License-Identifier: MIT
# spec/bench/loops_bench.sh -- the store in event loops (issue 23), not part
# of make test. On a throwaway redis-server (random free 127.0.0.1 port, no
# persistence), LOOPS_ROUNDS (3) rounds, medians reported:
#
#   1. worst gap of a 10 ms ticker while a coroutine saves and gets every
#      5 ms and the server is frozen 2 s (SIGSTOP), cqueues and luv
#      (issue target <= 30 ms; spec bound 250 ms)
#   2. 16 coroutines doing get_resume_token through rigatoni_store.cqueues
#      vs redis-benchmark -c 16 -t get on the same server, same round
#      (target >= 1.0x)
#   3. one coroutine, one job at a time, vs the blocking Lua get rate
#      (target >= 0.7x)
#
# Each rate runs LOOPS_SECONDS (3) seconds. Needs `make` (build/) and the
# deps (lua-cqueues, lua-luv, redis-tools). The machine's load shows in the
# figures: run it on a quiet machine, and read the ratios of one round.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
ROUNDS=${LOOPS_ROUNDS:-3}
SECONDS_EACH=${LOOPS_SECONDS:-3}
LUA=${LUA:-lua5.4}
LUA_CPATH="$ROOT/build/?.so;;"
export LUA_CPATH

[ -f build/rigatoni_store.so ] || { echo "loops_bench: build first (make)" >&2; exit 2; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/rs-loops-bench.XXXXXX")
PORT=$($LUA -e 'local s=require"cqueues.socket".listen("127.0.0.1",0); s:listen(); local _,_,p=s:localname(); print(p); s:close()')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
    --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
cleanup() {
    if [ -f "$DIR/redis.pid" ]; then
        pid=$(cat "$DIR/redis.pid")
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
i=0
while ! redis-cli -p "$PORT" ping >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { echo "loops_bench: redis-server did not start" >&2; exit 1; }
    sleep 0.05
done
PID=$(cat "$DIR/redis.pid")
URL="redis://127.0.0.1:$PORT"

measure() { $LUA spec/bench/loops_bench.lua "$URL" "$@"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

: >"$DIR/cq" ; : >"$DIR/uv" ; : >"$DIR/g16" ; : >"$DIR/rb" ; : >"$DIR/r16"
: >"$DIR/g1" ; : >"$DIR/bl" ; : >"$DIR/r1"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    cq=$(measure "$PID" ticker cqueues)
    uv=$(measure "$PID" ticker luv)
    g16=$(measure - get16 "$SECONDS_EACH")
    rb=$(redis-benchmark -p "$PORT" -c 16 -t get -n 200000 -q | tr '\r' '\n' | sed -n 's/^GET: \([0-9.]*\) requests.*/\1/p' | tail -n 1)
    [ -n "$rb" ] || { echo "loops_bench: no GET figure from redis-benchmark" >&2; exit 1; }
    g1=$(measure - get1 "$SECONDS_EACH")
    bl=$(measure - blocking "$SECONDS_EACH")
    echo "round $r: ticker worst gap cqueues $cq ms, luv $uv ms; 16 coroutines $g16 get/s," \
         "redis-benchmark -c 16 $rb get/s; one coroutine $g1 get/s, blocking $bl get/s"
    echo "$cq" >>"$DIR/cq"; echo "$uv" >>"$DIR/uv"; echo "$g16" >>"$DIR/g16"; echo "$rb" >>"$DIR/rb"
    echo "$g1" >>"$DIR/g1"; echo "$bl" >>"$DIR/bl"
    awk -v a="$g16" -v b="$rb" 'BEGIN { printf "%.3f\n", a / b }' >>"$DIR/r16"
    awk -v a="$g1" -v b="$bl" 'BEGIN { printf "%.3f\n", a / b }' >>"$DIR/r1"
    r=$((r + 1))
done
echo "medians of $ROUNDS rounds (load: $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  ticker worst gap, server frozen 2 s: cqueues $(median <"$DIR/cq") ms, luv $(median <"$DIR/uv") ms (target <= 30)"
echo "  16 coroutines (cqueues) $(median <"$DIR/g16") get/s vs redis-benchmark -c 16 $(median <"$DIR/rb") get/s: ratio $(median <"$DIR/r16") (target >= 1.0)"
echo "  one coroutine $(median <"$DIR/g1") get/s vs blocking $(median <"$DIR/bl") get/s: ratio $(median <"$DIR/r1") (target >= 0.7)"
