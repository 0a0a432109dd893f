#!/bin/sh
# SPDX-License-Identifier: MIT
# make demo: a throwaway redis-server on a free loopback port, the demo
# script against it, and the server stopped whatever happens.
set -eu
dir=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for try in 1 2 3 4 5; do
    port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 ))
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 50 ] && ! redis-cli -p "$port" PING >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1; i=$((i + 1))
    done
    redis-cli -p "$port" PING >/dev/null 2>&1 && break
    kill "$pid" 2>/dev/null || true
    pid=""
done
[ -n "$pid" ] || { echo "demo: could not start redis-server" >&2; cat "$dir/redis.log" >&2; exit 1; }

echo "demo: redis-server pid $pid on 127.0.0.1:$port (stopped at the end)"
REDIS_URL="redis://127.0.0.1:$port" LUA_CPATH="build/?.so;;" lua5.4 spec/support/demo.lua
