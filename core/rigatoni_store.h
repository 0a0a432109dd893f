/* SPDX-License-Identifier: MIT */
/* rigatoni_store.h -- the public C API of librigatoni_store.
 *
 * A Redis state store for Rigatoni CDC pipelines: resume tokens are kept
 * under "<key_prefix>:<collection>" as raw BSON bytes (byte compatible with
 * Rigatoni's Rust store), optionally with a TTL.
 *
 * Conventions
 *  - Every fallible call takes an `rs_error *err` (may be NULL) and returns
 *    -1 (or NULL) on failure; `err` then says what went wrong, with any
 *    credentials already masked.
 *  - Nothing is printed by the library: log lines go to the handler set
 *    on the store's config (rs_config_set_log_handler), if any.
 *  - Collection names and values travel with their lengths (binary safe).
 *  - Memory returned to the caller is freed with rs_free() unless a
 *    dedicated destructor is named.
 *  - A store is thread safe: one rs_store may be shared by many threads.
 *
 * Retries (no retry that lies)
 *  - A failure before the command was sent (no connection, a pooled
 *    connection found closed, a TLS handshake cut) means it did not run:
 *    always retried within max_retries.
 *  - A failure after sending (timeout, connection lost before the reply)
 *    means it may have run. Reads and plain SETs are retried (idempotent).
 *    Every other operation either reads the outcome back from the server
 *    or fails with RS_ERR_UNKNOWN (retryable 0, attempts set); each
 *    function below says which. Nothing reports the opposite of what
 *    happened.
 *  - A connection abandoned after an error is closed with a reset
 *    (SO_LINGER 0), so nothing still queued on it reaches the server late.
 */
#ifndef RIGATONI_STORE_H
#define RIGATONI_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RS_VERSION "0.1.0"

/* Largest token accepted, as Redis and MongoDB documents allow: 16 MiB. */
#define RS_MAX_TOKEN_SIZE (16u * 1024u * 1024u)
/* Deepest nesting of documents and arrays accepted (MongoDB's limit). */
#define RS_MAX_TOKEN_DEPTH 100

/* ------------------------------------------------------------------------
 * Errors
 * --------------------------------------------------------------------- */

typedef enum rs_error_kind {
    RS_OK = 0,
    RS_ERR_CONFIG,        /* invalid URL or option */
    RS_ERR_CONNECTION,    /* connect failed, connection lost, I/O error */
    RS_ERR_TIMEOUT,       /* connect or command timed out */
    RS_ERR_AUTH,          /* NOAUTH, WRONGPASS, ... */
    RS_ERR_SERIALIZATION, /* bad token bytes, bad collection name, oversize */
    RS_ERR_SERVER,        /* an error reply from Redis */
    RS_ERR_POOL,          /* no free connection within connection_timeout */
    RS_ERR_NOT_OWNER,     /* a lock is held by somebody else */
    RS_ERR_NOMEM,
    RS_ERR_UNKNOWN        /* the command may or may not have run: its reply was lost */
} rs_error_kind;

/* The class of the server error reply behind an error, read once where
 * the reply arrives (by its first word), so nothing searches messages. */
typedef enum rs_reply_class {
    RS_REPLY_NONE = 0,    /* the error is not a server reply */
    RS_REPLY_MOVED,
    RS_REPLY_ASK,
    RS_REPLY_NOSCRIPT,
    RS_REPLY_READONLY,
    RS_REPLY_MASTERDOWN,
    RS_REPLY_LOADING,
    RS_REPLY_BUSY,
    RS_REPLY_TRYAGAIN,
    RS_REPLY_CLUSTERDOWN,
    RS_REPLY_OOM,
    RS_REPLY_NOAUTH,      /* NOAUTH, WRONGPASS, and AUTH refused */
    RS_REPLY_NOPERM,
    RS_REPLY_MAXCLIENTS,  /* ERR max number of clients reached */
    RS_REPLY_OTHER
} rs_reply_class;

typedef struct rs_error {
    rs_error_kind kind;
    int retryable;      /* would trying again later possibly succeed? */
    int attempts;       /* how many attempts were made (0 = none) */
    char message[512];  /* one line, credentials masked */
    rs_reply_class reply;   /* RS_REPLY_NONE unless a server reply failed it */
} rs_error;

/* "config", "connection", ... ; "ok" for RS_OK. Static string. */
const char *rs_error_kind_name(rs_error_kind kind);

/* ------------------------------------------------------------------------
 * URL parsing and masking
 * --------------------------------------------------------------------- */

typedef struct rs_host {
    char *host;          /* without brackets for IPv6 */
    int port;
} rs_host;

typedef struct rs_url {
    int tls;             /* rediss:// */
    char *username;      /* NULL when absent; percent-decoded */
    char *password;      /* NULL when absent; percent-decoded */
    rs_host *hosts;      /* at least one */
    size_t nhosts;
    int db;              /* /db index, 0 by default */
} rs_url;

/* Parses redis://[user[:password]@]host[:port][,host[:port]...][/db]
 * (and rediss://). Returns 0 and fills `out` (free with rs_url_free),
 * or -1 with a config error that never repeats the URL's secrets. */
int rs_url_parse(const char *url, rs_url *out, rs_error *err);
void rs_url_free(rs_url *url);

/* Writes `url` with user and password replaced by "***" into buf.
 * A URL that does not parse shows only its scheme, then three stars.
 * Returns the length the full result needs, like snprintf. */
size_t rs_mask_url(const char *url, char *buf, size_t bufsize);

/* Copies `text` into buf with every occurrence of `secret` replaced by
 * "***" (no-op when secret is NULL or empty). Same return as snprintf. */
size_t rs_mask_secret(const char *text, const char *secret, char *buf,
                      size_t bufsize);

/* ------------------------------------------------------------------------
 * Configuration
 * --------------------------------------------------------------------- */

typedef struct rs_config rs_config;

/* A config with the defaults: pool_size 10, ttl none, max_retries 3,
 * connection_timeout 5 s, command_timeout 5 s, retry_base_delay 0.1 s,
 * retry_max_delay 5 s, idle_check_after 30 s, spin_wait 100 us, cluster_mode false,
 * key_prefix "rigatoni:resume_token", lock_prefix "rigatoni:lock",
 * scan_count 1000, workers 4 (threads for jobs), sentinel_master "mymaster", tls.verify true.
 * Returns NULL when out of memory. */
