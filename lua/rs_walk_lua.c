/* SPDX-License-Identifier: MIT */
/* rs_walk_lua.c -- walks of a store's keys for Lua: resume_tokens,
 * list_resume_tokens, token_lines, token_batches and scan_keys; each also
 * by jobs (store:start): list_resume_tokens as one job, the others as
 * walks whose jobs give a batch each (below).
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
/* A walk's options (match, batch, raw, ttl) from the table at `idx`
 * (keys checked by the caller), none when it is nil. Leaves two values
 * pushed (match stays reachable: it is a string of the table). Returns
 * whether there is a table. */
typedef struct walk_opts {
    const char *match;
    size_t batch;
    int raw, with_ttl;
} walk_opts;

static int read_walk_opts(lua_State *L, int idx, walk_opts *o)
{
    lua_Integer batch = 0;
    *o = (walk_opts){"*", 0, 0, 1};
    int opts = !lua_isnoneornil(L, idx);   /* before pushing: idx may be past the top */
    if (!opts) {
        lua_pushnil(L);
        lua_pushnil(L);
        return 0;
    }
    if (rs_lua_opt_field(L, idx, "match", RS_LUA_TCSTRING)) o->match = lua_tostring(L, -1);
    if (rs_lua_opt_field(L, idx, "batch", RS_LUA_TINTEGER)) batch = lua_tointeger(L, -1);
    o->raw = rs_lua_opt_field(L, idx, "raw", LUA_TBOOLEAN) && lua_toboolean(L, -1);
    if (rs_lua_opt_field(L, idx, "ttl", LUA_TBOOLEAN)) o->with_ttl = lua_toboolean(L, -1);
    lua_pop(L, 2);
    if (batch < 0 || batch > 1000000)
        rs_lua_raisef(L, RS_ERR_CONFIG, "batch must be between 1 and 1000000");
    o->batch = (size_t)batch;
    return 1;
}

/* A registry reference to the counts table of the options at `idx` (its
 * not_strings set to 0 now), or LUA_NOREF. */
