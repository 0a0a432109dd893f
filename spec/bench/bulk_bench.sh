#!/bin/sh
# spec/bench/bulk_bench.sh -- the bulk tools against the redis-py scripts
# an operator would write instead (spec/bench/py_*.py, /usr/bin/python3 with
# Debian's python3-redis and python3-pymongo: `make bench-deps`):
#
#   list      `list --format jsonl`            vs py_list.py (SCAN + pipelined
#                                                 MGET/PTTL, bson, JSON lines)
#   export    `export` (stdout)                vs py_export.py
#   cleanup   `cleanup --older-than 30d` plan  vs py_cleanup_plan.py
#   migrate   `migrate --to` a second server   vs py_migrate.py (pipelined
#                                                 DUMP+PTTL / RESTORE)
#   import    `import --input FILE` into the    vs py_import.py (json + base64,
#             second server (the file written       pipelined SET NX [PX]);
#             once by our export)                   no target: info
#
# BULK_TOKENS (1,000,000) tokens, half of them with a TTL, are loaded once
# (spec/bench/gen_tokens.lua | redis-cli --pipe); every job runs ours and
# the baseline back to back, BENCH_ROUNDS (3, at least 3) times, the order
# swapped every round. Reported: tokens/s medians, the median of the
# per-round ratios ours/baseline, and the peak RSS (/usr/bin/time %M) of
# every tool (target < 64 MiB: a walk keeps 16 bytes per name it met,
# 32 MiB at 1,000,000; core/seen_set.c). Output goes to /dev/null; the migrate target
# is flushed before each run. Servers: random free loopback ports, no
# persistence, own temp dir, stopped on exit. BENCH_ROWS: as host_bench.sh
# (a 7th field, the paired ratio).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

TOKENS=${BULK_TOKENS:-1000000}
ROUNDS=${BENCH_ROUNDS:-3}
[ "$ROUNDS" -ge 3 ] || ROUNDS=3
PY=/usr/bin/python3
BIN=$ROOT/build/rigatoni-store
OUTDIR=build/bench
LUA_CPATH="$ROOT/build/?.so;;"
export LUA_CPATH

for tool in redis-server redis-cli lua5.4 /usr/bin/time "$PY"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bulk_bench: $tool not found (make bench-deps)" >&2; exit 2; }
done
"$PY" -c 'import redis, bson' 2>/dev/null || { echo "bulk_bench: redis-py/bson missing (make bench-deps)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bulk_bench: $BIN missing (run make)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rs-bulk-bench.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do stop_pid "$p"; done   # waited for: they write into $TMP
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

. spec/bench/lib.sh
A=$(start_redis "$TMP/a"); PIDS="$PIDS $(cat "$TMP/a/pid")"
B=$(start_redis "$TMP/b"); PIDS="$PIDS $(cat "$TMP/b/pid")"

lua5.4 spec/bench/gen_tokens.lua "$TOKENS" | redis-cli -p "$A" --pipe >/dev/null
redis-cli -p "$A" EVAL "local n=0 for i=1,tonumber(ARGV[1]),2 do redis.call('EXPIRE', string.format('rigatoni:resume_token:bench_coll_%06d', i), 86400) n=n+1 end return n" 0 "$TOKENS" >/dev/null
loaded=$(redis-cli -p "$A" DBSIZE)
[ "$loaded" -eq "$TOKENS" ] || { echo "bulk_bench: loaded $loaded of $TOKENS tokens" >&2; exit 1; }

URL_A="redis://127.0.0.1:$A"
URL_B="redis://127.0.0.1:$B"
EXPORT=$TMP/export.jsonl
"$BIN" -q -u "$URL_A" export >"$EXPORT"
# run_job JOB SIDE -> "tokens_per_s rss_kib" (SIDE: ours | py)
run_job() {
    case $1 in migrate | import) redis-cli -p "$B" FLUSHALL >/dev/null ;; esac
    case "$1.$2" in
        list.ours)    set -- "$BIN" -q -u "$URL_A" list --format jsonl ;;
        list.py)      set -- "$PY" spec/bench/py_list.py "$A" ;;
        export.ours)  set -- "$BIN" -q -u "$URL_A" export ;;
        export.py)    set -- "$PY" spec/bench/py_export.py "$A" ;;
        cleanup.ours) set -- "$BIN" -q -u "$URL_A" cleanup --older-than 30d ;;
        cleanup.py)   set -- "$PY" spec/bench/py_cleanup_plan.py "$A" 2592000 ;;
        migrate.ours) set -- "$BIN" -q -u "$URL_A" migrate --to "$URL_B" ;;
        migrate.py)   set -- "$PY" spec/bench/py_migrate.py "$A" "$B" ;;
        import.ours)  set -- "$BIN" -q -u "$URL_B" import --input "$EXPORT" ;;
        import.py)    set -- "$PY" spec/bench/py_import.py "$B" "$EXPORT" ;;
    esac
    t0=$(date +%s%N)
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=spec/bench /usr/bin/time -f %M -o "$TMP/rss" "$@" >/dev/null 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; echo "bulk_bench: $* failed" >&2; exit 1; }
    t1=$(date +%s%N)
    echo "$t0 $t1 $TOKENS $(tail -n 1 "$TMP/rss")" | awk '{ printf "%.0f %d\n", $3 / (($2 - $1) / 1e9), $4 }'
}

