/* SPDX-License-Identifier: MIT */
/* internal.h -- what the files of the core share; not installed.
 *
 * The core is cut by concern: error.c (rs_error), log.c (log lines),
 * url.c (parsing and masking), config.c (options), tls.c (TLS contexts),
 * conn.c (one Redis connection), pool.c (bounded connection pool),
 * sentinel.c (master discovery), cluster.c (slot routing), retry.c (error
 * classification and backoff), exec.c (one attempt of a call on one pool),
 * call.c (the attempt loop: routing, retries, metrics, WAIT, verified
 * outcomes), script.c (EVALSHA), metrics.c (counters), store.c (token
 * operations), batch.c (many tokens per round trip), scan.c (the walk of a
 * streaming listing), readahead.c (two threads running a producer ahead of
 * its consumer),
 * lock.c (locks and leases), token.c (BSON token checks), stream.c (Rigatoni
 * 0.2 stream key names), identity.c (which data set a store reaches:
 * run_id and replication id per master), failover.c (+switch-master),
 * jobs.c (blocking calls run on the store's worker threads), closing.c
 * (a store's close, heard by the jobs it cuts short).
 */
#ifndef RS_INTERNAL_H
#define RS_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

#include "rigatoni_store.h"

#define RS_FMT(a, b) __attribute__((format(printf, a, b)))

/* ---- error.c ---- */

/* The one way a public entry point accepts err == NULL ("may be NULL" in
 * rigatoni_store.h): its first statement is RS_ERR_ACCEPT_NULL(err);,
 * which points `err` at a cleared local rs_error when the caller gave
 * none. Below the public entry points `err` is never NULL, so nothing
 * else tests it. */