static int ref_counts(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx) || !rs_lua_opt_field(L, idx, "counts", LUA_TTABLE)) {
        if (!lua_isnoneornil(L, idx)) lua_pop(L, 1);
        return LUA_NOREF;
    }
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "not_strings");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static scan_box *open_scan(lua_State *L, rs_store *store, int idx, const char *key_pattern)
{
    walk_opts o;
    int opts = read_walk_opts(L, idx, &o);
    const char *match = o.match;
    size_t batch = o.batch;
    int raw = o.raw, with_ttl = o.with_ttl;
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

/* How a batch of token_lines is formatted: the walk's settings. */
typedef struct lines_fmt {
    rs_scan *scan;
    rs_rowbuf *buf;       /* a batch's text, reused */
    int lines;            /* LINES_LIST or LINES_EXPORT */
    double now;
} lines_fmt;

/* token_lines: the text of one batch, rows and bad of it, and for export
 * the skipped values ({collection, message} each) or nil. `mirrors_idx`:
 * the stack index of the mirrors table (anything else: none). */
static int lines_batch(lua_State *L, const lines_fmt *f, int mirrors_idx, rs_scan_entry *e)
{
    int mirrors = 0, skipped = 0;
    lua_Integer rows = 0, bad = 0;
    if (lua_istable(L, mirrors_idx)) {       /* looked up only when not empty */
        lua_pushnil(L);
        if (lua_next(L, mirrors_idx)) {
            lua_pop(L, 2);
            mirrors = mirrors_idx;
        }
    }
    rs_rowbuf *buf = f->buf;
    buf->len = 0;
    do {
        if (f->lines == LINES_LIST) {
            int mirror_of = 0;
            if (mirrors) {
                lua_pushlstring(L, e->collection, e->collection_len);
                if (lua_rawget(L, mirrors) == LUA_TTABLE) mirror_of = lua_gettop(L);
                else lua_pop(L, 1);
            }
            bad += rs_rows_list(L, buf, e, f->now, mirror_of, 1);
            if (mirror_of) lua_pop(L, 1);
            rows++;
        } else {
            rs_error why;
            if (isnan(e->ttl)) {             /* an export without TTLs would lose them */
                rs_rowbuf_free(buf);
                return rs_lua_raisef(L, RS_ERR_AUTH, "export: the server refused PTTL, so TTLs "
                                     "are unknown; run it as a user that may run PTTL");
            }
            if (rs_rows_export(buf, e, &why) == 0) {
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
    } while (rs_scan_next_buffered(f->scan, e));
    if (buf->oom) {
        rs_rowbuf_free(buf);
        return rs_lua_raisef(L, RS_ERR_NOMEM, "out of memory");
    }
    lua_pushlstring(L, buf->data ? buf->data : "", buf->len);
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
    lines_fmt f = {box->scan, &box->buf, box->lines, box->now};
    return lines_batch(L, &f, 2, &e);
}

/* for text, rows, bad, skipped in store:token_lines{format = "list" |
 * "export", match =, batch =, now =, mirrors =} do -- the walk of
 * resume_tokens, one batch per step, formatted in C (rs_rows_lua.c):
 * "list" = the JSON rows of `list --format jsonl`, each ended by "\n"
 * (bad = corrupt values, listed with their error; now = the time ages
 * count from, default the clock; mirrors = collection -> names it
 * mirrors), "export" = export lines (bad = values skipped, not BSON;
 * skipped = {collection, message} each, else nil). */
/* token_lines' options at 2 (a table): *lines and *now set; returns the
 * stack index of the mirrors table (or of nil), pushed. */
static int check_lines_opts(lua_State *L, int *lines, double *now)
{
    static const char *const known[] = {"match", "batch", "format", "now", "mirrors", "counts", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    rs_lua_check_options(L, 2, known);
    *lines = LINES_NONE;
    if (rs_lua_opt_field(L, 2, "format", RS_LUA_TCSTRING)) {
        const char *f = lua_tostring(L, -1);
        *lines = strcmp(f, "list") == 0 ? LINES_LIST : strcmp(f, "export") == 0 ? LINES_EXPORT : 0;
    }
    if (*lines == LINES_NONE)
        return rs_lua_raisef(L, RS_ERR_CONFIG, "token_lines: format must be \"list\" or \"export\"");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (rs_lua_opt_field(L, 2, "now", LUA_TNUMBER)) *now = lua_tonumber(L, -1);
    rs_lua_opt_field(L, 2, "mirrors", LUA_TTABLE);
    return lua_gettop(L);
}

static int store_token_lines(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    int lines;
    double now;
    int mirrors = check_lines_opts(L, &lines, &now);
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
 * Walks by jobs: store:start(name, ...) -> walk for token_batches,
 * resume_tokens, scan_keys and token_lines, with the blocking walk's
 * arguments; walk:start_next() -> job whose wait() gives the next batch,
 * or nil at the end:
 *   token_batches: names, values, ttls, times, n (as the blocking walk)
 *   token_lines:   text, rows, bad, skipped (as the blocking walk)
 *   resume_tokens: names, tokens, ttls, errors, n -- the blocking walk's
 *                  rows of one batch as arrays (a corrupt token: nil in
 *                  tokens, its error object in errors)
 *   scan_keys:     keys, values, ttls, n -- likewise
 * The loop adapters iterate over the rows of resume_tokens and scan_keys
 * one by one, as the blocking walk does. The fetch (rs_scan_next) runs on
 * a worker; the batch is pushed from the scan's buffer on the Lua thread
 * (the tokens decoded, the lines formatted there). One job at a time per
 * walk; a counts table gets not_strings after each batch.
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
enum { WALK_BATCHES, WALK_TOKENS, WALK_KEYS, WALK_LINES };

typedef struct batch_walk {
    rs_scan *scan;         /* NULL once closed (by whoever set SCAN_CLOSED) */
    atomic_int scan_state;
    atomic_int refs;       /* the walk userdata, and the job in flight */
    atomic_int busy;       /* a job of it is in flight */
    atomic_int lost;       /* a job that fetched was dropped unwaited */
    int ended;             /* Lua thread only, as the rest */
    int orphaned;          /* its store closed */
    int kind, raw;         /* WALK_*; resume_tokens{raw = true} */
    int lines;             /* token_lines: LINES_LIST or LINES_EXPORT */
    double now;            /* token_lines: ages are counted from it */
    rs_rowbuf buf;         /* token_lines: a batch's text, reused */
    int counts, mirrors;   /* registry refs (LUA_NOREF: none), dropped at close */
} batch_walk;

static void bwalk_release(batch_walk *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1) return;
    rs_scan_close(w->scan);
    rs_rowbuf_free(&w->buf);
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

/* The walk's counts table, when it has one, gets not_strings (Lua thread,
 * no fetch running). */
static void bwalk_counts(lua_State *L, batch_walk *w)
{
    if (w->counts == LUA_NOREF || !w->scan) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->counts);
    lua_pushinteger(L, (lua_Integer)rs_scan_not_strings(w->scan));
    lua_setfield(L, -2, "not_strings");
    lua_pop(L, 1);
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

/* resume_tokens and scan_keys: a batch as arrays, `e` (just read) and the
 * entries buffered with it: names, values, ttls, [errors,] n. */
static int push_rows(lua_State *L, rs_store *store, batch_walk *w, rs_scan_entry *e)
{
    lua_Integer n = 0;
    int tokens = w->kind == WALK_TOKENS && !w->raw;
    int base = lua_gettop(L), arrays = w->kind == WALK_TOKENS ? 4 : 3;
    for (int t = 0; t < arrays; t++) lua_createtable(L, 64, 0);     /* base+1..base+arrays */
    do {
        n++;
        lua_pushlstring(L, e->collection, e->collection_len);
        lua_rawseti(L, base + 1, n);
        if (!tokens) {
            lua_pushlstring(L, e->value, e->value_len);
            lua_rawseti(L, base + 2, n);
        } else {
            rs_error err = {0};
            if (rs_lua_push_token(L, store, e->collection, e->collection_len, e->value,
                                  e->value_len, &err)) {
                lua_rawseti(L, base + 2, n);
            } else {
                lua_pop(L, 1);                 /* its nil: a hole, as the blocking walk's */
                rs_lua_push_error(L, &err);
                lua_rawseti(L, base + 4, n);
            }
        }
        if (!(e->ttl < 0)) {                   /* no TTL: nil, a hole */
            push_ttl(L, e->ttl);
            lua_rawseti(L, base + 3, n);
        }
    } while (rs_scan_next_buffered(w->scan, e));
    lua_pushinteger(L, n);
    return arrays + 1;
}

static int push_next(lua_State *L, rs_store *store, void *arg, int rc)
{
    next_op *op = arg;
    batch_walk *w = op->w;
    op->consumed = 1;
    atomic_store(&w->busy, 0);
    if (atomic_load(&w->scan_state) == SCAN_CLOSED)   /* the batch went with it */
        return luaL_error(L, "attempt to use a walk of a closed store");
    bwalk_counts(L, w);
    if (rc == 0) {
        w->ended = 1;
        lua_pushnil(L);
        return 1;
    }
    switch (w->kind) {
    case WALK_TOKENS:
    case WALK_KEYS:
        return push_rows(L, store, w, &op->e);
    case WALK_LINES: {
        if (w->mirrors != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, w->mirrors);
        else lua_pushnil(L);
        lines_fmt f = {w->scan, &w->buf, w->lines, w->now};
        return lines_batch(L, &f, lua_gettop(L), &op->e);
    }
    default:
        return push_batch(L, w->scan, &op->e);
    }
}

static void fail_next(lua_State *L, void *arg)
{
    next_op *op = arg;
    op->consumed = 1;
    atomic_store(&op->w->busy, 0);
    if (atomic_load(&op->w->scan_state) != SCAN_CLOSED) bwalk_counts(L, op->w);
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
    "walk batch", sizeof(next_op), 0, NULL, run_next, push_next, fail_next, free_next,
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
    batch_walk *w = *box;
    *box = NULL;
    if (!w) return 0;
    luaL_unref(L, LUA_REGISTRYINDEX, w->counts);
    luaL_unref(L, LUA_REGISTRYINDEX, w->mirrors);
    w->counts = w->mirrors = LUA_NOREF;
    bwalk_release(w);                     /* a job in flight closes the scan when done */
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

/* Pushes a walk userdata (store at 1) with a new batch_walk of `kind`;
 * the caller opens its scan and calls bwalk_opened. */
static batch_walk *bwalk_new(lua_State *L, int kind)
{
    batch_walk **box = lua_newuserdatauv(L, sizeof *box, 1);
    *box = NULL;
    luaL_setmetatable(L, BWALK_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    batch_walk *w = calloc(1, sizeof *w);
    if (!w) luaL_error(L, "out of memory");
    atomic_init(&w->refs, 1);
    w->kind = kind;
    w->counts = w->mirrors = LUA_NOREF;
    *box = w;
    return w;
}

/* The scan opened (or not: raises) for the walk userdata at the top. */
static int bwalk_opened(lua_State *L, batch_walk *w, const rs_error *err)
{
    if (!w->scan) return rs_lua_raise(L, err);
    rs_lua_store_track(L, 1, -1, bwalk_orphan);
    return 1;
}

/* Starters (rs_op_lua.c): the store at 1, the walk's arguments from 2, as
 * the blocking walk checks them. Opening sends nothing (standalone; a
 * cluster's reads its slot map): the first SCAN is the first job's. */
static int start_token_batches(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    static const char *const known[] = {"match", "batch", "ttl", NULL};
    rs_lua_check_options(L, 2, known);
    walk_opts o;
    read_walk_opts(L, 2, &o);
    batch_walk *w = bwalk_new(L, WALK_BATCHES);
    rs_error err = {0};
    w->scan = rs_scan_open(store, o.match, o.batch, o.with_ttl, &err);
    return bwalk_opened(L, w, &err);
}

static int start_resume_tokens(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    lua_settop(L, 2);
    rs_lua_check_options(L, 2, list_options);
    walk_opts o;
    read_walk_opts(L, 2, &o);
    batch_walk *w = bwalk_new(L, WALK_TOKENS);
    w->raw = o.raw;
    w->counts = ref_counts(L, 2);
    rs_error err = {0};
    w->scan = rs_scan_open(store, o.match, o.batch, o.with_ttl, &err);
    return bwalk_opened(L, w, &err);
}

static int start_scan_keys(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    const char *pattern = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    static const char *const known[] = {"batch", "ttl", "counts", NULL};
    rs_lua_check_options(L, 3, known);
    walk_opts o;
    read_walk_opts(L, 3, &o);
    batch_walk *w = bwalk_new(L, WALK_KEYS);
    w->counts = ref_counts(L, 3);
    rs_error err = {0};
    w->scan = rs_scan_keys_open(store, pattern, o.batch, o.with_ttl, &err);
    return bwalk_opened(L, w, &err);
}

static int start_token_lines(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    int lines;
    double now;
    int mirrors = check_lines_opts(L, &lines, &now);
    walk_opts o;
    read_walk_opts(L, 2, &o);
    batch_walk *w = bwalk_new(L, WALK_LINES);
    w->lines = lines;
    w->now = now;
    if (lua_istable(L, mirrors)) {
        lua_pushvalue(L, mirrors);
        w->mirrors = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    w->counts = ref_counts(L, 2);
    rs_error err = {0};
    w->scan = rs_scan_open(store, o.match, o.batch, o.with_ttl, &err);
    return bwalk_opened(L, w, &err);
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

/* ---------------------------------------------------------------------
 * store:list_resume_tokens{match =, batch =, raw =, ttl =, counts =} ->
 * tokens, errors (both keyed by collection): an operation (rs_op_lua.c),
 * so store:start("list_resume_tokens", ...) runs it as one job. The walk
 * runs whole in `run` (opened, read and closed there: nothing of it
 * outlives the call, whatever happens to the store), copying the entries;
 * push decodes them on the Lua thread. The counts table is held by a
 * registry reference, dropped by push or fail (a job abandoned unwaited
 * leaves it until the state closes).
 * ------------------------------------------------------------------ */

typedef struct list_entry {
    double ttl;
    size_t coll_len, value_len;
    char bytes[];              /* collection, then value */
} list_entry;

typedef struct list_op {
    const char *match;
    size_t batch;
    int raw, with_ttl;
    int counts;                /* registry ref, or LUA_NOREF */
    size_t not_strings;
    list_entry **entries;
    size_t n, cap;
} list_op;

static void parse_list(lua_State *L, void *arg)
{
    list_op *op = arg;
    walk_opts o;
    rs_lua_check_options(L, 2, list_options);
    read_walk_opts(L, 2, &o);
    op->match = rs_lua_op_copy(L, op, o.match, strlen(o.match));
    op->batch = o.batch;
    op->raw = o.raw;
    op->with_ttl = o.with_ttl;
    op->counts = ref_counts(L, 2);         /* last: nothing raises after it */
}

static int list_keep(list_op *op, const rs_scan_entry *e, rs_error *err)
{
    if (op->n == op->cap) {
        size_t cap = op->cap ? op->cap * 2 : 64;
        list_entry **grown = realloc(op->entries, cap * sizeof *grown);
        if (!grown) goto nomem;
        op->entries = grown;
        op->cap = cap;
    }
    list_entry *k = malloc(sizeof *k + e->collection_len + e->value_len);
    if (!k) goto nomem;
    k->ttl = e->ttl;
    k->coll_len = e->collection_len;
    k->value_len = e->value_len;
    memcpy(k->bytes, e->collection, e->collection_len);
    if (e->value_len) memcpy(k->bytes + e->collection_len, e->value, e->value_len);
    op->entries[op->n++] = k;
    return 0;
nomem:
    err->kind = RS_ERR_NOMEM;
    snprintf(err->message, sizeof err->message, "out of memory");
    return -1;
}

static int run_list(rs_store *store, void *arg, rs_error *err)
{
    list_op *op = arg;
    rs_scan *scan = rs_scan_open(store, op->match, op->batch, op->with_ttl, err);
    if (!scan) return -1;
    rs_scan_entry e;
    int rc;
    while ((rc = rs_scan_next(scan, &e, err)) > 0)
        if (list_keep(op, &e, err) < 0) {
            rc = -1;
            break;
        }
    op->not_strings = rs_scan_not_strings(scan);
    rs_scan_close(scan);
    return rc < 0 ? -1 : 0;
}

static void list_counts(lua_State *L, list_op *op)
{
    if (op->counts == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->counts);
    luaL_unref(L, LUA_REGISTRYINDEX, op->counts);
    op->counts = LUA_NOREF;
    lua_pushinteger(L, (lua_Integer)op->not_strings);
    lua_setfield(L, -2, "not_strings");
    lua_pop(L, 1);
}

static int push_list(lua_State *L, rs_store *store, void *arg, int rc)
{
    list_op *op = arg;
    (void)rc;
    list_counts(L, op);
    lua_newtable(L);
    int tokens = lua_gettop(L);
    lua_newtable(L);
    int errors = lua_gettop(L);
    for (size_t i = 0; i < op->n; i++) {
        const list_entry *k = op->entries[i];
        const char *value = k->bytes + k->coll_len;
        lua_pushlstring(L, k->bytes, k->coll_len);
        if (op->raw) {
            lua_pushlstring(L, value, k->value_len);
            lua_rawset(L, tokens);
            continue;
        }
        rs_error err = {0};
        if (rs_lua_push_token(L, store, k->bytes, k->coll_len, value, k->value_len, &err)) {
            lua_rawset(L, tokens);
        } else {
            lua_pop(L, 1);                     /* the nil pushed for the token */
            rs_lua_push_error(L, &err);
            lua_getfield(L, -1, "message");
            lua_replace(L, -2);
            lua_rawset(L, errors);
        }
    }
    return 2;
}

static void fail_list(lua_State *L, void *arg)
{
    list_counts(L, arg);
}

static void free_list(void *arg)
{
    list_op *op = arg;
    for (size_t i = 0; i < op->n; i++) free(op->entries[i]);
    free(op->entries);
    op->entries = NULL;
    op->n = op->cap = 0;
}

static const rs_lua_op list_op_desc = {
    "list_resume_tokens", sizeof(list_op), 1, parse_list, run_list, push_list, fail_list, free_list,
};

static const luaL_Reg walk_methods[] = {
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
    rs_lua_add_starter(L, "resume_tokens", start_resume_tokens);
    rs_lua_add_starter(L, "scan_keys", start_scan_keys);
    rs_lua_add_starter(L, "token_lines", start_token_lines);
    static const rs_lua_op *const walk_ops[] = {&list_op_desc, NULL};
    rs_lua_add_ops(L, walk_ops);
}
