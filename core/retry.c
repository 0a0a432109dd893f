/* SPDX-License-Identifier: MIT */
/* retry.c -- which failures are worth another attempt, and when.
 *
 * Retryable: I/O errors, timeouts, lost connections, and the server replies
 * that describe a passing state (LOADING, BUSY, TRYAGAIN, MASTERDOWN,
 * READONLY, CLUSTERDOWN, and "max number of clients reached", which a
 * connection storm causes and its end cures). Everything deterministic (bad
 * auth, WRONGTYPE, OOM, syntax) fails at once: repeating it would only delay
 * the error.
 * An error reply is classified once, by its first word, into rs_reply_class
 * (err->reply); callers switch on that, never on the message text.
 * Delays grow as base * 2^(n-1), capped, with jitter so that many clients
 * restarted together do not hammer a recovering server in lockstep.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "retry.h"
#include "clock.h"
#include "closing.h"
#include "config.h"
#include "error.h"
#include "metrics.h"
#include "store_state.h"


void rs_error_from_context(rs_error *err, const redisContext *ctx)
{
    if (!ctx) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory creating a connection");
        return;
    }
    /* A blocking read past SO_RCVTIMEO fails with EAGAIN, which hiredis
     * reports as an I/O error carrying strerror(errno): a timeout. */
    int timed_out = ctx->err == REDIS_ERR_TIMEOUT ||
                    (ctx->err == REDIS_ERR_IO && strcmp(ctx->errstr, strerror(EAGAIN)) == 0);
    if (timed_out) {
        /* Which wait ran out: connecting, or a reply on a connection. */
        int connected = (ctx->flags & REDIS_CONNECTED) != 0;
        const struct timeval *tv = connected ? ctx->command_timeout : ctx->connect_timeout;
        char where[300] = "";
        if (ctx->tcp.host)         /* NULL on a Unix socket */
            snprintf(where, sizeof where, " %s %s:%d", connected ? "from" : "to", ctx->tcp.host,
                     ctx->tcp.port);
        if (tv)
            rs_error_set(err, RS_ERR_TIMEOUT, 1, "timed out after %gs %s%s", (double)tv->tv_sec +
                         (double)tv->tv_usec / 1e6, connected ? "waiting for a reply" : "connecting",
                         where);
        else
            rs_error_set(err, RS_ERR_TIMEOUT, 1, "timed out %s%s",
                         connected ? "waiting for a reply" : "connecting", where);
        return;
    }
    switch (ctx->err) {
    case REDIS_ERR_IO:
        rs_error_set(err, RS_ERR_CONNECTION, 1, "I/O error: %s", ctx->errstr);
        return;
    case REDIS_ERR_EOF:
        rs_error_set(err, RS_ERR_CONNECTION, 1, "connection closed by server");
        return;
    case REDIS_ERR_PROTOCOL:
        rs_error_set(err, RS_ERR_CONNECTION, 0, "protocol error: %s", ctx->errstr);
        return;
    case REDIS_ERR_OOM:
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return;
    default:
        rs_error_set(err, RS_ERR_CONNECTION, 1, "connection error: %s", ctx->errstr);
    }
}

static int starts_with_word(const char *str, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(str, word, n) == 0 && (len == n || str[n] == ' ');
}

rs_reply_class rs_reply_classify(const char *str, size_t len)
{
    static const struct {
        const char *word;
        rs_reply_class cls;
    } words[] = {
        {"MOVED", RS_REPLY_MOVED},       {"ASK", RS_REPLY_ASK},
        {"NOSCRIPT", RS_REPLY_NOSCRIPT}, {"READONLY", RS_REPLY_READONLY},
        {"MASTERDOWN", RS_REPLY_MASTERDOWN}, {"LOADING", RS_REPLY_LOADING},
        {"BUSY", RS_REPLY_BUSY},         {"TRYAGAIN", RS_REPLY_TRYAGAIN},
        {"CLUSTERDOWN", RS_REPLY_CLUSTERDOWN}, {"OOM", RS_REPLY_OOM},
        {"NOAUTH", RS_REPLY_NOAUTH},     {"WRONGPASS", RS_REPLY_NOAUTH},
        {"NOPERM", RS_REPLY_NOPERM},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (starts_with_word(str, len, words[i].word)) return words[i].cls;
    /* Plain "ERR" replies that still mean something: AUTH against a server
     * without a password, and a connection storm's refusal. */
    static const char maxclients[] = "ERR max number of clients reached";
    if (len >= sizeof maxclients - 1 && memcmp(str, maxclients, sizeof maxclients - 1) == 0)
        return RS_REPLY_MAXCLIENTS;
    if (len > 4 && memcmp(str, "ERR ", 4) == 0 &&
        (memmem(str, len, "invalid password", 16) ||
         memmem(str, len, "AUTH <password> called", 22)))
        return RS_REPLY_NOAUTH;
    return RS_REPLY_OTHER;
}

void rs_error_from_reply(rs_error *err, const char *str, size_t len)
{
    int shown = len > 400 ? 400 : (int)len;
    rs_reply_class cls = rs_reply_classify(str, len);
    switch (cls) {
    case RS_REPLY_NOAUTH:
    case RS_REPLY_NOPERM:
        rs_error_set(err, RS_ERR_AUTH, 0, "server refused: %.*s", shown, str);
        break;
    case RS_REPLY_LOADING:
    case RS_REPLY_BUSY:
    case RS_REPLY_TRYAGAIN:
    case RS_REPLY_MASTERDOWN:
    case RS_REPLY_READONLY:
    case RS_REPLY_CLUSTERDOWN:
    case RS_REPLY_MAXCLIENTS:
        rs_error_set(err, RS_ERR_SERVER, 1, "server busy: %.*s", shown, str);
        break;
    default:
        rs_error_set(err, RS_ERR_SERVER, 0, "server error: %.*s", shown, str);
    }
    if (err) err->reply = cls;
}

int rs_retry_wait(rs_store *store, const char *what, int attempt, const rs_error *last)
{
    const rs_config *cfg = store->cfg;
    /* A pool timeout is not retried: waiting again would multiply the wait. */
    if (!last->retryable || last->kind == RS_ERR_POOL || attempt > cfg->max_retries) return 0;
    /* A store closing makes no new attempt (closing.c): the call fails
     * with the failure it had. */
    if (rs_closing_is_set(store->closing)) return 0;
    double delay = rs_retry_delay(cfg, attempt);
    rs_note_retry(cfg, what, attempt, cfg->max_retries + 1, last, delay);
    if (rs_closing_sleep(store->closing, delay) == 0) return 1;
    rs_note_retry_cancelled(cfg, what);       /* only retries that happen count */
    return 0;
}

double rs_retry_delay(const rs_config *cfg, int n)
{
    double d = cfg->retry_base_delay * ldexp(1.0, n > 1 ? n - 1 : 0);
    if (d > cfg->retry_max_delay) d = cfg->retry_max_delay;
    /* Jitter in [50%, 100%]; rand quality is irrelevant here. */
    /* Through 64 bits: microseconds of uptime pass UINT_MAX after 72
     * minutes, and casting such a double to unsigned is undefined. */
    unsigned seed = (unsigned)(uint64_t)(rs_now() * 1e6) ^ (unsigned)n;
    return d * (0.5 + 0.5 * ((double)rand_r(&seed) / RAND_MAX));
}