rs_config *rs_config_new(void);
rs_config *rs_config_copy(const rs_config *cfg);
void rs_config_free(rs_config *cfg);

/* Sets one option from its text form, as INI files and command lines give
 * it. Names: url, pool_size, ttl, max_retries, connection_timeout,
 * command_timeout, retry_base_delay, retry_max_delay, idle_check_after, spin_wait,
 * cluster_mode, key_prefix, lock_prefix, scan_count, workers, sentinel_master,
 * sentinel_username, sentinel_password, wait_replicas, wait_timeout,
 * tls.ca_file, tls.ca_path, tls.cert_file, tls.key_file, tls.server_name,
 * tls.verify. Durations accept seconds ("2.5") or a unit suffix
 * ("50us", "500ms", "30s", "15m", "12h", "7d"); ttl also accepts "none".
 * Booleans: true/false/yes/no/on/off/1/0.
 * Returns 0, or -1 with a config error naming the option. Nothing changes
 * on error. */
int rs_config_set(rs_config *cfg, const char *name, const char *value,
                  rs_error *err);

/* Typed setters for the common options (same validation as rs_config_set). */
int rs_config_set_url(rs_config *cfg, const char *url, rs_error *err);
int rs_config_set_int(rs_config *cfg, const char *name, long long value,
                      rs_error *err);
int rs_config_set_seconds(rs_config *cfg, const char *name, double seconds,
                          rs_error *err);
int rs_config_set_bool(rs_config *cfg, const char *name, int value,
                       rs_error *err);

/* Checks the options together (URL present, ...). 0 or -1 + config error. */
int rs_config_validate(const rs_config *cfg, rs_error *err);

/* The option names in a stable order, NULL-terminated, for listing. */
const char *const *rs_config_option_names(void);

/* The plain text of a secret: for a password option its value, for a
 * password_file option the password read from the file; NULL when unset
 * or when `name` is not a secret. Borrowed (valid until the option is
 * set again): for callers that mask it in what they print themselves. */
const char *rs_config_secret(const rs_config *cfg, const char *name);

/* Text form of one option's current value, masked when it is a secret
 * (url, passwords). "none" for absent values. Returns the needed length
 * like snprintf, or 0 with buf "" for an unknown name. */
size_t rs_config_get(const rs_config *cfg, const char *name, char *buf,
                     size_t bufsize);

/* One line describing the whole config, credentials masked. */
size_t rs_config_describe(const rs_config *cfg, char *buf, size_t bufsize);

/* Parses a duration: a number of seconds ("1.5") or number-unit terms
 * ("500ms", "30s", "1h30m", "7d", "2w"; units us ms s m h d w); "none"
 * gives 0 and *is_none = 1 when is_none is not NULL. Returns 0 or -1. */
int rs_parse_duration(const char *text, double *seconds, int *is_none);

/* Writes seconds in the grammar rs_parse_duration reads ("50us", "1500ms",
 * "7d"), as snprintf does: returns the length it needed. */
size_t rs_format_duration(double seconds, char *buf, size_t bufsize);

/* ------------------------------------------------------------------------
 * Store
 * --------------------------------------------------------------------- */

typedef struct rs_store rs_store;

/* Opens a store: validates and copies `cfg`, then verifies the server with
 * PING (retried within the retry policy). NULL + err on failure. */
rs_store *rs_store_open(const rs_config *cfg, rs_error *err);
/* Closes all connections and frees the store. NULL is ignored. Must not be
 * called while other threads still use the store (jobs may still be in
 * flight: see "Jobs" below for what close does to them). */
void rs_store_close(rs_store *store);

/* The config the store runs with (read only, owned by the store). */
const rs_config *rs_store_config(const rs_store *store);

/* The TTL range is Redis's own: EXPIRE, PEXPIRE and SET EX/PX take a TTL
 * whose expiry, in Unix milliseconds, is at most 2^63-1 (about 292 million
 * years from now), so any TTL a server holds can be written again.
 * rs_ttl_check returns 0 when `seconds` (> 0; 0 = "no TTL" is the caller's
 * business) is in that range by this machine's clock, as the amount we
 * send (whole seconds, or rounded milliseconds); else -1 and a config
 * error naming the limit. Every TTL the library sends is checked with it.
 * rs_ttl_max is the longest TTL in whole seconds, now. */
int rs_ttl_check(double seconds, rs_error *err);
double rs_ttl_max(void);

/* TTL argument of rs_save_raw: use the configured ttl, or none at all. */
#define RS_TTL_DEFAULT (-1.0)
#define RS_TTL_NONE (0.0)

/* Saves exact bytes under <key_prefix>:<collection>: SET, or SET .. EX when
 * a TTL applies (PX when it has a fraction of a second). `ttl` is seconds,
 * RS_TTL_DEFAULT or RS_TTL_NONE. The bytes are not checked here: callers
 * that need BSON validate with rs_token_validate first. Retried after any
 * retryable failure (the same SET again is harmless). */
int rs_save_raw(rs_store *store, const char *collection, size_t coll_len,
                const void *bytes, size_t len, double ttl, rs_error *err);

/* Reads exact bytes. Returns 1 and a malloc'd *out (free with rs_free),
 * 0 when absent, -1 on error. Never changes the TTL. */
int rs_get_raw(rs_store *store, const char *collection, size_t coll_len,
               char **out, size_t *out_len, rs_error *err);

/* Deletes. Returns 1 when a token was deleted, 0 when absent, -1 on error.
 * After a lost reply the key is checked: still there = sent again; gone =
 * RS_ERR_UNKNOWN (deleted by this call, or never there). */
int rs_delete(rs_store *store, const char *collection, size_t coll_len,
              rs_error *err);

/* Remaining TTL in seconds (ms precision). Returns 1 with *seconds >= 0 when
 * the token expires, 2 when it exists without TTL, 0 when absent, -1 on
 * error. */
int rs_ttl(rs_store *store, const char *collection, size_t coll_len,
           double *seconds, rs_error *err);

/* PING through the pool. 0 or -1. */
int rs_ping(rs_store *store, rs_error *err);

