/* SPDX-License-Identifier: MIT */
/* host_env.c -- the environment a script runs in.
 *
 * The module is linked into the host and registered as
 * package.loaded["rigatoni_store"], so `require "rigatoni_store"` in a
 * script gives the same table as the global `rs` without any .so on disk.
 * `store` is opened on first use (a metatable on _G), so scripts that only
 * print help or parse options never touch Redis; the host closes it when
 * the Lua state closes. `config` is a masked text view of the effective
 * options, `host` what the process knows (tty, -q, -v, log level) plus
 * host.open_store for scripts that need a second store (migrate), and
 * host.http_server for `serve` (host_http.c).
 * The bundled scripts directory is put first on package.path, so scripts
 * share helpers with `require "lib.cli"`.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lualib.h>

#include "host.h"
#include "rs_lua.h"

int luaopen_rigatoni_store(lua_State *L);

#define ENV_KEY "rigatoni_store.host_env"

static host_env *get_env(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, ENV_KEY);
    host_env *env = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return env;
}

/* Pushes {option = "value text"} for every core option, secrets masked. */
static void push_config_view(lua_State *L, const host_conf *hc)
{
    lua_newtable(L);
    for (const char *const *name = rs_config_option_names(); *name; name++) {
        rs_lua_push_config_value(L, hc->cfg, *name);
        lua_setfield(L, -2, *name);
    }
    lua_pushstring(L, host_log_level_name(hc->log_level));
    lua_setfield(L, -2, "log_level");
}

/* ---------------------------------------------------------------------
 * Lazy `store`
 * ------------------------------------------------------------------ */

/* __index of _G: opens the store the first time `store` is read. */
static int globals_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "store") != 0) return 0;
    host_env *env = get_env(L);
    rs_lua_store_open(L, env->conf->cfg);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* ---------------------------------------------------------------------
 * The `host` table
 * ------------------------------------------------------------------ */

/* host.now() -- monotonic seconds, for rates and progress. */
static int host_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* host.time() -- wall-clock seconds with fractions (UTC epoch). */
static int host_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* host.mask(text) -- URL credentials and known secrets replaced by ***. */
static int host_mask(lua_State *L)
{
    host_env *env = get_env(L);
    const char *text = luaL_checkstring(L, 1);
    size_t size = strlen(text) * 3 + 64;
    char *buf = lua_newuserdatauv(L, size, 0);
    host_conf_mask(env->conf, text, buf, size);
    lua_pushstring(L, buf);
    return 1;
}

/* host.log(level, message) -- "rigatoni-store: level: message" on stderr
 * (host_log.c)
 * when the log level lets it through; masked like every host message. */
static int host_log(lua_State *L)
{
    host_env *env = get_env(L);
    int level = host_log_level_parse(luaL_checkstring(L, 1));
    luaL_argcheck(L, level >= 0, 1, "error, warn, info or debug expected");
    const char *msg = luaL_checkstring(L, 2);
    if (level > env->conf->log_level) return 0;
    size_t size = strlen(msg) * 3 + 64;
    char *buf = lua_newuserdatauv(L, size, 0);
    host_conf_mask(env->conf, msg, buf, size);
    host_log_write((rs_log_level)level, buf, NULL);   /* HOST_LOG_* follow rs_log_level */
    return 0;
}

/* A host_conf owned by a userdata, so that a raised error cannot leak it. */
#define CONF_HOLDER_MT "rigatoni_store.host_conf"

static int conf_holder_gc(lua_State *L)
{
    host_conf **holder = luaL_checkudata(L, 1, CONF_HOLDER_MT);
    host_conf_free(*holder);
    *holder = NULL;
    return 0;
}

static host_conf **push_conf_holder(lua_State *L)
{
    host_conf **holder = lua_newuserdatauv(L, sizeof *holder, 0);
    *holder = NULL;
    if (luaL_newmetatable(L, CONF_HOLDER_MT)) {
        lua_pushcfunction(L, conf_holder_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return holder;
}

/* Applies the `url`, `key_prefix` and `set` fields of the options table at
 * index 1. 0 or -1 with msg. */
static int apply_store_options(lua_State *L, host_conf *hc, char *msg, size_t msgsize)
{
    if (rs_lua_opt_field(L, 1, "url", RS_LUA_TCSTRING) &&
        host_conf_set(hc, "redis", "url", lua_tostring(L, -1), msg, msgsize) < 0)
        return -1;
    if (rs_lua_opt_field(L, 1, "key_prefix", RS_LUA_TCSTRING) &&
        host_conf_set(hc, "redis", "key_prefix", lua_tostring(L, -1), msg, msgsize) < 0)
        return -1;
    if (rs_lua_opt_field(L, 1, "set", LUA_TTABLE)) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            const char *kv = lua_tostring(L, -1);
            if (!kv) return snprintf(msg, msgsize, "set: strings expected"), -1;
            if (host_conf_set_arg(hc, kv, msg, msgsize) < 0) return -1;
            lua_pop(L, 1);
        }
    }
    return host_conf_finish(hc, msg, msgsize);
}

