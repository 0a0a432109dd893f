/* SPDX-License-Identifier: MIT */
/* rs_log_lua.c -- the core's log lines, delivered to a Lua function.
 *
 *   rs.set_log_handler(function(level, message) ... end)   -- nil: the default
 *   rs.set_log_handler(fn, {yields = true})   -- fn may yield (event loops)
 *   rs.set_log_level("debug")   rs.log_level() --> "debug"   rs.flush_log()
 *
 * Every store the module opens has rs_lua_log_hook as its config's log
 * handler (the core itself never prints). Without a Lua handler the hook
 * passes a line to the default one a host program installed with
 * rs_lua_set_log_default (the rigatoni-store host: its one stderr
 * format), or drops it when there is none (the module loaded by plain
 * Lua stays silent).
 *
 * The core logs from any thread: the caller's, lease keep-alive threads,
 * threads of a C program that embeds Lua. A lua_State may only be entered
 * by the thread running it, and calling Lua from inside the core would be
 * unsafe even on that thread (an error in the handler would longjmp
 * through core frames that hold locks; a handler that logs would deadlock
 * on the log mutex). So the hook never touches Lua: it copies the line
 * into a bounded queue under its own mutex (QUEUE_MAX lines; past that,
 * lines are counted and dropped, and a warning says how many). The state
 * that set the handler drains the queue into the Lua function, in order,
 * at safe points: on entry to and return from every store method, just
 * before a store error is raised (so the lines about the retries come
 * before the error), and on rs.flush_log(). Lines that a background
 * thread logs while Lua is idle arrive at the next of these. The handler
 * runs under pcall: its first error is reported to the default handler
 * and otherwise ignored; lines it causes wait for the next drain. Closing
 * the state that owns the handler gives the lines back to the default.
 *
 * A handler set with {yields = true} (for event loops: it may yield, e.g.
 * write to a cqueues socket) is never called from inside a C function,
 * where a yield fails ("attempt to yield across a C-call boundary"): the
 * drains above skip it, its lines wait in the same bounded queue, and
 * rs.flush_log() delivers them from the calling coroutine, with
 * lua_pcallk continuations so the handler may yield between lines. The
 * loop adapters call it after every job, before the job's results or
 * error. The lines of a flush move to a Lua table (the registry's, so a
 * coroutine abandoned in the middle leaves the rest to the next flush);
 * one coroutine delivers at a time (a second flush meanwhile returns at
 * once), which keeps the order; a flush takes the lines queued when it
 * began, so lines the handler causes wait for the next one.
 *
 * Lines come from the core already masked (no passwords, no token bytes
 * above debug), so the handler may forward them anywhere.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_lua.h"

#define QUEUE_MAX 256
#define HANDLER_KEY "rigatoni_store.log_handler"
#define GUARD_KEY "rigatoni_store.log_guard"
#define GUARD_MT "rigatoni_store.log_guard"
#define LINES_KEY "rigatoni_store.log_lines"   /* yields: lines taken, not yet delivered */

typedef struct log_line {
    rs_log_level level;
    char *text;
} log_line;

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static log_line queue[QUEUE_MAX];          /* ring: head, count */
static size_t head, count;
static unsigned long dropped;
static const void *owner;                  /* main thread of the owning state; only compared */
static atomic_int pending;                 /* lines (or drops) wait: the cheap check */
static atomic_int handler_yields;          /* the handler was set with {yields = true} */
static _Thread_local int draining;
static int failure_shown;                  /* the handler's first error was reported */
static rs_log_fn default_fn;               /* set by the host before any state runs */
static void *default_data;

void rs_lua_set_log_default(rs_log_fn fn, void *userdata)
{
    default_fn = fn;
    default_data = userdata;
}

/* The handler of every store's config: any thread, under the core's log
 * mutex. Queued for the Lua handler when a state set one, else handed to
 * the default (none: dropped). */
void rs_lua_log_hook(rs_log_level level, const char *message, void *userdata)
{
    pthread_mutex_lock(&queue_lock);
    if (!owner) {
        pthread_mutex_unlock(&queue_lock);
        if (default_fn) default_fn(level, message, default_data);
        return;
    }
    char *copy = strdup(message);
    if (!copy || count == QUEUE_MAX) {
        dropped++;
        free(copy);
    } else {
        queue[(head + count) % QUEUE_MAX] = (log_line){level, copy};
        count++;
    }
    atomic_store_explicit(&pending, 1, memory_order_relaxed);
    pthread_mutex_unlock(&queue_lock);
}