/* Runs one command given as argv (binary safe) on a pooled connection
 * and hands back the reply as text: status, string and error replies as
 * their bytes, integers in decimal, nil as NULL (return 0); an array reply
 * is an error (RS_ERR_SERVER) after the command ran: use rs_command_reply
 * for commands that may answer with one. For admin helpers (INFO, MEMORY
 * USAGE). The command is retried
 * only while nothing was sent: once it may have reached the server (a
 * timeout, a connection lost before the reply) the call fails with
 * RS_ERR_UNKNOWN, so an INCR or LPUSH never runs twice.
 * A command that would change the state of the pooled connection it runs
 * on (MULTI, EXEC, DISCARD, WATCH, UNWATCH, SELECT, the (P|S)(UN)SUBSCRIBE
 * family, MONITOR, RESET, HELLO, AUTH, READONLY, READWRITE, ASKING, QUIT,
 * SYNC, PSYNC, REPLCONF, and CLIENT REPLY, TRACKING, CACHING, NO-EVICT,
 * NO-TOUCH, SETNAME, SETINFO, and SCRIPT DEBUG) is refused with RS_ERR_CONFIG before
 * anything is sent: the next user of that connection would find it in a
 * transaction, another db, subscribed or silent.
 * Returns 1 with malloc'd *out, 0 for nil, -1 on error. */
int rs_command(rs_store *store, int argc, const char **argv,
               const size_t *argvlen, char **out, size_t *out_len,
               rs_error *err);

/* The caller vouches that running the command twice does no harm (INFO,
 * GET, SET without NX): it is retried like a read. */
#define RS_COMMAND_IDEMPOTENT 1

/* rs_command with flags (0 or RS_COMMAND_IDEMPOTENT). */
int rs_command_flags(rs_store *store, int argc, const char **argv,
                     const size_t *argvlen, int flags, char **out,
                     size_t *out_len, rs_error *err);

/* A reply of any shape, as a tree. */
typedef enum rs_reply_type {
    RS_TREE_STRING,    /* bulk, status or verbatim string: str, len */
    RS_TREE_INTEGER,   /* integer: also its decimal text in str, len */
    RS_TREE_NIL,
    RS_TREE_ARRAY,     /* array, set or push: elements */
    RS_TREE_MAP,       /* map: elements hold key, value, key, value, ... */
    RS_TREE_ERROR,     /* an error inside an array: its message in str, len */
} rs_reply_type;

typedef struct rs_reply {
    rs_reply_type type;
    char *str;                  /* NUL-terminated copy (binary safe with len) */
    size_t len;
    long long integer;
    size_t elements;
    struct rs_reply *element;   /* `elements` values */
} rs_reply;

/* rs_command_flags for commands of any reply shape: arrays and maps come
 * back as a tree (*out, free with rs_reply_free), so a command that ran
 * never fails for the shape of its reply. An error reply at the top is a
 * failure as for rs_command; one inside an array is an RS_TREE_ERROR
 * element. A reply nested deeper than 10000 levels (no server sends one)
 * is RS_ERR_SERVER after the command ran. The same commands are refused
 * before sending.
 * Returns 0 with *out set, or -1. */
int rs_command_reply(rs_store *store, int argc, const char **argv,
                     const size_t *argvlen, int flags, rs_reply **out,
                     rs_error *err);
void rs_reply_free(rs_reply *value);

/* ------------------------------------------------------------------------
 * Jobs: any blocking call started now, finished later (event loops)
 *
 * rs_job_start queues fn(store, arg, err) for one of the store's worker
 * threads and returns at once; fn runs blocking calls of this header, so
 * a job's result, rs_error, retries (their backoff sleeps included) and
 * RS_ERR_UNKNOWN rules are those of the blocking calls: only the thread
 * they run on differs. The workers (the `workers` option, default 4) start
 * as the queue needs them, none for a store that never starts a job; jobs
 * start in FIFO order and may end in any order.
 *
 * Ownership
 *  - arg stays the caller's: fn may use it until it returns, so the
 *    caller leaves it alone until rs_job_ready says 1 or rs_job_finish
 *    returns; after rs_job_abandon it is the job's (free_arg).
 *  - The fd (rs_job_fd) is the job's: poll it, never read or close it. It
 *    becomes readable when the job is done and stays so until
 *    rs_job_finish / rs_job_abandon closes it.
 *  - The job is the caller's until rs_job_finish or rs_job_abandon, which
 *    must be called exactly once, also after the store is closed.
 *
 * Closing the store with jobs in flight (rs_store_close): jobs still
 * queued are done at once without running, with RS_ERR_CONNECTION,
 * retryable 0, attempts 0 ("store closed before the job ran": nothing
 * was sent). Once the store's walks and save_many jobs have ended (they
 * run to their end, as without jobs), a running job's retry backoff is
 * cut short (it fails with the failure that made it retry), a call it
 * starts from then on fails at once (RS_ERR_CONNECTION, attempts 0, "not
 * sent: the store is closing"), and the attempt in progress ends within
 * its timeouts (connection_timeout, command_timeout); close waits for
 * that. Every job is then done;
 * an unfinished one stays valid (finish or abandon it), and never touches
 * the freed store. rs_job_start from a job's fn during the close fails
 * (RS_ERR_CONNECTION, "the store is closing"); after rs_store_close
 * returns, the store is gone, as for every function.
 * A call a running job begins, or one it began that still waits for a
 * free pool connection when the close begins, fails without sending
 * anything, the same way (attempts 0; after earlier attempts, with the
 * failure of the last of them).
 * fn must not wait for another job of the same store (the workers could
 * all be waiting), nor close it: rs_store_close from a job's fn or from a
 * free_arg run on a worker logs an RS_LOG_ERROR and calls abort() (the
 * worker would wait for itself and free the store it runs on). The
 * workers take no signal (they start with every signal blocked).
 *
 * Fork: the workers are threads of the process that started them (by its
 * first job). In a child forked after that, no worker runs: rs_job_start
 * fails (RS_ERR_CONFIG, naming the fork), and rs_store_close there frees
 * the store but leaves the workers' and the close's locks and conditions
 * allocated (threads of the parent may have held or waited on them: they
 * cannot be destroyed in the child). A job of the parent not yet done
 * at the fork is never done in the child: finish would wait for ever;
 * abandon it there (its memory is then leaked, as with the fork's other
 * copies). A child opens a store of its own. */
