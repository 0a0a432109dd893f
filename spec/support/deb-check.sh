#!/bin/sh
# spec/support/deb-check.sh -- `make deb`: builds the Debian packages from a
# clean copy of the tree (dpkg-buildpackage -us -uc -b, hardening=+all from
# debian/rules), then checks them as a packager would:
#   lintian         no error (warnings are printed, not fatal)
#   hardening-check every binary and shared object: PIE (the host), stack
#                   protector, fortified calls, RELRO, BIND_NOW (Debian 12's
#                   dpkg has no control-flow-protection flag to check)
#   scratch root    the four packages unpacked with dpkg -x (the system is
#                   left alone): the host prints its version and runs a
#                   bundled script's --help, lua5.4 requires the module
# The .deb files are left in OUT (default build-deb/). POSIX sh.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-build-deb}
rm -rf "$OUT"
mkdir -p "$OUT/src"
OUT=$(cd "$OUT" && pwd)
for f in * .[!.]*; do
    case $f in build|build-*|.git) ;; *) [ -e "$f" ] && cp -R "$f" "$OUT/src/" ;; esac
done

echo "deb: dpkg-buildpackage (log: $OUT/build.log)"
if ! (cd "$OUT/src" && env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u CFLAGS -u CPPFLAGS -u LDFLAGS \
        dpkg-buildpackage -us -uc -b) >"$OUT/build.log" 2>&1; then
    tail -n 40 "$OUT/build.log"
    echo "deb: dpkg-buildpackage failed" >&2
    exit 1
fi
rm -rf "$OUT/src"

for p in librigatoni-store0 librigatoni-store-dev lua-rigatoni-store rigatoni-store; do
    ls "$OUT/${p}_"*.deb >/dev/null 2>&1 || { echo "deb: package $p was not built" >&2; exit 1; }
done

echo "deb: lintian"
lintian --tag-display-limit 0 "$OUT"/*.changes >"$OUT/lintian.out" 2>&1 || true
cat "$OUT/lintian.out"
if grep -q '^E: ' "$OUT/lintian.out"; then
    echo "deb: lintian reports errors" >&2
    exit 1
fi

root="$OUT/root"
for deb in "$OUT"/*.deb; do
    case $deb in *-dbgsym_*) ;; *) dpkg-deb -x "$deb" "$root" ;; esac
done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
lib="$root/usr/lib/$multiarch"

echo "deb: hardening-check"
hardening-check --nocfprotection "$root/usr/bin/rigatoni-store" "$lib"/librigatoni_store.so.*.*.* \
    "$lib/lua/5.4/rigatoni_store.so"

echo "deb: the scratch root"
soname=$(readelf -d "$lib"/librigatoni_store.so.*.*.* | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = librigatoni_store.so.0 ] || { echo "deb: SONAME is '$soname'" >&2; exit 1; }
[ "$(readlink "$lib/librigatoni_store.so.0")" = "$(basename "$lib"/librigatoni_store.so.*.*.*)" ]
[ "$(readlink "$lib/librigatoni_store.so")" = librigatoni_store.so.0 ]
"$root/usr/bin/rigatoni-store" --version
env -u RIGATONI_STORE_SCRIPTS "$root/usr/bin/rigatoni-store" stats --help >/dev/null
env -u LUA_CPATH_5_4 LUA_CPATH="$lib/lua/5.4/?.so" \
    lua5.4 -e 'local rs = require "rigatoni_store"; print("lua module " .. rs.version)'
echo "deb: ok"
