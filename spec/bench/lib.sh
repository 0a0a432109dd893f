# SPDX-License-Identifier: MIT
# spec/bench/lib.sh -- shell pieces the benchmarks share (sourced, POSIX sh).
# The caller sets TMP (a private temp dir) and stops the server in its trap;
# the redis-benchmark helpers read PORT, SIZE (value bytes) and, over TLS,
# TLS_PORT and CA.

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

# start_redis DIR [ARG...]: a redis-server (extra arguments ARG...) on a
# random port that nothing answered on, in DIR (its pid in DIR/pid, its log
# DIR/redis.log); prints the port once the server that answers there is
# ours (its INFO process_id is our pid). With REDIS_CA set (a CA file) the
# port is a TLS port (--port 0 --tls-port) and is asked over TLS; ARG gives
# the certificates.
start_redis() {
    dir=$1
    shift
    mkdir -p "$dir"
    tries=0
    while [ $tries -lt 20 ]; do
        tries=$((tries + 1))
        port=$(random_port)
        if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then continue; fi
        if [ -n "${REDIS_CA:-}" ]; then
            if ask_redis ping >/dev/null 2>&1; then continue; fi
            ports="--port 0 --tls-port $port"
        else
            ports="--port $port"
        fi
        # shellcheck disable=SC2086  # $ports: two or four words
        redis-server $ports --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
            --daemonize no --logfile "$dir/redis.log" "$@" </dev/null >/dev/null 2>&1 &
        pid=$!
        echo "$pid" >"$dir/pid"
        i=0
        while [ $i -lt 50 ] && kill -0 "$pid" 2>/dev/null; do
            if ask_redis info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
                echo "$port"
                return 0
            fi
            sleep 0.1; i=$((i + 1))
        done
        stop_pid "$pid"
    done
    echo "bench: could not start redis-server (log: $(tail -n 3 "$dir/redis.log" 2>/dev/null))" >&2
    return 1
}
# redis-cli to start_redis's candidate $port, over TLS when REDIS_CA is set.
ask_redis() {
    if [ -n "${REDIS_CA:-}" ]; then redis-cli -h 127.0.0.1 -p "$port" --tls --cacert "$REDIS_CA" "$@"
    else redis-cli -h 127.0.0.1 -p "$port" "$@"; fi
}

# One server for the whole script: sets PORT and SERVER_PID.
start_server() {
    PORT=$(start_redis "$TMP/redis") || exit 1
    SERVER_PID=$(cat "$TMP/redis/pid")
}

# median V1 V2 ... (numeric)
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) { print "nan"; exit }
              if (NR % 2) print a[(NR + 1) / 2]
              else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# rb_parse: redis-benchmark -q output -> "SET_RPS GET_RPS"
rb_parse() {
    tr '\r' '\n' | awk '
        $1 == "SET:" && $3 == "requests" { set = $2 }
        $1 == "GET:" && $3 == "requests" { get = $2 }
        END { if (set == "" || get == "") exit 1; print set, get }'
}
# redis_bench CLIENTS REQUESTS -> "SET_RPS GET_RPS"
redis_bench() {
    redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$1" -n "$2" -t set,get -d "$SIZE" -q 2>/dev/null | rb_parse
}
# rb_rate ARGS... -> requests per second of redis-benchmark -q ARGS (one test)
rb_rate() {
    redis-benchmark -q "$@" 2>/dev/null | tr '\r' '\n' |
        awk '{ for (i = 2; i < NF; i++) if ($i == "requests" && $(i + 1) == "per") v = $(i - 1) }
             END { if (v == "") exit 1; print v }'
}
# rb_cmd REQUESTS ARGS... -> requests per second of one custom command, -c 1
rb_cmd() {
    n=$1; shift
    rb_rate -h 127.0.0.1 -p "$PORT" -c 1 -n "$n" "$@"
}
# rb1 TEST REQUESTS -> ops/s of redis-benchmark -c 1 -t TEST -d SIZE (plain)
rb1() { rb_rate -h 127.0.0.1 -p "$PORT" -c 1 -n "$2" -t "$1" -d "$SIZE"; }
# rb1_tls TEST REQUESTS -> the same over TLS
rb1_tls() { rb_rate -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$CA" -c 1 -n "$2" -t "$1" -d "$SIZE"; }
# paired_median "A1 A2 .." "B1 B2 .." -> median of the per-round ratios Ai/Bi
paired_median() {
    # shellcheck disable=SC2046
    median $(printf '%s\n%s\n' "$1" "$2" | awk 'NR == 1 { n = split($0, a) }
        NR == 2 { split($0, b); for (i = 1; i <= n; i++) if (b[i] > 0) printf "%.4f\n", a[i] / b[i] }')
}
