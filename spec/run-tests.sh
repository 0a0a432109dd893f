#!/bin/sh
# SPDX-License-Identifier: MIT
# spec/run-tests.sh -- what `make test` runs once the build is done.
#
#   1. every C test binary in build/tests/, build-asan/tests/ (ASan+UBSan,
#      leak check) and build-tsan/tests/ (one test each: exit 0 = pass)
#   2. busted over spec/*_spec.lua against the module in build/
#   3. the same specs against build-asan/rigatoni_store.so (ASan+UBSan),
#      in the background while 2 and 4 run (its output is shown after 4),
#      run by the ASan-linked interpreter build-asan/bin/lua5.4, which
#      comes first in PATH so child `lua5.4` processes use it too; every
#      sanitizer report (of busted and of each child) goes to a file under
#      $RS_TEST_ROOT/asan/, is printed in full and fails the run
#   4. store, locks, scripts and cluster specs once more on Valkey
#      (RS_TEST_SERVER=valkey-server, plain build), unless valkey-server is
#      missing (skipped with a message) or the whole run is already on it
#   5. each libFuzzer target in build-fuzz/fuzz/ for FUZZ_SMOKE_SECONDS
#      (default 10), after replaying spec/fuzz/regress/ (spec/fuzz/run.sh)
#
# RS_TEST_SERVER (default redis-server) names the server every pass but 4
# runs on (spec/support/servers.lua). Servers are started by the tests themselves, in directories under
# $RS_TEST_ROOT; whatever they leave running (a pid file under the root)
# is killed on exit, and the root removed. The last line printed is
# "tests: N passed, M failed", after a recap of what failed; the exit
# status is non-zero when anything failed or busted found no test at all.
# POSIX sh.

set -u
cd "$(dirname "$0")/.." || exit 2

RS_TEST_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/rs-test.XXXXXX") || exit 2
export RS_TEST_ROOT

cleanup() {
    # The ASan pass runs in the background (below): stopped with the run.
    if [ -n "${asan_pid:-}" ]; then
        pkill -TERM -P "$asan_pid" 2>/dev/null
        kill "$asan_pid" 2>/dev/null
    fi
    find "$RS_TEST_ROOT" -name '*.pid' -type f 2>/dev/null | while IFS= read -r f; do
        pid=$(head -n 1 "$f" 2>/dev/null | tr -cd '0-9')
        [ -n "$pid" ] || continue
        # Only our servers: a pid reused by an unrelated process is spared.
        if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE 'redis|valkey'; then
            continue
        fi
        kill -9 "$pid" 2>/dev/null
    done
    rm -rf "$RS_TEST_ROOT"
}
trap cleanup EXIT
# dash runs the EXIT trap on a signal only when the signal is trapped.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAILED: $1"; echo "FAILED: $1" >>"$RS_TEST_ROOT/recap"; }

# recap_busted FILE LABEL: keeps the head of each failed spec (where, name,
# first line of the message) for the recap printed before the last line.
recap_busted() {
    grep -A 2 -E '^(Failure|Error) ' "$1" | sed "s/^/[$2] /" >>"$RS_TEST_ROOT/recap"
}

# run_busted OUT SPECS...: busted on the plain build, output shown and kept.
run_busted() {
    out_file=$1
    shift
    LUA_CPATH="build/?.so;;" LUA_PATH="spec/?.lua;spec/?/init.lua;;" \
        lua5.4 /usr/bin/busted -o plainTerminal "$@" 2>&1 | tee "$out_file"
}

