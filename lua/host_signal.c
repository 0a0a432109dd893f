/* host_signal.c -- SIGINT, SIGTERM and SIGHUP stop a script cleanly.
 *
 * The handler only records the signal and sets a Lua hook on the script's
 * state (lua_sethook may be called from a signal handler; lua.c does the
 * same). The hook runs at the next Lua instruction and raises an error of
 * kind "interrupted" -- and again at every instruction after that, so a
 * script's pcall cannot swallow it and carry on: the run unwinds to the
 * host, which removes every temporary file (host_files.c) and exits
 * 128 + the signal (130, 143, 129: SIGHUP is a closed terminal or a
 * dropped ssh session). Coroutines do not share their creator's hook once
 * made, so a light hook (every HOOK_EVERY instructions) is set before the
 * script runs: every coroutine inherits it, and it turns into the
 * every-instruction hook of its own coroutine once a signal came. A script blocked in C (a slow server, a
 * read from a pipe) sees it when the call returns; reads and waits are not
 * restarted (no SA_RESTART), so a blocked read ends at once.
 *
 * A signal that reaches another thread (the store's) is sent on to the
 * main thread, the one that runs Lua. A second signal while the first is
 * pending removes the temporary files and exits at once. A signal that was
 * ignored when the host started (nohup, a background job) stays ignored.
 *
 * A script that changes data registers host.on_stop(fn): once the stop
 * has unwound the run (the hook gone), the host calls fn(signal name), so
 * the script can still say what it did before it was stopped.
 *
 * SIGPIPE (stdout or stderr a pipe whose reader is gone, `list | head`)
 * keeps its default meaning, death with status 141, but the temporary
 * files are removed first. The store's sockets never raise it
 * (core/nosigpipe.c).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "host.h"

static volatile sig_atomic_t caught;       /* the signal, 0 = none yet */
static lua_State *volatile hooked;          /* the script's state, or NULL */
static pthread_t main_thread;

#define HOOK_EVERY 1000
#define STOP_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

static int interrupted_tostring(lua_State *L)
{
    lua_getfield(L, 1, "message");
    return 1;
}

/* Raises {kind = "interrupted", message = "interrupted by SIGTERM", signal = 15}. */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (!caught) return;            /* the light hook, before any signal */
    lua_sethook(L, stop_hook, STOP_MASK, 1);
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "interrupted");
    lua_setfield(L, -2, "kind");
    lua_pushfstring(L, "interrupted by %s", signal_name(caught));
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, caught);
    lua_setfield(L, -2, "signal");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "retryable");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "attempts");
    if (luaL_newmetatable(L, "rigatoni_store.interrupted")) {
        lua_pushcfunction(L, interrupted_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_setmetatable(L, -2);
    lua_error(L);
}

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGPIPE) {
        /* Blocked while this runs: raised again, it ends the process on return. */
        host_files_cleanup();
        signal(SIGPIPE, SIG_DFL);
        raise(SIGPIPE);
    } else if (!pthread_equal(pthread_self(), main_thread)) {
        pthread_kill(main_thread, sig);
    } else if (caught) {
        host_files_cleanup();
        _exit(128 + caught);
    } else {
        caught = sig;
        lua_State *L = hooked;
        if (L) lua_sethook(L, stop_hook, STOP_MASK, 1);
    }
    errno = saved;
}

void host_signal_install(lua_State *L)
{
    main_thread = pthread_self();
    hooked = L;
    lua_sethook(L, stop_hook, LUA_MASKCOUNT, HOOK_EVERY);   /* before any coroutine exists */
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old, sa;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, SIGINT);
        sigaddset(&sa.sa_mask, SIGTERM);
        sigaddset(&sa.sa_mask, SIGHUP);
        sigaddset(&sa.sa_mask, SIGPIPE);
        sigaction(sigs[i], &sa, NULL);
    }
}

void host_signal_detach(lua_State *L)
{
    hooked = NULL;                  /* first: the handler no longer touches L */
    lua_sethook(L, NULL, 0, 0);
}

int host_signal_caught(void)
{
    return caught;
}

const char *host_signal_name(int sig)
{
    return signal_name(sig);
}

/* host.interrupted() -> "SIGINT" | "SIGTERM" | nil: for a loop that would
 * rather stop between steps than in the middle of one. */
static int host_interrupted(lua_State *L)
{
    if (!caught) return 0;
    lua_pushstring(L, signal_name(caught));
    return 1;
}

#define ON_STOP_KEY "rigatoni_store.on_stop"

/* host.on_stop(fn): fn(signal name) runs after a stop has unwound the run. */
static int host_on_stop(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, ON_STOP_KEY);
    return 0;
}

void host_signal_run_on_stop(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, ON_STOP_KEY) != LUA_TFUNCTION || !caught) {
        lua_pop(L, 1);
        return;
    }
    lua_pushstring(L, signal_name(caught));
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = luaL_tolstring(L, -1, NULL);
        fprintf(stderr, "rigatoni-store: reporting the stopped run failed: %s\n", msg);
        lua_pop(L, 2);
    }
}

void host_signal_register(lua_State *L)
{
    lua_getglobal(L, "host");
    lua_pushcfunction(L, host_interrupted);
    lua_setfield(L, -2, "interrupted");
    lua_pushcfunction(L, host_on_stop);
    lua_setfield(L, -2, "on_stop");
    lua_pop(L, 1);
}
