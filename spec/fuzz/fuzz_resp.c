/* SPDX-License-Identifier: MIT */
/* fuzz_resp.c -- libFuzzer target: arbitrary RESP from a server.
 *
 * Two consumers of the same bytes:
 *  1. hiredis' redisReader, fed in chunks whose sizes come from the input,
 *     drained until it wants more or fails;
 *  2. the core itself: a fake server on a loopback TCP listener (a thread
 *     of this process) answers the store's opening PING with +PONG, then
 *     answers the next request with the fuzz bytes, shuts its side down
 *     and drains until the client closes. The first input byte picks the
 *     store operation (get, ttl, scan, batches, locks, scripts, ...), so the
 *     bytes meet every reply check of the core. An incomplete reply ends in
 *     EOF at once: no timeout is ever waited for, runs stay deterministic.
 * Checked: no memory error, leak or UB; a failed call fills a valid error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "rigatoni_store.h"

static int listen_fd, port;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *payload;
static size_t payload_len;
static rs_config *cfg;

static int read_some(int fd)
{
    char buf[4096];
    ssize_t n;
    do n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    return (int)n;
}

static void write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return;
        p += n;
        len -= (size_t)n;
    }
}

/* The fake server: one connection at a time, PONG then the payload. */
static void *serve(void *arg)
{
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) continue;
        if (read_some(fd) > 0) {
            write_all(fd, (const uint8_t *)"+PONG\r\n", 7);
            if (read_some(fd) > 0) {
                pthread_mutex_lock(&lock);
                write_all(fd, payload, payload_len);
                pthread_mutex_unlock(&lock);
            }
        }
        shutdown(fd, SHUT_WR);
        while (read_some(fd) > 0) {
        }
        close(fd);
    }
    return arg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    signal(SIGPIPE, SIG_IGN);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(listen_fd, 16) < 0 || getsockname(listen_fd, (struct sockaddr *)&a, &len) < 0) {
        perror("fuzz_resp: listen");
        abort();
    }
    port = ntohs(a.sin_port);
    pthread_t t;
    if (pthread_create(&t, NULL, serve, NULL) != 0) abort();
    pthread_detach(t);

    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rs_error err;
    cfg = rs_config_new();
    if (!cfg || rs_config_set(cfg, "url", url, &err) < 0 ||
        rs_config_set(cfg, "max_retries", "0", &err) < 0 ||
        rs_config_set(cfg, "pool_size", "1", &err) < 0 ||
        rs_config_set(cfg, "command_timeout", "5", &err) < 0 ||
        rs_config_set(cfg, "scan_count", "10", &err) < 0) {
        fprintf(stderr, "fuzz_resp: config\n");
        abort();
    }
    rs_log_set_level(RS_LOG_ERROR);
    return 0;
}

/* hiredis' reader alone, fed in input-chosen chunk sizes. */
static void reader_only(const uint8_t *data, size_t size, size_t chunk)
{
    redisReader *r = redisReaderCreate();
    if (!r) abort();
    r->maxelements = 1LL << 24;   /* as core/conn.c sets it */
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (redisReaderFeed(r, (const char *)data + off, n) != REDIS_OK) break;
        off += n;
        void *reply;
        int rc;
        while ((rc = redisReaderGetReply(r, &reply)) == REDIS_OK && reply) freeReplyObject(reply);
        if (rc != REDIS_OK) break;
    }
    redisReaderFree(r);
}

static void check_error(int rc, const rs_error *err)
{
    if (rc >= 0) return;
    if (err->kind == RS_OK || !memchr(err->message, '\0', sizeof err->message)) {
        fprintf(stderr, "fuzz_resp: failed call without a proper error\n");
        abort();
    }
}

static void store_op(int op, rs_store *s)
{
    rs_error err;
    memset(&err, 0, sizeof err);
    int rc = 0;
    switch (op) {
    case 0: {
        char *out = NULL;
        size_t len = 0;
        rc = rs_get_raw(s, "users", 5, &out, &len, &err);
        if (rc == 1) rs_free(out);
        break;
    }
    case 1: {
        double ttl;
        rc = rs_ttl(s, "users", 5, &ttl, &err);
        break;
    }
    case 2: rc = rs_delete(s, "users", 5, &err); break;
    case 3: {
        const char *argv[2] = {"GET", "x"};
        size_t lens[2] = {3, 1};
        char *out = NULL;
        size_t len;
        rc = rs_command(s, 2, argv, lens, &out, &len, &err);
        if (rc == 1) rs_free(out);
        break;
    }
    case 4:
    case 5: {
        rs_scan *scan = rs_scan_open(s, "*", 0, op == 5, &err);
        if (!scan) {
            rc = -1;
            break;
        }
        rs_scan_entry e;
        int n = 0;
        while ((rc = rs_scan_next(scan, &e, &err)) == 1 && n++ < 10000) {
            if (e.collection_len && !e.collection) abort();
            if (e.value_len && !e.value) abort();
        }
        rs_scan_close(scan);
        break;
    }
    case 6: {
        const char *colls[3] = {"a", "b", "c"};
        size_t lens[3] = {1, 1, 1};
        rs_value vals[3];
        rc = rs_get_many(s, colls, lens, 3, vals, &err);
        if (rc == 0) rs_values_free(vals, 3);
        break;
    }
    case 7:
    case 8: {
        rs_save_item items[2] = {{"a", 1, "x", 1, 0}, {"b", 1, "y", 1, 10}};
        int written[2];
        rc = rs_save_many(s, items, 2, op == 8 ? RS_SAVE_NX : 0, written, &err);
        break;
    }
    case 9: {
        const char *colls[2] = {"a", "b"};
        size_t lens[2] = {1, 1};
        rc = rs_delete_many(s, colls, lens, 2, &err) < 0 ? -1 : 0;
        break;
    }
    case 10: rc = rs_expire(s, "a", 1, 60, &err); break;
    case 11: rc = rs_delete_if_value(s, "a", 1, "x", 1, &err); break;
    case 12: rc = rs_lock_acquire(s, "rigatoni:lock:db:c", "me", 10, &err); break;
    case 13: rc = rs_lock_refresh(s, "rigatoni:lock:db:c", "me", 10, &err); break;
    case 14: rc = rs_lock_release(s, "rigatoni:lock:db:c", "me", &err); break;
    case 15: rc = rs_lock_is_locked(s, "rigatoni:lock:db:c", &err); break;
    case 16: {
        char *owner = NULL;
        rc = rs_lock_owner(s, "rigatoni:lock:db:c", &owner, &err);
        if (rc == 1) rs_free(owner);
        break;
    }
    case 17: rc = rs_save_fenced(s, "a", 1, "x", 1, "rigatoni:lock:db:c", "me", &err); break;
    case 18: rc = rs_save_raw(s, "a", 1, "x", 1, 1.5, &err); break;
    default: rc = rs_ping(s, &err); break;
    }
    check_error(rc, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int op = data[0] % 20;
    size_t chunk = (size_t)data[1] % 64 + 1;
    data += 2;
    size -= 2;

    reader_only(data, size, chunk);

    pthread_mutex_lock(&lock);
    payload = data;
    payload_len = size;
    pthread_mutex_unlock(&lock);
    rs_error err;
    rs_store *s = rs_store_open(cfg, &err);
    if (!s) {
        fprintf(stderr, "fuzz_resp: the fake server did not answer PING: %s\n", err.message);
        abort();
    }
    store_op(op, s);
    rs_store_close(s);
    pthread_mutex_lock(&lock);
    payload = NULL;
    payload_len = 0;
    pthread_mutex_unlock(&lock);
    return 0;
}