static void clear_queue_locked(void)
{
    while (count) {
        free(queue[head].text);
        head = (head + 1) % QUEUE_MAX;
        count--;
    }
    dropped = 0;
    atomic_store_explicit(&pending, 0, memory_order_relaxed);
}

static const void *main_thread(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    const void *m = lua_topointer(L, -1);
    lua_pop(L, 1);
    return m;
}

typedef struct delivery {
    rs_log_level level;
    const char *text;
} delivery;

/* Calls the handler with one line; run protected, so that a memory error
 * while the strings are pushed cannot escape the drain (which still owns
 * the lines of its batch and must free them). */
static int call_handler(lua_State *L)
{
    const delivery *d = lua_touserdata(L, 1);
    if (lua_getfield(L, LUA_REGISTRYINDEX, HANDLER_KEY) != LUA_TFUNCTION) return 0;
    lua_pushstring(L, rs_log_level_name(d->level));
    lua_pushstring(L, d->text);
    lua_call(L, 2, 0);
    return 0;
}

/* A handler call that ended with `status`: its error (at the top) is
 * reported once to the default handler, and popped. */
static void handler_ended(lua_State *L, int status)
{
    if (status == LUA_OK || status == LUA_YIELD) return;
    const char *why = lua_tostring(L, -1);
    if (!failure_shown++ && default_fn) {
        char line[600];
        snprintf(line, sizeof line, "the log handler failed (later failures not shown): %.500s",
                 why ? why : "(error object)");
        default_fn(RS_LOG_WARN, line, default_data);
    }
    lua_pop(L, 1);
}

static void deliver(lua_State *L, rs_log_level level, const char *text)
{
    delivery d = {level, text};
    lua_pushcfunction(L, call_handler);
    lua_pushlightuserdata(L, &d);
    handler_ended(L, lua_pcall(L, 1, 0, 0));
}

/* The lines queued for this state, taken out of the queue: n of them in
 * `lines`, and `lost` dropped. */
typedef struct taken {
    log_line lines[QUEUE_MAX];
    size_t n;
    unsigned long lost;
} taken;

/* 0 when nothing was taken (no line waits, or another state owns them). */
static int take(lua_State *L, taken *t)
{
    t->n = 0;
    t->lost = 0;
    if (!atomic_load_explicit(&pending, memory_order_relaxed)) return 0;
    const void *me = main_thread(L);
    pthread_mutex_lock(&queue_lock);
    if (owner != me) {
        pthread_mutex_unlock(&queue_lock);
        return 0;
    }
    while (count) {
        t->lines[t->n++] = queue[head];
        head = (head + 1) % QUEUE_MAX;
        count--;
    }
    t->lost = dropped;
    dropped = 0;
    atomic_store_explicit(&pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(&queue_lock);
    return 1;
}

static void lost_text(char *text, size_t size, unsigned long lost)
{
    snprintf(text, size, "%lu log line%s dropped: more than %d waited for Lua to run the log handler",
             lost, lost == 1 ? "" : "s", QUEUE_MAX);
}

/* Delivers what was taken and frees it (the handler called with pcall). */
static void deliver_taken(lua_State *L, taken *t)
{
    draining = 1;
    if (t->lost) {
        char text[160];
        lost_text(text, sizeof text, t->lost);
        deliver(L, RS_LOG_WARN, text);
    }
    for (size_t i = 0; i < t->n; i++) {
        deliver(L, t->lines[i].level, t->lines[i].text);
        free(t->lines[i].text);
    }
    t->n = 0;
    draining = 0;
}

void rs_lua_log_drain(lua_State *L)
{
    if (atomic_load_explicit(&handler_yields, memory_order_relaxed) || draining) return;
    taken t;
    if (take(L, &t)) deliver_taken(L, &t);
}

/* ---------------------------------------------------------------------
 * The drain of a handler that yields: rs.flush_log() in a coroutine
 *
 * The registry's LINES_KEY table holds the lines taken and not yet
 * delivered: level at 2i-1, message at 2i for i in h..n; `drainer` is
 * the coroutine delivering them (the table's values are weak: a
 * coroutine collected in the middle frees the place).
 * ------------------------------------------------------------------ */

static int push_lines_table(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, LINES_KEY) == LUA_TTABLE) return lua_gettop(L);
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, LINES_KEY);
    return lua_gettop(L);
}

