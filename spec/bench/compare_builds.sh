#!/bin/sh
# SPDX-License-Identifier: MIT
# spec/bench/compare_builds.sh [BASE_REV] -- `make bench-compare BASE=rev`:
# is this tree's build as fast as BASE_REV's (default 2ad9da6) on the
# sequential Lua rows and the 16-thread rows of `make bench`?
#
# BASE_REV is built (make -j2 all) in a temporary `git worktree`, removed
# again on exit. One redis-server (127.0.0.1, random port, no persistence)
# serves both builds. Each of COMPARE_ROUNDS (7) rounds runs, new and old
# back to back, the order swapped every round:
#   spec/bench/lua_ops.lua set / get (BENCH_LUA_OPS, 50000), each build's
#   Lua module by LUA_CPATH;
#   spec/bench/threads.c (16 threads, BENCH_THREAD_OPS, 200000), this
#   tree's source compiled against each tree's core/ headers and
#   build/librigatoni_store.a;
# then redis-benchmark -c 1 and -c 16 (SET, GET), which neither build
# touches: their spread across rounds shows how noisy the machine was.
# Per row: new median, old median, the median of the per-round ratios
# new/old and their range, and whether that median ratio is >= 0.95.
# Prints the table and writes it to build/bench/compare.txt.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

BASE=${1:-2ad9da6}
ROUNDS=${COMPARE_ROUNDS:-7}
LUA_OPS=${BENCH_LUA_OPS:-50000}
THREADS=16
THREAD_OPS=${BENCH_THREAD_OPS:-200000}
LUA=${LUA:-lua5.4}
WITHIN=0.95

for tool in git setsid redis-server redis-cli redis-benchmark "$LUA" cc pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || { echo "compare: $tool not found" >&2; exit 2; }
done
if [ ! -f build/rigatoni_store.so ] || [ ! -f build/librigatoni_store.a ]; then
    echo "compare: run make first" >&2; exit 2
fi
BASE_SHA=$(git rev-parse --verify --quiet "$BASE^{commit}") ||
    { echo "compare: '$BASE' is not a commit" >&2; exit 2; }
NEW_DESC="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- core lua || echo '+changes')"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rigatoni-compare.XXXXXX")
BASE_TREE=$TMP/base
SERVER_PID=
PORT=
BUILD_PID=
. spec/bench/lib.sh
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    stop_server
    if [ -n "$BUILD_PID" ]; then   # interrupted while building: the whole make
        kill -TERM -- "-$BUILD_PID" 2>/dev/null || true
        wait "$BUILD_PID" 2>/dev/null || true
    fi
    if [ -d "$BASE_TREE" ] && ! git worktree remove --force "$BASE_TREE" 2>/dev/null; then
        rm -rf "$BASE_TREE"
        git worktree prune   # drops the record of the directory just removed
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---- builds: new = a copy of build/ (a concurrent make may rewrite it) ------
echo "compare: building $BASE ($BASE_SHA) in a temporary worktree" >&2
git worktree add --quiet --detach "$BASE_TREE" "$BASE_SHA"
# in its own process group, waited for, so that a signal stops the script
# at once and cleanup can stop make and its compilers before removing the tree
setsid make -C "$BASE_TREE" -j2 all >"$TMP/base-build.log" 2>&1 &
BUILD_PID=$!
rc=0
wait "$BUILD_PID" || rc=$?
BUILD_PID=
[ "$rc" = 0 ] || { tail -n 30 "$TMP/base-build.log" >&2; echo "compare: building $BASE failed" >&2; exit 1; }
mkdir -p "$TMP/new" "$TMP/old"
cp build/rigatoni_store.so build/librigatoni_store.a "$TMP/new/"
cp "$BASE_TREE/build/rigatoni_store.so" "$BASE_TREE/build/librigatoni_store.a" "$TMP/old/"
LIBS=$(pkg-config --libs hiredis hiredis_ssl libbson-1.0)
CFLAGS_DEPS=$(pkg-config --cflags hiredis hiredis_ssl libbson-1.0)
build_threads() {   # SIDE TREE
    # shellcheck disable=SC2086
    cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -I"$2/core" spec/bench/threads.c -o "$TMP/$1/threads" \
        $CFLAGS_DEPS "$TMP/$1/librigatoni_store.a" $LIBS -lssl -lcrypto -lpthread -lm
}
build_threads new "$ROOT"
build_threads old "$BASE_TREE"
# the base tree is not needed any more
git worktree remove --force "$BASE_TREE"

SIZE=$(LUA_CPATH="$TMP/new/?.so;;" "$LUA" spec/bench/lua_ops.lua "redis://127.0.0.1:1" size)
start_server
URL="redis://127.0.0.1:$PORT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
echo "compare: redis-server pid $SERVER_PID on 127.0.0.1:$PORT, $ROUNDS rounds, new $NEW_DESC vs old $BASE" >&2

lua_ops() {   # MODE SIDE -> ops/s
    LUA_CPATH="$TMP/$2/?.so;;" "$LUA" spec/bench/lua_ops.lua "$URL" "$1" "$LUA_OPS" ||
        { echo "compare: lua_ops.lua $1 ($2) failed" >&2; exit 1; }
}
threads() {   # SIDE -> "set get"
    "$TMP/$1/threads" "$PORT" "$THREADS" "$THREAD_OPS" "$SIZE" 2>"$TMP/threads.err" |
        awk '$1 == "set" { s = $2 } $1 == "get" { g = $2 } END { if (s == "" || g == "") exit 1; print s, g }' ||
        { cat "$TMP/threads.err" >&2; echo "compare: threads ($1) failed" >&2; exit 1; }
}
# pair CMD...: "CMD... new" and "CMD... old" back to back, new first in odd
# rounds; sets NEW and OLD
pair() {
    if [ $((r % 2)) = 1 ]; then
        NEW=$("$@" new); OLD=$("$@" old)
    else
        OLD=$("$@" old); NEW=$("$@" new)
    fi
}

