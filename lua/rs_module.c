/* SPDX-License-Identifier: MIT */
/* rs_module.c -- the `rigatoni_store` Lua library: rs.new, rs.config, and
 * the small functions of the library table.
 *
 * Configuration comes either as a plain options table (rs.new{url = ...})
 * or from the builder (rs.config():url(u):pool_size(20):build()), which
 * mirrors the Rust API. Both feed the core's option table one key at a
 * time, so validation lives in core/config.c only. Config objects print
 * masked: tostring never shows a password.
 */
#include <math.h>
#include <string.h>

#include "rs_lua.h"

#define CONFIG_MT "rigatoni_store.config"

/* ---------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------ */

typedef struct config_box {
    rs_config *cfg;
    int built;           /* build() results are frozen */
} config_box;

/* Applies the Lua value at `idx` to option `name`; raises a config error. */
static void apply_option(lua_State *L, rs_config *cfg, const char *name, int idx)
{
    rs_error err = {0};
    int rc;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        rc = rs_config_set(cfg, name, lua_tostring(L, idx), &err);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            rc = rs_config_set_int(cfg, name, lua_tointeger(L, idx), &err);
        else
            rc = rs_config_set_seconds(cfg, name, lua_tonumber(L, idx), &err);
        break;
    case LUA_TBOOLEAN:
        /* ttl = false reads naturally as "no expiry". */
        if (strcmp(name, "ttl") == 0 && !lua_toboolean(L, idx))
            rc = rs_config_set(cfg, name, "none", &err);
        else
            rc = rs_config_set_bool(cfg, name, lua_toboolean(L, idx), &err);
        break;
    default:
        return (void)rs_lua_raisef(L, RS_ERR_CONFIG, "option '%s' cannot be a %s", name,
                                   luaL_typename(L, idx));
    }
    if (rc < 0) rs_lua_raise(L, &err);
}

/* Applies a table of options; `section` prefixes nested keys ("tls."). */
static void apply_table(lua_State *L, rs_config *cfg, int idx, const char *section)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            rs_lua_raisef(L, RS_ERR_CONFIG, "option names must be strings");
        const char *key = lua_tostring(L, -2);
        if (!section && strcmp(key, "tls") == 0) {
            if (!lua_istable(L, -1))
                rs_lua_raisef(L, RS_ERR_CONFIG, "option 'tls' must be a table");
            apply_table(L, cfg, -1, "tls.");
        } else {
            char name[96];
            snprintf(name, sizeof name, "%s%s", section ? section : "", key);
            apply_option(L, cfg, name, -1);
        }
        lua_pop(L, 1);
    }
}

static config_box *new_config_box(lua_State *L)
{
    config_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->cfg = NULL;
    box->built = 0;
    luaL_setmetatable(L, CONFIG_MT);
    if (!(box->cfg = rs_config_new())) luaL_error(L, "out of memory");
    return box;
}

void rs_lua_push_config_value(lua_State *L, const rs_config *cfg, const char *name)
{
    char small[256];
    size_t n = rs_config_get(cfg, name, small, sizeof small);
    if (n < sizeof small) {
        lua_pushlstring(L, small, n);
        return;
    }
    /* A long value (a URL with many Sentinel hosts) in a buffer of its
     * size, owned by the stack: a memory error leaks nothing. */
    char *buf = lua_newuserdatauv(L, n + 1, 0);
    rs_config_get(cfg, name, buf, n + 1);
    lua_pushstring(L, buf);   /* up to the NUL: a second masking may come out shorter */
    lua_remove(L, -2);
}

/* ---------------------------------------------------------------------
 * rs.new
 * ------------------------------------------------------------------ */

static int rs_new(lua_State *L)
{
    config_box *box = luaL_testudata(L, 1, CONFIG_MT);
    if (box) return rs_lua_store_open(L, box->cfg);
    luaL_checktype(L, 1, LUA_TTABLE);
    box = new_config_box(L);
    apply_table(L, box->cfg, 1, NULL);
    return rs_lua_store_open(L, box->cfg);
}

