/* SPDX-License-Identifier: MIT */
/* command.c -- store:command: one caller-given command on a pooled
 * connection.
 *
 * The connection goes back to the pool afterwards, so a command that
 * changes the connection's own state would poison it for whoever takes it
 * next: a MULTI makes later saves answer QUEUED, a SELECT moves them to
 * another db, a SUBSCRIBE or CLIENT REPLY OFF leaves it answering nothing
 * else. Such commands are refused by name (case-insensitive, and by
 * subcommand for CLIENT and SCRIPT DEBUG) before anything is sent; running them on a
 * private connection would hide the mistake rather than say it.
 *
 * The reply is handed back as text (rs_command, for the admin helpers) or
 * as a tree of any shape (rs_command_reply), so that a command that ran
 * (an LPOP with a count) never fails for the shape of its reply.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "call.h"
#include "error.h"

/* ---------------------------------------------------------------------
 * Commands that change the connection
 * ------------------------------------------------------------------ */

static const struct refused {
    const char *name, *sub;   /* sub: a subcommand, or NULL for the whole command */
    const char *why;
} refused[] = {
    {"MULTI", NULL, "a transaction would queue the store's later commands"},
    {"EXEC", NULL, "transactions cannot span pooled calls"},
    {"DISCARD", NULL, "transactions cannot span pooled calls"},
    {"WATCH", NULL, "a watch would outlive the call on the connection"},
    {"UNWATCH", NULL, "transactions cannot span pooled calls"},
    {"SELECT", NULL, "the store's connections stay on the db of its URL (redis://host:port/DB)"},
    {"SUBSCRIBE", NULL, "a subscribed connection answers nothing else"},
    {"PSUBSCRIBE", NULL, "a subscribed connection answers nothing else"},
    {"SSUBSCRIBE", NULL, "a subscribed connection answers nothing else"},
    {"UNSUBSCRIBE", NULL, "subscriptions cannot span pooled calls"},
    {"PUNSUBSCRIBE", NULL, "subscriptions cannot span pooled calls"},
    {"SUNSUBSCRIBE", NULL, "subscriptions cannot span pooled calls"},
    {"MONITOR", NULL, "a monitoring connection answers nothing else"},
    {"RESET", NULL, "it resets the connection's db, user and protocol"},
    {"HELLO", NULL, "it changes the connection's protocol or user"},
    {"AUTH", NULL, "it changes the connection's user (give the user in the URL)"},
    {"READONLY", NULL, "it changes where the connection may read in a cluster"},
    {"READWRITE", NULL, "it changes where the connection may read in a cluster"},
    {"ASKING", NULL, "it changes how the connection's next command is routed"},
    {"QUIT", NULL, "it closes the connection"},
    {"SYNC", NULL, "it turns the connection into a replication stream"},
    {"PSYNC", NULL, "it turns the connection into a replication stream"},
    {"REPLCONF", NULL, "it is for replicas' connections"},
    {"CLIENT", "REPLY", "the server would stop answering the connection"},
    {"CLIENT", "TRACKING", "invalidation messages would arrive among the replies"},
    {"CLIENT", "CACHING", "it changes the connection's tracking"},
    {"CLIENT", "NO-EVICT", "it changes how the server treats the connection"},
    {"CLIENT", "NO-TOUCH", "it changes how the server treats the connection"},
    {"CLIENT", "SETNAME", "it renames a connection the store owns"},
    {"CLIENT", "SETINFO", "it changes a connection the store owns"},
    {"SCRIPT", "DEBUG", "the store's scripts (lock refresh, release) would fail on the connection "
                        "or start a debugging session"},
    {NULL, NULL, NULL},
};

static int arg_is(const char *arg, size_t len, const char *name)
{
    return len == strlen(name) && strncasecmp(arg, name, len) == 0;
}

/* Refuses a command that would change the connection: -1 with err, or 0. */
static int check_connection_state(int argc, const char **argv, const size_t *argvlen,
                                  rs_error *err)
{
    for (const struct refused *r = refused; r->name; r++) {
        if (!arg_is(argv[0], argvlen[0], r->name)) continue;
        if (r->sub && (argc < 2 || !arg_is(argv[1], argvlen[1], r->sub))) continue;
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "command: %s%s%s refused, nothing sent: it would change the state of a "
                     "pooled connection (%s); use a client of your own for it",
                     r->name, r->sub ? " " : "", r->sub ? r->sub : "", r->why);
        return -1;
    }
    return 0;
}

#define WHAT_SIZE 64

/* Runs the command: 0 with *reply (not an error reply), or -1; `what`
 * (WHAT_SIZE bytes) gets its name for messages. */
static int run_command(rs_store *store, const rs_cmd *given, int flags, redisReply **reply,
                       char *what, rs_error *err)
{
    int argc = given->argc;
    const char **argv = given->argv;
    const size_t *argvlen = given->argvlen;
    rs_error_clear(err);
    if (argc < 1) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "command: no command given");
        return -1;
    }
    if (check_connection_state(argc, argv, argvlen, err) < 0) return -1;
    rs_cmd cmd = {argc, argv, argvlen};
    snprintf(what, WHAT_SIZE, "command %.*s", argvlen[0] > 32 ? 32 : (int)argvlen[0], argv[0]);
    /* An arbitrary command (INCR, LPUSH) is repeated only when the caller
     * says repeating it is harmless. */
    rs_retry_rule rule = flags & RS_COMMAND_IDEMPOTENT ? RS_RETRY_IDEMPOTENT : RS_RETRY_UNSENT;
    rs_call call = RS_CALL(RS_OP_OTHER, what, 1, &cmd, reply, err);
    call.rule = rule;
    return rs_call_run(store, &call);
}