typedef struct rs_job rs_job;
/* The operation a job runs on a worker thread: any blocking call(s) of
 * this header. Its return value and err are what rs_job_finish gives. */
typedef int (*rs_job_fn)(rs_store *store, void *arg, rs_error *err);
/* NULL + err when it cannot start (store closing, no memory, no thread,
 * no file descriptor: RS_ERR_NOMEM for the descriptor limit too; in a
 * forked child, RS_ERR_CONFIG). Never waits for the server. */
rs_job *rs_job_start(rs_store *store, rs_job_fn fn, void *arg, rs_error *err);
/* Readable (POLLIN) exactly when rs_job_ready says 1, and from then on.
 * For epoll, libuv, libevent, cqueues. Owned by the job. A job of a
 * completion group (below) makes it on this first call: -1 when it
 * cannot (no file descriptor left; poll the group's instead). */
int rs_job_fd(const rs_job *job);
/* 1 once done, else 0; never blocks (takes the job's lock, held by the
 * worker only to mark it done). Once it says 1, what fn wrote into arg
 * is visible to the caller (a memory synchronisation, as for finish). */
int rs_job_ready(const rs_job *job);
/* Waits until the job is done (at once when ready), then returns fn's
 * result with its rs_error copied into err, closes the fd and frees the
 * job. */
int rs_job_finish(rs_job *job, rs_error *err);
/* The caller no longer wants the job: it is freed, and free_arg(arg)
 * called when not NULL, once fn has returned (on the worker's thread), or
 * on the thread calling rs_store_close for a job the close finds still
 * queued (it never runs), or at once on this thread when already done
 * (rs_job_ready said 1). fn is not cancelled: it runs if it has not yet
 * (unless the store closes first). */
void rs_job_abandon(rs_job *job, void (*free_arg)(void *arg));

/* Completion groups: one descriptor for many jobs (an event loop with
 * many jobs in flight watches one fd instead of one per job).
 *
 * A job started in a group (rs_job_start_in, rs_job_start_get_raw with a
 * group) makes the group's fd (rs_job_group_fd) readable when it is done.
 * The fd stays readable until rs_job_group_clear; a job done after a
 * clear makes it readable again. So: wait for the fd, clear, then look
 * at the jobs (rs_job_ready) in that order, and no completion is missed.
 * A job of a group is otherwise a job as above: finish or abandon it.
 * It makes a descriptor of its own only when rs_job_fd is asked for one
 * (rs_job_finish may make one to wait on, or sleep-poll without).
 *
 * Ownership: the group is the caller's until rs_job_group_free, which
 * closes its fd at once (stop polling it first); jobs of the group still
 * in flight stay valid (finish or abandon them: the group's memory goes
 * with the last of them). Closing the store ends the group's jobs as any
 * job (their completion makes the fd readable); the group itself does not
 * belong to a store, and may hold jobs of several. Fork: as for jobs. */
typedef struct rs_job_group rs_job_group;
/* NULL + err (RS_ERR_NOMEM: no memory, or no file descriptor left). */
rs_job_group *rs_job_group_new(rs_error *err);
/* Readable (POLLIN) while a job of the group was done since the last
 * rs_job_group_clear. Owned by the group: poll it, never read or close it. */
int rs_job_group_fd(const rs_job_group *group);
/* Makes the fd not readable until the next job of the group is done. */
void rs_job_group_clear(rs_job_group *group);
/* Accepts NULL. */
void rs_job_group_free(rs_job_group *group);
/* rs_job_start in `group` (NULL: none; then as rs_job_start). */
rs_job *rs_job_start_in(rs_store *store, rs_job_group *group, rs_job_fn fn, void *arg,
                        rs_error *err);
/* A job that is rs_get_raw(store, collection, coll_len, out, out_len):
 * finish gives what rs_get_raw returns and sets *out / *out_len as it
 * does (the caller frees *out with rs_free). The job reads collection
 * and writes *out and *out_len until done: keep them alive and alone
 * until then (after rs_job_abandon, until free_arg runs: it frees *out).
 * arg is only what rs_job_abandon's free_arg is given.
 * Jobs of this kind queued together (up to 64, outside a cluster) may be
 * sent in one pipeline by one worker; each keeps its own outcome: any job
 * the shared pipeline does not answer with a value or a nil (an error
 * reply, a reply of another type, a failure of the pipeline, a key that
 * cannot be made) is run again alone, as rs_get_raw, so its result, error
 * and retries are those of the blocking call. The metrics count each
 * job's get once, as the blocking call does. */
rs_job *rs_job_start_get_raw(rs_store *store, rs_job_group *group, const char *collection,
                             size_t coll_len, char **out, size_t *out_len, void *arg,
                             rs_error *err);

/* ------------------------------------------------------------------------
 * Identity: which data set a store reaches, told by the servers themselves
 * --------------------------------------------------------------------- */

typedef struct rs_master_identity {
    char run_id[41];         /* INFO server run_id: one per server process */
    char replid[41];         /* INFO replication master_replid: shared with its replicas */
    int replicas;            /* INFO replication connected_slaves (0 when not given) */
} rs_master_identity;

/* Asks every master the store reaches (standalone, the Sentinel master, or
 * each master of a cluster's slot map, at most `max`) for INFO server and
 * INFO replication, into masters[0..n); *db is the selected database (0 in
 * a cluster). Two stores reach the same keys when the db is the same and
 * they share a run_id or a replid. Returns n, or -1 with err (a server
 * error when INFO is refused, e.g. by an ACL). */
int rs_store_identity(rs_store *store, rs_master_identity *masters, size_t max, int *db,
                      rs_error *err);

/* INFO of every master the store reaches, for monitoring (`serve`): one
 * for standalone and Sentinel (address "", the store's own server), each
 * master of the slot map for a cluster (address "host:port"). */
typedef struct rs_node_info {
    char address[300];
    char *info;              /* the INFO text (default sections), rs_free it */
    size_t info_len;
} rs_node_info;

/* Fills nodes[0..n) and returns n (at most max), or -1 with err (nothing
 * to free then): a server (or auth) error when INFO is refused. The
 * caller rs_free()s each nodes[i].info. */
int rs_store_node_info(rs_store *store, rs_node_info *nodes, size_t max, rs_error *err);

/* What each master says about itself, for `stats`: DBSIZE and INFO. A
 * figure the server refused (an ACL without DBSIZE or INFO) is unknown:
 * -1, or "" for text. */