JOBS="list export cleanup migrate import"
for job in $JOBS; do
    eval "O_$job=; P_$job=; OR_$job=; PR_$job="
done
r=1
while [ $r -le "$ROUNDS" ]; do
    for job in $JOBS; do
        if [ $((r % 2)) -eq 1 ]; then
            o=$(run_job "$job" ours); p=$(run_job "$job" py)
        else
            p=$(run_job "$job" py); o=$(run_job "$job" ours)
        fi
        if [ "$job" = migrate ] || [ "$job" = import ]; then
            n=$(redis-cli -p "$B" DBSIZE)
            [ "$n" -eq "$TOKENS" ] || { echo "bulk_bench: $job left $n of $TOKENS on the target" >&2; exit 1; }
        fi
        eval "O_$job=\"\$O_$job ${o% *}\"; P_$job=\"\$P_$job ${p% *}\""
        eval "OR_$job=\"\$OR_$job ${o#* }\"; PR_$job=\"\$PR_$job ${p#* }\""
        echo "bulk_bench: round $r $job: ours ${o% *} tokens/s ${o#* } KiB | redis-py ${p% *} tokens/s ${p#* } KiB" >&2
    done
    r=$((r + 1))
done

# paired_median "A1 A2 .." "B1 B2 .." -> median of the per-round ratios Ai/Bi
paired_median() {
    # shellcheck disable=SC2046
    median $(printf '%s\n%s\n' "$1" "$2" | awk 'NR == 1 { n = split($0, a) }
        NR == 2 { split($0, b); for (i = 1; i <= n; i++) if (b[i] > 0) printf "%.4f\n", a[i] / b[i] }')
}
target() { case $1 in migrate) echo 4 ;; import) echo 0 ;; *) echo 3 ;; esac; }
# The ratio's check: import has no target (info).
ratio_op() { case $1 in import) echo info ;; *) echo "ratio>=" ;; esac; }
goal() { case $1 in import) echo "info, < 64 MiB" ;; *) echo ">= $(target "$1")x, < 64 MiB" ;; esac; }
label() {
    case $1 in
        list) echo "list --format jsonl" ;; export) echo "export" ;;
        cleanup) echo "cleanup plan" ;; migrate) echo "migrate --to" ;;
        import) echo "import --input" ;;
    esac
}

mkdir -p "$OUTDIR"
o=; p=; orss=; prss=   # set per job by eval below
{
    echo "bulk tools, $TOKENS tokens, $ROUNDS rounds ($(date -u +%Y-%m-%dT%H:%M:%SZ), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), redis-py $("$PY" -c 'import redis; print(redis.__version__)'))"
    printf '%-28s %12s %12s %8s %10s %10s %s\n' job "ours tok/s" "redis-py" ratio "ours MiB" "py MiB" target
    for job in $JOBS; do
        eval "o=\$O_$job; p=\$P_$job; orss=\$OR_$job; prss=\$PR_$job"
        # shellcheck disable=SC2086
        printf '%-28s %12s %12s %7sx %10s %10s %s\n' "$(label "$job")" "$(median $o)" "$(median $p)" \
            "$(paired_median "$o" "$p")" "$(median $orss | awk '{ printf "%.1f", $1 / 1024 }')" \
            "$(median $prss | awk '{ printf "%.1f", $1 / 1024 }')" "$(goal "$job")"
        echo "  per round: ours$o | redis-py$p | ours KiB$orss | py KiB$prss"
    done
} | tee "$OUTDIR/bulk_results.txt"

if [ -n "${BENCH_ROWS:-}" ]; then
    for job in $JOBS; do
        eval "o=\$O_$job; p=\$P_$job; orss=\$OR_$job"
        # shellcheck disable=SC2086
        {
            printf 'bulk %s %s tokens/s (vs redis-py)\t%s\t%s\t%s\t%s\ttokens/s\t%s\n' "$(label "$job")" \
                "$TOKENS" "$(median $o)" "$(median $p)" "$(ratio_op "$job")" "$(target "$job")" "$(paired_median "$o" "$p")"
            printf 'bulk %s peak RSS MiB\t%s\t0\tabs<\t64\tMiB\n' "$(label "$job")" \
                "$(median $orss | awk '{ printf "%.2f", $1 / 1024 }')"
        } >>"$BENCH_ROWS"
    done
fi