static inline rs_error *rs_error_or_local(rs_error *err, rs_error *local)
{
    if (err) return err;
    local->kind = RS_OK;
    local->retryable = 0;
    local->attempts = 0;
    local->reply = RS_REPLY_NONE;
    local->message[0] = '\0';
    return local;
}
#define RS_ERR_ACCEPT_NULL(err)      \
    rs_error err##_if_null_;         \
    (err) = rs_error_or_local((err), &err##_if_null_)

void rs_error_set(rs_error *err, rs_error_kind kind, int retryable,
                  const char *fmt, ...) RS_FMT(4, 5);
void rs_error_clear(rs_error *err);

/* ---- log.c ---- */
int rs_log_enabled(rs_log_level level);
/* Hands a line to the handler of `cfg` (rs_config_set_log_handler); none
 * (NULL, the default) = silent: the library never prints. */
/* Callers pass masked text only. */
void rs_log(const rs_config *cfg, rs_log_level level, const char *fmt, ...) RS_FMT(3, 4);

/* ---- time helpers (retry.c) ---- */
double rs_now(void);                 /* monotonic seconds */
void rs_sleep(double seconds);

/* ---- config.c: the fields, read by the other core files ---- */
struct rs_config {
    char *url;               /* as given; never printed unmasked */
    rs_url parsed;           /* valid when url != NULL */
    int pool_size;
    double ttl;              /* seconds; 0 = none */
    int max_retries;
    double connection_timeout;
    double command_timeout;
    double retry_base_delay;
    double retry_max_delay;
    double idle_check_after;
    double spin_wait;        /* seconds; 0 = never spin (exec.c) */
    int cluster_mode;
    char *key_prefix;
    char *lock_prefix;
    int scan_count;
    int workers;             /* most worker threads for jobs (jobs.c) */
    char *sentinel_master;
    char *sentinel_username;
    char *sentinel_password;
    char *sentinel_password_file;
    char *password;          /* overrides the URL's password */
    char *password_file;
    int wait_replicas;
    double wait_timeout;
    int wait_policy_warn;    /* wait_policy = warn (default error) */
    char *tls_ca_file, *tls_ca_path, *tls_cert_file, *tls_key_file;
    char *tls_server_name;
    int tls_verify;
    rs_log_fn log_fn;        /* rs_config_set_log_handler; NULL = silent */
    void *log_data;
};

/* The data nodes' password: the `password` option, else the URL's. */
const char *rs_config_password(const rs_config *cfg);

/* ---- nosigpipe.c: no SIGPIPE from writes to a closed connection ---- */
typedef struct rs_sigpipe_guard {
    sigset_t old;
    int was_blocked;
} rs_sigpipe_guard;
/* Blocks SIGPIPE for this thread; unblock consumes one raised meanwhile
 * and restores the mask. */
void rs_sigpipe_block(rs_sigpipe_guard *g);
void rs_sigpipe_unblock(rs_sigpipe_guard *g);
/* Gives ctx a write function that cannot raise SIGPIPE (after TLS setup). */
void rs_nosigpipe(redisContext *ctx, int tls);

/* ---- tls.c ---- */
typedef struct rs_tls rs_tls;
/* One TLS context per store, from the tls.* options. NULL + config error. */
rs_tls *rs_tls_new(const rs_config *cfg, rs_error *err);
void rs_tls_free(rs_tls *tls);
/* TLS handshake on a connected context; verifies chain and host name
 * unless tls.verify is off (then warns). Certificate, name and protocol
 * errors are final; a reset, EOF or timeout is a retryable connection
 * error. */
int rs_tls_handshake(rs_tls *tls, redisContext *ctx, const char *host, int port, rs_error *err);

/* ---- conn.c: one connection ---- */
typedef struct rs_conn {
    redisContext *ctx;
    double last_used;        /* rs_now() when last handed back */
    int tls;                 /* rediss:// */
    int used;                /* a pipeline was sent on it (exec.c) */
    uint64_t generation;     /* pool generation it was opened in */
    struct rs_conn *next;    /* idle list link */
    double spin_wait;        /* the option, for exec.c */
    unsigned spin_misses;    /* late replies in a row (exec.c) */
    unsigned spin_skipped;   /* calls that did not spin since */
    double opened_at;        /* rs_now() when connected */
    int identity;            /* scan.c: 0 not asked yet, 1 run_id known, -1 refused */
    char run_id[41];         /* the server process's INFO run_id (scan.c) */
} rs_conn;

/* TCP (+ TLS) connection with AUTH when a password is given. NULL + err. */
redisContext *rs_connect(const rs_config *cfg, rs_tls *tls, const char *host, int port,
                         const char *username, const char *password, rs_error *err);
/* A data connection: rs_connect with the URL's credentials, then SELECT. */
rs_conn *rs_conn_open(const rs_config *cfg, rs_tls *tls, const char *host, int port,
                      rs_error *err);
void rs_conn_close(rs_conn *conn);
/* One setup command; *out gets the reply (may be NULL to drop it). An
 * error reply fails with err classified. 0 or -1. */
int rs_conn_command(redisContext *ctx, int argc, const char **argv, redisReply **out,
                    rs_error *err);

/* ---- identity.c ---- */
/* Copies the value of "<name>:" at the start of a line of an INFO text.
 * 1 when found and it fits, else 0. */
int rs_info_field(const char *text, size_t len, const char *name, char *buf, size_t size);

/* ---- sentinel.c ---- */
/* Asks every one of the URL's sentinels, from the start-th (mod their
 * number) on, for the master's address and config epoch; takes the address
 * of the newest epoch, among equals the one named most often. *epoch: that
 * epoch (0 when not told). 0 or -1. */
int rs_sentinel_discover(const rs_config *cfg, rs_tls *tls, uint64_t start, char *host,
                         size_t host_size, int *port, uint64_t *epoch, rs_error *err);
/* ROLE says master? 0, or -1 with a retryable error. */
int rs_sentinel_confirm_master(rs_conn *conn, const char *host, int port, rs_error *err);

/* ---- pool.c ---- */
typedef struct rs_pool rs_pool;
/* A pool of connections to host:port, or, with host NULL, to the master
 * that the URL's sentinels name. */
rs_pool *rs_pool_new(const rs_config *cfg, rs_tls *tls, const char *host, int port);
void rs_pool_free(rs_pool *pool);
/* Lends a connection, creating one when under pool_size, else waiting at
 * most connection_timeout. Idle connections older than idle_check_after
 * are PINGed first. NULL + err (pool, connection, ...) on failure. */
rs_conn *rs_pool_acquire(rs_pool *pool, rs_error *err);
/* Gives a connection back; `broken` closes it instead of keeping it. */
void rs_pool_release(rs_pool *pool, rs_conn *conn, int broken);
/* Closes every idle connection: after an I/O error they are suspect
 * (a restarted server leaves all of them dead). */
void rs_pool_drop_idle(rs_pool *pool);
/* After a failed attempt: with Sentinel, a lost connection or a READONLY /
 * MASTERDOWN reply means the master may have moved, so every connection is
 * retired and the next one asks the sentinels again; without Sentinel a
 * lost connection drops the idle ones. */
void rs_pool_after_failure(rs_pool *pool, int broken, const rs_error *err);
void rs_pool_get_stats(rs_pool *pool, rs_pool_stats *out);
/* The sentinels announced that the master is now host:port: unless the
 * pool already moved there, every connection is retired (idle ones closed,
 * lent ones on release) and the next one asks the sentinels. */
void rs_pool_master_switched(rs_pool *pool, const char *host, int port);
/* Retires every connection (idle ones now, lent ones on release). */
void rs_pool_retire(rs_pool *pool);
/* How many times the pool saw its master change (a discovery naming
 * another address, or a switch announced); never goes back. */
uint64_t rs_pool_master_changes(rs_pool *pool);

/* ---- failover.c: hearing Sentinel's +switch-master ---- */
typedef struct rs_failover rs_failover;
/* A thread subscribed to +switch-master on one of the URL's sentinels (the
 * next one when it fails), telling `pool` at once. NULL + err when the
 * thread cannot start. */
rs_failover *rs_failover_start(const rs_config *cfg, rs_tls *tls, rs_pool *pool, rs_error *err);
/* Stops and joins the thread; NULL is fine. */
void rs_failover_stop(rs_failover *f);

/* ---- retry.c ---- */
/* Fills err from a failed context (I/O, EOF, timeout, protocol). */
void rs_error_from_context(rs_error *err, const redisContext *ctx);
/* The class of an error reply, by its first word. */
rs_reply_class rs_reply_classify(const char *str, size_t len);
/* Fills err from an error reply: err->reply gets its class, which decides
 * the kind and whether it is retryable (auth, transient, ...). */
void rs_error_from_reply(rs_error *err, const char *str, size_t len);
/* Delay before retry number `n` (1-based): base * 2^(n-1), capped, with
 * jitter in [50%, 100%]. */
double rs_retry_delay(const rs_config *cfg, int n);
/* After failed attempt number `attempt` of `what`: when the failure is
 * retryable and attempts remain, counts and logs the retry, sleeps the
 * delay and returns 1; else returns 0, also when the store's close begins
 * before or during the delay (closing.c). */
int rs_retry_wait(rs_store *store, const char *what, int attempt, const rs_error *last);

/* ---- the execution engine: exec.c (one attempt), call.c (the loop) ----
 *
 * Every request to the servers is an rs_call: what to run (operation,
 * commands, retry rule), where (the store's routing, or one given pool),
 * what the caller must see of the connection (hooks) and where the outcome
 * goes (replies, counts, error). rs_call_run takes it through
 * route -> pool -> connection -> pipeline -> classification -> retry; no
 * other file acquires connections or decides retries (the lease's refresh
 * loop, bounded by its validity rather than by max_retries, is the one
 * loop of its own: lock.c). A call holds all its state, so it can be
 * queued and run on another thread: the one who queues it keeps cmds,
 * replies and err alive until it completes. */

/* What a call is, for metrics: one kind per store operation family. */
typedef enum rs_op {
    RS_OP_SAVE, RS_OP_GET, RS_OP_DELETE, RS_OP_LIST, RS_OP_LOCK, RS_OP_OTHER, RS_OP_COUNT
} rs_op;

typedef struct rs_cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
} rs_cmd;

