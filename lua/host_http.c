/* SPDX-License-Identifier: MIT */
/* host_http.c -- the HTTP side of `rigatoni-store serve` (scripts/serve.lua).
 *
 *   local srv = host.http_server{ listen = "127.0.0.1:9393", stall = 1 }
 *   srv:publish(body, walk_seconds)   -- a complete walk: its exposition text
 *   srv:walk_failed()                 -- keep the last body, rigatoni_up 0
 *   srv:ping_result(ok)
 *   srv:busy() ... srv:idle()         -- around each Redis call of the loop
 *   srv:wait(seconds) --> false when SIGTERM/SIGINT came
 *   srv:address() --> "127.0.0.1:9393";  srv:close()
 *
 * Design. libmicrohttpd answers on its own thread; the Lua thread walks
 * Redis and hands over complete exposition texts. A scrape takes a
 * reference to the last published text under a mutex and sends it in
 * place, behind its own few gauges: it never waits on Redis or on Lua (a
 * walk that hangs on a frozen server cannot slow a scrape), and it neither
 * allocates nor frees a text's size (a 200 KB malloc is an mmap, whose
 * page faults and munmap share the process's memory map with the walk). What a stale text
 * cannot say, the scrape computes from the state at that moment:
 * rigatoni_up is 1 only when the last walk and the last PING succeeded AND
 * no Redis call of the loop has been in flight longer than `stall` seconds
 * (the loop marks each call busy/idle, and each batch of a walk busy
 * again). So a frozen Redis turns rigatoni_up to 0 after the stall bound,
 * while the blocked call is still waiting for its command timeout.
 *
 * On a busy machine a scrape waits mostly for a CPU, not for work (on an
 * idle one a 200 KB scrape takes about 2 ms): the listening socket's send
 * buffer takes a whole exposition, so a scrape is one write rather than a
 * dozen that each wait for the reader to be scheduled and drain 16 KB.
 * (The walk's thread is not niced below this one: at load 16 that made a
 * 1,000,000-token walk take 120 s, and scrapes were no faster.)
 *
 * Only GET and HEAD (405 with Allow for the rest); /metrics and /healthz,
 * 404 for any other path. The socket is bound here, not by libmicrohttpd,
 * so "address in use" is reported as such.
 *
 * Signals are the host's (host_signal.c): SIGTERM or SIGINT stops the
 * script at its next Lua instruction and the host exits 143 or 130 (a
 * Redis call in flight ends first; a second signal exits at once).
 * srv:wait sleeps in a poll that the signal interrupts. libmicrohttpd's
 * threads start with both signals blocked, so they always reach a thread
 * of the walk (the host sends them on to the one running Lua). The server
 * itself is closed by close, __close or __gc when the Lua state closes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <microhttpd.h>

#include "host.h"
#include "rs_lua.h"

#define SERVER_MT "rigatoni_store.http_server"
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define SEND_BUFFER (1 << 20)

/* A published exposition. Scrapes send it in place (no copy, no
 * allocation of its size on the HTTP thread) and hold a reference while
 * they do; only the walk's thread frees one, once replaced and unsent. */
typedef struct snapshot {
    struct snapshot *next;   /* in the retired list */
    unsigned refs;           /* scrapes sending it; under the state's lock */
    size_t len;
    char text[];
} snapshot;

typedef struct http_state {
    pthread_mutex_t lock;
    struct snapshot *body;   /* last published exposition, or NULL */
    struct snapshot *retired; /* replaced ones a scrape may still send */
    double last_success;     /* wall clock of the last complete walk; 0: none */
    double walk_seconds;     /* how long that walk took */
    int walk_ok, ping_ok;
    double busy_since;       /* monotonic; 0 when no Redis call is in flight */
    double stall;            /* seconds a call may take before rigatoni_up is 0 */
    uint64_t walks_ok, walks_failed, scrapes;
} http_state;

typedef struct http_server {
    struct MHD_Daemon *daemon;
    int fd;                  /* the listening socket, owned until the daemon takes it */
    http_state *state;
    char address[80];
} http_server;

