/* SPDX-License-Identifier: MIT */
/* test_support.h -- a tiny harness for the C tests: checks that count,
 * and a real redis-server started on a free loopback port.
 *
 * The server runs in a temp directory under $RS_TEST_ROOT (or /tmp), is
 * tracked by pid, and is killed at exit even when a check fails.
 */
#ifndef RS_TEST_SUPPORT_H
#define RS_TEST_SUPPORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rigatoni_store.h"

static int t_failures, t_checks;

#define CHECK(cond)                                                              \
    do {                                                                         \
        t_checks++;                                                              \
        if (!(cond)) {                                                           \
            t_failures++;                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_STR(a, b)                                                          \
    do {                                                                         \
        const char *a_ = (a), *b_ = (b);                                         \
        t_checks++;                                                              \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                 \
            t_failures++;                                                        \
            fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, __LINE__, \
                    b_ ? b_ : "(null)", a_ ? a_ : "(null)");                     \
        }                                                                        \
    } while (0)

static pid_t t_server_pid;
static char t_server_dir[256];

static inline void t_stop_server(void)
{
    if (t_server_pid > 0) {
        kill(t_server_pid, SIGKILL);
        waitpid(t_server_pid, NULL, 0);
        t_server_pid = 0;
    }
}

static inline void t_on_signal(int sig)
{
    t_stop_server();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A port that was free a moment ago (the kernel picks it). */
static inline int t_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("t_free_port");
        exit(2);
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts redis-server on `port` in t_server_dir with extra args
 * (NULL-terminated); 1 when it answers PING, 0 when it could not start. */
static inline int t_spawn_server(int port, const char *const *extra)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    const char *argv[32] = {"redis-server", "--port", portbuf, "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", t_server_dir,
                            "--daemonize", "no", "--loglevel", "warning"};
    int argc = 15;
    for (int i = 0; extra && extra[i] && argc < 31; i++) argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        char log[300];
        snprintf(log, sizeof log, "%s/redis.log", t_server_dir);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr)) _exit(127);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    t_server_pid = pid;
    /* Ready when a PING answers; gone when the child exited (port taken). */
    for (int i = 0; i < 100; i++) {
        usleep(50000);
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            t_server_pid = 0;
            return 0;
        }
        char cmd[128];
        snprintf(cmd, sizeof cmd, "redis-cli -p %d PING 2>/dev/null | grep -q PONG", port);
        if (system(cmd) == 0) return 1;
    }
    t_stop_server();
    return 0;
}

/* Starts redis-server with extra args (NULL-terminated); returns the port. */
static inline int t_start_server(const char *const *extra)
{
    const char *root = getenv("RS_TEST_ROOT");
    snprintf(t_server_dir, sizeof t_server_dir, "%s/ctest.XXXXXX", root ? root : "/tmp");
    if (!mkdtemp(t_server_dir)) {
        perror("mkdtemp");
        exit(2);
    }
    atexit(t_stop_server);
    signal(SIGINT, t_on_signal);
    signal(SIGTERM, t_on_signal);
    signal(SIGABRT, t_on_signal);
    for (int tries = 0; tries < 5; tries++) {
        int port = t_free_port();
        if (t_spawn_server(port, extra)) return port;
    }
    fprintf(stderr, "could not start redis-server (log in %s)\n", t_server_dir);
    exit(2);
}

/* A config for the loopback server on `port`, AUTH `password` when not
 * NULL; NULL when out of memory. */
static inline rs_config *t_config(int port, const char *password)
{
    char url[160];
    if (password) snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", password, port);
    else snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rs_config *cfg = rs_config_new();
    if (cfg && rs_config_set(cfg, "url", url, NULL) < 0) {
        rs_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Runs EVAL of a script that returns an error reply, through the store's
 * whole command path: the error it gives (kind, retryable, attempts). */
static inline rs_error t_eval_error(rs_store *store, const char *script)
{
    const char *argv[3] = {"EVAL", script, "0"};
    size_t argvlen[3] = {4, strlen(script), 1};
    char *out = NULL;
    size_t len;
    rs_error err = {0};
    CHECK(rs_command(store, 3, argv, argvlen, &out, &len, &err) == -1);
    rs_free(out);
    return err;
}

/* Monotonic seconds, for the tests' bounds. */
static inline double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server is never left stopped (SIGSTOP), whatever path a test exits by. */
static inline void t_thaw(void)
{
    if (t_server_pid > 0) kill(t_server_pid, SIGCONT);
}

static inline void t_on_fatal(int sig)
{
    t_thaw();
    t_on_signal(sig);
}

/* A loopback port that listens and never accepts: the kernel completes
 * the handshake and nothing ever answers. */
static inline int t_silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("t_silent_listener");
        exit(2);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static inline int t_report(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, t_checks, t_failures);
    return t_failures ? 1 : 0;
}

#endif