/* When a failed attempt may be repeated (the per-operation rules are in
 * rigatoni_store.h). A failure before anything was sent (no connection, a
 * pooled connection found closed) is always retried: the command did not
 * run. A failure after sending (timeout, connection lost before every
 * reply was read) leaves the outcome unknown. */
typedef enum rs_retry_rule {
    RS_RETRY_IDEMPOTENT,   /* repeating has the same effect: retry it too */
    RS_RETRY_UNSENT,       /* never repeat what may have run: RS_ERR_UNKNOWN */
} rs_retry_rule;

/* What one attempt did, beside its replies. */
typedef struct rs_attempt {
    int broken;            /* the connection must be thrown away */
    int sent;              /* some byte of the pipeline may have reached the server */
    size_t answered;       /* leading replies read (set in replies[] even on failure) */
    int lost;              /* sent, and some command's outcome is not known */
    int repeatable;        /* sending it again cannot run a command twice */
} rs_attempt;

typedef struct rs_call rs_call;

/* Where a caller sees an attempt's connection; each may be NULL. */
typedef struct rs_call_hooks {
    /* Lent, nothing sent yet: 0, or -1 + err (the attempt fails unsent,
     * the connection is kept). May set call->skip. */
    int (*before_send)(rs_call *call, rs_conn *conn, rs_error *err);
    /* Every reply read, the connection still lent: 0, or -1 + err. */
    int (*after_replies)(rs_call *call, rs_conn *conn, rs_error *err);
    /* A failed attempt is about to be repeated (after the delay). */
    void (*before_retry)(rs_call *call, const rs_error *last);
} rs_call_hooks;