/* ---------------------------------------------------------------------
 * Clocks
 * ------------------------------------------------------------------ */

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------
 * Requests (libmicrohttpd's thread)
 * ------------------------------------------------------------------ */

/* One scrape's response: its own gauges, then the snapshot sent in place. */
typedef struct scrape {
    http_state *st;
    snapshot *body;
    char head[2048];
} scrape;

/* The response is done with: let go of the snapshot (the walk frees it). */
static void scrape_done(void *cls)
{
    scrape *sc = cls;
    if (sc->body) {
        pthread_mutex_lock(&sc->st->lock);
        sc->body->refs--;
        pthread_mutex_unlock(&sc->st->lock);
    }
    free(sc);
}

/* The exposition: the gauges only a scrape can know, then the last body. */
static struct MHD_Response *render_metrics(http_state *st)
{
    scrape *sc = malloc(sizeof *sc);
    if (!sc) return NULL;
    sc->st = st;
    pthread_mutex_lock(&st->lock);
    double busy_for = st->busy_since > 0 ? clock_seconds(CLOCK_MONOTONIC) - st->busy_since : 0;
    int stalled = busy_for > st->stall;
    int up = st->walk_ok && st->ping_ok && !stalled && st->last_success > 0;
    st->scrapes++;
    sc->body = st->body;
    if (sc->body) sc->body->refs++;
    int n = snprintf(
        sc->head, sizeof sc->head,
        "# HELP rigatoni_up 1 when the last walk and PING succeeded and no Redis call is stalled.\n"
        "# TYPE rigatoni_up gauge\n"
        "rigatoni_up %d\n"
        "# HELP rigatoni_exporter_last_success_timestamp_seconds When the last complete walk ended.\n"
        "# TYPE rigatoni_exporter_last_success_timestamp_seconds gauge\n"
        "rigatoni_exporter_last_success_timestamp_seconds %.3f\n"
        "# HELP rigatoni_exporter_walk_duration_seconds How long the last complete walk took.\n"
        "# TYPE rigatoni_exporter_walk_duration_seconds gauge\n"
        "rigatoni_exporter_walk_duration_seconds %.6f\n"
        "# HELP rigatoni_exporter_redis_call_seconds How long the Redis call in flight has waited (0: none).\n"
        "# TYPE rigatoni_exporter_redis_call_seconds gauge\n"
        "rigatoni_exporter_redis_call_seconds %.3f\n"
        "# HELP rigatoni_exporter_walks_total Walks ended, by result.\n"
        "# TYPE rigatoni_exporter_walks_total counter\n"
        "rigatoni_exporter_walks_total{result=\"ok\"} %llu\n"
        "rigatoni_exporter_walks_total{result=\"failed\"} %llu\n"
        "# HELP rigatoni_exporter_scrapes_total Scrapes of /metrics answered.\n"
        "# TYPE rigatoni_exporter_scrapes_total counter\n"
        "rigatoni_exporter_scrapes_total %llu\n",
        up, st->last_success, st->walk_seconds, busy_for, (unsigned long long)st->walks_ok,
        (unsigned long long)st->walks_failed, (unsigned long long)st->scrapes);
    pthread_mutex_unlock(&st->lock);
    size_t head_len = n > 0 && (size_t)n < sizeof sc->head ? (size_t)n : 0;
    struct MHD_IoVec iov[2] = {{sc->head, head_len}, {NULL, 0}};
    unsigned parts = 1;
    if (sc->body && sc->body->len) {
        iov[1].iov_base = sc->body->text;
        iov[1].iov_len = sc->body->len;
        parts = 2;
    }
    struct MHD_Response *r = MHD_create_response_from_iovec(iov, parts, scrape_done, sc);
    if (!r) scrape_done(sc);
    return r;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *text,
                             const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    http_state *st = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        /* Answered at once: a request body, if any, is not read. */
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n", "GET, HEAD");
    }
    if (strcmp(url, "/healthz") == 0) return reply(conn, MHD_HTTP_OK, "ok\n", NULL);
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n", NULL);
    struct MHD_Response *r = render_metrics(st);
    if (!r) return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---------------------------------------------------------------------
 * Listening
 * ------------------------------------------------------------------ */

/* "HOST:PORT" or "[V6]:PORT", numeric host or a name. 0, or -1 with why. */
static int split_listen(const char *text, char *host, size_t hostsize, char *port,
                        size_t portsize, char *why, size_t whysize)
{
    const char *colon;
    const char *h = text;
    size_t hlen;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') goto bad;
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) goto bad;
        hlen = (size_t)(colon - text);
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen == 0 || hlen >= hostsize || plen == 0 || plen > 5 || plen >= portsize ||
        strspn(p, "0123456789") != plen || atoi(p) > 65535)
        goto bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen + 1);
    return 0;
