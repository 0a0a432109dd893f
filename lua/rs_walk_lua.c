/* SPDX-License-Identifier: MIT */
/* rs_walk_lua.c -- walks of a store's keys for Lua: resume_tokens,
 * list_resume_tokens, token_lines, token_batches and scan_keys.
 *
 * A walk is a generic-for iterator over a scan userdata that is also the
 * loop's closing value: breaking out of the loop frees it. The iterator
 * keeps the store alive as its upvalue; the store closes its open walks
 * when it closes itself (rs_lua_store_track), since their read-ahead
 * threads use it. Rows of token_lines are formatted in rs_rows_lua.c.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rs_lua.h"

#define SCAN_MT "rigatoni_store.scan"

/* A listed TTL: seconds, nil without TTL, false when unknown (NAN: the
 * server refused PTTL). */
static void push_ttl(lua_State *L, double ttl)
{
    if (isnan(ttl)) lua_pushboolean(L, 0);
    else if (ttl < 0) lua_pushnil(L);
    else lua_pushnumber(L, ttl);
}

enum { LINES_NONE, LINES_LIST, LINES_EXPORT };

typedef struct scan_box {
    rs_scan *scan;
    int orphaned;         /* its store was closed during the walk */
    int raw;
    int lines;            /* token_lines: LINES_LIST or LINES_EXPORT */
    double now;           /* token_lines: ages are counted from it */
    rs_rowbuf buf;        /* token_lines: a batch's text, reused */
    int counts;           /* registry ref of the counts table, or LUA_NOREF */
    size_t not_strings;   /* the count last written there */
} scan_box;               /* user value 1: token_lines' mirrors table */

static int scan_close(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    rs_scan_close(box->scan);
    box->scan = NULL;
    rs_rowbuf_free(&box->buf);
    luaL_unref(L, LUA_REGISTRYINDEX, box->counts);
    box->counts = LUA_NOREF;
    return 0;
}

/* The walk's counts table, when it has one, gets `not_strings`: keys met
 * whose value is not a string (not tokens), skipped. Written when the
 * count changed, and at the walk's end or failure. */
static void write_counts(lua_State *L, scan_box *box, int force)
{
    size_t n = box->scan ? rs_scan_not_strings(box->scan) : box->not_strings;
    if (box->counts == LUA_NOREF || (n == box->not_strings && !force)) return;
    box->not_strings = n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->counts);
    lua_pushinteger(L, (lua_Integer)n);
    lua_setfield(L, -2, "not_strings");
    lua_pop(L, 1);
}

/* Called by the store as it closes (rs_lua_store_track): the walk's
 * read-ahead thread uses the store, so the walk stops now, and a walk
 * used afterwards raises instead of reading a freed store. */
static int scan_orphan(lua_State *L)
{
    scan_box *box = luaL_testudata(L, 1, SCAN_MT);
    if (box && box->scan) {
        rs_scan_close(box->scan);
        box->scan = NULL;
        box->orphaned = 1;
        rs_rowbuf_free(&box->buf);
    }
    return 0;
}

/* The options of resume_tokens and list_resume_tokens. */
static const char *const list_options[] = {"match", "batch", "raw", "ttl", "counts", NULL};

/* Opens a scan from an options table at `idx` {match=, batch=, raw=, ttl=,
 * counts=}; pushes the scan userdata. The store must stay at index 1. */
