#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the baselines of `make bench` (Debian/Ubuntu), idempotently:
# redis-py and pymongo's bson for the redis-py scripts of spec/bench/py_*.py,
# run with the system interpreter /usr/bin/python3; the lua-redis client
# (over LuaSocket) for spec/bench/luaredis_ops.lua.
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

PKGS="python3 python3-redis python3-pymongo time lua-redis lua-socket"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "bench-deps: all installed"
    exit 0
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing >/dev/null
/usr/bin/python3 -c 'import redis, bson' || { echo "bench-deps: redis-py or bson still missing" >&2; exit 1; }
lua5.4 "$(dirname "$0")/../bench/luaredis_ops.lua" - check || { echo "bench-deps: lua-redis does not load in lua5.4" >&2; exit 1; }
echo "bench-deps: installed"
