/* SPDX-License-Identifier: MIT */
/* test_history.c -- a history checker under faults (`make test`, `make chaos`).
 *
 * CLIENTS threads share one store, connected through spec/support/faultproxy.c
 * to a real redis-server with AOF `appendfsync always`, and save, read,
 * lock (a C lease), save fenced and release, while a fault loop kills
 * connections (CLIENT KILL), freezes the server (SIGSTOP, longer than a
 * lease's ttl, then SIGCONT) and restarts it (SIGKILL, same port and dir).
 * It also loses replies of commands that ran: the proxy drops them, and
 * the command timeout (0.25 s) is shorter than a freeze. Some at random;
 * and aimed ones, on every op whose retry must find out what happened:
 * each release, each fenced save under a private lock that expires
 * (SHORT_TTL) before the retry, each delete and NX save of a key only one
 * client uses. CHAOS_LOST_REPLIES=0 turns that off (command timeout 2 s,
 * longer than a freeze, so only kills and restarts can lose a reply).
 * About two thirds of the client calls run as jobs (rs_job_start on the
 * store's worker threads): half of those finished at once (rs_job_finish
 * waits), half polled on rs_job_fd first; the rest run directly on the
 * client's thread. Same calls, same faults, same outcome rules
 * (perform). CHAOS_PLANT_JOB_LIE=1 (`make chaos-plant-lie`, which must
 * fail) plants a lie in that job path, not in the store: a delete job
 * whose outcome is unknown (RS_ERR_UNKNOWN: its reply lost, the retry
 * found the key gone) reports "absent" instead; the checker must catch it
 * (every nx cycle's delete has an aimed lost reply, about 20 a default
 * run; a lost release, 1 to 4 a run, went uncaught in 1 run of 4).
 * Every operation is logged when invoked and when it ends: ok, failed (an
 * error that promises nothing happened: not_owner) or unknown (any other
 * error). A monitor thread notes what each owner's lease tells it (its
 * validity) every few ms. Then, per key and per lock:
 *  - every read returned the last acknowledged write or one that was in
 *    flight or unknown at that time: nothing stale, nothing lost across a
 *    restart, no value whose write reported failure, none never written;
 *  - no two lock owners' validity intervals (each lease's own clock, cut
 *    at the release) overlapped;
 *  - nothing reported the opposite of its effect: no release "not held"
 *    and no fenced save "not_owner" while the owner's validity covered the
 *    whole call; no token read whose fenced save said not_owner; on each
 *    client's own key, replayed in order (its state known from a read or
 *    an acknowledged write once every earlier write can have landed), no
 *    delete "absent" while it held a token, no NX save "skipped" while it
 *    was absent, no read other than the state.
 * Beside it, error replies in cut pipelines: a side server behind a proxy
 * of its own takes NX batches from an ACL user refused part of the
 * keyspace (-NOPERM), while it is made a replica now and then (-READONLY)
 * or given maxmemory 1 with noeviction (-OOM); most batches are cut after
 * a random number of replies. No item refused or absent is ever reported
 * written, none written reported otherwise (check_side).
 * The op and fault choices come from a fixed seed (CHAOS_SEED); the run
 * lasts CHAOS_SECONDS (default 12). CHAOS_LOG=FILE writes the history.
 * CHAOS_FAILOVER=1 (`make chaos-failover`) runs the same clients against a
 * master and its replica behind three sentinels, and the only fault is a
 * Sentinel failover (SENTINEL FAILOVER, then the set-up settles), over and
 * over. Saves wait for the replica (wait_replicas = 1): what a failover can
 * take away is what Redis does not promise, so around each failover (a
 * second either side) lock validity, "not held"/not_owner answers and the
 * own keys' state (deletes and NX saves do not wait) are not held against
 * the store; every acknowledged save must still be read afterwards.
 * Exit 1 on any violation, printed with the counts that were checked.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "test_sentinel.h"

/* Keys: plain ones; fenced ones under shared locks; then one fenced key
 * under a short private lock and one NX/delete key per client. */
enum { CLIENTS = 4, NPLAIN = 3, NLOCKS = 3, NSHORT = NPLAIN + NLOCKS, NNX = NSHORT + CLIENTS,
       NKEYS = NNX + CLIENTS };
#define LEASE_TTL 1.0
#define SHORT_TTL 0.15              /* < the command timeout: gone before a retry */
#define FREEZE_SECONDS 1.3          /* > LEASE_TTL: leases are lost, locks expire */
#define VAL_NONE 0u                 /* read found nothing */
#define VAL_JUNK 0xffffffffu        /* read found bytes nobody wrote */

typedef enum { OP_SAVE, OP_GET, OP_FSAVE, OP_ACQUIRE, OP_RELEASE, OP_NXSAVE, OP_DELETE,
               OP_TYPES } op_type;
typedef enum { OUT_OK, OUT_FAILED, OUT_UNKNOWN } outcome;
static const char *op_names[OP_TYPES] = {"save", "get", "fsave", "acquire", "release",
                                          "nxsave", "delete"};
static const char *outcome_names[3] = {"ok", "failed", "unknown"};

typedef struct op {
    op_type type;
    outcome result;
    int key;                 /* 0..NKEYS-1; a lock op: the lock's fenced key */
    unsigned value;          /* written value, or what a read returned */
    int answer;              /* acquire, release, nxsave, delete: the boolean returned */
    double t0, t1;           /* invoked, ended (monotonic) */
    double valid_until;      /* fsave, release: the owner's validity at t0 */
    double ran_by;           /* its aimed lost reply was seen (no error): it ran by then */
} op;

typedef struct hold {        /* one owner's validity on one lock */
    int lock, client;
    double start, end;
} hold;

typedef struct client {
    int id;
    unsigned seed;
    unsigned job_seed;       /* direct call or job, and which kind (perform) */
    pthread_mutex_t mu;      /* guards lease and claim, for the monitor */
    rs_lease *lease;         /* the one being held, or NULL */
    double claim;            /* its owner's validity: the latest end it told */
    op *ops;
    size_t nops, cap;
    hold *holds;
    size_t nholds, hcap;
} client;

static rs_store *store;
static double end_time;
static char control_path[300];       /* the fault proxy's */
static int lost_replies;             /* CHAOS_LOST_REPLIES */
static atomic_int aimed, aimed_hit;  /* lost replies aimed at one op, and those that hit */
static client clients[CLIENTS + 1];  /* the last one: the checker's final reads */
static int plant_lie;                /* CHAOS_PLANT_JOB_LIE */
static atomic_long by_job[2];        /* calls run as jobs: finished at once, polled first */
static atomic_int poll_wrong;        /* fd readable but rs_job_ready 0, or poll failed */
static atomic_int lies;              /* planted lies told */