# count_busted FILE LABEL: adds the counts of busted's summary line in FILE
# ("X successes / Y failures / Z errors / ..."); sets bad and err; returns 1
# (after counting a failure) when there is no summary line.
count_busted() {
    esc=$(printf '\033')
    summary=$(sed "s/$esc\[[0-9;]*m//g" "$1" | grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / ' | tail -n 1)
    if [ -z "$summary" ]; then
        fail "$2: no summary line (crashed?)"
        return 1
    fi
    ok=$(echo "$summary" | sed -E 's/^([0-9]+) success.*/\1/')
    bad=$(echo "$summary" | sed -E 's/^.* ([0-9]+) failures? \/.*/\1/')
    err=$(echo "$summary" | sed -E 's/^.* ([0-9]+) errors? \/.*/\1/')
    passed=$((passed + ok))
    failed=$((failed + bad + err))
    [ $((ok + bad + err)) -gt 0 ] || fail "$2: no tests found"
}

# ---- C tests: plain, ASan+UBSan, TSan (built by `make test`) -------------
found_c=0
for t in build/tests/* build-asan/tests/* build-tsan/tests/*; do
    if [ ! -f "$t" ] || [ ! -x "$t" ]; then continue; fi
    found_c=1
    echo "== $t"
    if ASAN_OPTIONS="detect_leaks=1 ${ASAN_OPTIONS:-}" \
       TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" "$t"; then
        pass "$t"
    else
        fail "$t (exit $?)"
    fi
done
[ "$found_c" -eq 1 ] || fail "no C tests built (run make test)"

# ---- busted ----------------------------------------------------------------
specs=""
for s in spec/*_spec.lua; do
    [ -f "$s" ] && specs="$specs $s"
done
# ---- busted under ASan+UBSan with leak check (built by make test-lua-asan) --
# It runs in the background while the plain and Valkey passes run (they
# mostly wait on servers, so the two share the 2 cores well); its output
# is kept in a file and shown once it is done.
asan_pid=""
if [ -n "$specs" ] && [ -x build-asan/bin/lua5.4 ] && [ -f build-asan/rigatoni_store.so ]; then
    echo "== busted under ASan+UBSan (build-asan/rigatoni_store.so)$specs: started alongside, shown below when done"
    asan_out="$RS_TEST_ROOT/busted-asan.out"
    # Each process writes its reports to asan/asan.<pid> (ubsan.<pid>):
    # a report of busted itself, or of a child whose stderr a spec reads
    # or throws away, is kept whole whatever the spec does with its output.
    reports="$RS_TEST_ROOT/asan"
    mkdir -p "$reports"
    # shellcheck disable=SC2086
    (
        unset LUA_PATH_5_4 LUA_CPATH_5_4
        PATH="$PWD/build-asan/bin:$PATH" \
        ASAN_OPTIONS="detect_leaks=1:exitcode=23:log_path=$reports/asan ${ASAN_OPTIONS:-}" \
        LSAN_OPTIONS="suppressions=$PWD/spec/support/lsan.supp:print_suppressions=0 ${LSAN_OPTIONS:-}" \
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan ${UBSAN_OPTIONS:-}" \
        RS_TEST_PORTS=16001-22000 \
        LUA_CPATH="build-asan/?.so;;" LUA_PATH="spec/?.lua;spec/?/init.lua;;" \
            build-asan/bin/lua5.4 /usr/bin/busted -o plainTerminal $specs >"$asan_out" 2>&1
        echo $? >"$RS_TEST_ROOT/busted-asan.status"
    ) &
    asan_pid=$!
fi

# The plain and Valkey passes take the other half of the specs' ports
# (spec/support/servers.lua): a server one pass restarts on its port must
# not find it taken by the other pass.
RS_TEST_PORTS=10000-16000
export RS_TEST_PORTS

if [ -z "$specs" ]; then
    fail "busted: no spec/*_spec.lua"
else
    echo "== busted$specs"
    out="$RS_TEST_ROOT/busted.out"
    unset LUA_PATH_5_4 LUA_CPATH_5_4
    # shellcheck disable=SC2086
    run_busted "$out" $specs
    count_busted "$out" busted
    recap_busted "$out" busted
fi

# ---- the same specs on Valkey, once, without ASan ------------------------
VALKEY_SPECS="spec/store_spec.lua spec/locks_spec.lua spec/scripts_spec.lua spec/cluster_spec.lua spec/check_before_acting_spec.lua"
case "${RS_TEST_SERVER:-redis-server}" in
*valkey*)
    echo "== busted (Valkey): skipped, every pass above already ran on ${RS_TEST_SERVER}" ;;
*)
    if command -v valkey-server >/dev/null 2>&1 && command -v valkey-cli >/dev/null 2>&1; then
        echo "== busted (Valkey $(valkey-server --version | sed -E 's/.* v=([^ ]+) .*/\1/')) $VALKEY_SPECS"
        out="$RS_TEST_ROOT/busted-valkey.out"
        # shellcheck disable=SC2086
        RS_TEST_SERVER=valkey-server run_busted "$out" $VALKEY_SPECS
        count_busted "$out" "busted (Valkey)"
        recap_busted "$out" busted-valkey
    else
        echo "== busted (Valkey): skipped, no valkey-server installed (make deps installs it where the distribution has it)"
        echo "skipped: busted (Valkey), no valkey-server" >>"$RS_TEST_ROOT/recap"
    fi ;;
esac

# ---- the ASan pass's results ----------------------------------------------
if [ -n "$asan_pid" ]; then
    wait "$asan_pid"
    asan_pid=""
    out=$asan_out
    status=$(cat "$RS_TEST_ROOT/busted-asan.status" 2>/dev/null || echo 99)
    echo "== busted under ASan+UBSan (build-asan/rigatoni_store.so): output"
    cat "$out"
    recap_busted "$out" busted-asan
    nreports=$(find "$reports" -type f | wc -l)
    # Printed here: the root (and the reports in it) is gone at exit.
    if [ "$nreports" -gt 0 ] || [ "$status" -ne 0 ]; then
        echo "== sanitizer reports of the ASan pass: $nreports file(s) in $reports"
        find "$reports" -type f | sort | while IFS= read -r r; do
            echo "---- $r"
            cat "$r"
        done
    fi
    if count_busted "$out" "busted (ASan, exit $status)"; then
        # A sanitizer report anywhere (children included) or a leak at exit.
        if [ "$nreports" -gt 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$out"; then
            fail "busted (ASan): $nreports sanitizer report file(s), printed in full above"
        elif [ "$status" -ne 0 ] && [ $((bad + err)) -eq 0 ]; then
            fail "busted (ASan): exit status $status without failed tests"
        fi
    elif [ "$nreports" -gt 0 ]; then
        echo "FAILED: busted (ASan): $nreports sanitizer report file(s), printed in full above" >>"$RS_TEST_ROOT/recap"
    fi
elif [ -n "$specs" ]; then
    fail "busted (ASan): build-asan/bin/lua5.4 or build-asan/rigatoni_store.so missing (make test-lua-asan)"
fi

# ---- fuzz smoke (targets built by make fuzz-build) -------------------------
found_fuzz=0
for bin in build-fuzz/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    found_fuzz=1
    t=${bin##*/fuzz_}
    echo "== fuzz $t (${FUZZ_SMOKE_SECONDS:-10} s)"
    if sh spec/fuzz/run.sh "${FUZZ_SMOKE_SECONDS:-10}" "$t"; then
        pass "fuzz $t"
    else
        fail "fuzz $t"
    fi
done
[ "$found_fuzz" -eq 1 ] || fail "no fuzz targets built (make fuzz-build)"

if [ -s "$RS_TEST_ROOT/recap" ]; then
    echo "== recap: what failed or was skipped (details above)"
    cat "$RS_TEST_ROOT/recap"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