/* rs.start_open(config) -> job whose wait() gives the store: rs.new on a
 * thread of its own, for event loops (rs_open_lua.c). */
static int rs_start_open(lua_State *L)
{
    config_box *box = luaL_testudata(L, 1, CONFIG_MT);
    if (box) return rs_lua_open_job_start(L, box->cfg);
    luaL_checktype(L, 1, LUA_TTABLE);
    box = new_config_box(L);
    apply_table(L, box->cfg, 1, NULL);
    return rs_lua_open_job_start(L, box->cfg);
}

/* ---------------------------------------------------------------------
 * Config objects and the builder
 * ------------------------------------------------------------------ */

static config_box *check_config(lua_State *L, int idx)
{
    config_box *box = luaL_checkudata(L, idx, CONFIG_MT);
    if (!box->cfg) luaL_error(L, "attempt to use a freed config");
    return box;
}

static int config_gc(lua_State *L)
{
    config_box *box = luaL_checkudata(L, 1, CONFIG_MT);
    rs_config_free(box->cfg);
    box->cfg = NULL;
    return 0;
}

static int config_tostring(lua_State *L)
{
    config_box *box = check_config(L, 1);
    char buf[1024];
    rs_config_describe(box->cfg, buf, sizeof buf);
    lua_pushfstring(L, "rigatoni_store.config(%s)", buf);
    return 1;
}

/* builder:<option>(value) -- upvalue 1 is the option name. */
static int config_setter(lua_State *L)
{
    config_box *box = check_config(L, 1);
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    if (box->built) rs_lua_raisef(L, RS_ERR_CONFIG, "config is built; start a new rs.config()");
    luaL_checkany(L, 2);
    if (strcmp(name, "tls") == 0) {
        luaL_checktype(L, 2, LUA_TTABLE);
        apply_table(L, box->cfg, 2, "tls.");
    } else if (!lua_isnil(L, 2)) {
        apply_option(L, box->cfg, name, 2);
    }
    lua_settop(L, 1);
    return 1;
}

static int config_build(lua_State *L)
{
    config_box *box = check_config(L, 1);
    rs_error err = {0};
    if (rs_config_validate(box->cfg, &err) < 0 && err.kind == RS_ERR_CONFIG)
        return rs_lua_raise(L, &err);
    config_box *built = lua_newuserdatauv(L, sizeof *built, 0);
    built->cfg = NULL;
    built->built = 1;
    luaL_setmetatable(L, CONFIG_MT);
    if (!(built->cfg = rs_config_copy(box->cfg))) return luaL_error(L, "out of memory");
    return 1;
}

/* cfg:to_table() -- every option as text, secrets masked. */
static int config_to_table(lua_State *L)
{
    config_box *box = check_config(L, 1);
    lua_newtable(L);
    for (const char *const *name = rs_config_option_names(); *name; name++) {
        rs_lua_push_config_value(L, box->cfg, *name);
        lua_setfield(L, -2, *name);
    }
    return 1;
}

static int config_index(lua_State *L)
{
    check_config(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "build") == 0) {
        lua_pushcfunction(L, config_build);
        return 1;
    }
    if (strcmp(key, "to_table") == 0) {
        lua_pushcfunction(L, config_to_table);
        return 1;
    }
    int known = strcmp(key, "tls") == 0;
    for (const char *const *name = rs_config_option_names(); !known && *name; name++)
        known = strcmp(*name, key) == 0 && strncmp(key, "tls.", 4) != 0;
    if (!known) return 0;
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, config_setter, 1);
    return 1;
}

static int rs_config_builder(lua_State *L)
{
    new_config_box(L);
    return 1;
}

/* ---------------------------------------------------------------------
 * Library table
 * ------------------------------------------------------------------ */

