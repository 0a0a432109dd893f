#!/bin/sh
# SPDX-License-Identifier: MIT
# spec/bench/run.sh -- `make bench`: rigatoni_store against redis-benchmark.
#
# Every server runs on a random free loopback port (127.0.0.1 only), without
# persistence, in its own temp dir, and is stopped on exit (trap). Each
# measurement is repeated BENCH_ROUNDS times (default 5) and the medians are
# reported, the baseline measured on the same server in the same run. Parts
# (all by default; BENCH_ONLY="ops tls" picks some):
#
#   ops       1. Lua module, sequential save_resume_token / get_resume_token
#                ops/s vs redis-benchmark -c 1 -t set,get -d <token size>
#                (target >= 0.9); also with spin_wait = 0 (no spinning
#                before a reply, info), a raw hiredis loop (info) and the
#                lua-redis client (Debian lua-redis, make bench-deps; info:
#                spec/bench/luaredis_ops.lua)
#             2. C core, 16 threads through one rs_store (pool_size 16),
#                save_raw / get_raw ops/s vs redis-benchmark -c 16 (>= 0.8)
#   list      listing BENCH_LIST_TOKENS (100,000) tokens with the streaming
#             Lua iterator (batch 1000): seconds, and peak RSS of the process
#             (target < 32 MiB); baselines: redis-cli --scan (keys only) and
#             a Lua process that only loads the module and opens a store.
#   tls       the Lua ops of 1. over rediss:// (tls = {ca_file = CA}) vs
#             redis-benchmark --tls --cacert CA -c 1 on the same TLS-only
#             redis-server; certificates made with openssl (target >= 0.9)
#   locks     Lua module, pool_size 1, sequential: try_acquire_lock +
#             release_lock pairs/s (baseline: half of redis-benchmark -c 1
#             SET, a pair being two round trips); fenced saves/s
#             (save_resume_token with {lock, owner}, lock held) vs plain
#             saves/s (target >= 0.8), and vs redis-benchmark -c 1 running
#             the same fence script by EVALSHA; the same in the C core.
#   failover  master, replica, three sentinels (down-after-milliseconds 1000,
#             failover-timeout 3000): time from SIGKILL of the master to the
#             first save that succeeds through the store (Sentinel URL,
#             max_retries 100, retry_max_delay 0.1), BENCH_FAILOVER_ROUNDS
#             (5) times, against down-after-milliseconds (spec/bench/failover.lua)
#   host      spec/bench/host_bench.sh: the rigatoni-store host (migrate,
#             list --format jsonl, start-up)
#   bulk      spec/bench/bulk_bench.sh: list --format jsonl, export, cleanup
#             plan and migrate of BULK_TOKENS (1,000,000) tokens against the
#             redis-py scripts an operator would write (make bench-deps)
#   metrics   spec/bench/metrics_bench.sh, when that file exists
#   cluster   spec/bench/cluster_bench.sh, when that file exists
#
# Prints one table and writes it to build/bench/results.txt.
#
# Sub-benchmarks (host_bench.sh, metrics_bench.sh, cluster_bench.sh) get
# BENCH_ROUNDS and BENCH_ROWS, a file to which they may append table rows,
# one per line, tab separated, no empty field but the last:
#   metric  ours  baseline  op  target  unit  [paired ratio]
# op: ratio>= (ours/baseline >= target), abs< (ours < target),
# abs>= (ours >= target) or info; unit is printed after an absolute target.
# Their standard output goes to the end of results.txt.
#
# Knobs: BENCH_ONLY, BENCH_ROUNDS, BENCH_LUA_OPS (50000), BENCH_THREAD_OPS
# (200000), BENCH_LIST_TOKENS (100000), BENCH_TLS_OPS (BENCH_LUA_OPS),
# BENCH_LOCK_OPS (20000), BENCH_FAILOVER_ROUNDS (5), BENCH_RSS=vmhwm (peak
# RSS from /proc instead of /usr/bin/time, Debian package `time`),
# BENCH_STRICT=1 (exit 1 when a target is missed). host_bench.sh has its own
# (MIGRATE_TOKENS, LIST_TOKENS, ...). Exit status 1 when a part failed.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