bad:
    snprintf(why, whysize, "listen address '%s': HOST:PORT expected (e.g. 127.0.0.1:9393, [::1]:9393), port 0-65535",
             text);
    return -1;
}

/* A bound, listening, non-blocking socket; -1 with why. */
static int open_listener(const char *host, const char *port, const char *text, int *family,
                         char *why, size_t whysize)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(why, whysize, "listen address '%s': %s", text, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* Accepted sockets inherit it: a whole exposition (~200 KB) goes
         * out in one write instead of one per drained 16 KB window, each
         * waiting on a busy CPU for the reader (capped at wmem_max). */
        int sndbuf = SEND_BUFFER;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
            err = errno;
            close(fd);
            fd = -1;
            continue;
        }
        *family = ai->ai_family;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(why, whysize, "cannot listen on %s: %s", text,
                 err == EADDRINUSE ? "address already in use" : strerror(err));
        return -1;
    }
    return fd;
}

/* The address actually bound (port 0 picks one). */
static void describe_bound(int fd, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            snprintf(buf, size, "[%s]:%d", host, ntohs(a->sin6_port));
            return;
        }
    }
    snprintf(buf, size, "%s:%d", host, port);
}

/* ---------------------------------------------------------------------
 * The Lua object
 * ------------------------------------------------------------------ */