typedef struct rs_node_figures {
    char node[272];            /* "host:port" in a cluster; "" otherwise */
    long long dbsize;
    long long used_memory;     /* INFO memory used_memory, bytes */
    char used_memory_human[32];
    char redis_version[32];    /* INFO server */
} rs_node_figures;

/* Asks every master the store reaches (standalone, the Sentinel master, or
 * each master of a cluster's current slot map, at most `max`) for its
 * figures, into out[0..n). Returns n, or -1 with err when a master cannot
 * be reached (a refused command is not an error: its figure is unknown). */
int rs_store_node_figures(rs_store *store, rs_node_figures *out, size_t max, rs_error *err);

/* ------------------------------------------------------------------------
 * Batches: one pipelined round trip for many tokens (migration, import)
 * --------------------------------------------------------------------- */

typedef struct rs_save_item {
    const char *collection;
    size_t collection_len;
    const void *bytes;
    size_t len;
    double ttl;              /* seconds; 0 = no TTL (the config's ttl is not used) */
} rs_save_item;

/* Only write tokens that do not exist yet (SET ... NX). */
#define RS_SAVE_NX 1

/* Saves `n` items in one pipeline. written[i] (may be NULL) is set to 1
 * when item i was written, 0 when RS_SAVE_NX skipped it. 0 or -1. Plain
 * saves are retried as a whole (idempotent); on -1 nothing can be said
 * about which items were written (retry the batch). With RS_SAVE_NX the
 * replies read before a loss are kept and every other key is read back:
 * our bytes = written, absent = sent again, other bytes = RS_ERR_UNKNOWN.
 * An error reply is never "written", whether or not the pipeline was cut
 * after it: a transient one (READONLY, LOADING, ...) is sent again, any
 * other (NOPERM, OOM, ...) fails the call with it once the other items'
 * outcome is known. On -1, written[i] is 1 (written), 0 (not written by
 * this call) or -1 (unknown) for each item. */
int rs_save_many(rs_store *store, const rs_save_item *items, size_t n, int flags,
                 int *written, rs_error *err);

typedef struct rs_value {
    char *bytes;             /* malloc'd, NULL when absent */
    size_t len;
    double ttl;              /* seconds left; < 0 when none or absent */
} rs_value;

/* Reads `n` tokens and their TTLs in one pipeline (MGET + PTTL). Fills
 * out[0..n); free with rs_values_free. 0 or -1. */
int rs_get_many(rs_store *store, const char *const *collections, const size_t *lens,
                size_t n, rs_value *out, rs_error *err);
/* The same without the PTTLs (out[i].ttl stays -1): a read-back that
 * compares bytes only costs the server one MGET. */
int rs_get_many_values(rs_store *store, const char *const *collections, const size_t *lens,
                       size_t n, rs_value *out, rs_error *err);
void rs_values_free(rs_value *values, size_t n);

/* A save_many on a thread of its own, then (with read_back) an MGET of the
 * same names: a caller copying batch after batch prepares the next one
 * while the server writes this one. The job copies the items: the caller
 * may free them once it has started. NULL + err when it cannot start. */
typedef struct rs_save_job rs_save_job;
rs_save_job *rs_save_many_start(rs_store *store, const rs_save_item *items, size_t n,
                                int flags, int read_back, rs_error *err);
/* Waits for the job and frees it. written[n] as rs_save_many's; with
 * read_back, values[n] as rs_get_many_values's (free with rs_values_free).
 * 0, or -1 + err (the save's or the read-back's): then nothing is filled
 * in. Closing the store waits for the job's thread; finish the job
 * still, to free it. */
int rs_save_many_finish(rs_save_job *job, int *written, rs_value *values, rs_error *err);

/* rs_store_open on a thread of its own, for an event loop: opening
 * connects and PINGs, as long as the server takes (a port that accepts and
 * never answers: until the timeouts). The job copies cfg. Its descriptor
 * (rs_open_job_fd, owned by the job) becomes readable once the open is
 * done; rs_open_job_ready says so without blocking. rs_store_open_finish
 * waits if need be, frees the job and returns what rs_store_open would
 * have (the store is the caller's: rs_store_close). rs_open_job_abandon
 * lets go of a job never finished without waiting: its thread, detached,
 * closes the store it opens and frees the job when the open ends (the
 * shared library is linked -z nodelete for it; a program that links the
 * static library into a module it unloads must finish its open jobs
 * first). NULL + err when the job cannot start. */
typedef struct rs_open_job rs_open_job;
rs_open_job *rs_store_open_start(const rs_config *cfg, rs_error *err);
int rs_open_job_fd(const rs_open_job *job);
int rs_open_job_ready(rs_open_job *job);
rs_store *rs_store_open_finish(rs_open_job *job, rs_error *err);
void rs_open_job_abandon(rs_open_job *job);

/* Deletes `n` tokens with one DEL; returns how many existed, or -1.
 * Not retried once sent: the count cannot be learnt again (RS_ERR_UNKNOWN). */
long long rs_delete_many(rs_store *store, const char *const *collections,
                         const size_t *lens, size_t n, rs_error *err);

/* Gives a TTL to a token that has none (EXPIRE ... NX): 1 when set, 0 when
 * the token is absent or already expires, -1 on error. After a lost reply:
 * still no TTL = sent again; a TTL or no key = RS_ERR_UNKNOWN. */
int rs_expire(rs_store *store, const char *collection, size_t coll_len, double ttl,
              rs_error *err);

/* Deletes the token only if it still holds exactly `bytes` (atomic on the
 * server), so a token refreshed meanwhile by a live pipeline survives.
 * 1 deleted, 0 not (changed or absent), -1 on error. After a lost reply:
 * our bytes still there = sent again; gone or changed = RS_ERR_UNKNOWN. */
int rs_delete_if_value(rs_store *store, const char *collection, size_t coll_len,
                       const void *bytes, size_t len, rs_error *err);

/* ------------------------------------------------------------------------
 * Distributed locks, wire compatible with Rigatoni 0.2
 *
 * A lock is a key whose value is the owner id ("{hostname}-{uuid}"):
 * acquire = SET key owner NX EX ttl; refresh and release check the owner
 * atomically on the server (scripts run by EVALSHA). Keys:
 * rigatoni:lock:{db}:{collection}, rigatoni:lock:{db}:__database__,
 * rigatoni:lock:__deployment__ (the prefix is the config's lock_prefix).
 * --------------------------------------------------------------------- */