ALL_PARTS="ops list tls locks failover host bulk metrics cluster"
PARTS=${BENCH_ONLY:-$ALL_PARTS}
[ "$PARTS" = all ] && PARTS=$ALL_PARTS
for p in $PARTS; do
    case " $ALL_PARTS " in
        *" $p "*) ;;
        *) echo "bench: unknown part '$p' in BENCH_ONLY (parts: $ALL_PARTS)" >&2; exit 2 ;;
    esac
done
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

ROUNDS=${BENCH_ROUNDS:-5}
LUA_OPS=${BENCH_LUA_OPS:-50000}
THREADS=16
THREAD_OPS=${BENCH_THREAD_OPS:-200000}
LIST_TOKENS=${BENCH_LIST_TOKENS:-100000}
LIST_BATCH=1000
RSS_LIMIT_KIB=32768
TLS_OPS=${BENCH_TLS_OPS:-$LUA_OPS}
LOCK_OPS=${BENCH_LOCK_OPS:-20000}
FAILOVER_ROUNDS=${BENCH_FAILOVER_ROUNDS:-5}
OUTDIR=build/bench
LUA=${LUA:-lua5.4}
LUA_CPATH="$ROOT/build/?.so;;"
export LUA_CPATH

need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found" >&2; exit 2; }
    done
}
need redis-server redis-cli redis-benchmark "$LUA" cc pkg-config timeout
want tls && need openssl
want failover && need redis-sentinel
if [ ! -f build/rigatoni_store.so ] || [ ! -f build/librigatoni_store.a ]; then
    echo "bench: run make first" >&2; exit 2
fi
mkdir -p "$OUTDIR"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rigatoni-bench.XXXXXX")
SERVER_PID=
PORT=
TLS_PID=
TLS_PORT=
# servers of spec/support/servers.lua (failover) keep their pid files here
RS_TEST_ROOT="$TMP/servers"
export RS_TEST_ROOT
mkdir -p "$RS_TEST_ROOT"

