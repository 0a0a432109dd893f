/* SPDX-License-Identifier: MIT */
/* test_null_err.c -- every public function of rigatoni_store.h that takes
 * an `rs_error *err` is called with err == NULL, and must fail cleanly
 * (its -1 / NULL return), never crash, whatever the server does.
 *
 * Most calls run against a stalled server: a redis-server stopped with
 * SIGSTOP once the store is open, so connections are accepted (by the
 * kernel) and commands never answered; the store's timeouts are short
 * (50 ms, one retry) so each call gives up within a fraction of a second.
 * rs_store_open meets a bare listener that never accepts nor answers. The
 * calls that need a live server first (a save job, a scan, a lease) are
 * made while it runs and finished once it stalls.
 *
 * The same run checks that the library never prints: at debug level, with
 * no log handler in the config, its stderr stays empty.
 */
#include "test_support.h"

static rs_config *stalling_config(int port)
{
    rs_config *cfg = t_config(port, NULL);
    if (!cfg) return NULL;
    rs_config_set(cfg, "command_timeout", "50ms", NULL);
    rs_config_set(cfg, "connection_timeout", "50ms", NULL);
    rs_config_set(cfg, "max_retries", "1", NULL);
    rs_config_set(cfg, "retry_base_delay", "1ms", NULL);
    rs_config_set(cfg, "retry_max_delay", "1ms", NULL);
    rs_config_set(cfg, "wait_timeout", "50ms", NULL);
    rs_config_set(cfg, "scan_count", "2", NULL);
    return cfg;
}

/* A loopback port that listens and never accepts: the kernel completes
 * the handshake and nothing ever answers. */
static void on_lost(const char *key, void *userdata)
{
    (void)key;
    (void)userdata;
}

/* A job's fn: a get on the stalled server. */
static int stalled_get(rs_store *store, void *arg, rs_error *err)
{
    (void)arg;
    char *out = NULL;
    size_t len;
    return rs_get_raw(store, "a", 1, &out, &len, err);
}

/* A valid token: {_data: "82"}. */
static const char TOKEN[] = "\x13\x00\x00\x00\x02_data\x00\x03\x00\x00\x00" "82\x00\x00";