enum rs_call_flags {
    RS_CALL_KEEP = 1,          /* on failure, the replies read stay the caller's (answered) */
    RS_CALL_ERROR_REPLIES = 2, /* error replies do not fail the attempt: the caller reads them */
    RS_CALL_UNCOUNTED = 4,     /* not recorded in the metrics (a part of a larger call) */
    RS_CALL_ONCE = 8,          /* one attempt; err gets its own failure (the caller retries) */
    RS_CALL_DURABLE = 16,      /* rs_script_run: through rs_call_durable */
};

struct rs_cluster_call;

struct rs_call {
    /* what */
    rs_op op;
    const char *what;          /* names the operation in messages */
    rs_retry_rule rule;
    size_t ncmds;
    const rs_cmd *cmds;
    unsigned flags;            /* rs_call_flags */
    /* where: this pool (a node, a lease's own), else the store's routing */
    rs_pool *pool;
    const rs_cmd *wait;        /* cluster: each node's pipeline ends with this WAIT */
    const rs_call_hooks *hooks;
    void *ctx;                 /* the hooks' */
    size_t skip;               /* leading commands not sent this attempt (before_send) */
    struct rs_cluster_call *route;   /* cluster.c's state across attempts */
    /* the outcome */
    redisReply **replies;      /* ncmds slots */
    size_t answered;           /* failure with RS_CALL_KEEP: leading replies left set */
    long long acked;           /* cluster WAIT: in, replicas wanted; out, fewest counted */
    int attempts;
    rs_error *err;             /* may be NULL */
    rs_error cause;            /* an RS_ERR_UNKNOWN's: the failure behind it (timeout,
                                * lost connection); kind RS_OK when none */
};

/* A call with the defaults: idempotent, counted, routed by the store. */
#define RS_CALL(op_, what_, ncmds_, cmds_, replies_, err_)                                 \
    ((rs_call){.op = (op_), .what = (what_), .rule = RS_RETRY_IDEMPOTENT, .ncmds = (ncmds_), \
               .cmds = (cmds_), .replies = (replies_), .err = (err_)})

void rs_replies_free(redisReply **replies, size_t n);

/* resp.c: appends the RESP of every command to ctx's output buffer in one
 * piece; 0, or -1 when out of memory (ctx->err set by hiredis, or not). */
int rs_resp_append(redisContext *ctx, size_t ncmds, const rs_cmd *cmds);

/* exec.c: one attempt of `call` (its commands from call->skip on) on a
 * connection of `pool`: acquire, hooks, pipeline, release; the pool drops
 * what the failure made suspect. replies[0..at->answered) stay set on
 * failure. 0 or -1 + *last. */
int rs_call_attempt(rs_pool *pool, rs_call *call, rs_attempt *at, rs_error *last);
/* The retry policy for a step that is not a pipeline (reading the slot
 * map): runs step(ctx, last) until it returns 0 or the failure is final. */
int rs_retry_step(rs_store *store, const char *what, int (*step)(void *, rs_error *),
                  void *ctx, rs_error *err);
/* The final error of a call: "<what> failed after N attempts: ...". */
void rs_exec_fail(rs_error *err, const char *what, int attempts, const rs_error *last);
/* The final error of a call whose last attempt may have run: RS_ERR_UNKNOWN,
 * not retryable, naming how many of `ncmds` replies were read. */
void rs_exec_unknown(rs_error *err, const char *what, int attempts, size_t answered,
                     size_t ncmds, const rs_error *last);