. spec/bench/lib.sh
stop_tls_server() { stop_pid "$TLS_PID"; TLS_PID=; }
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    stop_server
    stop_tls_server
    # whatever an interrupted spec/bench/failover.lua left running
    for f in "$RS_TEST_ROOT"/*/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null || true)
        case "$pid" in ''|*[!0-9]*) continue ;; esac
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# A TLS-only server with the $TMP/tls certificates: sets TLS_PORT, TLS_PID.
start_tls_server() {
    TLS_PORT=$(REDIS_CA=$CA start_redis "$TMP/tlsdir" --tls-cert-file "$TMP/tls/server.crt" \
        --tls-key-file "$TMP/tls/server.key" --tls-ca-cert-file "$CA" --tls-auth-clients no) || exit 1
    TLS_PID=$(cat "$TMP/tlsdir/pid")
}

# A CA and a server certificate for 127.0.0.1/localhost, valid 2 days.
make_certs() {
    d=$TMP/tls
    mkdir -p "$d"
    {
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" \
            -days 2 -subj "/CN=rigatoni bench CA" &&
        openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" \
            -subj "/CN=localhost" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/server.ext" &&
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
            -CAcreateserial -out "$d/server.crt" -days 2 -extfile "$d/server.ext"
    } >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; echo "bench: openssl failed" >&2; exit 1; }
    CA=$d/ca.crt
}


now() { date +%s.%N; }

# ---- report helpers --------------------------------------------------------
FAILED=0        # a target was missed
PART_FAILED=    # parts that did not complete
ROWS="$TMP/rows"
DETAILS="$TMP/details"
: >"$ROWS"
: >"$DETAILS"
# row METRIC OURS BASELINE TARGET_OP TARGET [UNIT [PAIRED_RATIO]]
# (TARGET_OP: ratio>= | abs< | abs>= | info). With PAIRED_RATIO (the median
# of the per-round ratios, ours and baseline having run back to back in each
# round), the ratio column and the verdict use it, marked "*": drift of a
# busy machine between rounds then does not pair one side's good rounds with
# the other side's bad ones.
row() {
    mark=$(awk -v o="$2" -v b="$3" -v op="$4" -v t="$5" -v pr="${7:-}" 'BEGIN {
        ratio = (pr != "") ? pr : (b > 0) ? o / b : 0
        if (o == "nan" || o == "") print "ERROR"
        else if (op == "ratio>=") print (ratio >= t) ? "PASS" : "FAIL"
        else if (op == "abs<") print (o + 0 < t + 0) ? "PASS" : "FAIL"
        else if (op == "abs>=") print (o + 0 >= t + 0) ? "PASS" : "FAIL"
        else print "-" }')
    case $mark in FAIL|ERROR) FAILED=1 ;; esac
    awk -v m="$1" -v o="$2" -v b="$3" -v op="$4" -v t="$5" -v mark="$mark" -v unit="${6:-}" -v pr="${7:-}" 'BEGIN {
        ratio = (pr != "") ? pr : (b > 0) ? o / b : 0
        if (op == "ratio>=") tgt = sprintf("ratio >= %.2f", t)
        else if (op == "abs<") tgt = sprintf("< %g %s", t, unit)
        else if (op == "abs>=") tgt = sprintf(">= %g %s", t, unit)
        else tgt = "-"
        os = sprintf((o >= 1000) ? "%12.0f" : "%12.2f", o)
        if (b > 0) {
            bs = sprintf((b >= 1000) ? "%12.0f" : "%12.2f", b)
            rs = (pr != "") ? sprintf("%6.2f*", ratio) : sprintf("%7.2f", ratio)
        } else {
            bs = sprintf("%12s", "-")
            rs = sprintf("%7s", "-")
        }
        printf "%-54s %s %s %s  %-16s %s\n", m, os, bs, rs, tgt, mark }' >>"$ROWS"
}
# rows_from FILE: rows appended by a sub-benchmark (tab separated)
rows_from() {
    [ -s "$1" ] || return 0
    tab=$(printf '\t')
    while IFS="$tab" read -r m o b op t u pr; do
        [ -n "$m" ] || continue
        row "$m" "$o" "${b:-0}" "${op:-info}" "${t:-0}" "${u:-}" "${pr:-}"
    done <"$1"
}
detail() { printf '%s\n' "$*" >>"$DETAILS"; }
part_failed() {
    PART_FAILED="$PART_FAILED $1"
    detail "$1: FAILED ($2)"
    echo "bench: $1 FAILED ($2)" >&2
}

# ---- build -----------------------------------------------------------------
LIBS=$(pkg-config --libs hiredis hiredis_ssl libbson-1.0)
CFLAGS_DEPS=$(pkg-config --cflags hiredis hiredis_ssl libbson-1.0)
# Binaries go to the private temp dir, and the Lua module is used from a
# copy there: a concurrent `make` may rewrite build/ during the run.
BIN=$TMP/bin
mkdir -p "$BIN" "$TMP/lib"
cp build/rigatoni_store.so "$TMP/lib/"
LUA_CPATH="$TMP/lib/?.so;;"
export LUA_CPATH
build_c() {   # NAME
    echo "bench: building spec/bench/$1.c" >&2
    # shellcheck disable=SC2086
    cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Icore "spec/bench/$1.c" -o "$BIN/$1" \
        $CFLAGS_DEPS build/librigatoni_store.a $LIBS -lssl -lcrypto -lpthread -lm
}
want ops && build_c threads && build_c raw_hiredis
want locks && build_c locks

SIZE=$("$LUA" spec/bench/lua_ops.lua "redis://127.0.0.1:1" size)
T_START=$(now)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')

if want ops || want list || want locks; then
    start_server
    URL="redis://127.0.0.1:$PORT"
    echo "bench: redis-server $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/') pid $SERVER_PID on 127.0.0.1:$PORT, $ROUNDS rounds" >&2
fi

# ---- ops: 1. Lua module, sequential ---------------------------------------------
if want ops; then
    L_SET=; L_GET=; B1_SET=; B1_GET=; R_SET=; R_GET=; N_SET=; N_GET=; LR_SET=; LR_GET=
    if "$LUA" spec/bench/luaredis_ops.lua - check; then
        LUAREDIS=1
    else
        LUAREDIS=
        echo "bench: [ops] lua-redis not installed (make bench-deps): its rows are left out" >&2
    fi
    # one_round MODE: ours, with redis-benchmark -c 1 and lua-redis right
    # before and after it, the sides swapped every round, so that drift of a
    # busy machine hits both sides of a ratio alike; sets OURS, RB and LR
    # (lua-redis, empty without it)
    one_round() {
        if [ $((r % 2)) = 1 ]; then
            lr_ops "$1"; ours_ops "$1"; rb_ops "$1"
        else
            rb_ops "$1"; ours_ops "$1"; lr_ops "$1"
        fi
    }
    ours_ops() { OURS=$("$LUA" spec/bench/lua_ops.lua "$URL" "$1" "$LUA_OPS"); }
    rb_ops() { RB=$(rb1 "$1" "$LUA_OPS") || { echo "bench: redis-benchmark failed" >&2; exit 1; }; }
    lr_ops() {
        LR=
        [ -z "$LUAREDIS" ] ||
            LR=$("$LUA" spec/bench/luaredis_ops.lua "$URL" "$1" "$LUA_OPS") ||
            { echo "bench: spec/bench/luaredis_ops.lua failed" >&2; exit 1; }
    }
    r=1
    while [ $r -le "$ROUNDS" ]; do
        one_round set
        s=$OURS; bs=$RB; cs=$LR
        one_round get
        g=$OURS; bg=$RB; cg=$LR
        LR_SET="$LR_SET $cs"; LR_GET="$LR_GET $cg"
        ns=$(BENCH_SPIN_WAIT=0 "$LUA" spec/bench/lua_ops.lua "$URL" set "$LUA_OPS")
        ng=$(BENCH_SPIN_WAIT=0 "$LUA" spec/bench/lua_ops.lua "$URL" get "$LUA_OPS")
        N_SET="$N_SET $ns"; N_GET="$N_GET $ng"
        raw=$("$BIN/raw_hiredis" "$PORT" "$LUA_OPS" "$SIZE") || { echo "bench: raw_hiredis failed" >&2; exit 1; }
        R_SET="$R_SET $(echo "$raw" | awk '$1 == "set" { print $2 }')"
        R_GET="$R_GET $(echo "$raw" | awk '$1 == "get" { print $2 }')"
        L_SET="$L_SET $s"; L_GET="$L_GET $g"
        B1_SET="$B1_SET $bs"; B1_GET="$B1_GET $bg"
        echo "bench: [ops] round $r: lua set $s get $g (spin_wait=0: $ns $ng) | redis-benchmark -c1 set $bs get $bg${LUAREDIS:+ | lua-redis set $cs get $cg}" >&2
        r=$((r + 1))
    done

    # ---- ops: 2. C core, 16 threads ---------------------------------------------
    C_SET=; C_GET=; B16_SET=; B16_GET=
    r=1
    while [ $r -le "$ROUNDS" ]; do
        out=$("$BIN/threads" "$PORT" "$THREADS" "$THREAD_OPS" "$SIZE" 2>"$TMP/threads.err") ||
            { cat "$TMP/threads.err" >&2; exit 1; }
        s=$(echo "$out" | awk '$1 == "set" { print $2 }')
        g=$(echo "$out" | awk '$1 == "get" { print $2 }')
        b=$(redis_bench "$THREADS" "$THREAD_OPS") || { echo "bench: redis-benchmark failed" >&2; exit 1; }
        C_SET="$C_SET $s"; C_GET="$C_GET $g"
        B16_SET="$B16_SET ${b% *}"; B16_GET="$B16_GET ${b#* }"
        echo "bench: [ops] round $r: C x$THREADS set $s get $g | redis-benchmark -c$THREADS $b" >&2
        r=$((r + 1))
    done
    # shellcheck disable=SC2086
    {
        row "Lua save_resume_token ops/s (vs rb -c1 SET)" "$(median $L_SET)" "$(median $B1_SET)" "ratio>=" 0.9 "" "$(paired_median "$L_SET" "$B1_SET")"
        row "Lua get_resume_token ops/s (vs rb -c1 GET)" "$(median $L_GET)" "$(median $B1_GET)" "ratio>=" 0.9 "" "$(paired_median "$L_GET" "$B1_GET")"
        row "Lua save, spin_wait = 0 (vs rb -c1 SET)" "$(median $N_SET)" "$(median $B1_SET)" info 0 "" "$(paired_median "$N_SET" "$B1_SET")"
        row "Lua get, spin_wait = 0 (vs rb -c1 GET)" "$(median $N_GET)" "$(median $B1_GET)" info 0 "" "$(paired_median "$N_GET" "$B1_GET")"
        if [ -n "$LUAREDIS" ]; then
            row "Lua save_resume_token ops/s (vs lua-redis SET)" "$(median $L_SET)" "$(median $LR_SET)" info 0 "" "$(paired_median "$L_SET" "$LR_SET")"
            row "Lua get_resume_token ops/s (vs lua-redis GET)" "$(median $L_GET)" "$(median $LR_GET)" info 0 "" "$(paired_median "$L_GET" "$LR_GET")"
        fi
        row "Lua save_resume_token ops/s (vs raw hiredis SET loop)" "$(median $L_SET)" "$(median $R_SET)" "-" "" "" "$(paired_median "$L_SET" "$R_SET")"
        row "Lua get_resume_token ops/s (vs raw hiredis GET loop)" "$(median $L_GET)" "$(median $R_GET)" "-" "" "" "$(paired_median "$L_GET" "$R_GET")"
        row "C $THREADS threads save_raw ops/s (vs rb -c$THREADS SET)" "$(median $C_SET)" "$(median $B16_SET)" "ratio>=" 0.8 "" "$(paired_median "$C_SET" "$B16_SET")"
        row "C $THREADS threads get_raw ops/s (vs rb -c$THREADS GET)" "$(median $C_GET)" "$(median $B16_GET)" "ratio>=" 0.8 "" "$(paired_median "$C_GET" "$B16_GET")"
    }
    detail "  lua set:$L_SET | rb -c1 set:$B1_SET | per-round ratio median $(paired_median "$L_SET" "$B1_SET")"
    detail "  lua get:$L_GET | rb -c1 get:$B1_GET | per-round ratio median $(paired_median "$L_GET" "$B1_GET")"
    detail "  lua spin_wait=0 set:$N_SET get:$N_GET"
    if [ -n "$LUAREDIS" ]; then
        detail "  lua-redis set:$LR_SET | per-round ratio median $(paired_median "$L_SET" "$LR_SET") (spec/bench/luaredis_ops.lua)"
        detail "  lua-redis get:$LR_GET | per-round ratio median $(paired_median "$L_GET" "$LR_GET")"
    else
        detail "  lua-redis: not installed (make bench-deps), rows left out"
    fi
    detail "  raw hiredis set:$R_SET get:$R_GET (spec/bench/raw_hiredis.c)"
    detail "  C set:$C_SET | rb -c$THREADS set:$B16_SET"
    detail "  C get:$C_GET | rb -c$THREADS get:$B16_GET"
fi

# ---- locks -------------------------------------------------------------------
if want locks; then
    cli flushall >/dev/null
    # The fence script of core/lock.c, for redis-benchmark to run by EVALSHA.
    FENCE_SRC=$(awk '/rs_save_fenced_source\[\] =/ { f = 1; next }
        f { l = $0; sub(/^[ \t]*"/, "", l); sub(/"[ \t;]*$/, "", l); s = s l
            if ($0 ~ /;[ \t]*$/) { print s; exit } }' core/lock.c)
    FENCE_SHA=
    [ -n "$FENCE_SRC" ] && FENCE_SHA=$(cli script load "$FENCE_SRC" 2>/dev/null | grep -E '^[0-9a-f]{40}$' || true)
    VALUE=$(awk -v n="$SIZE" 'BEGIN { while (n-- > 0) printf "x" }')
    cli set bench:rb:lock rb-owner >/dev/null
    LK_PAIRS=; LK_PLAIN=; LK_FENCED=; CK_PAIRS=; CK_PLAIN=; CK_FENCED=; RB_SET=; RB_FENCE=; HALF_SET=
    r=1
    while [ $r -le "$ROUNDS" ]; do
        out=$("$LUA" spec/bench/lua_locks.lua "$URL" "$LOCK_OPS")
        lp=$(echo "$out" | awk '$1 == "pairs" { print $2 }')
        ls=$(echo "$out" | awk '$1 == "plain" { print $2 }')
        lf=$(echo "$out" | awk '$1 == "fenced" { print $2 }')
        out=$("$BIN/locks" "$PORT" "$LOCK_OPS" "$SIZE")
        cp=$(echo "$out" | awk '$1 == "pairs" { print $2 }')
        cs=$(echo "$out" | awk '$1 == "plain" { print $2 }')
        cf=$(echo "$out" | awk '$1 == "fenced" { print $2 }')
        rs=$(rb_cmd "$LOCK_OPS" -t set -d "$SIZE") || { echo "bench: redis-benchmark failed" >&2; exit 1; }
        rf=nan
        if [ -n "$FENCE_SHA" ]; then
            rf=$(rb_cmd "$LOCK_OPS" EVALSHA "$FENCE_SHA" 2 bench:rb:lock bench:rb:token rb-owner "$VALUE") ||
                { echo "bench: redis-benchmark EVALSHA failed" >&2; exit 1; }
        fi
        LK_PAIRS="$LK_PAIRS $lp"; LK_PLAIN="$LK_PLAIN $ls"; LK_FENCED="$LK_FENCED $lf"
        CK_PAIRS="$CK_PAIRS $cp"; CK_PLAIN="$CK_PLAIN $cs"; CK_FENCED="$CK_FENCED $cf"
        RB_SET="$RB_SET $rs"; RB_FENCE="$RB_FENCE $rf"
        HALF_SET="$HALF_SET $(echo "$rs" | awk '{ printf "%.1f", $1 / 2 }')"
        echo "bench: [locks] round $r: lua pairs $lp plain $ls fenced $lf | C pairs $cp plain $cs fenced $cf | rb -c1 set $rs evalsha-fence $rf" >&2
        r=$((r + 1))
    done
    # shellcheck disable=SC2086
    {
        half_set=$(median $RB_SET | awk '{ printf "%.1f", $1 / 2 }')
        row "Lua lock acquire+release pairs/s (vs rb -c1 SET / 2)" "$(median $LK_PAIRS)" "$half_set" info 0 "" \
            "$(paired_median "$LK_PAIRS" "$HALF_SET")"
        row "Lua fenced save ops/s (vs Lua plain save)" "$(median $LK_FENCED)" "$(median $LK_PLAIN)" "ratio>=" 0.8 "" \
            "$(paired_median "$LK_FENCED" "$LK_PLAIN")"
        if [ -n "$FENCE_SHA" ]; then
            row "Lua fenced save ops/s (vs rb -c1 EVALSHA fence)" "$(median $LK_FENCED)" "$(median $RB_FENCE)" info 0 "" \
                "$(paired_median "$LK_FENCED" "$RB_FENCE")"
        fi
        row "C lock acquire+release pairs/s (vs rb -c1 SET / 2)" "$(median $CK_PAIRS)" "$half_set" info 0 "" \
            "$(paired_median "$CK_PAIRS" "$HALF_SET")"
        row "C save_fenced ops/s (vs C plain save_raw)" "$(median $CK_FENCED)" "$(median $CK_PLAIN)" "ratio>=" 0.8 "" \
            "$(paired_median "$CK_FENCED" "$CK_PLAIN")"
    }
    detail "  lua lock pairs:$LK_PAIRS | rb -c1 set:$RB_SET"
    detail "  lua plain:$LK_PLAIN | lua fenced:$LK_FENCED | fenced/plain per-round median $(paired_median "$LK_FENCED" "$LK_PLAIN")"
    detail "  rb -c1 evalsha fence:$RB_FENCE"
    detail "  C lock pairs:$CK_PAIRS | C plain:$CK_PLAIN | C fenced:$CK_FENCED | fenced/plain per-round median $(paired_median "$CK_FENCED" "$CK_PLAIN")"
fi

# ---- list ----------------------------------------------------------------------
if want list; then
    cli flushall >/dev/null
    t0=$(now)
    "$LUA" spec/bench/gen_tokens.lua "$LIST_TOKENS" | cli --pipe >"$TMP/pipe.log" 2>&1 ||
        { cat "$TMP/pipe.log" >&2; exit 1; }
    t1=$(now)
    loaded=$(cli dbsize)
    [ "$loaded" -ge "$LIST_TOKENS" ] || { echo "bench: loaded only $loaded keys" >&2; exit 1; }
    echo "bench: [list] loaded $loaded tokens in $(echo "$t0 $t1" | awk '{ printf "%.2f", $2 - $1 }') s" >&2

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
        echo "bench: [list] round $r: lua list ${l% *} s, ${l#* } KiB | redis-cli --scan $sc s | idle ${i#* } KiB" >&2
        r=$((r + 1))
    done
    # shellcheck disable=SC2086
    {
        row "list $LIST_TOKENS tokens, s (vs redis-cli --scan)" "$(median $LIST_S)" "$(median $SCAN_S)" info 0
        row "list peak RSS MiB (vs idle Lua+module)" \
            "$(median $LIST_RSS | awk '{ print $1 / 1024 }')" "$(median $IDLE_RSS | awk '{ print $1 / 1024 }')" "abs<" "$((RSS_LIMIT_KIB / 1024))" MiB
    }
    detail "  list s:$LIST_S | scan s:$SCAN_S"
    detail "  list KiB:$LIST_RSS | idle KiB:$IDLE_RSS (peak RSS by $RSS_HOW; resume_tokens{batch = $LIST_BATCH}, decoded)"
fi
stop_server

# ---- tls -----------------------------------------------------------------------
if want tls; then
    make_certs
    start_tls_server
    TLS_URL="rediss://127.0.0.1:$TLS_PORT"
    echo "bench: TLS redis-server pid $TLS_PID on 127.0.0.1:$TLS_PORT (CA $CA)" >&2
    T_SET=; T_GET=; BT_SET=; BT_GET=
    r=1
    while [ $r -le "$ROUNDS" ]; do
        s=$(BENCH_TLS_CA=$CA "$LUA" spec/bench/lua_ops.lua "$TLS_URL" set "$TLS_OPS")
        bs=$(rb1_tls set "$TLS_OPS") || { echo "bench: redis-benchmark --tls failed" >&2; exit 1; }
        g=$(BENCH_TLS_CA=$CA "$LUA" spec/bench/lua_ops.lua "$TLS_URL" get "$TLS_OPS")
        bg=$(rb1_tls get "$TLS_OPS") || { echo "bench: redis-benchmark --tls failed" >&2; exit 1; }
        T_SET="$T_SET $s"; T_GET="$T_GET $g"
        BT_SET="$BT_SET $bs"; BT_GET="$BT_GET $bg"
        echo "bench: [tls] round $r: lua set $s get $g | redis-benchmark --tls -c1 set $bs get $bg" >&2
        r=$((r + 1))
    done
    stop_tls_server
    # shellcheck disable=SC2086
    {
        row "Lua TLS save_resume_token ops/s (vs rb --tls -c1 SET)" "$(median $T_SET)" "$(median $BT_SET)" "ratio>=" 0.9 "" \
            "$(paired_median "$T_SET" "$BT_SET")"
        row "Lua TLS get_resume_token ops/s (vs rb --tls -c1 GET)" "$(median $T_GET)" "$(median $BT_GET)" "ratio>=" 0.9 "" \
            "$(paired_median "$T_GET" "$BT_GET")"
    }
    detail "  tls lua set:$T_SET | rb --tls -c1 set:$BT_SET | per-round ratio median $(paired_median "$T_SET" "$BT_SET")"
    detail "  tls lua get:$T_GET | rb --tls -c1 get:$BT_GET | per-round ratio median $(paired_median "$T_GET" "$BT_GET")"
fi

# ---- failover ------------------------------------------------------------------
if want failover; then
    echo "bench: [failover] master + replica + 3 sentinels, $FAILOVER_ROUNDS kills" >&2
    # ~12 s per round (settling, 2 x failover-timeout between failovers)
    limit=$((60 + FAILOVER_ROUNDS * 45))
    if timeout "$limit" "$LUA" spec/bench/failover.lua "$FAILOVER_ROUNDS" >"$TMP/failover.out" 2>"$TMP/failover.err"; then
        sed 's/^/bench: [failover] /' "$TMP/failover.out" >&2
        col() { awk -v k="$1" '$1 == "round" { for (i = 2; i < NF; i++) if ($i == k) print $(i + 1) }' "$TMP/failover.out"; }
        FO_TOTAL=$(col total | tr '\n' ' ')
        FO_CLIENT=$(col client | tr '\n' ' ')
        down=$(awk '$1 == "down_after" { print $2 }' "$TMP/failover.out")
        # shellcheck disable=SC2046,SC2086
        {
            tot=$(median $FO_TOTAL)
            row "failover kill -> first save s (vs down-after)" "$tot" "$down" info 0
            row "failover +promoted-slave -> first save s" "$(median $FO_CLIENT)" 0 info 0
            detail "  failover: median $tot s = down-after $down s + $(echo "$tot $down" | awk '{ printf "%.3f", $1 - $2 }') s; per round (s after the kill; client = first save after +promoted-slave):"
            grep '^round ' "$TMP/failover.out" | sed 's/^/    /' >>"$DETAILS"
            detail "    sdown median $(median $(col sdown)) s, odown $(median $(col odown)) s, promoted $(median $(col promoted)) s, switch-master $(median $(col switch)) s"
        }
    else
        rc=$?
        cat "$TMP/failover.out" >&2
        tail -n 20 "$TMP/failover.err" >&2
        part_failed failover "rc $rc"
    fi
fi

# ---- host ----------------------------------------------------------------------
run_sub() {   # NAME SCRIPT LIMIT_S
    echo "bench: [$1] $2" >&2
    : >"$TMP/$1.rows"
    if BENCH_ROWS="$TMP/$1.rows" BENCH_ROUNDS="$ROUNDS" timeout "$3" sh "$2" >"$TMP/$1.out" 2>"$TMP/$1.err"; then
        sed "s/^/bench: [$1] /" "$TMP/$1.out" >&2
        rows_from "$TMP/$1.rows"
        detail "$1 ($2):"
        sed 's/^/  /' "$TMP/$1.out" >>"$DETAILS"
    else
        rc=$?
        cat "$TMP/$1.out" >&2
        tail -n 20 "$TMP/$1.err" >&2
        rows_from "$TMP/$1.rows"
        part_failed "$1" "$2 exited with $rc"
    fi
}
want host && run_sub host spec/bench/host_bench.sh 300
want bulk && run_sub bulk spec/bench/bulk_bench.sh 3600
if want metrics; then
    if [ -f spec/bench/metrics_bench.sh ]; then
        run_sub metrics spec/bench/metrics_bench.sh 300
    else
        echo "bench: [metrics] spec/bench/metrics_bench.sh not present, skipped" >&2
        detail "metrics: skipped (spec/bench/metrics_bench.sh not present)"
    fi
fi

if want cluster; then
    if [ -f spec/bench/cluster_bench.sh ]; then
        run_sub cluster spec/bench/cluster_bench.sh 300
    else
        echo "bench: [cluster] spec/bench/cluster_bench.sh not present, skipped" >&2
        detail "cluster: skipped (spec/bench/cluster_bench.sh not present)"
    fi
fi

# ---- report ----------------------------------------------------------------------
T_END=$(now)
TABLE="$TMP/table"
{
    echo "rigatoni_store benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(uname -n), $(nproc 2>/dev/null || echo '?') CPUs, redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')"
    echo "parts: $PARTS; $ROUNDS rounds, medians; token $SIZE bytes of BSON; ratio = ours / baseline, * = median of per-round ratios; rb = redis-benchmark"
    echo
    printf '%-54s %12s %12s %7s  %-16s %s\n' metric ours baseline ratio target ok
    printf '%-54s %12s %12s %7s  %-16s %s\n' "------" "----" "--------" "-----" "------" "--"
    cat "$ROWS"
    echo
    echo "rounds and details ($(echo "$T_START $T_END" | awk '{ printf "%.0f", $2 - $1 }') s in all; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') at the end):"
    cat "$DETAILS"
} >"$TABLE"
cp "$TABLE" "$OUTDIR/results.txt"
cat "$TABLE"
echo "(written to $OUTDIR/results.txt)"

if [ -n "$PART_FAILED" ]; then
    echo "bench: parts failed:$PART_FAILED" >&2
    exit 1
fi
if [ "$FAILED" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
    exit 1
fi
exit 0