/* host.open_store{config = FILE, url = URL, key_prefix = P, set = {"s.k=v", ...}}
 * -> store, masked config view. Without `config`, starts from the host's own
 * effective config (timeouts, pool size, TLS carry over). */
static int host_open_store(lua_State *L)
{
    host_env *env = get_env(L);
    static const char *const known[] = {"config", "url", "key_prefix", "set", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    rs_lua_check_options(L, 1, known);
    lua_settop(L, 1);
    host_conf **holder = push_conf_holder(L);
    int holder_idx = lua_gettop(L);
    char msg[700];
    const char *file = NULL;
    if (rs_lua_opt_field(L, 1, "config", RS_LUA_TCSTRING)) file = lua_tostring(L, -1);
    *holder = file ? host_conf_new() : host_conf_copy(env->conf);
    if (!*holder) return luaL_error(L, "out of memory");
    host_conf *hc = *holder;
    if (file) {
        if (host_conf_load(hc, file, msg, sizeof msg) < 0)
            return rs_lua_raisef(L, RS_ERR_CONFIG, "%s", msg);
        if (hc->warning[0] && env->conf->log_level >= HOST_LOG_WARN)
            host_log_write(RS_LOG_WARN, hc->warning, NULL);
    }
    int rc = apply_store_options(L, hc, msg, sizeof msg);
    host_conf_merge_secrets(env->conf, hc);
    if (rc < 0) return rs_lua_raisef(L, RS_ERR_CONFIG, "%s", msg);
    lua_settop(L, holder_idx);
    rs_lua_store_open(L, hc->cfg);
    push_config_view(L, hc);
    return 2;
}

static const luaL_Reg host_funcs[] = {
    {"now", host_now},
    {"time", host_time},
    {"mask", host_mask},
    {"log", host_log},
    {"open_store", host_open_store},
    {NULL, NULL},
};

static void push_host_table(lua_State *L, host_env *env)
{
    luaL_newlib(L, host_funcs);
    lua_pushboolean(L, env->verbose);
    lua_setfield(L, -2, "verbose");
    lua_pushboolean(L, env->quiet);
    lua_setfield(L, -2, "quiet");
    lua_pushboolean(L, isatty(2));
    lua_setfield(L, -2, "stderr_is_tty");
    lua_pushboolean(L, isatty(1));
    lua_setfield(L, -2, "stdout_is_tty");
    lua_pushstring(L, host_log_level_name(env->conf->log_level));
    lua_setfield(L, -2, "log_level");
    if (env->conf->file) {
        lua_pushstring(L, env->conf->file);
        lua_setfield(L, -2, "config_file");
    }
    if (env->scripts_dir) {
        lua_pushstring(L, env->scripts_dir);
        lua_setfield(L, -2, "scripts_dir");
    }
    lua_pushliteral(L, RS_VERSION);
    lua_setfield(L, -2, "version");
    host_http_open(L);
    lua_setfield(L, -2, "http_server");
}

/* ---------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------ */

void host_env_open(lua_State *L, host_env *env)
{
    lua_pushlightuserdata(L, env);
    lua_setfield(L, LUA_REGISTRYINDEX, ENV_KEY);
    luaL_openlibs(L);

    /* The scripts' stores log through the host's one format (host_log.c). */
    rs_lua_set_log_default(host_log_write, NULL);
    luaL_requiref(L, "rigatoni_store", luaopen_rigatoni_store, 0);
    lua_setglobal(L, "rs");

    if (env->scripts_dir) {
        lua_getglobal(L, "package");
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", env->scripts_dir, env->scripts_dir);
        lua_getfield(L, -2, "path");
        lua_concat(L, 2);
        lua_setfield(L, -2, "path");
        lua_pop(L, 1);
    }

    push_config_view(L, env->conf);
    lua_setglobal(L, "config");
    push_host_table(L, env);
    lua_setglobal(L, "host");

    lua_pushglobaltable(L);
    lua_newtable(L);
    lua_pushcfunction(L, globals_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

int host_env_push_args(lua_State *L, const char *script, int argc, char **argv)
{
    lua_createtable(L, argc, 1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    luaL_checkstack(L, argc, "too many arguments");
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    return argc;
}
