/* SPDX-License-Identifier: MIT */
/* rs_log_lua.c -- the core's log lines, delivered to a Lua function.
 *
 *   rs.set_log_handler(function(level, message) ... end)   -- nil: the default
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

static void deliver(lua_State *L, rs_log_level level, const char *text)
{
    delivery d = {level, text};
    lua_pushcfunction(L, call_handler);
    lua_pushlightuserdata(L, &d);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *why = lua_tostring(L, -1);
        if (!failure_shown++ && default_fn) {
            char line[600];
            snprintf(line, sizeof line, "the log handler failed (later failures not shown): %.500s",
                     why ? why : "(error object)");
            default_fn(RS_LOG_WARN, line, default_data);
        }
        lua_pop(L, 1);
    }
}

void rs_lua_log_drain(lua_State *L)
{
    if (!atomic_load_explicit(&pending, memory_order_relaxed) || draining) return;
    const void *me = main_thread(L);
    log_line batch[QUEUE_MAX];
    size_t n = 0;
    unsigned long lost;
    pthread_mutex_lock(&queue_lock);
    if (owner != me) {
        pthread_mutex_unlock(&queue_lock);
        return;
    }
    while (count) {
        batch[n++] = queue[head];
        head = (head + 1) % QUEUE_MAX;
        count--;
    }
    lost = dropped;
    dropped = 0;
    atomic_store_explicit(&pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(&queue_lock);

    draining = 1;
    if (lost) {
        char text[160];
        snprintf(text, sizeof text,
                 "%lu log line%s dropped: more than %d waited for Lua to run the log handler",
                 lost, lost == 1 ? "" : "s", QUEUE_MAX);
        deliver(L, RS_LOG_WARN, text);
    }
    for (size_t i = 0; i < n; i++) {
        deliver(L, batch[i].level, batch[i].text);
        free(batch[i].text);
    }
    draining = 0;
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
static int l_set_log_handler(lua_State *L)
{
    const void *me = main_thread(L);
    if (lua_isnoneornil(L, 1)) {
        rs_lua_log_drain(L);   /* what was logged before goes to the old handler */
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
 * a lease thread logged while the script was busy elsewhere). */
static int l_flush_log(lua_State *L)
{
    rs_lua_log_drain(L);
    return 0;
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