/* ---- call.c: the attempt loop, the routing seam, WAIT, checked outcomes ---- */
/* Runs `call` under its retry rule. On success, replies[i] holds each
 * reply (free with freeReplyObject); an error reply fails the call unless
 * RS_CALL_ERROR_REPLIES. On failure with RS_ERR_UNKNOWN and RS_CALL_KEEP,
 * the first call->answered replies are set and the caller's (their
 * commands ran, or did not where the reply is an error; the later ones may
 * or may not have). On another failure after every reply was read (an
 * error reply among them), RS_CALL_KEEP gives answered = ncmds and the
 * replies to the caller too; otherwise no reply is left. 0 or -1. */
int rs_call_run(rs_store *store, rs_call *call);
/* rs_call_run for writes that must be durable: with wait_replicas set, a
 * WAIT follows in the same pipeline, and too few acknowledgements fail the
 * call (or log a warning with wait_policy = warn). A WAIT whose reply was
 * lost after every write was answered counts as no acknowledgement. */
int rs_call_durable(rs_store *store, rs_call *call);

/* RS_ERR_UNKNOWN after checking the server's state: `why` says what the
 * check found (e.g. "the key is gone: deleted by this call or before"). */
void rs_exec_unknown_because(rs_error *err, const char *what, int attempts, const char *why);
/* One idempotent command on one key (GET, EXISTS, PTTL): how an operation
 * whose attempt may have run reads the state that tells its outcome. */
int rs_exec_key(rs_store *store, const rs_call *like, const char *cmdname, const char *key,
                size_t key_len);

/* What the server's state says about an attempt that may have run. */
typedef enum rs_outcome {
    RS_OUTCOME_RAN,        /* it ran: report its effect */
    RS_OUTCOME_NOT_RUN,    /* it did not: send it again */
    RS_OUTCOME_UNKNOWN,    /* nothing can be said: raise RS_ERR_UNKNOWN (*why says why) */
} rs_outcome;
/* Runs the operation: 0 with *reply, or -1 + err; on RS_ERR_UNKNOWN,
 * *cause gets the call's cause (kind RS_OK when it had none). */
typedef int (*rs_attempt_fn)(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                             rs_error *cause);
typedef rs_outcome (*rs_check_fn)(const redisReply *state, void *ctx, const char **why);

/* A non-idempotent operation on one key made truthful: rs_exec_checked
 * runs `run` (which uses RS_RETRY_UNSENT); when it fails with
 * RS_ERR_UNKNOWN, reads the key with `check_cmd` (GET, EXISTS, PTTL) and
 * lets `check` decide. */
typedef struct rs_checked {
    const char *what;
    rs_attempt_fn run;
    const char *check_cmd;
    const char *key;
    size_t key_len;
    rs_check_fn check;
    void *ctx;             /* run's and check's */
    int attempts;          /* out: how many were made, as far as known */
} rs_checked;
/* 0 with *reply from `run`, 1 when the check found that it ran (no
 * reply), -1 + err. At most max_retries + 1 attempts in all. */
int rs_exec_checked(rs_store *store, rs_checked *op, redisReply **reply, rs_error *err);

/* One command under RS_RETRY_UNSENT, as an rs_attempt_fn (ctx: the struct). */
typedef struct rs_unsent_cmd {
    rs_op op;
    const char *what;
    rs_cmd cmd;
} rs_unsent_cmd;
int rs_run_unsent(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                  rs_error *cause);

/* ---- script.c: EVALSHA with NOSCRIPT fallback ---- */
typedef struct rs_script {
    const char *source;
    char sha[41];
} rs_script;

/* A script's keys and arguments (binary safe). */
typedef struct rs_script_args {
    int nkeys;
    const char **keys;
    const size_t *key_lens;
    int nargs;
    const char **args;
    const size_t *arg_lens;
} rs_script_args;

void rs_script_init(rs_script *script, const char *source);
/* Runs the script as `call` says (op, what, rule, flags, pool, hooks;
 * RS_CALL_DURABLE: through rs_call_durable); its commands and replies are
 * the script's. One reply into *reply, of any type. 0 or -1 + call->err
 * (call->attempts and call->cause set as by rs_call_run). */
int rs_script_run(rs_store *store, rs_call *call, const rs_script *script,
                  const rs_script_args *args, redisReply **reply);