static lua_Integer get_int(lua_State *L, int t, const char *key, lua_Integer dflt)
{
    lua_getfield(L, t, key);
    lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static void set_int(lua_State *L, int t, const char *key, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, t, key);
}

static void append_line(lua_State *L, int t, const char *level, const char *text)
{
    lua_Integer n = get_int(L, t, "n", 0) + 1;
    lua_pushstring(L, level);
    lua_rawseti(L, t, 2 * n - 1);
    lua_pushstring(L, text);
    lua_rawseti(L, t, 2 * n);
    set_int(L, t, "n", n);
}

/* Appends what was taken to the table at 1; run protected (a memory
 * error must not leak the lines, which the caller frees). */
static int append_taken(lua_State *L)
{
    taken *t = lua_touserdata(L, 2);
    if (t->lost) {
        char text[160];
        lost_text(text, sizeof text, t->lost);
        append_line(L, 1, rs_log_level_name(RS_LOG_WARN), text);
    }
    for (size_t i = 0; i < t->n; i++)
        append_line(L, 1, rs_log_level_name(t->lines[i].level), t->lines[i].text);
    return 0;
}

/* Whether another live coroutine (or this one, re-entering from the
 * handler) is delivering the table's lines. */
static int drain_busy(lua_State *L, int t)
{
    if (lua_getfield(L, t, "drainer") != LUA_TTHREAD) {
        lua_pop(L, 1);
        return 0;
    }
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_Debug ar;
    if (co == L || lua_status(co) == LUA_YIELD) return 1;
    return lua_status(co) == LUA_OK && lua_getstack(co, 0, &ar);  /* else dead or closed */
}

/* Delivers up to `left` lines of the table at 1, one handler call each,
 * in the calling coroutine: a handler that yields suspends the loop
 * here, and flush_k goes on once it is resumed. */
static int flush_k(lua_State *L, int status, lua_KContext left);

static int flush_loop(lua_State *L, lua_KContext left)
{
    while (left > 0) {
        lua_settop(L, 1);
        lua_Integer h = get_int(L, 1, "h", 1), n = get_int(L, 1, "n", 0);
        if (h > n) break;
        if (lua_getfield(L, LUA_REGISTRYINDEX, HANDLER_KEY) != LUA_TFUNCTION) break;
        lua_rawgeti(L, 1, 2 * h - 1);
        lua_rawgeti(L, 1, 2 * h);
        lua_pushnil(L);
        lua_rawseti(L, 1, 2 * h - 1);
        lua_pushnil(L);
        lua_rawseti(L, 1, 2 * h);
        set_int(L, 1, "h", h + 1);         /* taken before the call: never twice */
        left--;
        handler_ended(L, lua_pcallk(L, 2, 0, 0, left, flush_k));
    }
    lua_settop(L, 1);
    lua_getfield(L, 1, "drainer");
    if (lua_tothread(L, -1) == L) {
        lua_pushnil(L);
        lua_setfield(L, 1, "drainer");
    }
    if (get_int(L, 1, "h", 1) > get_int(L, 1, "n", 0)) {
        set_int(L, 1, "h", 1);
        set_int(L, 1, "n", 0);
    }
    return 0;
}

static int flush_k(lua_State *L, int status, lua_KContext left)
{
    handler_ended(L, status);
    return flush_loop(L, left);
}

/* The lines taken by a yields drain and not delivered yet: to the handler
 * now, without yielding (the handler is being replaced), then dropped. */