static scan_box *open_scan(lua_State *L, rs_store *store, int idx, const char *key_pattern)
{
    const char *match = "*";
    lua_Integer batch = 0;
    int raw = 0, with_ttl = 1;
    int opts = !lua_isnoneornil(L, idx);   /* before pushing: idx may be past the top */
    if (opts) {   /* keys checked by the caller */
        if (rs_lua_opt_field(L, idx, "match", RS_LUA_TCSTRING)) match = lua_tostring(L, -1);
        if (rs_lua_opt_field(L, idx, "batch", RS_LUA_TINTEGER)) batch = lua_tointeger(L, -1);
        raw = rs_lua_opt_field(L, idx, "raw", LUA_TBOOLEAN) && lua_toboolean(L, -1);
        if (rs_lua_opt_field(L, idx, "ttl", LUA_TBOOLEAN)) with_ttl = lua_toboolean(L, -1);
        lua_pop(L, 2);   /* keep match and batch reachable (match is a string) */
        if (batch < 0 || batch > 1000000)
            rs_lua_raisef(L, RS_ERR_CONFIG, "batch must be between 1 and 1000000");
    }
    scan_box *box = lua_newuserdatauv(L, sizeof *box, 1);
    memset(box, 0, sizeof *box);
    box->raw = raw;
    box->counts = LUA_NOREF;
    luaL_setmetatable(L, SCAN_MT);
    if (opts) {
        if (rs_lua_opt_field(L, idx, "counts", LUA_TTABLE)) {
            box->counts = luaL_ref(L, LUA_REGISTRYINDEX);
            write_counts(L, box, 1);          /* 0 from the start */
        } else {
            lua_pop(L, 1);
        }
    }
    rs_error err = {0};
    box->scan = key_pattern ? rs_scan_keys_open(store, key_pattern, (size_t)batch, with_ttl, &err)
                            : rs_scan_open(store, match, (size_t)batch, with_ttl, &err);
    if (!box->scan) rs_lua_raise(L, &err);
    rs_lua_store_track(L, 1, lua_gettop(L), scan_orphan);
    return box;
}

/* The next entry of the box's walk: 1, or 0 at the end (the scan and the
 * row buffer are released then); raises when the walk failed. */
static int box_next(lua_State *L, scan_box *box, rs_scan_entry *e)
{
    if (box->orphaned) return luaL_error(L, "attempt to use a walk of a closed store");
    if (!box->scan) return 0;
    rs_error err = {0};
    int rc = rs_scan_next(box->scan, e, &err);
    write_counts(L, box, 0);
    if (rc < 0) return rs_lua_raise(L, &err);
    if (rc == 0) {
        rs_scan_close(box->scan);
        box->scan = NULL;
        rs_rowbuf_free(&box->buf);
    }
    return rc;
}

/* Pushes collection, token (or raw bytes), ttl[, error]; returns the count,
 * or 0 at the end. */
static int scan_step(lua_State *L, rs_store *store, scan_box *box)
{
    rs_scan_entry e;
    rs_error err = {0};
    if (!box_next(L, box, &e)) return 0;
    lua_pushlstring(L, e.collection, e.collection_len);
    if (box->raw) {
        lua_pushlstring(L, e.value, e.value_len);
        push_ttl(L, e.ttl);
        return 3;
    }
    int ok = rs_lua_push_token(L, store, e.collection, e.collection_len, e.value, e.value_len, &err);
    push_ttl(L, e.ttl);
    if (ok) return 3;
    rs_lua_push_error(L, &err);
    return 4;
}

/* Iterator function: upvalue 1 = store userdata; state = scan userdata. */
static int tokens_iter(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_replace(L, 1);
    rs_store *store = rs_lua_check_store(L, 1);
    int n = scan_step(L, store, box);
    return n ? n : (lua_pushnil(L), 1);
}

/* The generic-for values of a walk whose scan userdata is on top and
 * whose store is at index 1: iter (the store as its upvalue, kept alive),
 * the scan as state, nil, and the scan again as the closing value. */
static int push_walk(lua_State *L, lua_CFunction iter)
{
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, iter, 1);
    lua_insert(L, -2);        /* iter, scan */
    lua_pushnil(L);           /* initial control value */
    lua_pushvalue(L, -2);     /* closing value: the scan */
    return 4;
}

/* for collection, token, ttl[, err] in store:resume_tokens{...} do */
static int store_resume_tokens(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    rs_lua_check_options(L, 2, list_options);
    open_scan(L, store, 2, NULL);
    return push_walk(L, tokens_iter);
}

/* token_lines: the text of one batch, rows and bad of it, and for export
 * the skipped values ({collection, message} each) or nil. Stack: 1 = the
 * scan, 2 = the mirrors table (or nil). */