/* ---- cluster.c: Redis Cluster routing ---- */
typedef struct rs_cluster rs_cluster;
/* Discovers the slot map from the URL's seed nodes. NULL + err. */
rs_cluster *rs_cluster_new(rs_store *store, rs_error *err);
void rs_cluster_free(rs_cluster *cluster);
/* CRC16 slot of a key, with {hash tag} rules. */
unsigned rs_key_slot(const char *key, size_t len);
/* One attempt of `call` in cluster mode, the cluster side of call.c's
 * routing seam: commands routed by key slot, grouped per node, MOVED/ASK
 * followed, the map refreshed after redirections or failures. Replies of
 * commands done stay in call->replies across attempts; only the others
 * are sent again. With call->wait, each node's pipeline ends with that
 * WAIT, and call->acked gets the fewest replicas any of them counted.
 * rs_cluster_call_end frees the state, and on failure the replies. */
int rs_cluster_attempt(rs_store *store, rs_call *call, rs_attempt *at, rs_error *last);
void rs_cluster_call_end(rs_call *call, int failed);
/* Pools of the current masters (for SCAN over every master), and one slot
 * each serves. Returns the count (at most max). Pools live as long as the
 * store. */
size_t rs_cluster_masters(rs_store *store, rs_pool **pools, int *slots, size_t max);
/* The masters of the slot map with their "host:port" (node_info.c labels
 * each node's figures with it). */
size_t rs_cluster_master_addresses(rs_store *store, rs_pool **pools, char (*addresses)[300],
                                   size_t max);
#define RS_CLUSTER_SLOTS 16384
/* Reads the slot map again, now, and copies it: owners[s] is the pool of
 * the master serving slot s (NULL when none) for each of the
 * RS_CLUSTER_SLOTS slots. Pools live as long as the store. 0 or -1 + err. */
int rs_cluster_snapshot(rs_store *store, rs_pool **owners, rs_error *err);
/* Whether the node behind `pool` has slots migrating or importing (CLUSTER
 * NODES, its own line): 1 or 0, or -1 + err (retried within the policy). */
int rs_cluster_open_slots(rs_store *store, rs_pool *pool, rs_error *err);
/* Reads the map again and returns the pool now serving `slot` (the
 * replica that took over from a lost master), or NULL. */
rs_pool *rs_cluster_slot_owner(rs_store *store, int slot);
void rs_cluster_pool_stats(rs_cluster *cluster, rs_pool_stats *out);

/* ---- metrics.c: per-store counters, lock free (see metrics.c) ---- */
#define RS_METRICS_FINITE_BUCKETS (RS_METRICS_BUCKETS - 1)

typedef struct rs_op_counters {
    _Atomic uint64_t buckets[RS_METRICS_BUCKETS];
    _Atomic uint64_t errors[RS_METRICS_ERROR_KINDS];
    _Atomic uint64_t retries, sum_ns, max_ns;
} rs_op_counters;

/* Events counted with rs_metrics_count (cluster.c). */
typedef enum rs_metric_counter {
    RS_METRIC_MOVED,         /* a MOVED redirection followed */
    RS_METRIC_ASK,           /* an ASK redirection followed */
    RS_METRIC_REFRESH,       /* the slot map reloaded */
    /* Locks, under Rigatoni 0.2's own metric names (lock.c): */
    RS_METRIC_LOCK_ACQUIRED,     /* rigatoni_lock_acquisitions_total */
    RS_METRIC_LOCK_ALREADY_HELD, /* ..._acquisition_failures_total{reason="already_held"} */
    RS_METRIC_LOCK_ERROR,        /* ..._acquisition_failures_total{reason="error"} */
    RS_METRIC_LOCK_LOST,         /* rigatoni_locks_lost_total */
    RS_METRIC_LOCK_REFRESHED,    /* rigatoni_lock_refreshes_total */
    RS_METRIC_LOCK_RELEASED,     /* rigatoni_locks_released_total */
    RS_METRIC_COUNTERS
} rs_metric_counter;

/* Pool counters as they were at the last reset. */
enum { RS_BASE_CREATED, RS_BASE_CLOSED_BROKEN, RS_BASE_CLOSED_IDLE, RS_BASE_WAITS,
       RS_BASE_WAIT_TIMEOUTS, RS_BASE_FAILOVERS, RS_BASE_WAIT_NS, RS_BASE_COUNT };

typedef struct rs_metrics {
    rs_op_counters ops[RS_OP_COUNT];
    _Atomic uint64_t counters[RS_METRIC_COUNTERS];
    _Atomic int64_t locks_held;   /* gauge: acquired, not yet released or lost */
    _Atomic uint64_t base[RS_BASE_COUNT];
} rs_metrics;

