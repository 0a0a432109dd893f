/* SPDX-License-Identifier: MIT */
/* rs_options_lua.c -- the options tables of the bindings, checked.
 *
 * A binding that takes an options table ({lock =, owner =}, {match =, ...})
 * first checks its keys against the names it knows: a typo, or an option
 * the function does not have, is an argument error instead of being
 * ignored ({if_valu = b} must not delete unconditionally). Keys are read
 * raw with lua_next, so a proxy whose fields come from __index has no keys
 * to refuse; its values are still read through __index, one field at a
 * time, each checked for its type as it is read.
 */
#include <string.h>

#include "rs_lua.h"

/* How much of an unknown key the message quotes. */
#define KEY_SHOWN 64

/* Raises "unknown option 'key'; known: a, b" for argument `arg`. */
static int unknown_option(lua_State *L, int arg, const char *const known[], const char *key,
                          size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "unknown option '");
    for (size_t i = 0; i < len && i < KEY_SHOWN; i++) {
        unsigned char c = (unsigned char)key[i];
        luaL_addchar(&b, c < 0x20 || c == 0x7f ? '?' : (char)c);   /* one printable line */
    }
    luaL_addstring(&b, len > KEY_SHOWN ? "...'; known: " : "'; known: ");
    for (int i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
    }
    luaL_pushresult(&b);
    return luaL_argerror(L, arg, lua_tostring(L, -1));
}

int rs_lua_check_options(lua_State *L, int arg, const char *const known[])
{
    if (lua_isnoneornil(L, arg)) return 0;
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, arg)) {
        lua_pop(L, 1);   /* the value; the key stays, for lua_next and the message */
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_argerror(L, arg, lua_pushfstring(L, "option names must be strings, got %s",
                                                         luaL_typename(L, -1)));
        size_t len;
        const char *key = lua_tolstring(L, -1, &len);
        int i = 0;
        while (known[i] && !(strlen(known[i]) == len && memcmp(known[i], key, len) == 0)) i++;
        if (!known[i]) return unknown_option(L, arg, known, key, len);
    }
    return 1;
}

static const char *type_wanted(int type)
{
    switch (type) {
    case RS_LUA_TINTEGER: return "an integer";
    case RS_LUA_TCSTRING:
    case LUA_TSTRING: return "a string";
    case LUA_TBOOLEAN: return "a boolean";
    case LUA_TNUMBER: return "a number";
    case LUA_TTABLE: return "a table";
    default: return "something else";
    }
}

int rs_lua_opt_field(lua_State *L, int arg, const char *name, int type)
{
    int got = lua_getfield(L, arg, name);
    if (got == LUA_TNIL) return 0;
    int want = type == RS_LUA_TINTEGER ? LUA_TNUMBER : type == RS_LUA_TCSTRING ? LUA_TSTRING : type;
    if (got != want)
        return luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be %s, got %s", name,
                                                     type_wanted(type), lua_typename(L, got)));
    int exact = 1;
    if (type == RS_LUA_TINTEGER) lua_tointegerx(L, -1, &exact);   /* floats only when exact */
    if (!exact)
        return luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be an integer, "
                                                        "got number %f", name, lua_tonumber(L, -1)));
    if (type == RS_LUA_TCSTRING && strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
        return luaL_argerror(L, arg,
                             lua_pushfstring(L, "option '%s' must not contain NUL bytes", name));
    return 1;
}
