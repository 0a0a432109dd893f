/* SPDX-License-Identifier: MIT */
/* oom_lua.c -- out-of-memory injection for the Lua bindings.
 *
 *   oom_lua SCRIPT [ARGS...]
 *
 * Runs SCRIPT once (with ARGS as `...`) in a state whose allocator can be
 * made to fail; the script sets things up (opens a store, saves tokens)
 * and returns a function, the body. The body is then called again and
 * again: in run N, Lua's allocations succeed until the N-th one of the
 * body and fail from there on (failing only the N-th would be hidden by
 * Lua's emergency collection, which retries). N runs from 1 until the body
 * completes without reaching its N-th allocation, so a memory error is
 * raised once at every allocation of every binding the body calls.
 *
 * Each run must end normally or with a memory error (the body may ask
 * oom_hit() whether an allocation failed in it), and the bindings
 * must not leak what the core malloc'd for them meanwhile: `make
 * test-lua-asan` builds this harness with AddressSanitizer, and
 * LeakSanitizer reports (exit 23) whatever is left at exit, after
 * lua_close. Exit 0 and a last line "oom_lua: R runs" when all is well.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

typedef struct injector {
    int armed;            /* counting the body's allocations */
    long count, fail_at;  /* fail_at-th and later allocations fail */
    int hit;              /* an allocation failed in this run */
} injector;

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    injector *in = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* Lua requires shrinking to succeed; only growth may fail. */
    int grows = ptr == NULL || nsize > osize;
    if (in->armed && grows && ++in->count >= in->fail_at) {
        in->hit = 1;
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* oom_hit() -> whether an allocation failed in this run (for a body that
 * checks what only a run without failure guarantees). */
static int oom_hit(lua_State *L)
{
    injector *in;
    lua_getallocf(L, (void **)&in);
    lua_pushboolean(L, in->hit);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
        return 2;
    }
    injector in = {0};
    lua_State *L = lua_newstate(alloc, &in);
    if (!L) return 1;
    luaL_openlibs(L);
    /* lua_close unloads the module; kept mapped, a leak report names its
     * functions instead of "<unknown module>". */
    if (luaL_dostring(L, "return package.searchpath('rigatoni_store', package.cpath)") == LUA_OK &&
        lua_isstring(L, -1))
        dlopen(lua_tostring(L, -1), RTLD_NOW | RTLD_NODELETE);
    lua_settop(L, 0);
    lua_register(L, "oom_hit", oom_hit);
    int status = luaL_loadfile(L, argv[1]);
    luaL_checkstack(L, argc, "too many arguments");   /* 20 free slots, no more */
    for (int i = 2; status == LUA_OK && i < argc; i++) lua_pushstring(L, argv[i]);
    if (status == LUA_OK) status = lua_pcall(L, argc - 2, 1, 0);
    if (status != LUA_OK || !lua_isfunction(L, -1)) {
        fprintf(stderr, "oom_lua: %s: setup failed: %s\n", argv[1],
                status == LUA_OK ? "did not return a function" : lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    int body = lua_gettop(L), bad = 0;
    long runs = 0;
    for (long n = 1; !bad; n++) {
        in = (injector){.armed = 1, .fail_at = n};
        lua_pushvalue(L, body);
        status = lua_pcall(L, 0, 0, 0);
        in.armed = 0;
        runs++;
        if (status != LUA_OK && status != LUA_ERRMEM) {
            const char *msg = luaL_tolstring(L, -1, NULL);
            fprintf(stderr,
                    "oom_lua: run %ld (allocations fail from the %ld-th on): not a memory error: %s\n",
                    runs, n, msg);
            bad = 1;
        }
        lua_settop(L, body);
        lua_gc(L, LUA_GCCOLLECT);   /* boxes of the failed run free what they own */
        if (!in.hit) break;         /* the body needs fewer than n allocations */
    }
    lua_close(L);
    if (!bad) printf("oom_lua: %ld runs\n", runs);
    fflush(stdout);   /* LeakSanitizer's report exits without flushing */
    return bad;
}