static int lines_batch(lua_State *L, scan_box *box, rs_scan_entry *e)
{
    int mirrors = 0, skipped = 0;
    lua_Integer rows = 0, bad = 0;
    if (lua_istable(L, 2)) {                 /* looked up only when not empty */
        lua_pushnil(L);
        if (lua_next(L, 2)) {
            lua_pop(L, 2);
            mirrors = 2;
        }
    }
    box->buf.len = 0;
    do {
        if (box->lines == LINES_LIST) {
            int mirror_of = 0;
            if (mirrors) {
                lua_pushlstring(L, e->collection, e->collection_len);
                if (lua_rawget(L, mirrors) == LUA_TTABLE) mirror_of = lua_gettop(L);
                else lua_pop(L, 1);
            }
            bad += rs_rows_list(L, &box->buf, e, box->now, mirror_of, 1);
            if (mirror_of) lua_pop(L, 1);
            rows++;
        } else {
            rs_error why;
            if (isnan(e->ttl)) {             /* an export without TTLs would lose them */
                rs_rowbuf_free(&box->buf);
                return rs_lua_raisef(L, RS_ERR_AUTH, "export: the server refused PTTL, so TTLs "
                                     "are unknown; run it as a user that may run PTTL");
            }
            if (rs_rows_export(&box->buf, e, &why) == 0) {
                rows++;
                continue;
            }
            bad++;
            if (!skipped) {
                lua_newtable(L);
                skipped = lua_gettop(L);
            }
            lua_createtable(L, 2, 0);
            lua_pushlstring(L, e->collection, e->collection_len);
            lua_rawseti(L, -2, 1);
            lua_pushstring(L, why.message);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, skipped, bad);
        }
    } while (rs_scan_next_buffered(box->scan, e));
    if (box->buf.oom) {
        rs_rowbuf_free(&box->buf);
        return rs_lua_raisef(L, RS_ERR_NOMEM, "out of memory");
    }
    lua_pushlstring(L, box->buf.data ? box->buf.data : "", box->buf.len);
    lua_pushinteger(L, rows);
    lua_pushinteger(L, bad);
    if (skipped) lua_pushvalue(L, skipped);
    else lua_pushnil(L);
    return 4;
}

/* Iterator function of token_lines: upvalue 1 = store (kept alive). */
static int lines_iter(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1);
    rs_scan_entry e;
    if (!box_next(L, box, &e)) return lua_pushnil(L), 1;
    return lines_batch(L, box, &e);
}

/* for text, rows, bad, skipped in store:token_lines{format = "list" |
 * "export", match =, batch =, now =, mirrors =} do -- the walk of
 * resume_tokens, one batch per step, formatted in C (rs_rows_lua.c):
 * "list" = the JSON rows of `list --format jsonl`, each ended by "\n"
 * (bad = corrupt values, listed with their error; now = the time ages
 * count from, default the clock; mirrors = collection -> names it
 * mirrors), "export" = export lines (bad = values skipped, not BSON;
 * skipped = {collection, message} each, else nil). */