static void sleep_s(double s)
{
    if (s > 0) usleep((useconds_t)(s * 1e6));
}

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return p;
    *cap = *cap ? *cap * 2 : 1024;
    p = realloc(p, *cap * size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* A new op, invoked now; its index makes written values unique. */
static size_t begin(client *c, op_type type, int key)
{
    c->ops = grow(c->ops, &c->cap, c->nops, sizeof *c->ops);
    op *o = &c->ops[c->nops];
    memset(o, 0, sizeof *o);
    o->type = type;
    o->key = key;
    o->t0 = t_now();
    return c->nops++;
}

static void end(client *c, size_t i, int rc, const rs_error *err)
{
    op *o = &c->ops[i];
    o->t1 = t_now();
    o->result = rc >= 0 ? OUT_OK : err->kind == RS_ERR_NOT_OWNER ? OUT_FAILED : OUT_UNKNOWN;
}

/* Value ids: client * 1e6 + op index + 1, written as "v<id>". */
static unsigned value_id(const client *c, size_t i)
{
    return (unsigned)c->id * 1000000u + (unsigned)i + 1;
}

static op *writer_of(unsigned v)
{
    unsigned cl = v / 1000000u, i = v % 1000000u;
    if (v == VAL_NONE || v == VAL_JUNK || cl >= CLIENTS || i == 0 || i > clients[cl].nops)
        return NULL;
    op *o = &clients[cl].ops[i - 1];
    return o->type == OP_SAVE || o->type == OP_FSAVE ? o : NULL;
}

static unsigned parse_value(const char *s, size_t len)
{
    char buf[24];
    if (len < 2 || len >= sizeof buf || s[0] != 'v') return VAL_JUNK;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *endp;
    unsigned long v = strtoul(buf + 1, &endp, 10);
    return *endp || v == 0 || v >= VAL_JUNK ? VAL_JUNK : (unsigned)v;
}

static void collection(int key, char *buf, size_t size)
{
    if (key < NPLAIN) snprintf(buf, size, "hist:k%d", key);
    else if (key < NNX) snprintf(buf, size, "hist:f%d", key - NPLAIN);
    else snprintf(buf, size, "hist:n%d", key - NNX);
}

static void lock_name(int key, char *buf, size_t size)
{
    snprintf(buf, size, "rigatoni:lock:hist:%d", key - NPLAIN);
}

/* ---------------------------------------------------------------------
 * Calls: each store call of a client, as an rs_job_fn, run directly or
 * as a job by perform()
 * ------------------------------------------------------------------ */

typedef struct call {
    const char *coll, *val, *lock, *owner;
    double ttl;
    char *out;               /* get: the bytes read (rs_free) */
    size_t len;
    rs_save_item item;       /* nxsave */
    int written;
} call;

static int call_save(rs_store *s, void *arg, rs_error *err)
{
    const call *k = arg;
    return rs_save_raw(s, k->coll, strlen(k->coll), k->val, strlen(k->val), RS_TTL_DEFAULT,
                       err);
}

static int call_get(rs_store *s, void *arg, rs_error *err)
{
    call *k = arg;
    return rs_get_raw(s, k->coll, strlen(k->coll), &k->out, &k->len, err);
}

static int call_acquire(rs_store *s, void *arg, rs_error *err)
{
    const call *k = arg;
    return rs_lock_acquire(s, k->lock, k->owner, k->ttl, err);
}

static int call_fsave(rs_store *s, void *arg, rs_error *err)
{
    const call *k = arg;
    return rs_save_fenced(s, k->coll, strlen(k->coll), k->val, strlen(k->val), k->lock,
                          k->owner, err);
}

static int call_release(rs_store *s, void *arg, rs_error *err)
{
    const call *k = arg;
    return rs_lock_release(s, k->lock, k->owner, err);
}

static int call_delete(rs_store *s, void *arg, rs_error *err)
{
    const call *k = arg;
    return rs_delete(s, k->coll, strlen(k->coll), err);
}

static int call_nxsave(rs_store *s, void *arg, rs_error *err)
{
    call *k = arg;
    k->item = (rs_save_item){k->coll, strlen(k->coll), k->val, strlen(k->val), 0};
    return rs_save_many(s, &k->item, 1, RS_SAVE_NX, &k->written, err);
}

/* fn(k) directly on this thread, or as a job: finished at once, or after
 * poll() says its fd is readable. The caller records what it returns,
 * whichever way it ran. */
static int perform(client *c, rs_job_fn fn, call *k, rs_error *err)
{
    int how = rand_r(&c->job_seed) % 3;
    if (how == 0) return fn(store, k, err);
    rs_job *job = rs_job_start(store, fn, k, err);
    if (!job) return -1;
    if (how == 2) {
        struct pollfd p = {.fd = rs_job_fd(job), .events = POLLIN};
        int n;
        while ((n = poll(&p, 1, 60000)) < 0 && errno == EINTR) continue;
        if (n != 1 || !rs_job_ready(job)) atomic_fetch_add(&poll_wrong, 1);
    }
    int rc = rs_job_finish(job, err);
    atomic_fetch_add(&by_job[how - 1], 1);
    /* The planted lie: a delete whose outcome is unknown (its reply lost:
     * it deleted the key or found none) says "absent". */
    if (plant_lie && fn == call_delete && rc < 0 && err->kind == RS_ERR_UNKNOWN) {
        rc = 0;
        memset(err, 0, sizeof *err);
        atomic_fetch_add(&lies, 1);
    }
    return rc;
}

/* ---------------------------------------------------------------------
 * Clients
 * ------------------------------------------------------------------ */

static void do_save(client *c, int key)
{
    char coll[32], val[24];
    collection(key, coll, sizeof coll);
    size_t i = begin(c, OP_SAVE, key);
    c->ops[i].value = value_id(c, i);
    snprintf(val, sizeof val, "v%u", c->ops[i].value);
    rs_error err = {0};
    call k = {.coll = coll, .val = val};
    int rc = perform(c, call_save, &k, &err);
    end(c, i, rc, &err);
}

static void do_get(client *c, int key)
{
    char coll[32];
    collection(key, coll, sizeof coll);
    size_t i = begin(c, OP_GET, key);
    rs_error err = {0};
    call k = {.coll = coll};
    int rc = perform(c, call_get, &k, &err);
    end(c, i, rc, &err);
    c->ops[i].value = rc == 1 ? parse_value(k.out, k.len) : VAL_NONE;
    rs_free(k.out);
}

static void add_hold(client *c, int key, double start, double stop)
{
    c->holds = grow(c->holds, &c->hcap, c->nholds, sizeof *c->holds);
    c->holds[c->nholds++] = (hold){key, c->id, start, stop};
}

/* The owner's validity, as its lease tells it now: noted in c->claim. */
static double note_claim(client *c)
{
    pthread_mutex_lock(&c->mu);
    double t = t_now(), left = c->lease ? rs_lease_remaining(c->lease) : 0;
    if (left > 0) c->claim = fmax(c->claim, t + left);
    pthread_mutex_unlock(&c->mu);
    return left > 0 ? t + left : 0;
}

/* The reply to this client's next request that contains `bytes` (as a
 * RESP bulk string) will be lost: the proxy swallows it. */
static void aim_drop(const client *c, const char *bytes, char *pattern, size_t size)
{
    char path[320], tmp[330];
    pattern[0] = '\0';
    if (!lost_replies) return;           /* a timeout of 2 s per op: too slow */
    snprintf(path, sizeof path, "%s.match%d.ran", control_path, c->id);
    unlink(path);
    snprintf(path, sizeof path, "%s.match%d", control_path, c->id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    snprintf(pattern, size, "$%zu\r\n%s\r\n", strlen(bytes), bytes);
    fputs(pattern, f);
    fclose(f);
    rename(tmp, path);
    atomic_fetch_add(&aimed, 1);
}

/* After op i: a match not used (the request never went out) is removed;
 * the proxy's note that the reply came says when the command had run. */
static void unaim(client *c, size_t i, const char *pattern)
{
    char path[320], got[512];
    if (!pattern[0]) return;
    snprintf(path, sizeof path, "%s.match%d", control_path, c->id);
    if (unlink(path) < 0) atomic_fetch_add(&aimed_hit, 1);
    strcat(path, ".ran");
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = '\0';
    if (strcmp(got, pattern) == 0) c->ops[i].ran_by = t_now();
}

/* Acquire, keep alive with a lease, save fenced while valid, release. */
static void do_lock_cycle(client *c, int key, unsigned *seed)
{
    char lock[64], coll[32], owner[32], val[24];
    lock_name(key, lock, sizeof lock);
    collection(key, coll, sizeof coll);
    snprintf(owner, sizeof owner, "c%d-%zu", c->id, c->nops);
    rs_error err = {0};
    size_t a = begin(c, OP_ACQUIRE, key);
    call k = {.coll = coll, .val = val, .lock = lock, .owner = owner, .ttl = LEASE_TTL};
    int rc = perform(c, call_acquire, &k, &err);
    end(c, a, rc, &err);
    c->ops[a].answer = rc == 1;
    if (rc != 1) return;
    /* The owner's own validity: the SET ran after t0. */
    double start = c->ops[a].t1;
    rs_lease *lease = rs_lease_keepalive(store, lock, owner, LEASE_TTL, NULL, NULL, &err);
    pthread_mutex_lock(&c->mu);
    c->claim = c->ops[a].t0 + LEASE_TTL;
    c->lease = lease;
    pthread_mutex_unlock(&c->mu);
    double hold_until = t_now() + 0.1 + (rand_r(seed) % 2400) / 1000.0;
    while (lease && t_now() < hold_until) {
        double valid = note_claim(c);
        if (valid == 0) break;
        size_t i = begin(c, OP_FSAVE, key);
        c->ops[i].value = value_id(c, i);
        c->ops[i].valid_until = valid;
        snprintf(val, sizeof val, "v%u", c->ops[i].value);
        rc = perform(c, call_fsave, &k, &err);
        end(c, i, rc, &err);
        sleep_s((20 + rand_r(seed) % 40) / 1000.0);
    }
    double valid = lease ? note_claim(c) : 0;
    pthread_mutex_lock(&c->mu);
    double claim = c->claim;
    c->lease = NULL;
    pthread_mutex_unlock(&c->mu);
    if (lease) rs_lease_stop(lease, 0);
    else if (t_now() < claim) valid = claim;
    size_t r = begin(c, OP_RELEASE, key);
    add_hold(c, key, start, fmin(claim, c->ops[r].t0));
    c->ops[r].valid_until = valid;
    char pattern[64];
    aim_drop(c, owner, pattern, sizeof pattern);   /* it runs, its reply is lost */
    rc = perform(c, call_release, &k, &err);
    end(c, r, rc, &err);
    unaim(c, r, pattern);
    c->ops[r].answer = rc == 1;
}

/* A private lock that expires before the retry of a fenced save whose
 * reply is lost: the retry finds the lock gone and our token stored. The
 * read after it must not see a token its save said it did not write. */
static void do_short_cycle(client *c)
{
    int key = NSHORT + c->id;
    char lock[64], coll[32], owner[32], val[24], pattern[64];
    lock_name(key, lock, sizeof lock);
    collection(key, coll, sizeof coll);
    snprintf(owner, sizeof owner, "c%d-%zu", c->id, c->nops);
    rs_error err = {0};
    size_t a = begin(c, OP_ACQUIRE, key);
    call k = {.coll = coll, .val = val, .lock = lock, .owner = owner, .ttl = SHORT_TTL};
    int rc = perform(c, call_acquire, &k, &err);
    end(c, a, rc, &err);
    c->ops[a].answer = rc == 1;
    if (rc != 1) return;
    double valid = c->ops[a].t0 + SHORT_TTL;
    add_hold(c, key, c->ops[a].t1, valid);
    size_t i = begin(c, OP_FSAVE, key);
    c->ops[i].value = value_id(c, i);
    c->ops[i].valid_until = valid;
    snprintf(val, sizeof val, "v%u", c->ops[i].value);
    aim_drop(c, val, pattern, sizeof pattern);
    rc = perform(c, call_fsave, &k, &err);
    end(c, i, rc, &err);
    unaim(c, i, pattern);
    do_get(c, key);
}

/* On this client's own key (nobody else touches it, so its state is
 * known after each acknowledged op): read, delete with a lost reply, read,
 * NX save with a lost reply, read. */
static void do_nx_cycle(client *c)
{
    int key = NNX + c->id;
    char coll[32], val[24], del[64], pattern[96];
    collection(key, coll, sizeof coll);
    snprintf(del, sizeof del, "rigatoni:resume_token:%s", coll);
    rs_error err = {0};
    call k = {.coll = coll, .val = val};
    do_get(c, key);
    size_t d = begin(c, OP_DELETE, key);
    aim_drop(c, del, pattern, sizeof pattern);
    int rc = perform(c, call_delete, &k, &err);
    end(c, d, rc, &err);
    unaim(c, d, pattern);
    c->ops[d].answer = rc == 1;
    do_get(c, key);
    size_t i = begin(c, OP_NXSAVE, key);
    c->ops[i].value = value_id(c, i);
    snprintf(val, sizeof val, "v%u", c->ops[i].value);
    aim_drop(c, val, pattern, sizeof pattern);
    rc = perform(c, call_nxsave, &k, &err);
    end(c, i, rc, &err);
    unaim(c, i, pattern);
    c->ops[i].answer = rc == 0 && k.written;
    do_get(c, key);
}

/* Samples every held lease's validity every few milliseconds, so that
 * what an owner was told is noted even while its thread waits on Redis. */
static atomic_int monitoring = 1;
static void *monitor_main(void *arg)
{
    (void)arg;
    while (atomic_load(&monitoring)) {
        for (int i = 0; i < CLIENTS; i++) note_claim(&clients[i]);
        usleep(5000);
    }
    return NULL;
}

static void *client_main(void *arg)
{
    client *c = arg;
    unsigned seed = c->seed;
    while (t_now() < end_time) {
        int pick = rand_r(&seed) % 100;
        if (pick < 30) do_save(c, rand_r(&seed) % NPLAIN);
        else if (pick < 70) do_get(c, rand_r(&seed) % NNX);
        else if (pick < 84) do_lock_cycle(c, NPLAIN + rand_r(&seed) % NLOCKS, &seed);
        else if (pick < 92) do_short_cycle(c);
        else do_nx_cycle(c);
        sleep_s((rand_r(&seed) % 4000) / 1e6);
    }
    return NULL;
}

/* ---------------------------------------------------------------------
 * Faults
 * ------------------------------------------------------------------ */

/* With a pid file under $RS_TEST_ROOT, spec/run-tests.sh kills the server
 * even when this test crashes (frozen or not). */
static char pid_path[300];
static const char *aof_args[] = {"--appendonly", "yes", "--appendfsync", "always",
                                 "--pidfile", pid_path, NULL};
static int server_port;
static pid_t proxy_pid;
static int faults[5];
typedef struct span {
    double start, end;
} span;
static span *freezes;                /* SIGSTOP .. SIGCONT */
static size_t nfreezes, freezes_cap;
static const char *fault_names[5] = {"client kills", "freezes", "restarts", "reply drops",
                                      "failovers"};

static redisReply *direct(const char *fmt, const char *arg)
{
    struct timeval tv = {1, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", server_port, tv);
    redisReply *reply = NULL;
    if (ctx && !ctx->err) {
        redisSetTimeout(ctx, tv);
        reply = redisCommand(ctx, fmt, arg);
    }
    if (ctx) redisFree(ctx);
    return reply;
}

static void set_control(const char *mode)
{
    FILE *f = fopen(control_path, "w");
    if (f) {
        fputs(mode, f);
        fclose(f);
    }
}

static void restart_server(void)
{
    t_stop_server();
    for (int i = 0; i < 20; i++) {
        if (t_spawn_server(server_port, aof_args)) return;
        usleep(100000);
    }
    fprintf(stderr, "test_history: redis-server did not restart on port %d\n", server_port);
    exit(2);
}

static void fault_loop(unsigned seed)
{
    while (t_now() < end_time - 1) {
        int pick = rand_r(&seed) % (lost_replies ? 4 : 3);
        faults[pick]++;
        switch (pick) {
        case 0: {
            redisReply *r = direct("CLIENT KILL TYPE %s SKIPME yes", "normal");
            if (r) freeReplyObject(r);
            break;
        }
        case 1:
            freezes = grow(freezes, &freezes_cap, nfreezes, sizeof *freezes);
            freezes[nfreezes].start = t_now();
            kill(t_server_pid, SIGSTOP);
            sleep_s(FREEZE_SECONDS);
            kill(t_server_pid, SIGCONT);
            freezes[nfreezes++].end = t_now();
            break;
        case 2:
            restart_server();
            break;
        case 3:
            set_control("cut 0");
            sleep_s(0.3);
            set_control("pass");
            break;
        }
        sleep_s(0.3 + (rand_r(&seed) % 500) / 1000.0);
    }
}

/* ---------------------------------------------------------------------
 * Sentinel failover fault (CHAOS_FAILOVER=1)
 * ------------------------------------------------------------------ */

static int failover_mode;
static span *failovers;              /* SENTINEL FAILOVER .. settled */
static size_t nfailovers, failovers_cap;

/* SENTINEL FAILOVER, until the sentinels name the other node and the
 * set-up has settled again; the span is noted for the checker. */
static void failover_loop(void)
{
    while (t_now() < end_time - 1) {
        t_failover_old = t_agreed_master();
        failovers = grow(failovers, &failovers_cap, nfailovers, sizeof *failovers);
        failovers[nfailovers].start = t_now();
        char out[256];
        t_cli(t_sentinel_port[0], "SENTINEL FAILOVER mymaster", out, sizeof out);
        faults[4]++;
        if (!t_wait_cond(t_switched, 60) || !t_wait_cond(t_sentinel_settled, 60)) {
            fprintf(stderr, "test_history: a failover did not settle within 60 s\n");
            exit(2);
        }
        failovers[nfailovers++].end = t_now();
        sleep_s(3);         /* a quiet spell, where every check holds */
    }
}

/* Within a second of a failover: what Redis does not promise there. */
static int near_failover(double t0, double t1)
{
    for (size_t f = 0; f < nfailovers; f++)
        if (t0 < failovers[f].end + 1 && t1 > failovers[f].start - 1) return 1;
    return 0;
}

/* A fault proxy in front of 127.0.0.1:target, controlled by
 * t_server_dir/<name>.control (written to `control`). Its port, or -1. */
static int start_proxy(const char *name, int target_port, char *control, size_t size,
                       pid_t *pid)
{
    char exe[512], bin[600], port_path[300], target[16], owner[16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(bin, sizeof bin, "%s/../bin/faultproxy", exe);
    snprintf(control, size, "%s/%s.control", t_server_dir, name);
    snprintf(port_path, sizeof port_path, "%s/%s.port", t_server_dir, name);
    snprintf(target, sizeof target, "%d", target_port);
    snprintf(owner, sizeof owner, "%d", (int)getpid());
    FILE *c = fopen(control, "w");
    if (c) {
        fputs("pass", c);
        fclose(c);
    }
    if ((*pid = fork()) == 0) {
        execl(bin, bin, target, control, port_path, owner, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        usleep(20000);
        FILE *f = fopen(port_path, "r");
        int port = 0;
        if (f && fscanf(f, "%d", &port) == 1 && port > 0) {
            fclose(f);
            return port;
        }
        if (f) fclose(f);
    }
    fprintf(stderr, "test_history: %s did not start (make builds it)\n", bin);
    return -1;
}

static void stop_proxy(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

/* ---------------------------------------------------------------------
 * Error replies in cut pipelines
 *
 * A side server (never killed, frozen or restarted: the fate of its keys
 * is known) behind a fault proxy of its own. SIDE_CLIENTS threads save NX
 * batches as an ACL user that may write only hist:a* names: most batches
 * mix names it is refused (-NOPERM) with fresh allowed ones, and most
 * have their pipeline cut after a random number of replies (an aimed
 * cut). A phase thread makes the server a replica now and then (-READONLY)
 * or gives it maxmemory 1 with noeviction (-OOM). At the end each item is
 * held against the server (check_side).
 * ------------------------------------------------------------------ */
enum { SIDE_CLIENTS = 2, SIDE_BATCH = 6 };

typedef struct side_item {
    int refused;             /* a name the ACL user may not write */
    int reported;            /* written[i] after the call: 1, 0, or -1 (nothing said) */
    int rc;                  /* the call's */
    char name[40], value[32];
} side_item;

typedef struct side_client {
    int id;
    unsigned seed;
    side_item *items;
    size_t nitems, cap;
    long batches, failed;
    long refused, transient, other;   /* failures: NOPERM (auth), READONLY (retryable), OOM... */
} side_client;

static rs_store *side_store;
static int side_port;
static pid_t side_pid, side_proxy_pid;
static char side_control[300], side_pid_path[300];
static side_client side_clients[SIDE_CLIENTS];
static atomic_int side_aimed, side_hit, side_phases[3];  /* phases: plain, readonly, oom */
static int side_master_fd = -1;      /* a "master" that never answers: the replica waits */

static redisReply *side_cmd(int argc, const char **argv)
{
    struct timeval tv = {1, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", side_port, tv);
    redisReply *reply = NULL;
    if (ctx && !ctx->err) {
        redisSetTimeout(ctx, tv);
        reply = redisCommandArgv(ctx, argc, argv, NULL);
    }
    if (ctx) redisFree(ctx);
    return reply;
}

static void side_do(int argc, const char **argv)
{
    redisReply *r = side_cmd(argc, argv);
    if (r) freeReplyObject(r);
}

static void stop_side(void)
{
    if (side_pid > 0) {
        kill(side_pid, SIGKILL);
        waitpid(side_pid, NULL, 0);
        side_pid = 0;
        unlink(side_pid_path);
    }
}

/* The side server, its ACL user, its proxy and store; 0 or -1. */
static int start_side(void)
{
    const char *root = getenv("RS_TEST_ROOT");
    snprintf(side_pid_path, sizeof side_pid_path, "%s/history-side.%d.pid", root ? root : "/tmp",
             (int)getpid());
    const char *args[] = {"--pidfile", side_pid_path, "--maxmemory-policy", "noeviction", NULL};
    pid_t main_pid = t_server_pid;
    for (int tries = 0; tries < 5 && !side_pid; tries++) {
        int port = t_free_port();
        if (t_spawn_server(port, args)) side_port = port, side_pid = t_server_pid;
        t_server_pid = main_pid;
    }
    if (!side_pid) return -1;
    atexit(stop_side);
    const char *user[] = {"ACL", "SETUSER", "hpart", "reset", "on", ">hpart-pw", "+@all",
                          "%R~*", "%RW~rigatoni:resume_token:hist:a*"};
    side_do(9, user);
    /* A listener nobody accepts on: the replica's master, silent forever. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    side_master_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (side_master_fd < 0 || bind(side_master_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(side_master_fd, 1) < 0 ||
        getsockname(side_master_fd, (struct sockaddr *)&a, &alen) < 0)
        return -1;
    int proxy_port = start_proxy("side", side_port, side_control, sizeof side_control,
                                 &side_proxy_pid);
    if (proxy_port < 0) return -1;
    char url[128];
    snprintf(url, sizeof url, "redis://hpart:hpart-pw@127.0.0.1:%d", proxy_port);
    rs_config *cfg = rs_config_new();
    rs_error err = {0};
    const char *opts[][2] = {{"url", url}, {"command_timeout", "1"}, {"connection_timeout", "1"},
                             {"max_retries", "2"}, {"retry_base_delay", "0.02"},
                             {"retry_max_delay", "0.05"}, {"pool_size", "4"}};
    for (size_t i = 0; cfg && i < sizeof opts / sizeof opts[0]; i++)
        if (rs_config_set(cfg, opts[i][0], opts[i][1], &err) < 0)
            fprintf(stderr, "%s\n", err.message);
    side_store = cfg ? rs_store_open(cfg, &err) : NULL;
    rs_config_free(cfg);
    if (!side_store) fprintf(stderr, "test_history: side store: %s\n", err.message);
    return side_store ? 0 : -1;
}

/* The phase of the side server: 0 plain, 1 a replica, 2 out of memory. */
static void side_phase(int phase)
{
    char port[16];
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    getsockname(side_master_fd, (struct sockaddr *)&a, &alen);
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    const char *replica[] = {"REPLICAOF", "127.0.0.1", port}, *master[] = {"REPLICAOF", "NO", "ONE"};
    const char *oom[] = {"CONFIG", "SET", "maxmemory", "1"},
               *room[] = {"CONFIG", "SET", "maxmemory", "0"};
    side_do(3, phase == 1 ? replica : master);
    side_do(4, phase == 2 ? oom : room);
    atomic_fetch_add(&side_phases[phase], 1);
}

static void *side_phase_main(void *arg)
{
    unsigned seed = *(unsigned *)arg;
    while (t_now() < end_time) {
        int pick = rand_r(&seed) % 4;
        side_phase(pick < 2 ? 0 : pick - 1);
        sleep_s(0.2 + (rand_r(&seed) % 400) / 1000.0);
    }
    side_phase(0);
    return NULL;
}

/* The reply lines of this request after `keep` will be cut: the side
 * proxy relays `keep` lines of its replies, then closes the connection. */
static void aim_cut(const side_client *c, const char *bytes, size_t keep, char *pattern,
                    size_t size)
{
    char path[320], tmp[330];
    snprintf(path, sizeof path, "%s.match%d.keep", side_control, c->id);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%zu\n", keep);
    fclose(f);
    snprintf(path, sizeof path, "%s.match%d", side_control, c->id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) return;
    snprintf(pattern, size, "$%zu\r\n%s\r\n", strlen(bytes), bytes);
    fputs(pattern, f);
    fclose(f);
    rename(tmp, path);
    atomic_fetch_add(&side_aimed, 1);
}

static void unaim_cut(const side_client *c)
{
    char path[320];
    snprintf(path, sizeof path, "%s.match%d", side_control, c->id);
    if (unlink(path) < 0) atomic_fetch_add(&side_hit, 1);
    strcat(path, ".keep");
    unlink(path);
}

/* One NX batch: refused names (the same few per client, never written)
 * and fresh allowed ones, in a random order. */
static void side_batch(side_client *c)
{
    rs_save_item items[SIDE_BATCH];
    int written[SIDE_BATCH];
    size_t first = c->nitems;
    int with_refused = rand_r(&c->seed) % 4 != 0;
    for (int k = 0; k < SIDE_BATCH; k++) {
        c->items = grow(c->items, &c->cap, c->nitems, sizeof *c->items);
        side_item *it = &c->items[c->nitems++];
        memset(it, 0, sizeof *it);
        it->refused = with_refused && rand_r(&c->seed) % 2;
        if (it->refused) snprintf(it->name, sizeof it->name, "hist:r%d_%d", c->id, k);
        else snprintf(it->name, sizeof it->name, "hist:a%d_%ld_%d", c->id, c->batches, k);
        snprintf(it->value, sizeof it->value, "s%d_%ld_%d", c->id, c->batches, k);
        written[k] = -1;
    }
    for (int k = 0; k < SIDE_BATCH; k++) {     /* after the last grow: no pointer moves */
        const side_item *it = &c->items[first + k];
        items[k] = (rs_save_item){it->name, strlen(it->name), it->value, strlen(it->value), 0};
    }
    char key[64], pattern[96];
    int aimed_cut = rand_r(&c->seed) % 4 != 0;
    if (aimed_cut) {
        snprintf(key, sizeof key, "rigatoni:resume_token:%s", items[0].collection);
        aim_cut(c, key, (size_t)(rand_r(&c->seed) % SIDE_BATCH), pattern, sizeof pattern);
    }
    rs_error err = {0};
    int rc = rs_save_many(side_store, items, SIDE_BATCH, RS_SAVE_NX, written, &err);
    if (aimed_cut) unaim_cut(c);
    c->batches++;
    c->failed += rc < 0;
    if (rc < 0 && err.kind == RS_ERR_AUTH) c->refused++;
    else if (rc < 0 && err.kind == RS_ERR_SERVER && err.retryable) c->transient++;
    else if (rc < 0) c->other++;
    for (int k = 0; k < SIDE_BATCH; k++) {
        c->items[first + k].reported = written[k];
        c->items[first + k].rc = rc;
    }
}

static void *side_client_main(void *arg)
{
    side_client *c = arg;
    while (t_now() < end_time) {
        side_batch(c);
        sleep_s((10000 + rand_r(&c->seed) % 40000) / 1e6);
    }
    return NULL;
}

/* ---------------------------------------------------------------------
 * The checker
 * ------------------------------------------------------------------ */

static int violations;

#define VIOLATION(...)                                                   \
    do {                                                                 \
        if (++violations <= 12) {                                        \
            fprintf(stderr, "VIOLATION: ");                              \
            fprintf(stderr, __VA_ARGS__);                                \
            fputc('\n', stderr);                                         \
        }                                                                \
    } while (0)

/* The latest time a write may still take effect: its end when it was
 * acknowledged; any time for one that failed or is unknown. */
static double latest_effect(const op *w) { return w->result == OUT_OK ? w->t1 : INFINITY; }

static void check_read(const op *r, double t_base, long *reads)
{
    if (r->type != OP_GET || r->result != OUT_OK || r->key >= NNX) return;
    (*reads)++;
    const op *w = writer_of(r->value);
    if (r->value == VAL_JUNK || (r->value != VAL_NONE && !w)) {
        VIOLATION("read of key %d at %.3f returned bytes nobody wrote", r->key, r->t0 - t_base);
        return;
    }
    if (w && w->key != r->key) {
        VIOLATION("read of key %d returned v%u, written to key %d", r->key, r->value, w->key);
        return;
    }
    if (w && w->result == OUT_FAILED)
        VIOLATION("read of key %d at %.3f returned v%u, whose %s reported failure (not_owner)",
                  r->key, r->t0 - t_base, r->value, op_names[w->type]);
    if (w && w->t0 > r->t1)
        VIOLATION("read of key %d returned v%u, written after the read ended", r->key, r->value);
    /* Stale or lost: an acknowledged write that began after `w` could no
     * longer take effect and ended before the read began. */
    double after = w ? latest_effect(w) : -INFINITY;
    for (int c = 0; c <= CLIENTS; c++) {
        for (size_t i = 0; i < clients[c].nops; i++) {
            const op *w2 = &clients[c].ops[i];
            if ((w2->type != OP_SAVE && w2->type != OP_FSAVE) || w2->key != r->key ||
                w2->result != OUT_OK || w2 == w)
                continue;
            if (w2->t0 > after && w2->t1 < r->t0) {
                VIOLATION("read of key %d at %.3f-%.3f returned %s%u, but v%u (%s, acknowledged "
                          "at %.3f) came later: stale or lost",
                          r->key, r->t0 - t_base, r->t1 - t_base, w ? "v" : "nothing",
                          w ? r->value : 0, w2->value, op_names[w2->type], w2->t1 - t_base);
                return;
            }
        }
    }
}

static void check_truth(const op *o, double t_base)
{
    if (failover_mode && near_failover(o->t0, o->t1)) return;
    /* The owner's validity covered the whole call: the lock was ours. */
    int covered = o->valid_until > 0 && o->t1 < o->valid_until;
    if (o->type == OP_RELEASE && o->result == OUT_OK && !o->answer && covered)
        VIOLATION("release of lock %d at %.3f-%.3f reported \"not held\" while the owner's "
                  "validity lasted until %.3f", o->key - NPLAIN, o->t0 - t_base, o->t1 - t_base,
                  o->valid_until - t_base);
    /* Its script ran and the reply was lost: the retry then finds the lock
     * gone (released by it, or expired before it: not held either way,
     * answered "released") or another owner's (unknown); never its own. */
    else if (o->type == OP_RELEASE && o->result == OUT_OK && !o->answer && o->ran_by > 0)
        VIOLATION("release of lock %d at %.3f-%.3f reported \"not held\" after its script "
                  "ran (its reply lost; seen by %.3f): a retry must answer released or unknown",
                  o->key - NPLAIN, o->t0 - t_base, o->t1 - t_base, o->ran_by - t_base);
    if (o->type == OP_FSAVE && o->result == OUT_FAILED && covered)
        VIOLATION("fenced save v%u at %.3f-%.3f reported not_owner while the owner's validity "
                  "lasted until %.3f", o->value, o->t0 - t_base, o->t1 - t_base,
                  o->valid_until - t_base);
}

/* The latest time a write's command may still land on the server: a
 * request sent to a frozen server runs when it wakes; otherwise one that
 * reached it runs at once (the proxy's note, or a margin for a slow
 * machine when there is none). An acknowledged one: at its end. */
#define LAND_MARGIN 1.0
static double landed_by(const op *o)
{
    double t = o->result == OUT_OK ? o->t1 : o->ran_by > 0 ? o->ran_by : o->t1 + LAND_MARGIN;
    for (size_t f = 0; f < nfreezes; f++)
        if (freezes[f].start < o->t1 && o->t0 < freezes[f].end)
            t = fmax(t, freezes[f].end + LAND_MARGIN);
    return t;
}

/* A client's own NX/delete key: its ops run one after another, so the
 * key's state is known from a read or an acknowledged write that began
 * after every earlier write had landed, until a write whose effect is
 * unknown (or may still land later). */
static long check_own_key(const client *c, double t_base)
{
    long checked = 0;        /* ops whose answer was held against a known state */
    int known = 1;           /* a fresh server: nothing there */
    unsigned state = VAL_NONE;
    double settled = 0;      /* every write so far has landed by then */
    for (size_t i = 0; i < c->nops; i++) {
        const op *o = &c->ops[i];
        if (o->key != NNX + c->id || (o->type == OP_GET && o->result != OUT_OK)) continue;
        double at = o->t0 - t_base, land = landed_by(o);
        int alone = o->t0 > settled;   /* nothing earlier can land after it */
        if (failover_mode && near_failover(o->t0, land)) {
            /* A delete or NX save (not waited for) may be undone. */
            if (o->type != OP_GET) settled = fmax(settled, land);
            known = 0;
            continue;
        }
        if (o->type != OP_GET) settled = fmax(settled, land);
        if (o->result != OUT_OK) {
            known = 0;
            continue;
        }
        checked += known;
        if (o->type == OP_GET) {
            if (known && o->value != state)
                VIOLATION("client %d's own key read v%u at %.3f, but it held v%u", c->id,
                          o->value, at, state);
            if (alone) known = 1, state = o->value;
            continue;
        }
        if (land > o->t1) {
            /* Acknowledged across a freeze: a lost attempt may run after
             * the check that followed it (a waking server serves its
             * connections in any order), and land after it as well. */
            known = 0;
            continue;
        }
        if (o->type == OP_DELETE) {
            if (known && !o->answer && state != VAL_NONE)
                VIOLATION("delete of client %d's own key at %.3f reported \"absent\" while it "
                          "held v%u", c->id, at, state);
            if (known && o->answer && state == VAL_NONE)
                VIOLATION("delete of client %d's own key at %.3f reported \"deleted\" while it "
                          "was absent", c->id, at);
            if (alone) known = 1, state = VAL_NONE;
        } else if (o->type == OP_NXSAVE) {
            if (known && !o->answer && state == VAL_NONE)
                VIOLATION("NX save v%u of client %d's own key at %.3f reported \"skipped\" "
                          "while it was absent", o->value, c->id, at);
            if (known && o->answer && state != VAL_NONE)
                VIOLATION("NX save v%u of client %d's own key at %.3f reported \"written\" "
                          "while it held v%u", o->value, c->id, at, state);
            if (o->answer && alone) known = 1, state = o->value;
        }
    }
    return checked;
}

static long check_holds(double t_base)
{
    long pairs = 0;
    for (int a = 0; a < CLIENTS; a++)
        for (size_t i = 0; i < clients[a].nholds; i++)
            for (int b = 0; b < CLIENTS; b++)
                for (size_t j = 0; j < clients[b].nholds; j++) {
                    const hold *x = &clients[a].holds[i], *y = &clients[b].holds[j];
                    if (x == y || x->lock != y->lock || x->start > y->start) continue;
                    /* A lock acquired around a failover may not have
                     * reached the new master: Redis does not promise it. */
                    if (failover_mode && near_failover(x->start, x->end)) continue;
                    pairs++;
                    if (x->end > y->start)
                        VIOLATION("lock %d: client %d's validity %.3f-%.3f overlaps client %d's "
                                  "from %.3f", x->lock - NPLAIN, x->client, x->start - t_base,
                                  x->end - t_base, y->client, y->start - t_base);
                }
    return pairs;
}

/* Each side item against the server, which nothing else touched: a
 * refused name never reported written nor there; an item reported written
 * holds its bytes; a fresh name never "skipped" (nothing else could have
 * written it) and, reported not written, is absent. */
static long side_wrong[2];           /* side items wrong: of calls that succeeded, failed */

static long check_side(void)
{
    long checked = 0;
    struct timeval tv = {1, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", side_port, tv);
    CHECK(ctx && !ctx->err);
    if (!ctx || ctx->err) return 0;
    redisSetTimeout(ctx, tv);
    for (int c = 0; c < SIDE_CLIENTS; c++) {
        const side_client *sc = &side_clients[c];
        for (size_t i = 0; i < sc->nitems; i++) {
            const side_item *it = &sc->items[i];
            char key[80];
            snprintf(key, sizeof key, "rigatoni:resume_token:%s", it->name);
            const char *get[] = {"GET", key};
            redisReply *r = redisCommandArgv(ctx, 2, get, NULL);
            CHECK(r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL));
            if (!r) continue;
            int there = r->type == REDIS_REPLY_STRING;
            int ours = there && r->len == strlen(it->value) && memcmp(r->str, it->value, r->len) == 0;
            freeReplyObject(r);
            checked++;
            int before = violations;
            if (it->refused && it->reported == 1)
                VIOLATION("side: %s, refused to this user, reported written (call rc %d)",
                          it->name, it->rc);
            else if (it->refused && there)
                VIOLATION("side: %s, refused to this user, is on the server", it->name);
            else if (!it->refused && it->reported == 1 && !ours)
                VIOLATION("side: %s reported written (call rc %d), %s", it->name, it->rc,
                          there ? "holds other bytes" : "absent");
            else if (!it->refused && it->reported == 0 && it->rc == 0)
                VIOLATION("side: fresh name %s reported skipped (already there)", it->name);
            else if (!it->refused && it->reported == 0 && there)
                VIOLATION("side: %s reported not written (call rc %d), but it is there",
                          it->name, it->rc);
            if (violations > before) side_wrong[it->rc < 0]++;
        }
    }
    redisFree(ctx);
    return checked;
}

static void write_log(const char *path, double t_base)
{
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int c = 0; c <= CLIENTS; c++)
        for (size_t i = 0; i < clients[c].nops; i++) {
            const op *o = &clients[c].ops[i];
            fprintf(f, "%.6f %.6f client=%d %s key=%d value=%u answer=%d valid_until=%.6f %s\n",
                    o->t0 - t_base, o->t1 - t_base, c, op_names[o->type], o->key, o->value,
                    o->answer, o->valid_until > 0 ? o->valid_until - t_base : 0,
                    outcome_names[o->result]);
        }
    fclose(f);
}

int main(void)
{
    const char *s = getenv("CHAOS_SECONDS"), *seed_env = getenv("CHAOS_SEED");
    const char *drop_env = getenv("CHAOS_LOST_REPLIES");
    double seconds = s && atof(s) > 0 ? atof(s) : 12;
    unsigned seed = seed_env ? (unsigned)strtoul(seed_env, NULL, 10) : 20261201u;
    lost_replies = !(drop_env && strcmp(drop_env, "0") == 0);
    const char *failover_env = getenv("CHAOS_FAILOVER");
    failover_mode = failover_env && strcmp(failover_env, "1") == 0;
    if (failover_mode) lost_replies = 0;     /* no proxy: failovers are the fault */
    const char *lie_env = getenv("CHAOS_PLANT_JOB_LIE");
    plant_lie = lie_env && strcmp(lie_env, "1") == 0;

    const char *root = getenv("RS_TEST_ROOT");
    snprintf(pid_path, sizeof pid_path, "%s/history-redis.%d.pid", root ? root : "/tmp",
             (int)getpid());
    static const char *failover_args[] = {"--dbfilename", "master.rdb", "--pidfile", pid_path,
                                          NULL};
    server_port = t_start_server(failover_mode ? failover_args : aof_args);
    rs_log_set_level(RS_LOG_ERROR);        /* lost leases warn: expected here */
    rs_config *cfg;
    if (failover_mode) {
        t_sentinel_setup(server_port, 10000);
        char url[160];
        snprintf(url, sizeof url, "redis://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d",
                 t_sentinel_port[0], t_sentinel_port[1], t_sentinel_port[2]);
        cfg = rs_config_new();
        if (cfg && rs_config_set(cfg, "url", url, NULL) < 0) {
            rs_config_free(cfg);
            cfg = NULL;
        }
    } else {
        int proxy_port = start_proxy("proxy", server_port, control_path, sizeof control_path,
                                     &proxy_pid);
        if (proxy_port < 0) return 2;
        cfg = t_config(proxy_port, NULL);
    }
    rs_error err = {0};
    const char *timeout = lost_replies ? "0.25" : "2";
    const char *opts[][2] = {{"command_timeout", timeout}, {"connection_timeout", timeout},
                             {"max_retries", failover_mode ? "10" : "3"},
                             {"retry_base_delay", "0.05"}, {"retry_max_delay", "0.3"},
                             {"pool_size", "16"},
                             /* Saves survive a failover once a replica has them. */
                             {"wait_replicas", failover_mode ? "1" : "0"},
                             {"wait_timeout", "0.5"}};
    for (size_t i = 0; cfg && i < sizeof opts / sizeof opts[0]; i++)
        if (rs_config_set(cfg, opts[i][0], opts[i][1], &err) < 0)
            fprintf(stderr, "%s\n", err.message);
    store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    if (!store) {
        fprintf(stderr, "test_history: %s\n", err.message);
        return 2;
    }

    if (start_side() < 0) {
        fprintf(stderr, "test_history: the side server did not start\n");
        return 2;
    }

    double t_base = t_now();
    end_time = t_base + seconds;
    pthread_t threads[CLIENTS], monitor, side_threads[SIDE_CLIENTS], phases;
    unsigned phase_seed = seed ^ 0x5bd1e995u;
    pthread_create(&phases, NULL, side_phase_main, &phase_seed);
    for (int i = 0; i < SIDE_CLIENTS; i++) {
        side_clients[i].id = i;
        side_clients[i].seed = seed ^ (0x85ebca6bu * (unsigned)(i + 1));
        pthread_create(&side_threads[i], NULL, side_client_main, &side_clients[i]);
    }
    for (int i = 0; i < CLIENTS; i++) pthread_mutex_init(&clients[i].mu, NULL);
    pthread_create(&monitor, NULL, monitor_main, NULL);
    for (int i = 0; i < CLIENTS; i++) {
        clients[i].id = i;
        clients[i].seed = seed ^ (0x9e3779b9u * (unsigned)(i + 1));
        clients[i].job_seed = seed ^ (0xc2b2ae35u * (unsigned)(i + 1));
        pthread_create(&threads[i], NULL, client_main, &clients[i]);
    }
    if (failover_mode) failover_loop();
    else fault_loop(seed);
    for (int i = 0; i < CLIENTS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < SIDE_CLIENTS; i++) pthread_join(side_threads[i], NULL);
    pthread_join(phases, NULL);
    atomic_store(&monitoring, 0);
    pthread_join(monitor, NULL);
    set_control("pass");

    /* A last restart (with failovers: the master the sentinels name), then
     * every key read directly: acknowledged writes must have survived it. */
    if (failover_mode) server_port = t_agreed_master();
    else restart_server();
    client *final = &clients[CLIENTS];
    final->id = CLIENTS;
    for (int k = 0; k < NNX; k++) {
        char coll[32], key[80];
        collection(k, coll, sizeof coll);
        snprintf(key, sizeof key, "rigatoni:resume_token:%s", coll);
        size_t i = begin(final, OP_GET, k);
        redisReply *r = direct("GET %s", key);
        op *o = &final->ops[i];
        o->t1 = t_now();
        o->result = r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL) ? OUT_OK
                                                                                    : OUT_UNKNOWN;
        o->value = r && r->type == REDIS_REPLY_STRING ? parse_value(r->str, r->len) : VAL_NONE;
        if (r) freeReplyObject(r);
        CHECK(o->result == OUT_OK);
    }
    rs_store_close(store);
    rs_store_close(side_store);
    stop_proxy(&proxy_pid);
    stop_proxy(&side_proxy_pid);
    t_sentinel_stop_all();
    t_stop_server();
    unlink(pid_path);

    long count[OP_TYPES][3] = {{0}}, reads = 0, holds = 0, client_ops = 0;
    for (int c = 0; c < CLIENTS; c++) client_ops += (long)clients[c].nops;
    long jobs = atomic_load(&by_job[0]) + atomic_load(&by_job[1]);
    for (int c = 0; c <= CLIENTS; c++) {
        holds += (long)clients[c].nholds;
        for (size_t i = 0; i < clients[c].nops; i++) {
            const op *o = &clients[c].ops[i];
            count[o->type][o->result]++;
            check_read(o, t_base, &reads);
            check_truth(o, t_base);
        }
    }
    long side_items = check_side(), side_batches = 0, side_failed = 0, side_fail[3] = {0};
    for (int c = 0; c < SIDE_CLIENTS; c++) {
        side_batches += side_clients[c].batches;
        side_failed += side_clients[c].failed;
        side_fail[0] += side_clients[c].refused;
        side_fail[1] += side_clients[c].transient;
        side_fail[2] += side_clients[c].other;
    }
    stop_side();
    long pairs = check_holds(t_base), own = 0;
    for (int c = 0; c < CLIENTS; c++) own += check_own_key(&clients[c], t_base);
    const char *log = getenv("CHAOS_LOG");
    if (log) write_log(log, t_base);

    printf("history: %d clients, %.0f s, seed %u, lost replies %s\n", CLIENTS, seconds, seed,
           lost_replies ? "on" : "off (CHAOS_LOST_REPLIES=0)");
    printf("faults:");
    for (int i = 0; i < 5; i++) printf(" %d %s", faults[i], fault_names[i]);
    printf("\nops (ok/failed/unknown):");
    for (int t = 0; t < OP_TYPES; t++)
        printf(" %s %ld/%ld/%ld", op_names[t], count[t][0], count[t][1], count[t][2]);
    printf("\nas jobs: %ld of %ld client ops (%ld finished at once, %ld polled on their fd "
           "first; %d polls wrong)%s\n", jobs, client_ops, atomic_load(&by_job[0]),
           atomic_load(&by_job[1]), atomic_load(&poll_wrong),
           plant_lie ? " -- CHAOS_PLANT_JOB_LIE=1: a lie planted in the job path" : "");
    if (plant_lie) printf("planted lies told: %d\n", atomic_load(&lies));
    printf("aimed lost replies: %d, %d of them hit\n", atomic_load(&aimed),
           atomic_load(&aimed_hit));
    printf("checked: %ld reads, %ld ops against their own key's state, %ld lock validity "
           "intervals (%ld pairs), %d violations\n", reads, own, holds, pairs, violations);
    printf("side (error replies in cut pipelines): %ld NX batches (%ld failed: %ld refused, "
           "%ld transient, %ld other), %ld items checked (%ld wrong in calls that succeeded, "
           "%ld in calls that failed), %d cuts aimed, %d of them hit, phases: %d plain "
           "%d readonly %d oom\n",
           side_batches, side_failed, side_fail[0], side_fail[1], side_fail[2], side_items,
           side_wrong[0], side_wrong[1],
           atomic_load(&side_aimed),
           atomic_load(&side_hit), atomic_load(&side_phases[0]), atomic_load(&side_phases[1]),
           atomic_load(&side_phases[2]));
    CHECK(violations == 0);
    /* Jobs ran a good share (2/3 expected) of the ops, both ways. */
    CHECK(jobs * 2 >= client_ops && atomic_load(&by_job[0]) > 0 && atomic_load(&by_job[1]) > 0);
    CHECK(atomic_load(&poll_wrong) == 0);
    CHECK(side_batches >= 20 && atomic_load(&side_hit) >= 10);
    CHECK(reads >= 30 && holds >= 2);         /* the run checked something */
    if (lost_replies) CHECK(atomic_load(&aimed_hit) >= 10 && own >= 5);
    if (failover_mode) CHECK(nfailovers >= 1);
    for (int c = 0; c <= CLIENTS; c++) {
        free(clients[c].ops);
        free(clients[c].holds);
    }
    return t_report("test_history");
}
