/* faultproxy.c -- a loopback TCP proxy that misbehaves on command, for
 * spec/faults_spec.lua (built by spec/support/proxy.lua into the test dir).
 *
 *   faultproxy TARGET_PORT CONTROL_FILE PORT_FILE OWNER_PID
 *
 * Listens on 127.0.0.1 (a port the kernel picks, written to PORT_FILE) and
 * relays every connection to 127.0.0.1:TARGET_PORT. Before relaying a chunk
 * of the server's reply it reads CONTROL_FILE, one word and a number:
 *   pass        relay as is
 *   delay S     wait S seconds, then relay (everything waits: one thread)
 *   cut N       relay N bytes of the chunk, then close both sides
 *               (a connection lost in the middle of a reply)
 *   stall N     relay N bytes, then relay nothing more on this connection
 *               and keep it open (a reply that stops half-way)
 *   stall_once N  stall for this one chunk, then the mode turns to pass
 *               (a request that ran but whose reply was lost, once)
 *   cut_lines_once N [WORD]  relay N more reply lines (CRLF-ended: one
 *               line per simple reply, such as +OK or -NOPERM), then close
 *               both sides and turn to pass (a pipeline cut after N
 *               replies); with WORD, only on the connection whose request
 *               next contains WORD, counted from that request's replies
 *   nest_once N  wrap the next reply chunk in N one-element arrays
 *               ("*1\r\n" N times before it), then pass (a reply nested
 *               deeper than any real server sends)
 *   reset_once  reset the next client connection when its first bytes
 *               arrive (none relayed: a TLS handshake cut), then pass
 * and one mode that applies to requests (client to server) instead:
 *   hold S      hold each request S seconds before relaying it, as bytes
 *               still queued in the client's kernel would wait; when the
 *               client resets the connection (SO_LINGER 0) the held bytes
 *               are dropped, as a reset discards that queue; when it closes
 *               normally they are still delivered, then the pair closes.
 *   hold_once S  hold the next request chunk so, then the mode turns to
 *               pass (a request that never ran, its connection reset)
 * Otherwise requests pass. A lost reply can also be aimed at one request:
 * while a file CONTROL_FILE.match<N> (N = 0..7, one per test thread)
 * exists, the first request chunk that contains its bytes is relayed, the
 * file is removed, and the server's reply to it (with everything after it
 * on that connection) is swallowed: a command that ran and whose reply was
 * lost, on exactly the operation a test chose. When that reply arrives
 * and is not an error, the bytes are written to CONTROL_FILE.match<N>.ran:
 * proof that it ran. When CONTROL_FILE.match<N>.keep holds a number K
 * (written before the match file), K reply lines are relayed first and
 * then both sides are closed instead: a pipeline cut after K replies, on
 * exactly the request a test chose.
 * The number of open client connections is written to PORT_FILE.conns
 * after every change. The proxy exits when OWNER_PID is gone, or after
 * 300 s, so a crashed spec never leaves it behind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1          /* memmem */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 64
#define MAX_MATCH 8

typedef struct pair {
    int client, server;
    int stalled;
    int armed;                  /* cut_lines_once WORD: this pair sent WORD */
    char *held;                 /* requests waiting for release_at (hold) */
    size_t held_len;
    double release_at;
    int client_closed;          /* FIN seen: deliver what is held, then go */
    int reset_on_data;          /* reset_once: reset when the client speaks */
    int drop_reply;             /* matched CONTROL_FILE.match<drop_reply - 1> */
    size_t keep_lines;          /* .keep K: K + 1 (0: swallow the reply) */
    char pattern[512];          /* its bytes, for the .ran file */
    size_t pattern_len;
} pair;

static pair pairs[MAX_PAIRS];
static int npairs;
static size_t lines_relayed;    /* reply lines relayed in cut_lines_once mode */
static const char *control_path, *port_path;

static char arm_word[128];      /* the control file's third word, or "" */

static void read_control(char *mode, size_t size, double *arg)
{
    snprintf(mode, size, "pass");
    *arg = 0;
    arm_word[0] = '\0';
    FILE *f = fopen(control_path, "r");
    if (!f) return;
    char word[32];
    double v = 0;
    int n = fscanf(f, "%31s %lf %127s", word, &v, arm_word);
    fclose(f);
    if (n >= 1) snprintf(mode, size, "%s", word);
    if (n >= 2) *arg = v;
    if (n < 3) arm_word[0] = '\0';
}

static void write_conns(void)
{
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s.conns", port_path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%d\n", npairs);
    fclose(f);
    rename(tmp, path);
}

/* Removes the first CONTROL_FILE.match<N> whose bytes occur in this
 * request chunk, and notes it in the pair. */