static int store_token_lines(lua_State *L)
{
    static const char *const known[] = {"match", "batch", "format", "now", "mirrors", "counts", NULL};
    rs_store *store = rs_lua_check_store(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    rs_lua_check_options(L, 2, known);
    int lines = LINES_NONE;
    if (rs_lua_opt_field(L, 2, "format", RS_LUA_TCSTRING)) {
        const char *f = lua_tostring(L, -1);
        lines = strcmp(f, "list") == 0 ? LINES_LIST : strcmp(f, "export") == 0 ? LINES_EXPORT : 0;
    }
    if (lines == LINES_NONE)
        return rs_lua_raisef(L, RS_ERR_CONFIG, "token_lines: format must be \"list\" or \"export\"");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (rs_lua_opt_field(L, 2, "now", LUA_TNUMBER)) now = lua_tonumber(L, -1);
    rs_lua_opt_field(L, 2, "mirrors", LUA_TTABLE);
    int mirrors = lua_gettop(L);
    scan_box *box = open_scan(L, store, 2, NULL);
    box->lines = lines;
    box->now = now;
    lua_pushvalue(L, mirrors);
    lua_setiuservalue(L, -2, 1);
    return push_walk(L, lines_iter);
}

/* Pushes a batch of token_batches from `e` (the first entry, just read)
 * and the ones buffered with it: names, values, ttls, times, n. */
static int push_batch(lua_State *L, rs_scan *scan, rs_scan_entry *e)
{
    lua_Integer n = 0;
    int base = lua_gettop(L);
    for (int t = 0; t < 4; t++) lua_createtable(L, 1000, 0);   /* base+1..base+4 */
    do {
        n++;
        lua_pushlstring(L, e->collection, e->collection_len);
        lua_rawseti(L, base + 1, n);
        lua_pushlstring(L, e->value, e->value_len);
        lua_rawseti(L, base + 2, n);
        if (!(e->ttl < 0)) {                 /* no TTL: nil, a hole in the array */
            push_ttl(L, e->ttl);
            lua_rawseti(L, base + 3, n);
        }
        uint32_t seconds, increment;
        if (rs_token_cluster_time(e->value, e->value_len, &seconds, &increment))
            lua_pushinteger(L, (lua_Integer)seconds);
        else
            lua_pushboolean(L, 0);
        lua_rawseti(L, base + 4, n);
    } while (rs_scan_next_buffered(scan, e));
    lua_pushinteger(L, n);
    return 5;
}

/* Iterator function of token_batches: upvalue 1 = store (kept alive). */
static int batches_iter(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    lua_settop(L, 1);
    rs_scan_entry e;
    if (!box_next(L, box, &e)) return lua_pushnil(L), 1;
    return push_batch(L, box->scan, &e);
}

/* for names, values, ttls, times, n in store:token_batches{match =, batch =,
 * ttl =} do -- the walk of resume_tokens (raw bytes), a batch per step as
 * arrays 1..n: collection names, values, TTLs (as resume_tokens: nil =
 * none, false = unknown) and cluster times (rs.token_time's seconds, or
 * false). For tools that decide about every token: one call per batch,
 * not per token. */
static int store_token_batches(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    static const char *const known[] = {"match", "batch", "ttl", "counts", NULL};
    rs_lua_check_options(L, 2, known);
    open_scan(L, store, 2, NULL);
    return push_walk(L, batches_iter);
}

/* ---------------------------------------------------------------------
 * token_batches by jobs: store:start("token_batches", {match =, batch =,
 * ttl =}) -> walk; walk:start_next() -> job whose wait() gives the next
 * batch (names, values, ttls, times, n as token_batches') or nil at the
 * end. The fetch (rs_scan_next) runs on a worker; the batch is pushed
 * from the scan's buffer on the Lua thread. One job at a time per walk.
 *
 * The scan lives in a batch_walk shared by the walk userdata and the
 * job in flight (counted references: the last one closes the scan, on
 * whichever thread). A job dropped after it fetched loses the walk's
 * place: the walk then raises. When the store closes, the scan must be
 * closed before the store waits for its read-ahead threads (else they
 * wait for a consumer forever): by the Lua thread when no fetch runs, or
 * by the worker right after its fetch (`scan_state`).
 * ------------------------------------------------------------------ */

#define BWALK_MT "rigatoni_store.batch_walk"

enum { SCAN_IDLE, SCAN_FETCHING, SCAN_CLOSE_ASKED, SCAN_CLOSED };

typedef struct batch_walk {
    rs_scan *scan;         /* NULL once closed (by whoever set SCAN_CLOSED) */
    atomic_int scan_state;
    atomic_int refs;       /* the walk userdata, and the job in flight */
    atomic_int busy;       /* a job of it is in flight */
    atomic_int lost;       /* a job that fetched was dropped unwaited */
    int ended;             /* Lua thread only */
    int orphaned;          /* its store closed */
} batch_walk;

static void bwalk_release(batch_walk *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1) return;
    rs_scan_close(w->scan);
    free(w);
}

/* Closes the scan now, or has the fetch running close it when it ends
 * (any thread but that fetch's). */
static void bwalk_close_scan(batch_walk *w)
{
    for (;;) {
        int state = SCAN_IDLE;
        if (atomic_compare_exchange_strong(&w->scan_state, &state, SCAN_CLOSED)) {
            rs_scan_close(w->scan);
            w->scan = NULL;
            return;
        }
        if (state != SCAN_FETCHING) return;              /* closed, or asked */
        if (atomic_compare_exchange_strong(&w->scan_state, &state, SCAN_CLOSE_ASKED)) return;
    }
}