/* A call in progress: rs_metrics_begin() when it starts, rs_metrics_end()
 * with its final error kind (RS_OK on success) when it ends. */
typedef struct rs_metrics_call {
    uint64_t start_ns;
    unsigned long retries;
} rs_metrics_call;

#ifdef RS_NO_METRICS
static inline rs_metrics_call rs_metrics_begin(void) { return (rs_metrics_call){0, 0}; }
static inline void rs_metrics_end(rs_store *store, rs_op op, rs_metrics_call call,
                                  rs_error_kind kind) {}
static inline void rs_metrics_count(rs_store *store, rs_metric_counter which) {}
static inline void rs_metrics_locks_held(rs_store *store, int delta) {}
#else
rs_metrics_call rs_metrics_begin(void);
void rs_metrics_end(rs_store *store, rs_op op, rs_metrics_call call, rs_error_kind kind);
/* Counts one event (thread safe, lock free). */
void rs_metrics_count(rs_store *store, rs_metric_counter which);
/* Moves the locks-held gauge by delta (+1 acquired, -1 released or lost);
 * it never goes below 0 (a release of a lock another store acquired). */
void rs_metrics_locks_held(rs_store *store, int delta);
#endif
/* rs_store_metrics and rs_store_metrics_reset (store.c) with the pool
 * figures given: the counters of `m` as a snapshot, or set to zero with
 * the pool's counters as the new base. */
void rs_metrics_snapshot_of(rs_metrics *m, const rs_pool_stats *pool, rs_metrics_snapshot *out);
void rs_metrics_reset_to(rs_metrics *m, const rs_pool_stats *pool);
/* An attempt loop calls this right before sleeping `delay` seconds and
 * retrying: the retry is counted for the call in progress on this thread
 * and logged at info. */
void rs_note_retry(const rs_config *cfg, const char *what, int attempt, int max_attempts, const rs_error *last,
                   double delay);

/* ---- closing.c, jobs.c: own headers (a store's close; its workers) ---- */
#include "closing.h"
#include "jobs.h"

/* ---- store.c ---- */
struct rs_store {
    rs_config *cfg;
    rs_tls *tls;                     /* rediss:// only */
    rs_pool *pool;                   /* NULL in cluster mode */
    rs_cluster *cluster;             /* cluster_mode only */
    rs_failover *failover;           /* Sentinel only: the +switch-master subscriber */
    struct {
        rs_script delete_if_value;   /* batch.c */
        rs_script lock_refresh, lock_release, save_fenced;   /* lock.c */
    } scripts;
    rs_metrics metrics;              /* metrics.c; zeroed by calloc, no set-up */
    rs_workers *workers;             /* jobs.c: threads start with the first job */
    rs_closing closing;              /* closing.c: set when rs_store_close begins */
    /* Threads still running on this store: a walk's read-ahead (scan.c;
     * a walk closed while one was on the wire leaves it to end by itself)
     * and save jobs (save_job.c). Closing the store waits for them. */
    pthread_mutex_t threads_lock;
    pthread_cond_t threads_done;
    int threads;
};

/* A thread on the store starts (+1) or has ended (-1): store.c. */
void rs_store_threads(rs_store *store, int delta);

extern const char rs_delete_if_value_source[], rs_lock_refresh_source[],
    rs_lock_release_source[], rs_save_fenced_source[];

/* The TTL arguments of a SET: "EX" and whole seconds, or "PX" and
 * milliseconds when the TTL has a fraction. Returns 0 (and unit "", amount
 * "") when ttl is 0 (none), else 1. */
int rs_ttl_args(double ttl, const char **unit, char *amount, size_t size);

/* key = <prefix>:<collection>, malloc'd. Checks the collection name
 * (non-empty); NULL + serialization error otherwise. */
char *rs_token_key(const rs_store *store, const char *collection,
                   size_t coll_len, size_t *key_len, rs_error *err);
/* The same for a token of `len` bytes about to be saved: also refuses
 * tokens over RS_MAX_TOKEN_SIZE. */
char *rs_token_key_to_save(const rs_store *store, const char *collection, size_t coll_len,
                           size_t len, size_t *key_len, rs_error *err);

#endif /* RS_INTERNAL_H */