int main(void)
{
    /* stderr into a file: the library must leave it empty. */
    char quiet_path[] = "/tmp/test_null_err.XXXXXX";
    int quiet = mkstemp(quiet_path);
    int saved_stderr = dup(2);
    if (quiet < 0 || saved_stderr < 0 || dup2(quiet, 2) < 0) {
        perror("test_null_err: stderr");
        return 2;
    }
    unlink(quiet_path);
    rs_log_set_level(RS_LOG_DEBUG);

    /* Functions that need no server. */
    rs_url url;
    CHECK(rs_url_parse("nope://", &url, NULL) < 0);
    rs_config *bad = rs_config_new();
    CHECK(rs_config_set(bad, "no_such_option", "1", NULL) < 0);
    CHECK(rs_config_set_url(bad, "nope://", NULL) < 0);
    CHECK(rs_config_set_int(bad, "pool_size", -1, NULL) < 0);
    CHECK(rs_config_set_seconds(bad, "command_timeout", -1, NULL) < 0);
    CHECK(rs_config_set_bool(bad, "no_such_option", 1, NULL) < 0);
    CHECK(rs_config_validate(bad, NULL) < 0);
    CHECK(rs_store_open(bad, NULL) == NULL);
    rs_config_free(bad);
    CHECK(rs_ttl_check(-1, NULL) < 0);
    char name[8];
    CHECK(rs_stream_key("db", 2, "coll", 4, name, sizeof name, NULL) < 0 ||
          rs_stream_key("", 0, "coll", 4, name, sizeof name, NULL) < 0);
    CHECK(rs_stream_mirror_key("", 0, "c", 1, name, sizeof name, NULL) < 0);
    CHECK(rs_token_validate("xx", 2, NULL) < 0);

    /* rs_store_open against a listener that never answers. */
    int silent_port, silent = t_silent_listener(&silent_port);
    rs_config *silent_cfg = stalling_config(silent_port);
    CHECK(rs_store_open(silent_cfg, NULL) == NULL);
    /* The same open as a job: started and finished without an err. */
    rs_open_job *open_job = rs_store_open_start(silent_cfg, NULL);
    CHECK(open_job != NULL);
    if (open_job) CHECK(rs_store_open_finish(open_job, NULL) == NULL);
    rs_config_free(silent_cfg);
    close(silent);

    /* The rest: a store on a real server, which then stalls. */
    int port = t_start_server(NULL);
    rs_config *cfg = stalling_config(port);
    rs_store *store = rs_store_open(cfg, NULL);
    CHECK(store != NULL);
    if (!store) return 1;
    for (int i = 0; i < 5; i++) {
        char coll[16];
        snprintf(coll, sizeof coll, "c%d", i);
        CHECK(rs_save_raw(store, coll, strlen(coll), TOKEN, sizeof TOKEN - 1, 0, NULL) == 0);
    }
    CHECK(rs_lock_acquire(store, "lk", "me", 5, NULL) == 1);
    rs_scan *scan = rs_scan_open(store, NULL, 2, 1, NULL);
    CHECK(scan != NULL);
    rs_scan *key_scan = rs_scan_keys_open(store, "*", 2, 1, NULL);
    CHECK(key_scan != NULL);
    rs_scan_entry entry;
    if (scan) CHECK(rs_scan_next(scan, &entry, NULL) == 1);   /* the first batch read */
    if (key_scan) CHECK(rs_scan_next(key_scan, &entry, NULL) == 1);

    signal(SIGSEGV, t_on_signal);  /* a crash must not leave the server stopped */
    kill(t_server_pid, SIGSTOP);   /* from here on, nothing answers */

    rs_save_item items[2] = {{"a", 1, TOKEN, sizeof TOKEN - 1, 0}, {"b", 1, TOKEN, sizeof TOKEN - 1, 0}};
    /* A job started on the stalled server: it fails on its thread. */
    rs_save_job *job = rs_save_many_start(store, items, 2, RS_SAVE_NX, 1, NULL);
    if (job) CHECK(rs_save_many_finish(job, NULL, NULL, NULL) < 0);
    rs_save_job *job2 = rs_save_many_start(store, items, 2, 0, 0, NULL);
    if (job2) CHECK(rs_save_many_finish(job2, NULL, NULL, NULL) < 0);

    /* Jobs: started, finished and abandoned without an err. */
    rs_job *rjob = rs_job_start(store, stalled_get, NULL, NULL);
    CHECK(rjob != NULL);
    if (rjob) CHECK(rs_job_finish(rjob, NULL) < 0);
    CHECK(rs_job_start(store, NULL, NULL, NULL) == NULL);
    rjob = rs_job_start(store, stalled_get, NULL, NULL);
    CHECK(rjob != NULL);
    rs_job_abandon(rjob, NULL);

    char *out = NULL;
    size_t out_len;
    double seconds;
    CHECK(rs_save_raw(store, "a", 1, TOKEN, sizeof TOKEN - 1, 0, NULL) < 0);
    CHECK(rs_get_raw(store, "a", 1, &out, &out_len, NULL) < 0);
    CHECK(rs_delete(store, "a", 1, NULL) < 0);
    CHECK(rs_ttl(store, "a", 1, &seconds, NULL) < 0);
    CHECK(rs_ping(store, NULL) < 0);
    const char *argv[] = {"GET", "a"};
    size_t argvlen[] = {3, 1};
    CHECK(rs_command(store, 2, argv, argvlen, &out, &out_len, NULL) < 0);
    CHECK(rs_command_flags(store, 2, argv, argvlen, RS_COMMAND_IDEMPOTENT, &out, &out_len, NULL) < 0);
    rs_reply *reply = NULL;
    CHECK(rs_command_reply(store, 2, argv, argvlen, 0, &reply, NULL) < 0);
    rs_master_identity masters[4];
    int db;
    CHECK(rs_store_identity(store, masters, 4, &db, NULL) < 0);
    rs_node_info infos[4];
    CHECK(rs_store_node_info(store, infos, 4, NULL) < 0);
    rs_node_figures figures[4];
    CHECK(rs_store_node_figures(store, figures, 4, NULL) < 0);
    int written[2];
    CHECK(rs_save_many(store, items, 2, 0, written, NULL) < 0);
    CHECK(rs_save_many(store, items, 2, RS_SAVE_NX, NULL, NULL) < 0);
    CHECK(rs_save_many(store, items, 2, RS_SAVE_NX, written, NULL) < 0);
    const char *names[] = {"a", "b"};
    size_t lens[] = {1, 1};
    rs_value values[2];
    CHECK(rs_get_many(store, names, lens, 2, values, NULL) < 0);
    CHECK(rs_get_many_values(store, names, lens, 2, values, NULL) < 0);
    CHECK(rs_delete_many(store, names, lens, 2, NULL) < 0);
    CHECK(rs_expire(store, "a", 1, 10, NULL) < 0);
    CHECK(rs_delete_if_value(store, "a", 1, TOKEN, sizeof TOKEN - 1, NULL) < 0);
    CHECK(rs_lock_acquire(store, "lk2", "me", 5, NULL) < 0);
    CHECK(rs_lock_refresh(store, "lk", "me", 5, NULL) < 0);
    CHECK(rs_lock_release(store, "lk", "me", NULL) < 0);
    CHECK(rs_lock_is_locked(store, "lk", NULL) < 0);
    char *owner = NULL;
    size_t owner_len;
    CHECK(rs_lock_owner(store, "lk", &owner, NULL) < 0);
    CHECK(rs_lock_owner_bytes(store, "lk", &owner, &owner_len, NULL) < 0);
    CHECK(rs_save_fenced(store, "a", 1, TOKEN, sizeof TOKEN - 1, "lk", "me", NULL) < 0);
    CHECK(rs_lease_keepalive(store, "lk", "me", 0.2, on_lost, NULL, NULL) == NULL);
    /* Walks open without a round trip; their first batch never comes. */
    rs_scan *late = rs_scan_open(store, NULL, 2, 1, NULL);
    CHECK(late && rs_scan_next(late, &entry, NULL) < 0);
    rs_scan_close(late);
    late = rs_scan_keys_open(store, "*", 2, 1, NULL);
    CHECK(late && rs_scan_next(late, &entry, NULL) < 0);
    rs_scan_close(late);
    /* The walks opened before: their next batch never comes. */
    int rc = 1;
    for (int i = 0; scan && rc == 1 && i < 10; i++) rc = rs_scan_next(scan, &entry, NULL);
    CHECK(rc < 0);
    rc = 1;
    for (int i = 0; key_scan && rc == 1 && i < 10; i++) rc = rs_scan_next(key_scan, &entry, NULL);
    CHECK(rc < 0);
    CHECK(rs_store_confirm_writes(store, 1, 0.05, NULL) < 0);

    rs_scan_close(scan);
    rs_scan_close(key_scan);
    kill(t_server_pid, SIGCONT);
    rs_store_close(store);
    rs_config_free(cfg);
    t_stop_server();

    fflush(stderr);
    off_t printed = lseek(quiet, 0, SEEK_END);
    dup2(saved_stderr, 2);
    CHECK(printed == 0);   /* retries, lost connections, ...: nothing printed */
    if (printed > 0) {     /* show what was */
        char buf[512];
        ssize_t n = pread(quiet, buf, sizeof buf - 1, 0);
        if (n > 0) buf[n] = '\0', fprintf(stderr, "printed by the library:\n%s\n", buf);
    }
    printf("test_null_err: %d checks, %d failures\n", t_checks, t_failures);
    return t_failures ? 1 : 0;
}
