/* host_signal.c -- SIGINT and SIGTERM stop a script cleanly.
 *
 * The handler only records the signal and sets a Lua hook on the script's
 * state (lua_sethook may be called from a signal handler; lua.c does the
 * same). The hook runs at the next Lua instruction and raises an error of
 * kind "interrupted" -- and again at every instruction after that, so a
 * script's pcall cannot swallow it and carry on: the run unwinds to the
 * host, which removes every temporary file (host_files.c) and exits
 * 128 + the signal (130, 143). A script blocked in C (a slow server, a
 * read from a pipe) sees it when the call returns; reads and waits are not
 * restarted (no SA_RESTART), so a blocked read ends at once.
 *
 * A signal that reaches another thread (the store's) is sent on to the
 * main thread, the one that runs Lua. A second signal while the first is
 * pending removes the temporary files and exits at once. A signal that was
 * ignored when the host started (nohup, a background job) stays ignored.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "host.h"

static volatile sig_atomic_t caught;       /* the signal, 0 = none yet */
static lua_State *volatile hooked;          /* the script's state, or NULL */
static pthread_t main_thread;

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
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
    if (!pthread_equal(pthread_self(), main_thread)) {
        pthread_kill(main_thread, sig);
    } else if (caught) {
        host_files_cleanup();
        _exit(128 + caught);
    } else {
        caught = sig;
        lua_State *L = hooked;
        if (L) lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    }
    errno = saved;
}

void host_signal_install(lua_State *L)
{
    main_thread = pthread_self();
    hooked = L;
    static const int sigs[] = {SIGINT, SIGTERM};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old, sa;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, SIGINT);
        sigaddset(&sa.sa_mask, SIGTERM);
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

void host_signal_register(lua_State *L)
{
    lua_getglobal(L, "host");
    lua_pushcfunction(L, host_interrupted);
    lua_setfield(L, -2, "interrupted");
    lua_pop(L, 1);
}
