/* SPDX-License-Identifier: MIT */
/* asan_lua.c -- a minimal Lua 5.4 interpreter for the sanitizer runs.
 *
 * `make test` builds it with AddressSanitizer + UndefinedBehaviorSanitizer
 * as build-asan/bin/lua5.4 and runs busted with it (and, through PATH,
 * every child `lua5.4` a spec starts) against build-asan/rigatoni_store.so.
 * Linking the sanitizer runtime into the interpreter, instead of
 * LD_PRELOAD, keeps it out of redis-server and redis-cli, which the specs
 * start too. Usage: lua5.4 SCRIPT [ARGS...] or lua5.4 -e CODE; `arg` is set
 * as by the stock interpreter. The state is closed at exit, so whatever
 * the module leaks shows up in LeakSanitizer's report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [ARGS...] | -e CODE\n", argv[0]);
        return 2;
    }
    lua_State *L = luaL_newstate();
    if (!L) return 1;
    luaL_openlibs(L);

    int code = argc >= 3 && strcmp(argv[1], "-e") == 0;
    int script = code ? 2 : 1;
    lua_createtable(L, argc, 2);
    lua_pushstring(L, argv[0]);
    lua_rawseti(L, -2, -script);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");

    lua_pushcfunction(L, traceback);
    int status = code ? luaL_loadstring(L, argv[2]) : luaL_loadfile(L, argv[1]);
    int nargs = 0;
    if (status == LUA_OK) {
        /* A C caller owns LUA_MINSTACK (20) free slots, no more: busted
         * gets one argument per spec file (over 40), and pushing past the
         * stack wrote over the heap (an ASan allocator CHECK, later). */
        luaL_checkstack(L, argc, "too many arguments");
        for (int i = script + 1; i < argc; i++, nargs++) lua_pushstring(L, argv[i]);
        status = lua_pcall(L, nargs, 0, 1);
    }
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "%s: %s\n", argv[0], msg ? msg : "(error object)");
    }
    lua_close(L);
    return status == LUA_OK ? 0 : 1;
}
