/* SPDX-License-Identifier: MIT */
/* test_sentinel.h -- a Sentinel set-up for the C tests: the server of
 * test_support.h as master, one replica and three redis-sentinel
 * processes on free loopback ports, driven through redis-cli.
 *
 * Every process is tracked by pid and killed at exit. t_sentinel_failover
 * forces a failover and waits until every sentinel names the new master.
 */
#ifndef RS_TEST_SENTINEL_H
#define RS_TEST_SENTINEL_H

#include <time.h>

#include "test_support.h"

static int t_sentinel_port[3];
static pid_t t_sentinel_pid[3], t_replica_pid;
static int t_replica_port;

static inline void t_sentinel_stop_all(void)
{
    for (int i = 0; i < 3; i++)
        if (t_sentinel_pid[i] > 0) {
            kill(t_sentinel_pid[i], SIGKILL);
            waitpid(t_sentinel_pid[i], NULL, 0);
            t_sentinel_pid[i] = 0;
        }
    if (t_replica_pid > 0) {
        kill(t_replica_pid, SIGKILL);
        waitpid(t_replica_pid, NULL, 0);
        t_replica_pid = 0;
    }
}

/* argv (NULL-terminated) in the background, output to the set-up's log. */
static inline pid_t t_spawn(const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        char log[300];
        snprintf(log, sizeof log, "%s/sentinel-setup.log", t_server_dir);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr)) _exit(127);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* redis-cli -p port ARGS (words without quotes): its output, trimmed of
 * nothing (one line per reply element). */
static inline void t_cli(int port, const char *args, char *out, size_t size)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d %s 2>/dev/null", port, args);
    out[0] = '\0';
    FILE *f = popen(cmd, "r");
    if (!f) return;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    pclose(f);
}

/* The master port every sentinel names, or 0 while they differ. */
static inline int t_agreed_master(void)
{
    int port = 0;
    for (int i = 0; i < 3; i++) {
        char out[256], host[64];
        int p = 0;
        t_cli(t_sentinel_port[i], "SENTINEL get-master-addr-by-name mymaster", out, sizeof out);
        if (sscanf(out, "%63s %d", host, &p) != 2 || p <= 0 || (port && p != port)) return 0;
        port = p;
    }
    return port;
}

/* The sentinels agree and see everyone; the master's replica is online. */
static inline int t_sentinel_settled(void)
{
    int port = t_agreed_master();
    if (!port) return 0;
    char out[4096];
    for (int i = 0; i < 3; i++) {
        t_cli(t_sentinel_port[i], "SENTINEL master mymaster", out, sizeof out);
        if (!strstr(out, "num-slaves\n1\n") || !strstr(out, "num-other-sentinels\n2\n") ||
            !strstr(out, "flags\nmaster\n"))
            return 0;
    }
    t_cli(port, "INFO replication", out, sizeof out);
    return strstr(out, "role:master") && strstr(out, "state=online");
}

/* Sentinel's hello period (ms, SENTINEL DEBUG): the sentinels find each
 * other by hellos, every 2 s by default. */
static inline void t_sentinel_publish_period(int ms)
{
    char args[64], out[64];
    snprintf(args, sizeof args, "SENTINEL DEBUG publish-period %d", ms);
    for (int i = 0; i < 3; i++) t_cli(t_sentinel_port[i], args, out, sizeof out);
}

/* Settled, with quick hellos while the sentinels start. */
static inline int t_sentinel_started(void)
{
    t_sentinel_publish_period(200);
    return t_sentinel_settled();
}

static inline int t_wait_cond(int (*cond)(void), double timeout)
{
    double deadline = t_now() + timeout;
    while (!cond()) {
        if (t_now() > deadline) return 0;
        usleep(50000);
    }
    return 1;
}

/* A replica of the server on `master_port` and three sentinels watching
 * it (down-after 1 s, the given failover-timeout); returns when the set-up
 * has settled (exit 2 when it does not within a minute), the sentinels'
 * own timing restored. */
static inline void t_sentinel_setup(int master_port, int failover_timeout_ms)
{
    char rport[16], mport[16];
    t_replica_port = t_free_port();
    snprintf(rport, sizeof rport, "%d", t_replica_port);
    snprintf(mport, sizeof mport, "%d", master_port);
    const char *rargv[] = {"redis-server", "--port", rport, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", t_server_dir, "--dbfilename",
                           "replica.rdb", "--replicaof", "127.0.0.1", mport, "--daemonize", "no",
                           "--repl-diskless-sync-delay", "0", NULL};
    t_replica_pid = t_spawn(rargv);
    atexit(t_sentinel_stop_all);
    for (int i = 0; i < 3; i++) {
        char conf[300], port[16];
        t_sentinel_port[i] = t_free_port();
        snprintf(port, sizeof port, "%d", t_sentinel_port[i]);
        snprintf(conf, sizeof conf, "%s/sentinel%d.conf", t_server_dir, i);
        FILE *f = fopen(conf, "w");
        if (!f) {
            perror(conf);
            exit(2);
        }
        fprintf(f, "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
                   "sentinel resolve-hostnames no\n"
                   "sentinel monitor mymaster 127.0.0.1 %d 2\n"
                   "sentinel down-after-milliseconds mymaster 1000\n"
                   "sentinel failover-timeout mymaster %d\n"
                   "sentinel parallel-syncs mymaster 1\n",
                t_sentinel_port[i], t_server_dir, master_port, failover_timeout_ms);
        fclose(f);
        const char *sargv[] = {"redis-sentinel", conf, NULL};
        t_sentinel_pid[i] = t_spawn(sargv);
    }
    if (!t_wait_cond(t_sentinel_started, 60)) {
        fprintf(stderr, "the sentinels did not settle (logs in %s)\n", t_server_dir);
        exit(2);
    }
    t_sentinel_publish_period(2000);
}

/* The URL of the three sentinels. */
static inline void t_sentinel_url(char *url, size_t size)
{
    snprintf(url, size, "redis://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", t_sentinel_port[0],
             t_sentinel_port[1], t_sentinel_port[2]);
}

static int t_failover_old;
static inline int t_switched(void)
{
    int p = t_agreed_master();
    return p && p != t_failover_old;
}

/* SENTINEL FAILOVER through sentinel `via`; returns the new master's port
 * once every sentinel names it, 0 when they do not within a minute. */
static inline int t_sentinel_failover(int via)
{
    char out[256];
    t_failover_old = t_agreed_master();
    t_cli(t_sentinel_port[via], "SENTINEL FAILOVER mymaster", out, sizeof out);
    return t_wait_cond(t_switched, 60) ? t_agreed_master() : 0;
}

#endif