NEW_LS=; OLD_LS=; NEW_LG=; OLD_LG=; NEW_CS=; OLD_CS=; NEW_CG=; OLD_CG=
RB1_S=; RB1_G=; RB16_S=; RB16_G=
r=1
while [ "$r" -le "$ROUNDS" ]; do
    pair lua_ops set
    NEW_LS="$NEW_LS $NEW"; OLD_LS="$OLD_LS $OLD"; line="lua set new $NEW old $OLD"
    pair lua_ops get
    NEW_LG="$NEW_LG $NEW"; OLD_LG="$OLD_LG $OLD"; line="$line, get new $NEW old $OLD"
    pair threads
    NEW_CS="$NEW_CS ${NEW% *}"; NEW_CG="$NEW_CG ${NEW#* }"
    OLD_CS="$OLD_CS ${OLD% *}"; OLD_CG="$OLD_CG ${OLD#* }"
    line="$line | C x$THREADS new $NEW old $OLD"
    b1=$(redis_bench 1 "$LUA_OPS") || { echo "compare: redis-benchmark -c 1 failed" >&2; exit 1; }
    b16=$(redis_bench "$THREADS" "$THREAD_OPS") || { echo "compare: redis-benchmark -c $THREADS failed" >&2; exit 1; }
    RB1_S="$RB1_S ${b1% *}"; RB1_G="$RB1_G ${b1#* }"
    RB16_S="$RB16_S ${b16% *}"; RB16_G="$RB16_G ${b16#* }"
    echo "compare: round $r: $line | rb -c1 $b1 | rb -c$THREADS $b16" >&2
    r=$((r + 1))
done
stop_server

# ---- report ------------------------------------------------------------------
# ratio_range "A.." "B.." -> "min..max" of the per-round ratios Ai/Bi
ratio_range() {
    printf '%s\n%s\n' "$1" "$2" | awk 'NR == 1 { n = split($0, a) }
        NR == 2 { split($0, b); lo = 1e9; hi = 0
                  for (i = 1; i <= n; i++) if (b[i] > 0) { q = a[i] / b[i]; if (q < lo) lo = q; if (q > hi) hi = q }
                  printf "%.2f..%.2f\n", lo, hi }'
}
cmp_row() {   # METRIC NEW OLD
    pr=$(paired_median "$2" "$3")
    # shellcheck disable=SC2086
    awk -v m="$1" -v n="$(median $2)" -v o="$(median $3)" -v pr="$pr" -v rr="$(ratio_range "$2" "$3")" -v w="$WITHIN" 'BEGIN {
        printf "%-40s %10.0f %10.0f %7.3f  %-11s %s\n", m, n, o, pr, rr, (pr >= w) ? "yes" : "NO" }'
}
noise_row() {   # METRIC VALUES
    # shellcheck disable=SC2086
    printf '%s\n' $2 | sort -g | awk -v m="$1" -v med="$(median $2)" '{ v[NR] = $1 }
        END { printf "%-40s %10.0f %10.0f %10.0f  %+.1f%% / %+.1f%%\n", m, med, v[1], v[NR],
                     (v[1] / med - 1) * 100, (v[NR] / med - 1) * 100 }'
}

mkdir -p build/bench
OUT=build/bench/compare.txt
{
    echo "rigatoni_store build comparison  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(uname -n), $(nproc) CPUs, redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')"
    echo "new = $NEW_DESC (this tree), old = $BASE ($BASE_SHA); $ROUNDS rounds, new and old back to back, order swapped each round; token $SIZE bytes"
    echo
    printf '%-40s %10s %10s %7s  %-11s %s\n' metric "new" "old" "new/old" "range" "within 5%"
    printf '%-40s %10s %10s %7s  %-11s %s\n' "------" "---" "---" "-------" "-----" "---------"
    cmp_row "Lua save_resume_token ops/s" "$NEW_LS" "$OLD_LS"
    cmp_row "Lua get_resume_token ops/s" "$NEW_LG" "$OLD_LG"
    cmp_row "C $THREADS threads save_raw ops/s" "$NEW_CS" "$OLD_CS"
    cmp_row "C $THREADS threads get_raw ops/s" "$NEW_CG" "$OLD_CG"
    echo
    echo "noise: redis-benchmark (the same in both builds' rounds)"
    printf '%-40s %10s %10s %10s  %s\n' metric median min max "min / max vs median"
    noise_row "rb -c1 SET ops/s" "$RB1_S"
    noise_row "rb -c1 GET ops/s" "$RB1_G"
    noise_row "rb -c$THREADS SET ops/s" "$RB16_S"
    noise_row "rb -c$THREADS GET ops/s" "$RB16_G"
    echo
    echo "new/old = median of the per-round ratios; range = their min..max; within 5% = new/old >= $WITHIN"
    echo "per round: lua set new:$NEW_LS | old:$OLD_LS"
    echo "           lua get new:$NEW_LG | old:$OLD_LG"
    echo "           C set new:$NEW_CS | old:$OLD_CS"
    echo "           C get new:$NEW_CG | old:$OLD_CG"
    echo "           rb -c1 set:$RB1_S get:$RB1_G | rb -c$THREADS set:$RB16_S get:$RB16_G"
    echo "$(($(date +%s) - T_START)) s of rounds; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
} >"$OUT"
cat "$OUT"
echo "(written to $OUT)"
