#!/bin/sh
# SPDX-License-Identifier: MIT
# spec/bench/serve_bench.sh -- `rigatoni-store serve` at SERVE_TOKENS
# (default 1,000,000) tokens: scrape latency while walks run, the size of
# the exposition with the default --max-series, the exporter's RSS.
#
#   sh spec/bench/serve_bench.sh            (after `make`; needs curl)
#   SERVE_TOKENS=N SERVE_SCRAPES=N SERVE_MAX_SERIES=N sh spec/bench/serve_bench.sh
#
# The tokens are Rigatoni 0.2 stream keys
# rigatoni:resume_token:resume_token:db_<d>:coll_<i> (100 databases), each
# with a 7-day TTL, so every kept stream has its cluster-time and TTL series
# (the largest text). serve runs with --interval 1s: a walk takes longer
# than that, so walks run back to back and every scrape meets one (the
# script checks that rigatoni_exporter_redis_call_seconds or a walk in
# progress was seen). Then as many scrapes with the walk idle
# (--interval 1h), a reference at the same machine load. Each scrape is
# split into curl's connect, the server's turn (connect to first byte)
# and the transfer, with the load average: on a busy machine most of a
# scrape is waiting for a CPU. Targets (issue 24): p99 < 50 ms over 100
# scrapes, exposition < 200 KB with the defaults (--max-size 200 keeps
# it), RSS < 64 MiB. One redis-server on a random loopback port, stopped
# on exit.
set -eu
cd "$(dirname "$0")/../.."
. spec/bench/lib.sh

N=${SERVE_TOKENS:-1000000}
MAX_SERIES=${SERVE_MAX_SERIES:-1000}
SCRAPES=${SERVE_SCRAPES:-100}
BIN=build/rigatoni-store
[ -x "$BIN" ] || { echo "serve_bench: build first (make)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/serve-bench.XXXXXX")
SERVE_PID=
cleanup() { stop_pid "$SERVE_PID"; stop_server; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_server
echo "serve_bench: loading $N stream tokens (7d TTL) into 127.0.0.1:$PORT"
LUA_CPATH="build/?.so;;" LUA_PATH="spec/bench/?.lua;;" lua5.4 - "$N" <<'EOF' | cli --pipe >/dev/null
local rs = require "rigatoni_store"
local tok = require "token"
local n = tonumber(arg[1])
local function bulk(s) return "$" .. #s .. "\r\n" .. s .. "\r\n" end
local out, k = {}, 0
local now = os.time()
for i = 1, n do
  local key = string.format("rigatoni:resume_token:resume_token:db_%02d:coll_%07d", i % 100, i)
  local value = rs.bson.encode(tok.token(now - 60 - (i * 7919) % 864000, 1))
  k = k + 1
  out[k] = "*5\r\n$3\r\nSET\r\n" .. bulk(key) .. bulk(value) .. "$2\r\nEX\r\n$6\r\n604800\r\n"
  if k == 2000 then io.write(table.concat(out, "", 1, k)); k = 0 end
end
io.write(table.concat(out, "", 1, k))
EOF
echo "serve_bench: dbsize $(cli dbsize)"

# start_serve INTERVAL: serve on a free port, its pid in SERVE_PID, URL set.
start_serve() {
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        LPORT=$(random_port)
        "$BIN" -u "redis://127.0.0.1:$PORT" serve --listen "127.0.0.1:$LPORT" --interval "$1" --max-series "$MAX_SERIES" \
            >"$TMP/serve.log" 2>&1 </dev/null &
        SERVE_PID=$!
        sleep 0.5
        kill -0 "$SERVE_PID" 2>/dev/null && break
        grep -q "address already in use" "$TMP/serve.log" || { cat "$TMP/serve.log" >&2; exit 1; }
    done
    URL="http://127.0.0.1:$LPORT/metrics"
    t0=$(date +%s.%N)
    until curl -s --max-time 2 "$URL" | grep -qx 'rigatoni_up 1'; do
        kill -0 "$SERVE_PID" 2>/dev/null || { cat "$TMP/serve.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "serve_bench: serve --interval $1: first walk published after $(echo "$(date +%s.%N) - $t0" | bc) s"
}

# scrapes LABEL: SCRAPES scrapes 50 ms apart; prints p50/p99/max of the
# whole scrape and of its parts (curl's connect, connect to first byte:
# the server's turn, first byte to last: the transfer), and the load.
scrapes() {
    : >"$TMP/times"
    busy=0
    i=0
    while [ $i -lt "$SCRAPES" ]; do
        curl -s -o "$TMP/body" -w '%{time_connect} %{time_starttransfer} %{time_total}\n' --max-time 5 "$URL" >>"$TMP/times"
        c=$(sed -n 's/^rigatoni_exporter_redis_call_seconds //p' "$TMP/body")
        [ "$c" != "0.000" ] && busy=$((busy + 1))
        i=$((i + 1))
        sleep 0.05
    done
    awk '{ print $3, $1, $2 - $1, $3 - $2 }' "$TMP/times" >"$TMP/parts"
    for col in 1 2 3 4; do
        sort -g -k$col "$TMP/parts" | awk -v c=$col -v n="$SCRAPES" -v label="$1" '
            { t[NR] = $c }
            END {
                split("scrape,  connect,  server,  transfer", name, ",")
                printf "serve_bench: %s%s p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", (c == 1 ? label ": " : "    "),
                       name[c], t[int(n * 0.50 + 0.5)] * 1000, t[int(n * 0.99 + 0.5)] * 1000, t[NR] * 1000
            }'
    done
    echo "serve_bench:     load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

start_serve 1s

# SCRAPES scrapes while walks run back to back (--interval 1s, a walk
# takes longer), then as many with the walk idle (--interval 1h) at the
# same machine load: what the walk adds, and what the machine does anyway.
scrapes "during walks (target p99 < 50 ms)"
echo "serve_bench: $busy of $SCRAPES scrapes saw a Redis call of a walk in flight"
walk=$(sed -n 's/^rigatoni_exporter_walk_duration_seconds //p' "$TMP/body")
size=$(wc -c <"$TMP/body")
series=$(grep -vc '^#' "$TMP/body")
streams=$(grep -c '^rigatoni_stream_cluster_time_seconds{' "$TMP/body")
verdict=ok; [ "$size" -lt 204800 ] || verdict=MISSED
echo "serve_bench: last walk took ${walk} s"
echo "serve_bench: exposition $size bytes ($verdict: target < 200 KiB = 204800 bytes), $series samples, $streams streams with series"
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SERVE_PID/status")
rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SERVE_PID/status")
echo "serve_bench: exporter RSS ${rss} kB now, peak ${hwm} kB (target < 64 MiB = 65536 kB)"
stop_pid "$SERVE_PID"
SERVE_PID=
start_serve 1h
scrapes "walk idle, for reference"
