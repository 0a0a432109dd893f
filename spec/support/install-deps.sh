#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs what the build and the tests need, idempotently (Debian/Ubuntu).
# Debian 12 ships hiredis 0.14 (no TLS); the hiredis >= 1.0 API with TLS
# comes from libhiredict-shims-dev in bookworm-backports.
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

PKGS="build-essential pkg-config libbson-dev liblua5.4-dev lua5.4 lua-cjson libinih-dev
      lua-busted redis-server redis-sentinel redis-tools openssl libssl-dev
      valgrind clang libclang-rt-14-dev socat"
# spec/output_spec.lua: script(1) (bsdutils) gives a pty; promtool (prometheus,
# below) checks list --format prometheus.
PKGS="$PKGS bsdutils"
# Packaging (spec/packaging_spec.lua): luarocks make into a tree, man -l.
PKGS="$PKGS luarocks man-db groff-base"
# Debian packages (make deb, spec/packaging_spec.lua): build, lintian, hardening-check.
PKGS="$PKGS dpkg-dev debhelper lintian devscripts"
# `serve` (lua/host_http.c) links libmicrohttpd; spec/serve_spec.lua scrapes
# it with curl and checks it with promtool and a real Prometheus server
# (Debian's prometheus, about 100 MB installed: it is in `make deps`, not
# `make bench-deps`, because `make test` runs those specs).
PKGS="$PKGS libmicrohttpd-dev prometheus curl"
# The event loops the adapters fit (lua/rigatoni_store/, spec/loops_spec.lua):
# both packages carry a Lua 5.4 build.
PKGS="$PKGS lua-cqueues lua-luv"
# Valkey 8, the second server the specs run on (spec/run-tests.sh); kept
# apart from PKGS because not every distribution has it (Debian 12: only in
# bookworm-backports).
VALKEY_PKGS="valkey-server valkey-sentinel valkey-tools"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
valkey_ok() { command -v valkey-server >/dev/null && command -v valkey-sentinel >/dev/null; }
hiredis_ok() { pkg-config --atleast-version=1.0 hiredis 2>/dev/null && pkg-config --exists hiredis_ssl; }

if [ -z "$missing" ] && hiredis_ok && valkey_ok; then
    echo "deps: all installed"
    exit 0
fi

. /etc/os-release
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
    HIREDIS=libhiredict-shims-dev
    list=/etc/apt/sources.list.d/bookworm-backports.list
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$list" >/dev/null
    fi
    HIREDIS_TARGET="-t bookworm-backports"
else
    HIREDIS=libhiredis-dev
    HIREDIS_TARGET=""
fi

$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $HIREDIS_TARGET $HIREDIS >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $PKGS >/dev/null
hiredis_ok || { echo "deps: hiredis >= 1.0 with hiredis_ssl still missing" >&2; exit 1; }
if apt-cache show valkey-server >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq $VALKEY_PKGS >/dev/null
else
    echo "deps: no valkey-server package here: the Valkey passes of make test are skipped"
fi
echo "deps: installed"