typedef struct next_op {
    batch_walk *w;
    int ended, ran, consumed;
    rs_scan_entry e;
} next_op;

static int run_next(rs_store *store, void *arg, rs_error *err)
{
    next_op *op = arg;
    batch_walk *w = op->w;
    (void)store;
    if (op->ended) return 0;
    int state = SCAN_IDLE;
    if (!atomic_compare_exchange_strong(&w->scan_state, &state, SCAN_FETCHING)) {
        err->kind = RS_ERR_CONNECTION;
        snprintf(err->message, sizeof err->message, "the walk was closed with its store");
        return -1;
    }
    op->ran = 1;
    int rc = rs_scan_next(w->scan, &op->e, err);
    state = SCAN_FETCHING;
    if (!atomic_compare_exchange_strong(&w->scan_state, &state, SCAN_IDLE)) {
        rs_scan_close(w->scan);      /* asked while it fetched: the store is closing */
        w->scan = NULL;
        atomic_store(&w->scan_state, SCAN_CLOSED);
    }
    return rc;
}

static int push_next(lua_State *L, rs_store *store, void *arg, int rc)
{
    next_op *op = arg;
    (void)store;
    op->consumed = 1;
    atomic_store(&op->w->busy, 0);
    if (atomic_load(&op->w->scan_state) == SCAN_CLOSED)   /* the batch went with it */
        return luaL_error(L, "attempt to use a walk of a closed store");
    if (rc == 0) {
        op->w->ended = 1;
        lua_pushnil(L);
        return 1;
    }
    return push_batch(L, op->w->scan, &op->e);
}

static void fail_next(lua_State *L, void *arg)
{
    next_op *op = arg;
    (void)L;
    op->consumed = 1;
    atomic_store(&op->w->busy, 0);
}

/* Any thread: a job not waited for frees its op here. */
static void free_next(void *arg)
{
    next_op *op = arg;
    if (!op->w) return;
    if (!op->consumed) {
        if (op->ran) atomic_store(&op->w->lost, 1);
        atomic_store(&op->w->busy, 0);
    }
    bwalk_release(op->w);
    op->w = NULL;
}

static const rs_lua_op next_batch_op = {
    "token_batches", sizeof(next_op), 0, NULL, run_next, push_next, fail_next, free_next,
};

static batch_walk **check_bwalk(lua_State *L)
{
    return luaL_checkudata(L, 1, BWALK_MT);
}

/* walk:start_next() -> job */
static int bwalk_start_next(lua_State *L)
{
    batch_walk **box = check_bwalk(L);
    batch_walk *w = *box;
    if (!w) return luaL_error(L, "attempt to use a closed walk");
    if (w->orphaned) return luaL_error(L, "attempt to use a walk of a closed store");
    if (atomic_load(&w->lost))
        return luaL_error(L, "this walk lost its place: a job of it was dropped before wait");
    if (atomic_load(&w->busy))
        return luaL_error(L, "this walk's previous job was not waited for (one at a time)");
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1);           /* 2: the store */
    next_op *op = rs_lua_op_new(L, &next_batch_op);
    op->ended = w->ended;
    op->w = w;
    atomic_fetch_add(&w->refs, 1);
    atomic_store(&w->busy, 1);
    rs_lua_op_start(L, 2, 1);             /* the job keeps the walk alive */
    return 1;
}

static int bwalk_close(lua_State *L)
{
    batch_walk **box = check_bwalk(L);
    if (*box) bwalk_release(*box);   /* a job in flight closes the scan when done */
    *box = NULL;
    return 0;
}

/* Called by the store as it closes: the scan is closed now, or by the
 * fetch running (the store's close cuts its retries short) as it ends. */
static int bwalk_orphan(lua_State *L)
{
    batch_walk **box = luaL_testudata(L, 1, BWALK_MT);
    batch_walk *w = box ? *box : NULL;
    if (!w) return 0;
    w->orphaned = 1;
    bwalk_close_scan(w);
    return 0;
}