static void server_close(http_server *s)
{
    if (s->daemon) {
        MHD_stop_daemon(s->daemon);   /* joins its thread; the socket is closed with it */
        s->daemon = NULL;
        s->fd = -1;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    if (s->state) {
        pthread_mutex_destroy(&s->state->lock);
        free(s->state->body);   /* the daemon is stopped: no scrape holds one */
        for (snapshot *o = s->state->retired, *next; o; o = next) {
            next = o->next;
            free(o);
        }
        free(s->state);
        s->state = NULL;
    }
}

static http_server *check_server(lua_State *L)
{
    http_server *s = luaL_checkudata(L, 1, SERVER_MT);
    if (!s->state) luaL_error(L, "attempt to use a closed http server");
    return s;
}

static int l_close(lua_State *L)
{
    server_close(luaL_checkudata(L, 1, SERVER_MT));
    return 0;
}

/* srv:publish(body, walk_seconds) -- the text of a complete walk. The
 * one it replaces is retired, and freed here (on this thread) once no
 * scrape sends it any more. */
static int l_publish(lua_State *L)
{
    http_server *s = check_server(L);
    size_t len;
    const char *body = luaL_checklstring(L, 2, &len);
    double seconds = luaL_checknumber(L, 3);
    snapshot *snap = malloc(sizeof *snap + len + 1);
    if (!snap) return luaL_error(L, "out of memory");
    snap->next = NULL;
    snap->refs = 0;
    snap->len = len;
    memcpy(snap->text, body, len + 1);
    http_state *st = s->state;
    snapshot *unsent = NULL;
    pthread_mutex_lock(&st->lock);
    if (st->body) {
        st->body->next = st->retired;
        st->retired = st->body;
    }
    st->body = snap;
    st->last_success = clock_seconds(CLOCK_REALTIME);
    st->walk_seconds = seconds;
    st->walk_ok = 1;
    st->walks_ok++;
    for (snapshot **p = &st->retired; *p;) {
        snapshot *o = *p;
        if (o->refs == 0) {
            *p = o->next;
            o->next = unsent;
            unsent = o;
        } else {
            p = &o->next;
        }
    }
    pthread_mutex_unlock(&st->lock);
    while (unsent) {
        snapshot *next = unsent->next;
        free(unsent);
        unsent = next;
    }
    return 0;
}

/* srv:walk_failed() -- the last body stays, marked stale (rigatoni_up 0). */
static int l_walk_failed(lua_State *L)
{
    http_server *s = check_server(L);
    pthread_mutex_lock(&s->state->lock);
    s->state->walk_ok = 0;
    s->state->walks_failed++;
    pthread_mutex_unlock(&s->state->lock);
    return 0;
}

static int l_ping_result(lua_State *L)
{
    http_server *s = check_server(L);
    int ok = lua_toboolean(L, 2);
    pthread_mutex_lock(&s->state->lock);
    s->state->ping_ok = ok;
    pthread_mutex_unlock(&s->state->lock);
    return 0;
}

/* srv:busy() -- a Redis call starts (or a walk got a batch: restart the clock). */
static int l_busy(lua_State *L)
{
    http_server *s = check_server(L);
    double t = clock_seconds(CLOCK_MONOTONIC);
    pthread_mutex_lock(&s->state->lock);
    s->state->busy_since = t;
    pthread_mutex_unlock(&s->state->lock);
    return 0;
}

static int l_idle(lua_State *L)
{
    http_server *s = check_server(L);
    pthread_mutex_lock(&s->state->lock);
    s->state->busy_since = 0;
    pthread_mutex_unlock(&s->state->lock);
    return 0;
}

/* srv:wait(seconds) --> true after the time, false when a stop signal
 * came (the host's hook then raises at the script's next instruction). */
static int l_wait(lua_State *L)
{
    check_server(L);
    double seconds = luaL_checknumber(L, 2);
    double deadline = clock_seconds(CLOCK_MONOTONIC) + seconds;
    while (!host_signal_caught()) {
        double left = deadline - clock_seconds(CLOCK_MONOTONIC);
        if (left <= 0) break;
        int ms = left * 1000 > 60000 ? 60000 : (int)(left * 1000) + 1;
        poll(NULL, 0, ms);   /* EINTR on a signal */
    }
    lua_pushboolean(L, !host_signal_caught());
    return 1;
}

static int l_address(lua_State *L)
{
    lua_pushstring(L, check_server(L)->address);
    return 1;
}

/* host.http_server{listen = "HOST:PORT", stall = seconds} --> server, or
 * nil, "usage" (a malformed address) | "listen" (cannot listen), message:
 * the script turns them into its exit status. */
static int l_http_server(lua_State *L)
{
    static const char *const known[] = {"listen", "stall", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    rs_lua_check_options(L, 1, known);
    const char *listen_text = "127.0.0.1:9393";
    if (rs_lua_opt_field(L, 1, "listen", RS_LUA_TCSTRING)) listen_text = lua_tostring(L, -1);
    double stall = 1;
    if (rs_lua_opt_field(L, 1, "stall", LUA_TNUMBER)) stall = lua_tonumber(L, -1);
    luaL_argcheck(L, stall > 0, 1, "stall must be positive");

    char host[256], port[8], why[512];
    if (split_listen(listen_text, host, sizeof host, port, sizeof port, why, sizeof why) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "usage");
        lua_pushstring(L, why);
        return 3;
    }

    /* Closed state first: a raised error below leaves nothing dangling. */
    http_server *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->fd = -1;
    luaL_setmetatable(L, SERVER_MT);
    if (!(s->state = calloc(1, sizeof *s->state))) return luaL_error(L, "out of memory");
    pthread_mutex_init(&s->state->lock, NULL);
    s->state->stall = stall;
    s->state->ping_ok = 1;

    int family = AF_INET;
    if ((s->fd = open_listener(host, port, listen_text, &family, why, sizeof why)) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "listen");
        lua_pushstring(L, why);
        return 3;
    }
    describe_bound(s->fd, s->address, sizeof s->address);

    /* libmicrohttpd's threads never take the stop signals. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    if (family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s->state,
                                 MHD_OPTION_LISTEN_SOCKET, s->fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                 MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!s->daemon) {
        lua_pushnil(L);
        lua_pushliteral(L, "listen");
        lua_pushfstring(L, "cannot serve HTTP on %s", s->address);
        return 3;
    }
    return 1;
}

static const luaL_Reg server_methods[] = {
    {"publish", l_publish},
    {"walk_failed", l_walk_failed},
    {"ping_result", l_ping_result},
    {"busy", l_busy},
    {"idle", l_idle},
    {"wait", l_wait},
    {"address", l_address},
    {"close", l_close},
    {NULL, NULL},
};

void host_http_open(lua_State *L)
{
    if (luaL_newmetatable(L, SERVER_MT)) {
        luaL_newlib(L, server_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_http_server);
}
