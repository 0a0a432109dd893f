/* SPDX-License-Identifier: MIT */
/* fuzz_bson.c -- libFuzzer target: BSON bytes, as read from Redis, decoded
 * into Lua values by the module.
 *
 * One lua_State with the module loaded (luaL_newstate + luaopen_rigatoni_store)
 * is kept for the whole run. Each input goes to rs_token_validate and to
 * rs.bson.decode in a protected call; when decoding succeeds, rs.bson.encode
 * of the result must give back exactly the input bytes (the round-trip
 * promise of the design), and rs.bson.to_json and rs.token_time must not
 * fail in any other way than a Lua error. Decoding must succeed exactly
 * when rs_token_validate accepts the bytes.
 *
 * Known exception (reported, issue 8): a document with a repeated key at
 * some level decodes into a Lua table that keeps the last value only, so it
 * cannot round-trip; such inputs are only required not to crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "rigatoni_store.h"

int luaopen_rigatoni_store(lua_State *L);

static lua_State *L;

static const char check_src[] =
    "local rs, s, dup = ...\n"
    "local ok, doc = pcall(rs.bson.decode, s)\n"
    "if not ok then\n"
    "  assert(type(doc) == 'userdata' or type(doc) == 'table', 'decode raised a non-error: ' .. tostring(doc))\n"
    "  assert(doc.kind == 'serialization', 'decode error of kind ' .. tostring(doc.kind))\n"
    "  return false\n"
    "end\n"
    "assert(type(doc) == 'table', 'decode gave a ' .. type(doc))\n"
    "local ok2, again = pcall(rs.bson.encode, doc)\n"
    "if not ok2 then error('encode of a decoded document failed: ' .. tostring(again)) end\n"
    "if again ~= s and not dup then error('round trip changed the bytes') end\n"
    "pcall(rs.bson.to_json, s)\n"
    "pcall(rs.token_time, doc)\n"
    "return true\n";

/* Does any document or array of the (valid) BSON at `it` repeat a key? */
static int has_duplicate_keys(bson_iter_t *it, int depth)
{
    const char *keys[512];
    int n = 0;
    while (bson_iter_next(it)) {
        const char *key = bson_iter_key(it);
        for (int i = 0; i < n; i++)
            if (strcmp(keys[i], key) == 0) return 1;
        if (n < 512) keys[n++] = key;
        bson_iter_t child;
        if ((BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) && depth < 200 &&
            bson_iter_recurse(it, &child) && has_duplicate_keys(&child, depth + 1))
            return 1;
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    luaL_requiref(L, "rigatoni_store", luaopen_rigatoni_store, 0);
    lua_setglobal(L, "rs");
    if (luaL_loadbuffer(L, check_src, sizeof check_src - 1, "=fuzz_bson") != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    lua_setglobal(L, "fuzz_check");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int valid = rs_token_validate(data, size, NULL) == 0;
    int top = lua_gettop(L);
    lua_getglobal(L, "fuzz_check");
    lua_getglobal(L, "rs");
    lua_pushlstring(L, (const char *)data, size);
    int dup = 0;
    bson_t doc;
    bson_iter_t it;
    if (valid && bson_init_static(&doc, data, size) && bson_iter_init(&it, &doc))
        dup = has_duplicate_keys(&it, 0);
    lua_pushboolean(L, dup);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_bson: %s\n", lua_tostring(L, -1));
        abort();
    }
    int decoded = lua_toboolean(L, -1);
    lua_settop(L, top);
    /* A repeated top-level key is refused by decode on purpose (a table
     * would change the bytes); nested repeats stay exact typed values. */
    if (decoded != valid && !(dup && !decoded)) {
        fprintf(stderr, "fuzz_bson: decode %s but rs_token_validate %s\n",
                decoded ? "succeeded" : "failed", valid ? "accepts" : "rejects");
        abort();
    }
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