/* 1 acquired (or already held by this owner: the TTL is then renewed, so a
 * retried acquire whose first reply was lost still reports success), 0 held
 * by another owner, -1 on error. `ttl` in seconds (> 0). When the resend
 * after a lost reply fails (OOM, NOPERM, ...), the owner-checked refresh
 * runs: ours = 1 (TTL renewed), not ours = that failure, the refresh
 * failing too = RS_ERR_UNKNOWN. */
int rs_lock_acquire(rs_store *store, const char *key, const char *owner, double ttl,
                    rs_error *err);
/* 1 refreshed, 0 not held by `owner` (expired or taken), -1 on error.
 * Retried like a read (the owner's PEXPIRE twice is the same TTL). */
int rs_lock_refresh(rs_store *store, const char *key, const char *owner, double ttl,
                    rs_error *err);
/* rs_lock_refresh that never outlives `deadline` (CLOCK_MONOTONIC
 * seconds, e.g. the end of a lease's validity): each attempt runs on a
 * connection of its own whose connect and command timeouts are cut to the
 * time left (with Sentinel, its discovery too: each sentinel's steps cut
 * to the time left, none asked once it passed), and the store's retries are made only while their backoff
 * and a few ms are left (cluster mode: the store's call, not cut; a reply
 * after the deadline is returned as it is, the caller decides). Past the
 * deadline: RS_ERR_TIMEOUT, retryable, without a call. 1 refreshed, 0 not
 * held by `owner`, -1 on error; counted as rs_lock_refresh. */
int rs_lock_refresh_by(rs_store *store, const char *key, const char *owner, double ttl,
                       double deadline, rs_error *err);
/* 1 released, 0 not held by `owner`, -1 on error. After a lost reply the
 * lock is read: absent = 1 (released by us, or expired: not held either
 * way), still ours = sent again, another owner = RS_ERR_UNKNOWN (ours may
 * have run and the lock been taken since). */
int rs_lock_release(rs_store *store, const char *key, const char *owner, rs_error *err);
/* For a lease its caller keeps (the Lua lease; rs_lease counts its own):
 * rs_lock_note_lost counts a lock lost by the holder's clock (its validity
 * passed, or a look found another owner) in the metrics, once per loss:
 * rigatoni_locks_lost_total +1, the held gauge -1. rs_lock_release_lost is
 * rs_lock_release for a lock already counted lost (by rs_lock_note_lost or
 * by a refresh that found it not held): counted released when it was still
 * ours, the held gauge left as it is. */
void rs_lock_note_lost(rs_store *store);
int rs_lock_release_lost(rs_store *store, const char *key, const char *owner, rs_error *err);
/* 1 when the key exists, 0 when not, -1 on error. */
int rs_lock_is_locked(rs_store *store, const char *key, rs_error *err);
/* The current owner into a malloc'd *owner (rs_free): 1, 0 when free.
 * A stored owner holding a NUL byte is not a C string (no owner of ours
 * can hold one: owners are C strings): RS_ERR_SERIALIZATION, never the
 * part before the NUL. rs_lock_owner_bytes reads any owner whole. */
int rs_lock_owner(rs_store *store, const char *key, char **owner, rs_error *err);
/* The current owner's bytes (*owner malloc'd, NUL-terminated, rs_free;
 * *owner_len bytes, NUL bytes included): 1, 0 when free. */
int rs_lock_owner_bytes(rs_store *store, const char *key, char **owner, size_t *owner_len,
                        rs_error *err);

/* Fenced save: writes the token (with the configured TTL, as a plain save)
 * only while `lock_key` is held by `owner`, atomically on the server.
 * 0 saved; -1 with RS_ERR_NOT_OWNER (nothing written) or another error.
 * After a lost reply the token is read: our bytes = saved; else the script
 * runs again, and a refusal then is RS_ERR_UNKNOWN (the lost attempt may
 * have written while the lock was ours). */
int rs_save_fenced(rs_store *store, const char *collection, size_t coll_len,
                   const void *bytes, size_t len, const char *lock_key, const char *owner,
                   rs_error *err);

/* Lock key forms into buf (snprintf semantics). `db` NULL gives the
 * deployment key, `collection` NULL the database key. */
size_t rs_lock_key(const rs_store *store, const char *db, const char *collection, char *buf,
                   size_t bufsize);

/* "{hostname}-{uuid v4}" into buf (at least 64 + 37 bytes). 0 or -1. */
int rs_owner_id(char *buf, size_t bufsize);

/* A lease kept alive by a background thread. It knows its validity from
 * its own monotonic clock: valid until the start of the last successful
 * refresh + ttl (the key cannot expire on the server before that). The
 * thread refreshes a third of the ttl after the last good refresh started;
 * a failed attempt is tried again, with backoff, while validity is left,
 * and no attempt outlives the validity (standalone and Sentinel: the lease
 * has its own connection, its timeouts and its Sentinel discovery cut to
 * the time left; in cluster
 * mode a refresh runs under the store's retry policy and one that returns
 * after the validity passed counts as failed). When the validity passes
 * without a successful refresh, or a refresh finds the lock held by
 * another owner, `on_lost(key, userdata)` is called once, from the lease
 * thread, whatever Redis is doing (down, frozen, slow), and refreshing
 * stops. The lock must be acquired by the caller first; rs_lease_keepalive
 * refreshes it once before it returns (for at most ttl), so the validity
 * starts there. The store must outlive the lease. NULL + err when that
 * first refresh fails (RS_ERR_NOT_OWNER when the lock is not ours). */
typedef struct rs_lease rs_lease;
typedef void (*rs_lease_lost_fn)(const char *key, void *userdata);
rs_lease *rs_lease_keepalive(rs_store *store, const char *key, const char *owner, double ttl,
                             rs_lease_lost_fn on_lost, void *userdata, rs_error *err);
/* Seconds of validity left (monotonic clock), 0 once lost or expired: the
 * owner may act on the lock only while this is positive. Thread safe. */