/* ---------------------------------------------------------------------
 * Text replies
 * ------------------------------------------------------------------ */

int rs_command(rs_store *store, int argc, const char **argv, const size_t *argvlen, char **out,
               size_t *out_len, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    return rs_command_flags(store, argc, argv, argvlen, 0, out, out_len, err);
}

int rs_command_flags(rs_store *store, int argc, const char **argv, const size_t *argvlen,
                     int flags, char **out, size_t *out_len, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    *out = NULL;
    *out_len = 0;
    redisReply *reply;
    char what[WHAT_SIZE];
    if (run_command(store, &(rs_cmd){argc, argv, argvlen}, flags, &reply, what, err) < 0)
        return -1;
    int rc = 1;
    char num[32];
    const char *src = NULL;
    size_t len = 0;
    switch (reply->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_VERB:
        src = reply->str;
        len = reply->len;
        break;
    case REDIS_REPLY_INTEGER:
        len = (size_t)snprintf(num, sizeof num, "%lld", reply->integer);
        src = num;
        break;
    case REDIS_REPLY_NIL:
        rc = 0;
        break;
    default:
        rs_error_set(err, RS_ERR_SERVER, 0,
                     "%s ran, but its reply is not text (use rs_command_reply)", what);
        rc = -1;
    }
    if (rc == 1) {
        char *copy = malloc(len + 1);
        if (!copy) {
            rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
            rc = -1;
        } else {
            memcpy(copy, src, len);
            copy[len] = '\0';
            *out = copy;
            *out_len = len;
        }
    }
    freeReplyObject(reply);
    return rc;
}

/* ---------------------------------------------------------------------
 * Replies of any shape
 * ------------------------------------------------------------------ */

static void value_clear(rs_reply *v)
{
    for (size_t i = 0; i < v->elements && v->element; i++) value_clear(&v->element[i]);
    free(v->element);
    free(v->str);
}

void rs_reply_free(rs_reply *value)
{
    if (!value) return;
    value_clear(value);
    free(value);
}

static int copy_text(rs_reply *v, const char *s, size_t len)
{
    if (!(v->str = malloc(len + 1))) return -1;
    memcpy(v->str, s, len);
    v->str[len] = '\0';
    v->len = len;
    return 0;
}

/* Levels of nesting kept: a real server's deepest reply (an EVAL's nested
 * tables, cut by its Lua stack) is about 8000. hiredis reads any depth, so
 * a deeper one (a broken or hostile peer) is refused rather than copied by
 * recursion until the C stack overflows (here, and in the Lua binding). */
#define REPLY_DEPTH_MAX 10000

/* Copies `r` into `v` (zeroed) at nesting `depth`: 0, -1 out of memory or
 * -2 nested too deep (v then holds what was copied, for value_clear). */
static int copy_reply(rs_reply *v, const redisReply *r, int depth)
{
    char num[32];
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        v->type = RS_TREE_INTEGER;
        v->integer = r->integer;
        return copy_text(v, num, (size_t)snprintf(num, sizeof num, "%lld", r->integer));
    case REDIS_REPLY_NIL:
        v->type = RS_TREE_NIL;
        return 0;
    case REDIS_REPLY_ERROR:
        v->type = RS_TREE_ERROR;
        return copy_text(v, r->str, r->len);
    case REDIS_REPLY_BOOL:
        v->type = RS_TREE_INTEGER;
        v->integer = r->integer != 0;
        return copy_text(v, r->integer ? "1" : "0", 1);
    case REDIS_REPLY_ARRAY:
    case REDIS_REPLY_SET:
    case REDIS_REPLY_PUSH:
    case REDIS_REPLY_MAP:
        v->type = r->type == REDIS_REPLY_MAP ? RS_TREE_MAP : RS_TREE_ARRAY;
        if (r->elements == 0) return 0;
        if (depth >= REPLY_DEPTH_MAX) return -2;
        if (!(v->element = calloc(r->elements, sizeof *v->element))) return -1;
        v->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) {
            int rc = copy_reply(&v->element[i], r->element[i], depth + 1);
            if (rc < 0) return rc;
        }
        return 0;
    default:   /* string, status, verbatim, double and big number as their text */
        v->type = RS_TREE_STRING;
        return copy_text(v, r->str ? r->str : "", r->str ? r->len : 0);
    }
}

int rs_command_reply(rs_store *store, int argc, const char **argv, const size_t *argvlen,
                     int flags, rs_reply **out, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    *out = NULL;
    redisReply *reply;
    char what[WHAT_SIZE];
    if (run_command(store, &(rs_cmd){argc, argv, argvlen}, flags, &reply, what, err) < 0)
        return -1;
    rs_reply *v = calloc(1, sizeof *v);
    int rc = v ? copy_reply(v, reply, 0) : -1;
    freeReplyObject(reply);
    if (rc < 0) {
        rs_reply_free(v);
        if (rc == -2)
            rs_error_set(err, RS_ERR_SERVER, 0, "%s ran, but its reply is nested deeper than %d "
                         "levels (no server sends that)", what, REPLY_DEPTH_MAX);
        else
            rs_error_set(err, RS_ERR_NOMEM, 0, "%s ran, but its reply could not be kept: out of "
                         "memory", what);
        return -1;
    }
    *out = v;
    return 0;
}