/* store:start("token_batches", opts): a starter (rs_op_lua.c), with the
 * store at 1 and the options at 2. */
static int start_token_batches(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    static const char *const known[] = {"match", "batch", "ttl", NULL};
    rs_lua_check_options(L, 2, known);
    const char *match = "*";
    lua_Integer batch = 0;
    int with_ttl = 1;
    if (rs_lua_opt_field(L, 2, "match", RS_LUA_TCSTRING)) match = lua_tostring(L, -1);
    if (rs_lua_opt_field(L, 2, "batch", RS_LUA_TINTEGER)) batch = lua_tointeger(L, -1);
    if (rs_lua_opt_field(L, 2, "ttl", LUA_TBOOLEAN)) with_ttl = lua_toboolean(L, -1);
    if (batch < 0 || batch > 1000000)
        rs_lua_raisef(L, RS_ERR_CONFIG, "batch must be between 1 and 1000000");
    batch_walk **box = lua_newuserdatauv(L, sizeof *box, 1);
    *box = NULL;
    luaL_setmetatable(L, BWALK_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    batch_walk *w = calloc(1, sizeof *w);
    if (!w) return luaL_error(L, "out of memory");
    atomic_init(&w->refs, 1);
    *box = w;
    rs_error err = {0};
    /* Opening sends nothing: the first SCAN is the first job's. */
    if (!(w->scan = rs_scan_open(store, match, (size_t)batch, with_ttl, &err)))
        return rs_lua_raise(L, &err);
    rs_lua_store_track(L, 1, -1, bwalk_orphan);
    return 1;
}

static const luaL_Reg bwalk_methods[] = {
    {"start_next", bwalk_start_next},
    {"close", bwalk_close},
    {NULL, NULL},
};

/* for key, value, ttl in store:scan_keys(pattern [, {batch=}]) do -- any
 * key family, e.g. "rigatoni:lock:*"; values are raw strings. */
static int store_scan_keys(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    const char *pattern = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    static const char *const known[] = {"batch", "ttl", "counts", NULL};
    rs_lua_check_options(L, 3, known);
    scan_box *box = open_scan(L, store, 3, pattern);
    box->raw = 1;
    return push_walk(L, tokens_iter);
}

/* store:list_resume_tokens{...} -> tokens, errors (both keyed by collection) */
static int store_list_resume_tokens(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    lua_settop(L, 2);
    rs_lua_check_options(L, 2, list_options);
    scan_box *box = open_scan(L, store, 2, NULL);
    lua_newtable(L);
    int tokens = lua_gettop(L);
    lua_newtable(L);
    int errors = lua_gettop(L);
    int n;
    while ((n = scan_step(L, store, box)) > 0) {
        int base = lua_gettop(L) - n;         /* collection at base + 1 */
        if (n == 4) {
            lua_pushvalue(L, base + 1);
            lua_getfield(L, base + 4, "message");
            lua_rawset(L, errors);
        } else {
            lua_pushvalue(L, base + 1);
            lua_pushvalue(L, base + 2);
            lua_rawset(L, tokens);
        }
        lua_settop(L, errors);
    }
    rs_scan_close(box->scan);    /* scan_step closes it at the end; errors raise */
    box->scan = NULL;
    return 2;
}

static const luaL_Reg walk_methods[] = {
    {"list_resume_tokens", store_list_resume_tokens},
    {"resume_tokens", store_resume_tokens},
    {"token_lines", store_token_lines},
    {"token_batches", store_token_batches},
    {"scan_keys", store_scan_keys},
    {NULL, NULL},
};

void rs_lua_add_walk_methods(lua_State *L)
{
    luaL_setfuncs(L, walk_methods, 0);
    luaL_newmetatable(L, SCAN_MT);
    lua_pushcfunction(L, scan_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, scan_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_newmetatable(L, BWALK_MT);
    lua_pushcfunction(L, bwalk_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, bwalk_close);
    lua_setfield(L, -2, "__close");
    luaL_newlib(L, bwalk_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    rs_lua_add_starter(L, "token_batches", start_token_batches);
}