double rs_lease_remaining(rs_lease *lease);
/* Stops the thread; with `release`, releases the lock too. Returns 1 when
 * the lease was still valid at the end (and, with `release`, the release
 * succeeded), 0 when it had been lost. May be called from inside on_lost:
 * the lease is then freed by its own thread when on_lost returns, and 0 is
 * returned. Call it once per lease. */
int rs_lease_stop(rs_lease *lease, int release);

/* ------------------------------------------------------------------------
 * Listing: a streaming scan over <key_prefix>:<match>
 * --------------------------------------------------------------------- */

typedef struct rs_scan rs_scan;

typedef struct rs_scan_entry {
    const char *collection;   /* valid until the next rs_scan_next */
    size_t collection_len;
    const char *value;        /* raw bytes, valid until the next call */
    size_t value_len;
    double ttl;               /* seconds; < 0 when the token has no TTL; NAN when
                               * unknown (the server refused PTTL) */
} rs_scan_entry;

/* `match` is a Redis glob applied to the collection name (NULL = "*");
 * the key prefix itself is matched literally. `batch` is the SCAN COUNT
 * hint and the MGET batch size (0 = scan_count of the config). With
 * `with_ttl`, each batch also reads PTTL (pipelined). Memory is bounded by
 * one batch, whatever the number of tokens, plus the names the walk met:
 * each name is yielded once per walk, even when SCAN lists it again (a
 * rehash, a walk started over after a restart, failover or reshard); the
 * walk keeps 16 bytes per name (in tables 3/8 to 3/4 full: 32 MiB for
 * 1,000,000 names). Keys deleted between SCAN and MGET are skipped, and
 * so are keys whose value is not a string (counted: rs_scan_not_strings). */
rs_scan *rs_scan_open(rs_store *store, const char *match, size_t batch,
                      int with_ttl, rs_error *err);
/* 1 with *entry filled, 0 at the end, -1 on error. The first call starts
 * the walk's two read-ahead threads (they use the store: close every scan
 * before rs_store_close). Call it from one thread at a time. */
int rs_scan_next(rs_scan *scan, rs_scan_entry *entry, rs_error *err);
/* The next entry of the batch already read, without a round trip: 1 with
 * *entry filled, 0 when that batch is used up (then rs_scan_next fetches).
 * For callers that handle a whole batch at a time. */
int rs_scan_next_buffered(rs_scan *scan, rs_scan_entry *entry);
/* Keys the walk has met so far whose value is not a string (a hash, a
 * list...: not a token), skipped and counted (once per name, as names are
 * listed once), never an error. */
size_t rs_scan_not_strings(const rs_scan *scan);
void rs_scan_close(rs_scan *scan);

/* The same over any key pattern (e.g. "rigatoni:lock:*"): entries carry the
 * whole key in `collection`. For tools that inspect other key families. */
rs_scan *rs_scan_keys_open(rs_store *store, const char *pattern, size_t batch,
                           int with_ttl, rs_error *err);

/* ------------------------------------------------------------------------
 * Rigatoni 0.2 stream keys (stream.c)
 *
 * The collection names a Rust pipeline saves its resume token under:
 * "resume_token:{db}:{coll}", "resume_token:database:{db}",
 * "resume_token:deployment"; and the per-batch mirror it also writes (never
 * reads): "{coll}", "__db:{db}", "__deployment__".
 * --------------------------------------------------------------------- */

typedef enum rs_stream_level {
    RS_STREAM_NONE = 0, RS_STREAM_COLLECTION, RS_STREAM_DATABASE, RS_STREAM_DEPLOYMENT
} rs_stream_level;

typedef struct rs_stream {
    rs_stream_level level;
    const char *database;     /* into the parsed name; NULL for deployment */
    size_t database_len;
    const char *collection;   /* collection level only */
    size_t collection_len;
} rs_stream;

/* Writes the resume key's collection name into buf like snprintf and
 * returns its full length: database NULL = deployment, collection NULL =
 * database watch. Empty or non-UTF-8 names, and a database name containing
 * ':', are config errors (-1 + err). */
long rs_stream_key(const char *database, size_t db_len, const char *collection,
                   size_t coll_len, char *buf, size_t bufsize, rs_error *err);
/* The same for the per-batch mirror's collection name of that stream. */
long rs_stream_mirror_key(const char *database, size_t db_len, const char *collection,
                          size_t coll_len, char *buf, size_t bufsize, rs_error *err);
/* Parses a collection name; RS_STREAM_NONE (and *out zeroed) when it is
 * not a stream key. Pointers in *out point into `name`. */
rs_stream_level rs_parse_stream_key(const char *name, size_t len, rs_stream *out);
/* "collection", "database", "deployment" or "none". Static string. */
const char *rs_stream_level_name(rs_stream_level level);

/* ------------------------------------------------------------------------
 * Tokens (BSON)
 * --------------------------------------------------------------------- */

/* 1 when [s, s+len) is valid UTF-8 (NUL bytes allowed only with
 * allow_nul), else 0. Fast for all-ASCII text such as hex tokens. */
int rs_utf8_valid(const char *s, size_t len, int allow_nul);

/* 0 when `bytes` is one well-formed BSON document of at most
 * RS_MAX_TOKEN_SIZE bytes, else -1 with a serialization error. */
int rs_token_validate(const void *bytes, size_t len, rs_error *err);

/* The cluster time encoded in the token's `_data` field (a hex string, or
 * BinData in old servers): byte 0x82, then big-endian uint32 seconds and
 * uint32 increment. Returns 1 when found, 0 when the token has no such
 * field or it is not in that form. */
int rs_token_cluster_time(const void *bson, size_t len, uint32_t *seconds,
                          uint32_t *increment);

/* ------------------------------------------------------------------------
 * Pool statistics
 * --------------------------------------------------------------------- */

typedef struct rs_pool_stats {
    int size;              /* pool_size */
    int open;              /* connections open now */
    int in_use;            /* of which lent out */
    int idle;
    uint64_t created;      /* connections opened */
    uint64_t closed_broken;
    uint64_t closed_idle;  /* failed the idle PING check */
    uint64_t waits;        /* acquisitions that had to wait */
    uint64_t wait_timeouts;
    double wait_seconds;   /* total time spent waiting */
    uint64_t failovers;    /* Sentinel: times the master moved to another address */
} rs_pool_stats;

void rs_store_pool_stats(rs_store *store, rs_pool_stats *out);