static void match_request(pair *p, const char *buf, size_t n)
{
    for (int m = 0; m < MAX_MATCH; m++) {
        char path[520];
        snprintf(path, sizeof path, "%s.match%d", control_path, m);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t len = fread(p->pattern, 1, sizeof p->pattern, f);
        fclose(f);
        if (len > 0 && len <= n && memmem(buf, n, p->pattern, len)) {
            unlink(path);
            p->drop_reply = m + 1;
            p->pattern_len = len;
            strcat(path, ".keep");
            unsigned long keep = 0;
            if ((f = fopen(path, "r"))) {
                if (fscanf(f, "%lu", &keep) == 1) p->keep_lines = keep + 1;
                fclose(f);
                unlink(path);
            }
            return;
        }
    }
}

/* The reply to a matched request arrived (and is swallowed). */
static void note_ran(const pair *p)
{
    char path[520], tmp[530];
    snprintf(path, sizeof path, "%s.match%d.ran", control_path, p->drop_reply - 1);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    fwrite(p->pattern, 1, p->pattern_len, f);
    fclose(f);
    rename(tmp, path);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_mode(const char *mode)
{
    char tmp[520];
    snprintf(tmp, sizeof tmp, "%s.tmp", control_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%s\n", mode);
    fclose(f);
    rename(tmp, control_path);
}

static void drop_pair(int i)
{
    close(pairs[i].client);
    close(pairs[i].server);
    free(pairs[i].held);
    pairs[i] = pairs[--npairs];
    write_conns();
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int connect_target(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* One chunk from `from` to `to`. Returns -1 when the pair must go. */
static int relay(int i, int from_server)
{
    char buf[65536];
    int from = from_server ? pairs[i].server : pairs[i].client;
    int to = from_server ? pairs[i].client : pairs[i].server;
    ssize_t n = recv(from, buf, sizeof buf, 0);
    char mode[32];
    double arg;
    if (!from_server) {
        pair *p = &pairs[i];
        if (n == 0 && p->held_len > 0) {        /* a normal close: still delivered */
            p->client_closed = 1;
            return 0;
        }
        if (n <= 0) return -1;                  /* a reset drops what is held */
        if (p->reset_on_data) {
            struct linger reset = {1, 0};
            setsockopt(p->client, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            return -1;
        }
        if (!p->drop_reply) match_request(p, buf, (size_t)n);
        read_control(mode, sizeof mode, &arg);
        if (strcmp(mode, "cut_lines_once") == 0 && arm_word[0] && !p->armed &&
            memmem(buf, (size_t)n, arm_word, strlen(arm_word))) {
            p->armed = 1;
            lines_relayed = 0;
        }
        int hold = strcmp(mode, "hold") == 0 || strcmp(mode, "hold_once") == 0;
        if (!hold && p->held_len == 0) return send_all(to, buf, (size_t)n);
        if (strcmp(mode, "hold_once") == 0) set_mode("pass");
        char *more = realloc(p->held, p->held_len + (size_t)n);
        if (!more) return -1;
        memcpy(more + p->held_len, buf, (size_t)n);
        if (p->held_len == 0) p->release_at = now() + arg;
        p->held = more;
        p->held_len += (size_t)n;
        return 0;
    }
    if (n <= 0) return -1;
    if (pairs[i].drop_reply && pairs[i].keep_lines) {      /* an aimed cut */
        size_t keep = 0;
        while (pairs[i].keep_lines > 1 && keep < (size_t)n)
            if (buf[keep++] == '\n') pairs[i].keep_lines--;
        if (send_all(to, buf, keep) < 0 || pairs[i].keep_lines == 1) return -1;
        return 0;
    }
    if (pairs[i].drop_reply && !pairs[i].stalled) {
        if (buf[0] != '-') note_ran(&pairs[i]);     /* an error: it did not run */
        pairs[i].stalled = 1;
    }
    if (pairs[i].stalled) return 0;             /* swallowed */
    read_control(mode, sizeof mode, &arg);
    if (strcmp(mode, "delay") == 0) {
        struct timespec ts = {(time_t)arg, (long)((arg - (double)(time_t)arg) * 1e9)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
        return send_all(to, buf, (size_t)n);
    }
    if (strcmp(mode, "cut_lines_once") == 0 && arm_word[0] && !pairs[i].armed)
        return send_all(to, buf, (size_t)n);    /* not the connection aimed at */
    if (strcmp(mode, "cut_lines_once") == 0) {
        size_t want = arg > 0 ? (size_t)arg : 0, keep = want == 0 ? 0 : (size_t)n;
        int done = want == 0;
        for (size_t k = 0; !done && k < (size_t)n; k++)
            if (buf[k] == '\n' && ++lines_relayed >= want) keep = k + 1, done = 1;
        if (send_all(to, buf, done ? keep : (size_t)n) < 0) return -1;
        if (!done) return 0;
        lines_relayed = 0;
        set_mode("pass");
        return -1;
    }
    lines_relayed = 0;
    if (strcmp(mode, "nest_once") == 0) {
        set_mode("pass");
        size_t levels = arg > 0 ? (size_t)arg : 0;
        char *nest = malloc(levels * 4 + 1);
        if (!nest) return -1;
        for (size_t k = 0; k < levels; k++) memcpy(nest + k * 4, "*1\r\n", 4);
        int rc = send_all(to, nest, levels * 4);
        free(nest);
        return rc < 0 ? -1 : send_all(to, buf, (size_t)n);
    }
    if (strcmp(mode, "cut") == 0 || strncmp(mode, "stall", 5) == 0) {
        size_t keep = arg < (double)n ? (size_t)arg : (size_t)n;
        if (send_all(to, buf, keep) < 0) return -1;
        if (mode[0] == 'c') return -1;
        pairs[i].stalled = 1;
        if (strcmp(mode, "stall_once") == 0) set_mode("pass");
        return 0;
    }
    return send_all(to, buf, (size_t)n);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: faultproxy TARGET_PORT CONTROL_FILE PORT_FILE OWNER_PID\n");
        return 2;
    }
    int target = atoi(argv[1]);
    control_path = argv[2];
    port_path = argv[3];
    pid_t owner = (pid_t)atoi(argv[4]);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
        perror("faultproxy: listen");
        return 1;
    }
    write_conns();
    char tmp[520];
    snprintf(tmp, sizeof tmp, "%s.tmp", port_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return 1;
    fprintf(f, "%d\n", ntohs(a.sin_port));
    fclose(f);
    rename(tmp, port_path);

    time_t started = time(NULL);
    for (;;) {
        if (kill(owner, 0) < 0 && errno == ESRCH) return 0;
        if (time(NULL) - started > 300) return 0;
        struct pollfd fds[1 + 2 * MAX_PAIRS];
        int nfds = 0;
        fds[nfds++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        /* Held requests whose time has come go out first. */
        int wait_ms = 200;
        double t = now();
        for (int i = npairs - 1; i >= 0; i--) {
            pair *p = &pairs[i];
            if (p->held_len == 0) {
                if (p->client_closed) drop_pair(i);
                continue;
            }
            if (t >= p->release_at) {
                int failed = send_all(p->server, p->held, p->held_len) < 0;
                free(p->held);
                p->held = NULL;
                p->held_len = 0;
                /* Give the server a moment to read it before the close. */
                if (p->client_closed && !failed) usleep(200000);
                if (failed || p->client_closed) drop_pair(i);
            } else if ((p->release_at - t) * 1000 < wait_ms) {
                wait_ms = (int)((p->release_at - t) * 1000) + 1;
            }
        }
        nfds = 1;
        for (int i = 0; i < npairs; i++) {
            /* A closed client has nothing more to say: poll it no more. */
            fds[nfds++] = (struct pollfd){.fd = pairs[i].client_closed ? -1 : pairs[i].client,
                                          .events = POLLIN};
            fds[nfds++] = (struct pollfd){.fd = pairs[i].server, .events = POLLIN};
        }
        int ready = poll(fds, (nfds_t)nfds, wait_ms);
        if (ready <= 0) continue;
        /* Pairs first, from the last, so that dropping one keeps the
         * indexes of those not yet visited. */
        for (int i = npairs - 1; i >= 0; i--) {
            short cev = fds[1 + 2 * i].revents, sev = fds[2 + 2 * i].revents;
            int gone = 0;
            if (!gone && (sev & (POLLIN | POLLHUP | POLLERR))) gone = relay(i, 1) < 0;
            if (!gone && (cev & (POLLIN | POLLHUP | POLLERR))) gone = relay(i, 0) < 0;
            if (gone) drop_pair(i);
        }
        if (fds[0].revents & POLLIN) {
            int c = accept(lfd, NULL, NULL);
            if (c < 0) continue;
            char mode[32];
            double arg;
            read_control(mode, sizeof mode, &arg);
            int reset = strcmp(mode, "reset_once") == 0;
            if (reset) set_mode("pass");
            int s = connect_target(target);
            if (s < 0 || npairs == MAX_PAIRS) {
                close(c);
                if (s >= 0) close(s);
                continue;
            }
            pairs[npairs++] = (pair){.client = c, .server = s, .reset_on_data = reset};
            write_conns();
        }
    }
}