static void flush_table_now(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, LINES_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    int t = lua_gettop(L);
    lua_Integer h = get_int(L, t, "h", 1), n = get_int(L, t, "n", 0);
    for (; h <= n; h++) {
        rs_log_level level = RS_LOG_WARN;
        lua_rawgeti(L, t, 2 * h - 1);
        lua_rawgeti(L, t, 2 * h);
        rs_log_level_parse(lua_tostring(L, -2), &level);
        if (lua_type(L, -1) == LUA_TSTRING) deliver(L, level, lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    set_int(L, t, "h", n + 1);             /* a drain suspended on it finds nothing left */
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LINES_KEY);
}

/* ---------------------------------------------------------------------
 * Library functions
 * ------------------------------------------------------------------ */

/* Collected with the owning state: the lines go to the default again. */
static int guard_gc(lua_State *L)
{
    const void **guard = luaL_checkudata(L, 1, GUARD_MT);
    int mine;
    pthread_mutex_lock(&queue_lock);
    mine = owner == *guard;
    if (mine) {
        owner = NULL;
        clear_queue_locked();
    }
    pthread_mutex_unlock(&queue_lock);
    return 0;
}

/* rs.set_log_handler(fn) -- fn(level, message) receives every log line;
 * nil gives them back to the default (the host's stderr format; none:
 * dropped). */
/* What was logged before goes to the old handler (one set with yields
 * too: called here without yielding; rs.flush_log() in its coroutine
 * first gives it the lines where it may yield). */
static void drain_old(lua_State *L)
{
    flush_table_now(L);
    if (draining) return;
    taken t;
    if (take(L, &t)) deliver_taken(L, &t);
}

static int l_set_log_handler(lua_State *L)
{
    const void *me = main_thread(L);
    int yields = 0;
    static const char *const known[] = {"yields", NULL};
    if (rs_lua_check_options(L, 2, known)) {
        yields = rs_lua_opt_field(L, 2, "yields", LUA_TBOOLEAN) && lua_toboolean(L, -1);
        lua_settop(L, 2);
    }
    if (lua_isnoneornil(L, 1)) {
        drain_old(L);
        atomic_store(&handler_yields, 0);
        pthread_mutex_lock(&queue_lock);
        if (owner == me) {
            owner = NULL;
            clear_queue_locked();
        }
        pthread_mutex_unlock(&queue_lock);
        lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, HANDLER_KEY);
        return 0;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    drain_old(L);
    if (lua_getfield(L, LUA_REGISTRYINDEX, GUARD_KEY) == LUA_TNIL) {
        const void **guard = lua_newuserdatauv(L, sizeof *guard, 0);
        *guard = me;
        if (luaL_newmetatable(L, GUARD_MT)) {
            lua_pushcfunction(L, guard_gc);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, GUARD_KEY);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, HANDLER_KEY);
    failure_shown = 0;
    atomic_store(&handler_yields, yields);
    pthread_mutex_lock(&queue_lock);
    owner = me;
    pthread_mutex_unlock(&queue_lock);
    return 0;
}

/* rs.set_log_level("error" | "warn" | "info" | "debug") -- process-wide. */
static int l_set_log_level(lua_State *L)
{
    rs_log_level level;
    if (rs_log_level_parse(luaL_checkstring(L, 1), &level) < 0)
        return luaL_argerror(L, 1, "error, warn, info or debug expected");
    rs_log_set_level(level);
    return 0;
}

static int l_log_level(lua_State *L)
{
    lua_pushstring(L, rs_log_level_name(rs_log_get_level()));
    return 1;
}

/* rs.flush_log() -- hands waiting lines to the handler now (e.g. lines
 * a lease thread logged while the script was busy elsewhere). For a
 * handler set with {yields = true}, the only place it is called: from
 * the calling coroutine, which it may suspend. */
static int l_flush_log(lua_State *L)
{
    if (!atomic_load_explicit(&handler_yields, memory_order_relaxed)) {
        rs_lua_log_drain(L);
        return 0;
    }
    lua_settop(L, 0);
    push_lines_table(L);                  /* 1 */
    if (drain_busy(L, 1)) return 0;       /* that drain delivers in order */
    taken t;
    if (take(L, &t)) {
        lua_pushcfunction(L, append_taken);
        lua_pushvalue(L, 1);
        lua_pushlightuserdata(L, &t);
        int status = lua_pcall(L, 2, 0, 0);
        for (size_t i = 0; i < t.n; i++) free(t.lines[i].text);
        if (status != LUA_OK) return lua_error(L);
    }
    lua_Integer left = get_int(L, 1, "n", 0) - get_int(L, 1, "h", 1) + 1;
    if (left <= 0) return 0;
    lua_pushthread(L);
    lua_setfield(L, 1, "drainer");
    return flush_loop(L, left);
}

static const luaL_Reg log_funcs[] = {
    {"set_log_handler", l_set_log_handler},
    {"set_log_level", l_set_log_level},
    {"log_level", l_log_level},
    {"flush_log", l_flush_log},
    {NULL, NULL},
};

void rs_lua_open_log(lua_State *L)
{
    luaL_setfuncs(L, log_funcs, 0);
}