/* Sentinel: how many times the store saw its master change (the sentinels
 * named another address, or announced +switch-master); 0 otherwise. It
 * never goes back: a lease or tool that noted it can tell that what it
 * wrote on the old master must be checked on the new one. Thread safe. */
uint64_t rs_store_master_changes(rs_store *store);

/* How many replicas (up to `replicas`) have every write the master
 * acknowledged before this call, waiting at most `timeout` seconds (less
 * than command_timeout; 0: wait_timeout): PUBLISH then WAIT on one
 * connection. Standalone
 * and Sentinel only. Returns the count (0 when none), or -1 with err (e.g.
 * PUBLISH refused by an ACL). Whether the master changed since the writes
 * is the caller's to check (rs_store_master_changes, rs_store_identity). */
int rs_store_confirm_writes(rs_store *store, int replicas, double timeout, rs_error *err);

/* ------------------------------------------------------------------------
 * Metrics
 *
 * Every store call is recorded under its operation kind: calls, failures
 * by error kind, retries (attempts beyond the first) and a latency
 * histogram with fixed log-scale buckets. Recording takes no lock
 * (relaxed atomics). Built with -DRS_NO_METRICS, nothing is recorded and
 * snapshots carry only the pool.
 * --------------------------------------------------------------------- */

/* Operation kinds, the index of rs_metrics_snapshot.ops: */
enum { RS_METRICS_SAVE, RS_METRICS_GET, RS_METRICS_DELETE, RS_METRICS_LIST, RS_METRICS_LOCK,
       RS_METRICS_OTHER, RS_METRICS_OPS };
/* Latency buckets: bucket k counts calls of at most 1 us * 2^k (k = 0..26,
 * up to about 67 s); the last bucket counts slower ones (+Inf). */
#define RS_METRICS_BUCKETS 28
/* errors[] is indexed by rs_error_kind. */
#define RS_METRICS_ERROR_KINDS ((int)RS_ERR_UNKNOWN + 1)

typedef struct rs_op_metrics {
    uint64_t count;                      /* calls finished, successful or not */
    uint64_t failed;                     /* calls that failed (sum of errors[]) */
    uint64_t errors[RS_METRICS_ERROR_KINDS];   /* by final error kind; [RS_OK] is 0 */
    uint64_t retries;                    /* attempts beyond the first */
    uint64_t buckets[RS_METRICS_BUCKETS];      /* per bucket, not cumulative */
    double sum_seconds, max_seconds;
    double p50, p95, p99;                /* seconds, estimated from the buckets */
} rs_op_metrics;

/* Locks, as Rigatoni 0.2 counts them (its metric names in comments). */
typedef struct rs_lock_metrics {
    uint64_t held;                   /* rigatoni_locks_held_total (a gauge) */
    uint64_t acquisitions;           /* rigatoni_lock_acquisitions_total */
    uint64_t failures_already_held;  /* rigatoni_lock_acquisition_failures_total{already_held} */
    uint64_t failures_error;         /* ...{reason="error"} */
    uint64_t lost;                   /* rigatoni_locks_lost_total: refresh or lease found it gone */
    uint64_t refreshes;              /* rigatoni_lock_refreshes_total (re-acquires by the owner too) */
    uint64_t released;               /* rigatoni_locks_released_total */
} rs_lock_metrics;

typedef struct rs_metrics_snapshot {
    int enabled;                         /* 0 when built with RS_NO_METRICS */
    rs_op_metrics ops[RS_METRICS_OPS];
    rs_pool_stats pool;                  /* gauges now; counters since the last reset */
    uint64_t failovers;                  /* Sentinel master moves seen */
    uint64_t cluster_moved, cluster_ask; /* redirections followed */
    uint64_t cluster_refreshes;          /* slot map refreshes */
    rs_lock_metrics locks;               /* Rigatoni 0.2's lock metrics */
} rs_metrics_snapshot;

/* Fills `out` with the counters since open or the last reset. Thread safe. */
void rs_store_metrics(rs_store *store, rs_metrics_snapshot *out);
/* Sets every counter to zero (pool gauges are not counters). */
void rs_store_metrics_reset(rs_store *store);
/* "save", "get", "delete", "list", "lock", "other". Static string. */
const char *rs_metrics_op_name(int op);
/* Upper bound of a latency bucket in seconds (INFINITY for the last). */
double rs_metrics_bucket_bound(int bucket);
/* The snapshot in the Prometheus text exposition format (0.0.4): metric
 * names prefixed rigatoni_store_, # HELP and # TYPE lines, counters
 * ending in _total, one histogram per operation kind. malloc'd (rs_free);
 * NULL when out of memory. */
char *rs_metrics_prometheus(const rs_metrics_snapshot *snapshot);

/* ------------------------------------------------------------------------
 * Logging
 *
 * The library never prints. A store hands its log lines to the handler of
 * the config it was opened with (rs_config_set_log_handler); a config
 * without one (the default) keeps the store silent. The level is
 * process-wide. Messages are masked (no passwords) and never contain
 * token bytes above debug level; a program that shows them formats them
 * itself (the rigatoni-store host: "rigatoni-store: <level>: <message>").
 * --------------------------------------------------------------------- */

typedef enum rs_log_level {
    RS_LOG_ERROR = 0,
    RS_LOG_WARN,
    RS_LOG_INFO,
    RS_LOG_DEBUG
} rs_log_level;

/* Receives the message without timestamp or level prefix. May be called
 * from any thread that uses a store, and from lease, failover and walk
 * threads; calls never overlap (one mutex for every store), so a handler
 * must be quick and must not log itself. */
typedef void (*rs_log_fn)(rs_log_level level, const char *message, void *userdata);

/* The handler of the stores opened with `cfg` (copied with it); NULL =
 * silent. `userdata` must outlive those stores. */
void rs_config_set_log_handler(rs_config *cfg, rs_log_fn fn, void *userdata);
void rs_log_set_level(rs_log_level level);      /* default RS_LOG_WARN */
rs_log_level rs_log_get_level(void);
/* "error", "warn", "info", "debug" */
const char *rs_log_level_name(rs_log_level level);
/* Parses a level name (also "warning"); 0 or -1. */
int rs_log_level_parse(const char *name, rs_log_level *level);

/* ------------------------------------------------------------------------
 * Memory
 * --------------------------------------------------------------------- */

void rs_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* RIGATONI_STORE_H */
