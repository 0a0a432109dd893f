# spec/bench/lib.sh -- shell pieces the benchmarks share (sourced, POSIX sh).
# The caller sets TMP (a private temp dir) and stops the server in its trap.

# A random port in 20000..49999.
random_port() {
    r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    echo $((20000 + r % 30000))
}

# stop_pid PID: SIGTERM, then SIGKILL after 5 s.
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.1; i=$((i + 1))
    done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
stop_server() { stop_pid "$SERVER_PID"; SERVER_PID=; }

cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# Starts redis-server on a random port that nothing answers on, and makes
# sure the one answering is ours (its INFO process_id is our pid). Sets PORT
# and SERVER_PID.
start_server() {
    tries=0
    while [ $tries -lt 20 ]; do
        tries=$((tries + 1))
        PORT=$(random_port)
        if redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then continue; fi
        redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$TMP" --daemonize no --logfile "$TMP/redis.log" &
        SERVER_PID=$!
        i=0
        while [ $i -lt 50 ]; do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
            if [ "$(cli ping 2>/dev/null)" = PONG ]; then
                if cli info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$SERVER_PID"; then
                    return 0
                fi
                break
            fi
            sleep 0.1; i=$((i + 1))
        done
        stop_server
    done
    echo "bench: could not start redis-server" >&2
    exit 1
}

# median V1 V2 ... (numeric)
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) { print "nan"; exit }
              if (NR % 2) print a[(NR + 1) / 2]
              else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
