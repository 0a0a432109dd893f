/* rs_error_lua.c -- failures as structured Lua error objects.
 *
 * Every failure of the module raises a table {kind, message, retryable,
 * attempts} with a metatable whose __tostring reads "<kind>: <message>",
 * so `pcall` users can branch on err.kind and plain `error` output still
 * reads well. Messages come from the core already masked. A failure that
 * is a server's error reply also has `reply`, its class ("noperm",
 * "noscript", ..., "other" for a plain ERR), so a caller tells replies
 * apart by their type, never by their text.
 */
#include <stdarg.h>
#include <stdio.h>

#include "rs_lua.h"

#define ERROR_MT "rigatoni_store.error"

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "kind");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s: %s", luaL_optstring(L, -2, "error"), luaL_optstring(L, -1, ""));
    return 1;
}

int rs_lua_raise(lua_State *L, const rs_error *err)
{
    rs_lua_push_error(L, err);
    return lua_error(L);
}

/* err.reply: the class of the error reply (rs_reply_classify). */
static const char *const reply_names[] = {
    [RS_REPLY_MOVED] = "moved",       [RS_REPLY_ASK] = "ask",
    [RS_REPLY_NOSCRIPT] = "noscript", [RS_REPLY_READONLY] = "readonly",
    [RS_REPLY_MASTERDOWN] = "masterdown", [RS_REPLY_LOADING] = "loading",
    [RS_REPLY_BUSY] = "busy",         [RS_REPLY_TRYAGAIN] = "tryagain",
    [RS_REPLY_CLUSTERDOWN] = "clusterdown", [RS_REPLY_OOM] = "oom",
    [RS_REPLY_NOAUTH] = "noauth",     [RS_REPLY_NOPERM] = "noperm",
    [RS_REPLY_MAXCLIENTS] = "maxclients", [RS_REPLY_OTHER] = "other",
};

void rs_lua_push_error(lua_State *L, const rs_error *err)
{
    rs_lua_log_drain(L);   /* the lines about this failure come before it */
    lua_createtable(L, 0, 5);
    lua_pushstring(L, rs_error_kind_name(err->kind));
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, err->message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, err->retryable);
    lua_setfield(L, -2, "retryable");
    lua_pushinteger(L, err->attempts);
    lua_setfield(L, -2, "attempts");
    if ((size_t)err->reply < sizeof reply_names / sizeof reply_names[0] && reply_names[err->reply]) {
        lua_pushstring(L, reply_names[err->reply]);
        lua_setfield(L, -2, "reply");
    }
    luaL_setmetatable(L, ERROR_MT);
}

int rs_lua_raisef(lua_State *L, rs_error_kind kind, const char *fmt, ...)
{
    rs_error err = {.kind = kind};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return rs_lua_raise(L, &err);
}

void rs_lua_open_error(lua_State *L)
{
    if (luaL_newmetatable(L, ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}