static int rs_mask_url_lua(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    size_t n = rs_mask_url(url, NULL, 0);
    char *buf = lua_newuserdatauv(L, n + 1, 0);   /* whole, however long */
    rs_mask_url(url, buf, n + 1);
    lua_pushstring(L, buf);   /* up to the NUL: a second masking may come out shorter */
    return 1;
}

/* rs.check_ttl(seconds) -> true, or nil and why: whether Redis takes this
 * TTL (rs_ttl_check, the range every TTL the library sends is held to).
 * The scripts check every TTL option and input line with it up front. */
static int rs_check_ttl_lua(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TNUMBER) {
        luaL_pushfail(L);
        lua_pushfstring(L, "ttl must be a number of seconds, not %s", luaL_typename(L, 1));
        return 2;
    }
    rs_error err = {0};
    if (rs_ttl_check((double)lua_tonumber(L, 1), &err) < 0) {
        luaL_pushfail(L);
        lua_pushstring(L, err.message);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* rs.parse_duration(text [, allow_none]) -> seconds (none: 0, true) | nil, why.
 * The grammar of INI values, -s and every script option (core/duration.c). */
static int rs_parse_duration_lua(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    int allow_none = lua_toboolean(L, 2), is_none = 0;
    double seconds;
    if (strlen(text) != len || rs_parse_duration(text, &seconds, allow_none ? &is_none : NULL) < 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "bad duration '%s' (like 30, 1.5, 500ms, 30s, 1h30m, 7d or 2w%s)", text,
                        allow_none ? ", or none" : "");
        return 2;
    }
    lua_pushnumber(L, seconds);
    if (is_none) {
        lua_pushboolean(L, 1);
        return 2;
    }
    return 1;
}

/* rs.format_duration(seconds) -> text that rs.parse_duration reads back. */
static int rs_format_duration_lua(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);
    size_t n = rs_format_duration(seconds, NULL, 0);
    char *buf = lua_newuserdatauv(L, n + 1, 0);     /* whole, however long (1e300 s) */
    rs_format_duration(seconds, buf, n + 1);
    lua_pushlstring(L, buf, n);
    return 1;
}

static const luaL_Reg config_meta[] = {
    {"__index", config_index},
    {"__gc", config_gc},
    {"__close", config_gc},
    {"__tostring", config_tostring},
    {NULL, NULL},
};

static const luaL_Reg rs_lib[] = {
    {"new", rs_new},
    {"start_open", rs_start_open},
    {"config", rs_config_builder},
    {"mask_url", rs_mask_url_lua},
    {"check_ttl", rs_check_ttl_lua},
    {"parse_duration", rs_parse_duration_lua},
    {"format_duration", rs_format_duration_lua},
    {NULL, NULL},
};

/* The handle files' parts of the store methods (each registers its own
 * metatables): assembled here so that none of them calls another. */
static const rs_lua_add_methods_fn store_parts[] = {
    rs_lua_add_token_methods, rs_lua_add_op_methods,
    rs_lua_add_walk_methods, rs_lua_add_batch_methods, rs_lua_add_job_methods,
    rs_lua_add_lock_methods, rs_lua_add_server_methods, NULL,
};

int luaopen_rigatoni_store(lua_State *L)
{
    luaL_checkversion(L);
    luaL_newmetatable(L, CONFIG_MT);
    luaL_setfuncs(L, config_meta, 0);
    lua_pop(L, 1);
    rs_lua_open_error(L);
    rs_lua_open_store(L, store_parts);
    rs_lua_open_open_jobs(L);

    luaL_newlib(L, rs_lib);
    lua_pushliteral(L, RS_VERSION);
    lua_setfield(L, -2, "version");
    rs_lua_open_bson(L);
    rs_lua_open_lock(L);
    rs_lua_open_log(L);
    rs_lua_open_stream(L);
    rs_lua_open_rows(L);
    return 1;
}
