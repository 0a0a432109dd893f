/* SPDX-License-Identifier: MIT */
/* rs_bson_lua.c -- BSON <-> Lua for the rigatoni_store module.
 *
 * Resume tokens are BSON documents and must survive a trip through Lua
 * byte for byte: a script that reads a token, looks at it and saves it
 * again may not change it. Three things make that hold.
 *
 *  - Key order. Lua tables are unordered, so every decoded document gets
 *    a rank map {key = position} in a weak-keyed side table (registry
 *    ORDER_KEY). The encoder writes ranked keys in rank order (skipping
 *    removed ones), then any other keys sorted bytewise, so plain tables
 *    encode deterministically too. The side table keeps metatables free
 *    for the user and vanishes with the document.
 *
 *  - Types with no exact Lua counterpart (ObjectId, datetime, timestamp,
 *    decimal128, binary, regex, null, an int64 that would fit an int32,
 *    ...) decode to a "typed value": a userdata (VALUE_MT) holding a copy
 *    of the bson_value_t, re-encoded exactly (bson_append_value, except
 *    where libbson would normalise: regex options, kept arrays). Null
 *    is one too, so a null field keeps its key (a Lua nil would drop it).
 *    A nested document or array that a table cannot hold exactly (repeated
 *    keys, array keys other than "0","1",...) stays a typed value as well.
 *
 *  - Arrays. Decoded arrays carry a shared marker metatable (ARRAY_MT) so
 *    an empty one encodes as an array again; a plain table is an array
 *    when its keys are exactly 1..n (n >= 1).
 *
 * Errors are `serialization` error objects naming the field path, e.g.
 * "field 'a.b[2]' is not valid UTF-8". Encoding runs into a libbson buffer
 * owned by a guard userdata, so an error half-way (which longjmps) leaks
 * nothing: the guard's __gc frees the buffer.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <bson/bson.h>

#include "rs_lua.h"

/* Nesting is limited to RS_MAX_TOKEN_DEPTH, as rs_token_validate does, so
 * whatever decodes also encodes. */
#define VALUE_MT "rigatoni_store.bson_value"
#define ARRAY_MT "rigatoni_store.bson_array"
#define GUARD_MT "rigatoni_store.bson_guard"
#define ORDER_KEY "rigatoni_store.bson_order"
#define NULL_KEY "rigatoni_store.bson_null"

/* ========================================================================
 * Registry objects, created on first use so that no call order matters
 * ===================================================================== */

static int value_gc(lua_State *L);
static int value_index(lua_State *L);
static int value_tostring(lua_State *L);
static int value_eq(lua_State *L);
static int guard_gc(lua_State *L);

static const luaL_Reg value_meta[] = {
    {"__gc", value_gc},
    {"__index", value_index},
    {"__tostring", value_tostring},
    {"__eq", value_eq},
    {NULL, NULL}
};

/* Pushes the metatable of typed values. */
static void push_value_mt(lua_State *L)
{
    if (luaL_newmetatable(L, VALUE_MT))
        luaL_setfuncs(L, value_meta, 0);
}

/* Pushes the array marker metatable (it carries only __name). */
static void push_array_mt(lua_State *L)
{
    luaL_newmetatable(L, ARRAY_MT);
}

/* Pushes the weak-keyed table document -> {key = rank}. */
static void push_order_table(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, ORDER_KEY) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, ORDER_KEY);
}

/* ========================================================================
 * Typed values
 * ===================================================================== */

typedef struct bson_box {
    bson_value_t v;      /* BSON_TYPE_EOD while empty */
} bson_box;

/* A new empty box, safe to collect before anything is copied into it. */
static bson_box *box_new(lua_State *L)
{
    bson_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->v.value_type = BSON_TYPE_EOD;
    push_value_mt(L);
    lua_setmetatable(L, -2);
    return box;
}

/* Pushes the shared null value. */
static void push_null(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY) == LUA_TUSERDATA)
        return;
    lua_pop(L, 1);
    box_new(L)->v.value_type = BSON_TYPE_NULL;
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, NULL_KEY);
}

/* Pushes a typed value holding a deep copy of `v`. */
static void push_value_copy(lua_State *L, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_NULL) {
        push_null(L);
        return;
    }
    bson_box *box = box_new(L);
    bson_value_copy(v, &box->v);
}

static const char *type_name(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_DOUBLE: return "double";
    case BSON_TYPE_UTF8: return "string";
    case BSON_TYPE_DOCUMENT: return "document";
    case BSON_TYPE_ARRAY: return "array";
    case BSON_TYPE_BINARY: return "binary";
    case BSON_TYPE_UNDEFINED: return "undefined";
    case BSON_TYPE_OID: return "objectid";
    case BSON_TYPE_BOOL: return "bool";
    case BSON_TYPE_DATE_TIME: return "datetime";
    case BSON_TYPE_NULL: return "null";
    case BSON_TYPE_REGEX: return "regex";
    case BSON_TYPE_DBPOINTER: return "dbpointer";
    case BSON_TYPE_CODE: return "javascript";
    case BSON_TYPE_SYMBOL: return "symbol";
    case BSON_TYPE_CODEWSCOPE: return "code_with_scope";
    case BSON_TYPE_INT32: return "int32";
    case BSON_TYPE_TIMESTAMP: return "timestamp";
    case BSON_TYPE_INT64: return "int64";
    case BSON_TYPE_DECIMAL128: return "decimal128";
    case BSON_TYPE_MAXKEY: return "maxkey";
    case BSON_TYPE_MINKEY: return "minkey";
    default: return "invalid";
    }
}

/* Appends a regex element byte for byte: libbson's regex appenders sort
 * the options and drop unknown ones, which would change the token. */
static int append_regex_exact(bson_t *doc, const char *key, size_t keylen,
                              const char *pattern, const char *options)
{
    size_t plen = strlen(pattern), olen = strlen(options);
    size_t len = 4 + 1 + keylen + 1 + plen + 1 + olen + 1 + 1;
    uint8_t *buf, *p;
    uint32_t le = BSON_UINT32_TO_LE((uint32_t)len);
    bson_t one;
    int ok;

    if (len > RS_MAX_TOKEN_SIZE)
        return 0;
    p = buf = bson_malloc(len);
    memcpy(p, &le, 4), p += 4;
    *p++ = (uint8_t)BSON_TYPE_REGEX;
    memcpy(p, key, keylen), p += keylen, *p++ = 0;
    memcpy(p, pattern, plen), p += plen, *p++ = 0;
    memcpy(p, options, olen), p += olen, *p++ = 0;
    *p = 0;
    ok = bson_init_static(&one, buf, len) && bson_concat(doc, &one);
    bson_free(buf);
    return ok;
}

/* Appends a typed value. Kept documents and arrays are copied element by
 * element, bytes as they are: bson_append_array would complain on stderr
 * about the very array keys we keep them for. */
static int append_typed(bson_t *doc, const char *key, size_t keylen,
                        const bson_value_t *v)
{
    bson_t child, src;
    int ok;

    if (v->value_type == BSON_TYPE_REGEX)
        return append_regex_exact(doc, key, keylen, v->value.v_regex.regex,
                                  v->value.v_regex.options);
    if (v->value_type != BSON_TYPE_ARRAY &&
        v->value_type != BSON_TYPE_DOCUMENT)
        return bson_append_value(doc, key, (int)keylen, v);
    if (!bson_init_static(&src, v->value.v_doc.data, v->value.v_doc.data_len))
        return 0;
    ok = v->value_type == BSON_TYPE_ARRAY
             ? bson_append_array_begin(doc, key, (int)keylen, &child)
             : bson_append_document_begin(doc, key, (int)keylen, &child);
    if (!ok)
        return 0;
    ok = bson_concat(&child, &src);
    return (v->value_type == BSON_TYPE_ARRAY
                ? bson_append_array_end(doc, &child)
                : bson_append_document_end(doc, &child)) && ok;
}

static int value_gc(lua_State *L)
{
    bson_box *box = luaL_checkudata(L, 1, VALUE_MT);
    if (box->v.value_type != BSON_TYPE_EOD) {
        bson_value_destroy(&box->v);
        box->v.value_type = BSON_TYPE_EOD;
    }
    return 0;
}

/* Fields by type: binary {subtype, data}, objectid {hex, time},
 * datetime {ms}, timestamp {t, i}, int32/int64/double {value},
 * decimal128 {value (string)}, regex {pattern, options}, javascript and
 * code_with_scope {code}, symbol {value}, dbpointer {collection, hex};
 * every value has `type`. Unknown names give nil. */
static int value_index(lua_State *L)
{
    const bson_box *box = luaL_checkudata(L, 1, VALUE_MT);
    const bson_value_t *v = &box->v;
    const char *k;
    char buf[BSON_DECIMAL128_STRING > 25 ? BSON_DECIMAL128_STRING : 25];

    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    k = lua_tostring(L, 2);
    if (strcmp(k, "type") == 0) {
        lua_pushstring(L, type_name(v->value_type));
        return 1;
    }
    switch (v->value_type) {
    case BSON_TYPE_BINARY:
        if (strcmp(k, "subtype") == 0) {
            lua_pushinteger(L, (lua_Integer)v->value.v_binary.subtype);
            return 1;
        }
        if (strcmp(k, "data") == 0) {
            lua_pushlstring(L, (const char *)v->value.v_binary.data,
                            v->value.v_binary.data_len);
            return 1;
        }
        break;
    case BSON_TYPE_OID:
        if (strcmp(k, "hex") == 0) {
            bson_oid_to_string(&v->value.v_oid, buf);
            lua_pushstring(L, buf);
            return 1;
        }
        if (strcmp(k, "time") == 0) {
            lua_pushinteger(L, (lua_Integer)bson_oid_get_time_t(
                                   &v->value.v_oid));
            return 1;
        }
        break;
    case BSON_TYPE_DATE_TIME:
        if (strcmp(k, "ms") == 0) {
            lua_pushinteger(L, (lua_Integer)v->value.v_datetime);
            return 1;
        }
        break;
    case BSON_TYPE_TIMESTAMP:
        if (strcmp(k, "t") == 0) {
            lua_pushinteger(L, (lua_Integer)v->value.v_timestamp.timestamp);
            return 1;
        }
        if (strcmp(k, "i") == 0) {
            lua_pushinteger(L, (lua_Integer)v->value.v_timestamp.increment);
            return 1;
        }
        break;
    case BSON_TYPE_INT64:
    case BSON_TYPE_INT32:
    case BSON_TYPE_DOUBLE:
        if (strcmp(k, "value") == 0) {
            if (v->value_type == BSON_TYPE_INT64)
                lua_pushinteger(L, (lua_Integer)v->value.v_int64);
            else if (v->value_type == BSON_TYPE_INT32)
                lua_pushinteger(L, (lua_Integer)v->value.v_int32);
            else
                lua_pushnumber(L, (lua_Number)v->value.v_double);
            return 1;
        }
        break;
    case BSON_TYPE_DECIMAL128:
        if (strcmp(k, "value") == 0) {
            bson_decimal128_to_string(&v->value.v_decimal128, buf);
            lua_pushstring(L, buf);
            return 1;
        }
        break;
    case BSON_TYPE_REGEX:
        if (strcmp(k, "pattern") == 0) {
            lua_pushstring(L, v->value.v_regex.regex);
            return 1;
        }
        if (strcmp(k, "options") == 0) {
            lua_pushstring(L, v->value.v_regex.options);
            return 1;
        }
        break;
    case BSON_TYPE_CODE:
        if (strcmp(k, "code") == 0) {
            lua_pushlstring(L, v->value.v_code.code, v->value.v_code.code_len);
            return 1;
        }
        break;
    case BSON_TYPE_CODEWSCOPE:
        if (strcmp(k, "code") == 0) {
            lua_pushlstring(L, v->value.v_codewscope.code,
                            v->value.v_codewscope.code_len);
            return 1;
        }
        break;
    case BSON_TYPE_SYMBOL:
        if (strcmp(k, "value") == 0) {
            lua_pushlstring(L, v->value.v_symbol.symbol,
                            v->value.v_symbol.len);
            return 1;
        }
        break;
    case BSON_TYPE_DBPOINTER:
        if (strcmp(k, "collection") == 0) {
            lua_pushlstring(L, v->value.v_dbpointer.collection,
                            v->value.v_dbpointer.collection_len);
            return 1;
        }
        if (strcmp(k, "hex") == 0) {
            bson_oid_to_string(&v->value.v_dbpointer.oid, buf);
            lua_pushstring(L, buf);
            return 1;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* libbson renders whole documents only: wrap the value as {"v": value}
 * and cut the value's text out of `{ "v" : ... }`. */
static int value_tostring(lua_State *L)
{
    const bson_box *box = luaL_checkudata(L, 1, VALUE_MT);
    static const char head[] = "{ \"v\" : ", tail[] = " }";
    const size_t hlen = sizeof head - 1, tlen = sizeof tail - 1;
    bson_t doc;
    size_t len = 0;
    char *json;

    if (box->v.value_type == BSON_TYPE_EOD) {
        lua_pushliteral(L, "<empty bson value>");
        return 1;
    }
    bson_init(&doc);
    append_typed(&doc, "v", 1, &box->v);
    json = bson_as_canonical_extended_json(&doc, &len);
    bson_destroy(&doc);
    if (!json)
        return luaL_error(L, "cannot render a BSON %s value",
                          type_name(box->v.value_type));
    if (len >= hlen + tlen && memcmp(json, head, hlen) == 0 &&
        memcmp(json + len - tlen, tail, tlen) == 0)
        lua_pushlstring(L, json + hlen, len - hlen - tlen);
    else
        lua_pushlstring(L, json, len);
    bson_free(json);
    return 1;
}

/* Equal when the type and the encoded bytes are equal. */
static int value_eq(lua_State *L)
{
    const bson_box *a = luaL_testudata(L, 1, VALUE_MT);
    const bson_box *b = luaL_testudata(L, 2, VALUE_MT);
    int equal = 0;

    if (a && b && a->v.value_type == b->v.value_type) {
        bson_t da, db;
        bson_init(&da);
        bson_init(&db);
        if (append_typed(&da, "", 0, &a->v) &&
            append_typed(&db, "", 0, &b->v))
            equal = da.len == db.len &&
                    memcmp(bson_get_data(&da), bson_get_data(&db),
                           da.len) == 0;
        bson_destroy(&da);
        bson_destroy(&db);
    }
    lua_pushboolean(L, equal);
    return 1;
}

/* ========================================================================
 * Guard: libbson memory owned by the Lua stack until handed over
 * ===================================================================== */

typedef struct guard {
    bson_t *doc;
    char *text;          /* bson_malloc'd string (Extended JSON) */
} guard;

static int guard_gc(lua_State *L)
{
    guard *g = luaL_checkudata(L, 1, GUARD_MT);
    if (g->doc) bson_destroy(g->doc);
    if (g->text) bson_free(g->text);
    g->doc = NULL;
    g->text = NULL;
    return 0;
}

/* Pushes an empty guard; the caller then stores what it allocates. */
static guard *guard_push(lua_State *L)
{
    guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->doc = NULL;
    g->text = NULL;
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return g;
}

/* ========================================================================
 * Encoding: Lua table -> BSON
 * ===================================================================== */

/* One step of the path to the field being encoded: a key, or (key NULL)
 * a 1-based array index. */
typedef struct path_step {
    const char *key;
    size_t len;
    lua_Integer index;
} path_step;

typedef struct encoder {
    lua_State *L;
    int seen;            /* stack index: tables being encoded (cycles) */
    int order;           /* stack index: the rank side table */
    int array_mt;        /* stack index: the array marker metatable */
    size_t approx;       /* a lower bound of the output size so far */
    path_step path[RS_MAX_TOKEN_DEPTH + 2];
} encoder;

/* Key of a document read for sorting, with its rank (LUA_MAXINTEGER when
 * the document did not come from a decode, or the key is new). */
typedef struct doc_key {
    const char *s;
    size_t len;
    lua_Integer rank;
} doc_key;

/* Appends to a bounded buffer; the text is cut (with "...") rather than
 * overflow. */
static void text_add(char *buf, size_t size, size_t *used, const char *s,
                     size_t len)
{
    if (*used + 4 >= size)
        return;
    if (len > size - *used - 4) {
        len = size - *used - 4;
        memcpy(buf + *used, s, len);
        memcpy(buf + *used + len, "...", 4);
        *used = size - 1;
        return;
    }
    memcpy(buf + *used, s, len);
    *used += len;
    buf[*used] = '\0';
}

/* "field 'a.b[2]'" for the first `depth` steps, "the document" for none. */
static void describe(const encoder *e, int depth, char *buf, size_t size)
{
    size_t used = 0;
    char num[32];

    buf[0] = '\0';
    if (depth == 0) {
        text_add(buf, size, &used, "the document", 12);
        return;
    }
    text_add(buf, size, &used, "field '", 7);
    for (int i = 0; i < depth; i++) {
        const path_step *p = &e->path[i];
        if (p->key) {
            if (i > 0)
                text_add(buf, size, &used, ".", 1);
            text_add(buf, size, &used, p->key, p->len);
        } else {
            int n = snprintf(num, sizeof num, "[%lld]",
                             (long long)p->index);
            text_add(buf, size, &used, num, (size_t)n);
        }
    }
    text_add(buf, size, &used, "'", 1);
}

/* Raises "<field description> <what>". Never returns. */
static int encode_fail(const encoder *e, int depth, const char *fmt, ...)
{
    char where[256], what[160];
    va_list ap;

    describe(e, depth, where, sizeof where);
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rs_lua_raisef(e->L, RS_ERR_SERIALIZATION, "%s %s", where, what);
}

static void count_bytes(encoder *e, size_t n)
{
    e->approx += n;
    if (e->approx > RS_MAX_TOKEN_SIZE)
        rs_lua_raisef(e->L, RS_ERR_SERIALIZATION,
                      "the document is larger than the %u-byte token limit",
                      (unsigned)RS_MAX_TOKEN_SIZE);
}

static int key_compare(const void *pa, const void *pb)
{
    const doc_key *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c;

    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    c = n ? memcmp(a->s, b->s, n) : 0;
    if (c)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

static void encode_table(encoder *e, bson_t *parent, const char *key,
                         size_t keylen, int depth);

/* Appends the value at the top of the stack under `key`; `depth` counts
 * the path steps up to and including this field. Pops nothing. */
static void encode_value(encoder *e, bson_t *doc, const char *key,
                         size_t keylen, int depth)
{
    lua_State *L = e->L;
    int ok = 1;

    count_bytes(e, keylen + 2);
    switch (lua_type(L, -1)) {
    case LUA_TBOOLEAN:
        ok = bson_append_bool(doc, key, (int)keylen, lua_toboolean(L, -1));
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
            lua_Integer n = lua_tointeger(L, -1);
            if (n >= INT32_MIN && n <= INT32_MAX)
                ok = bson_append_int32(doc, key, (int)keylen, (int32_t)n);
            else
                ok = bson_append_int64(doc, key, (int)keylen, (int64_t)n);
        } else {
            ok = bson_append_double(doc, key, (int)keylen,
                                    (double)lua_tonumber(L, -1));
        }
        count_bytes(e, 8);
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        /* NUL is legal inside BSON strings (they carry their length). */
        if (!rs_utf8_valid(s, len, 1))
            encode_fail(e, depth, "is not valid UTF-8");
        count_bytes(e, len + 5);
        ok = bson_append_utf8(doc, key, (int)keylen, s, (int)len);
        break;
    }
    case LUA_TTABLE:
        encode_table(e, doc, key, keylen, depth);
        break;
    case LUA_TUSERDATA: {
        const bson_box *box = luaL_testudata(L, -1, VALUE_MT);
        if (!box || box->v.value_type == BSON_TYPE_EOD)
            encode_fail(e, depth, "has unsupported type userdata");
        else
            ok = append_typed(doc, key, keylen, &box->v);
        break;
    }
    default:
        encode_fail(e, depth, "has unsupported type %s",
                    luaL_typename(L, -1));
    }
    if (!ok)
        encode_fail(e, depth, "does not fit in a BSON document");
}

/* Shape of a table: how many keys of which kind. */
typedef struct table_shape {
    size_t count;        /* all keys */
    size_t strings;      /* string keys */
    size_t seq;          /* integer keys >= 1 */
    lua_Integer max;     /* largest of those */
    int other_type;      /* type of the first key that is neither */
} table_shape;

static void table_scan(lua_State *L, int t, table_shape *s)
{
    memset(s, 0, sizeof *s);
    s->other_type = LUA_TNONE;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        s->count++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            s->strings++;
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            s->seq++;
            if (lua_tointeger(L, -1) > s->max)
                s->max = lua_tointeger(L, -1);
        } else if (s->other_type == LUA_TNONE) {
            s->other_type = lua_type(L, -1);
        }
    }
}

/* Writes the fields of the document table at `t` into `doc`; `depth` is
 * the number of path steps leading to this table. */
static void encode_fields(encoder *e, bson_t *doc, int t, int depth,
                          const table_shape *shape)
{
    lua_State *L = e->L;
    doc_key *keys = NULL;
    size_t n = 0;
    int ranks;

    if (shape->strings < shape->count) {
        /* Name an offending key's type: integer keys mixed with names
         * are the usual mistake. */
        int type = shape->other_type != LUA_TNONE ? shape->other_type
                                                  : LUA_TNUMBER;
        encode_fail(e, depth, "has a non-string key (%s); BSON documents "
                              "have string keys",
                    lua_typename(L, type));
    }
    if (shape->count == 0)
        return;

    /* The key array lives in a userdata so an error frees it. */
    keys = lua_newuserdatauv(L, shape->count * sizeof *keys, 0);
    lua_pushvalue(L, t);
    lua_rawget(L, e->order);
    ranks = lua_gettop(L);

    lua_pushnil(L);
    while (lua_next(L, t)) {
        doc_key *k = &keys[n++];
        lua_pop(L, 1);
        /* The key stays anchored by `t` while we use the pointer. */
        k->s = lua_tolstring(L, -1, &k->len);
        k->rank = LUA_MAXINTEGER;
        if (memchr(k->s, '\0', k->len))
            encode_fail(e, depth, "has a key with an embedded NUL byte");
        if (!rs_utf8_valid(k->s, k->len, 0))
            encode_fail(e, depth, "has a key that is not valid UTF-8");
        if (lua_istable(L, ranks)) {
            lua_pushvalue(L, -1);
            if (lua_rawget(L, ranks) == LUA_TNUMBER && lua_isinteger(L, -1))
                k->rank = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    }
    qsort(keys, n, sizeof *keys, key_compare);

    for (size_t i = 0; i < n; i++) {
        e->path[depth].key = keys[i].s;
        e->path[depth].len = keys[i].len;
        lua_pushlstring(L, keys[i].s, keys[i].len);
        lua_rawget(L, t);
        encode_value(e, doc, keys[i].s, keys[i].len, depth + 1);
        lua_pop(L, 1);
    }
    lua_pop(L, 2); /* ranks, keys */
}

/* Writes elements 1..n of the table at `t` as array elements. */
static void encode_elements(encoder *e, bson_t *arr, int t, int depth,
                            lua_Integer n)
{
    lua_State *L = e->L;
    char buf[16];
    const char *key;

    for (lua_Integer i = 1; i <= n; i++) {
        size_t keylen = bson_uint32_to_string((uint32_t)(i - 1), &key, buf,
                                              sizeof buf);
        e->path[depth].key = NULL;
        e->path[depth].index = i;
        lua_rawgeti(L, t, i);
        encode_value(e, arr, key, keylen, depth + 1);
        lua_pop(L, 1);
    }
}

/* Is the table at `t` marked with the array metatable? */
static int has_array_mark(encoder *e, int t)
{
    int marked;
    if (!lua_getmetatable(e->L, t))
        return 0;
    marked = lua_rawequal(e->L, -1, e->array_mt);
    lua_pop(e->L, 1);
    return marked;
}

/* Appends the table at the top of the stack as a nested document or
 * array under `key`. */
static void encode_table(encoder *e, bson_t *parent, const char *key,
                         size_t keylen, int depth)
{
    lua_State *L = e->L;
    int t = lua_gettop(L);
    table_shape shape;
    bson_t child;
    int is_array, marked, ok;

    if (depth > RS_MAX_TOKEN_DEPTH)
        encode_fail(e, depth, "nests more than %d levels deep",
                    RS_MAX_TOKEN_DEPTH);
    luaL_checkstack(L, 8, "BSON nesting");

    lua_pushvalue(L, t);
    if (lua_rawget(L, e->seen) != LUA_TNIL)
        encode_fail(e, depth, "refers back to a table that contains it "
                              "(a cycle)");
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    lua_pushboolean(L, 1);
    lua_rawset(L, e->seen);

    table_scan(L, t, &shape);
    marked = has_array_mark(e, t);
    is_array = shape.count > 0 && shape.seq == shape.count &&
               shape.max == (lua_Integer)shape.count;
    if (marked && !is_array && shape.count > 0)
        encode_fail(e, depth, "is marked as an array but its keys are "
                              "not 1..n");
    is_array = is_array || marked;

    count_bytes(e, 5);
    if (is_array) {
        ok = bson_append_array_begin(parent, key, (int)keylen, &child);
        if (ok) {
            encode_elements(e, &child, t, depth,
                            (lua_Integer)shape.count);
            ok = bson_append_array_end(parent, &child);
        }
    } else {
        ok = bson_append_document_begin(parent, key, (int)keylen, &child);
        if (ok) {
            encode_fields(e, &child, t, depth, &shape);
            ok = bson_append_document_end(parent, &child);
        }
    }
    if (!ok)
        encode_fail(e, depth, "does not fit in a BSON document");

    lua_pushvalue(L, t);
    lua_pushnil(L);
    lua_rawset(L, e->seen);
}

/* Encodes the table at `idx` into a new document owned by a guard pushed
 * on the stack. Raises on any problem. */
static bson_t *encode_guarded(lua_State *L, int idx)
{
    encoder e;
    table_shape shape;
    guard *g;
    int t;

    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx))
        rs_lua_raisef(L, RS_ERR_SERIALIZATION,
                      "a BSON document must be a table, not %s",
                      luaL_typename(L, idx));
    luaL_checkstack(L, 16, "BSON encoding");

    memset(&e, 0, sizeof e);
    e.L = L;
    lua_newtable(L);
    e.seen = lua_gettop(L);
    push_order_table(L);
    e.order = lua_gettop(L);
    push_array_mt(L);
    e.array_mt = lua_gettop(L);
    lua_pushvalue(L, idx);
    t = lua_gettop(L);
    g = guard_push(L);
    g->doc = bson_new();

    if (has_array_mark(&e, t))
        rs_lua_raisef(L, RS_ERR_SERIALIZATION,
                      "a BSON document cannot be an array");
    lua_pushvalue(L, t);
    lua_pushboolean(L, 1);
    lua_rawset(L, e.seen);
    table_scan(L, t, &shape);
    encode_fields(&e, g->doc, t, 0, &shape);
    if (g->doc->len > RS_MAX_TOKEN_SIZE)
        rs_lua_raisef(L, RS_ERR_SERIALIZATION,
                      "the document is larger than the %u-byte token limit",
                      (unsigned)RS_MAX_TOKEN_SIZE);

    /* Keep only the guard. */
    lua_replace(L, e.seen);
    lua_settop(L, e.seen);
    return g->doc;
}

const uint8_t *rs_lua_bson_encode(lua_State *L, int idx, size_t *len)
{
    bson_t *doc = encode_guarded(L, idx);
    *len = doc->len;
    return bson_get_data(doc);
}

/* ========================================================================
 * Decoding: BSON -> Lua table
 * ===================================================================== */

/* Are the keys of the array at `it` exactly "0", "1", ...? Only then can a
 * Lua sequence hold it without changing its bytes. */
static int array_keys_canonical(const bson_iter_t *array_it)
{
    bson_iter_t it;
    char buf[16];
    const char *want;
    uint32_t i = 0;

    if (!bson_iter_recurse(array_it, &it))
        return 0;
    while (bson_iter_next(&it)) {
        size_t n = bson_uint32_to_string(i++, &want, buf, sizeof buf);
        if (bson_iter_key_len(&it) != n ||
            memcmp(bson_iter_key(&it), want, n) != 0)
            return 0;
    }
    return 1;
}

static int decode_fields(lua_State *L, bson_iter_t *it, int is_array,
                         int order);

/* Pushes the Lua value of the element at `it`. */
static void push_element(lua_State *L, const bson_iter_t *it, int order)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE:
        lua_pushnumber(L, (lua_Number)bson_iter_double(it));
        break;
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(it, &len);
        lua_pushlstring(L, s, len);
        break;
    }
    case BSON_TYPE_BOOL:
        lua_pushboolean(L, bson_iter_bool(it));
        break;
    case BSON_TYPE_INT32:
        lua_pushinteger(L, (lua_Integer)bson_iter_int32(it));
        break;
    case BSON_TYPE_INT64: {
        int64_t n = bson_iter_int64(it);
        /* A plain integer this small would come back as an int32. */
        if (n >= INT32_MIN && n <= INT32_MAX)
            push_value_copy(L, bson_iter_value((bson_iter_t *)it));
        else
            lua_pushinteger(L, (lua_Integer)n);
        break;
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        int is_array = BSON_ITER_HOLDS_ARRAY(it);
        bson_iter_t child;
        if (!bson_iter_recurse(it, &child) ||
            (is_array && !array_keys_canonical(it))) {
            push_value_copy(L, bson_iter_value((bson_iter_t *)it));
            break;
        }
        if (!decode_fields(L, &child, is_array, order)) {
            /* A table would lose something: keep the exact bytes. */
            lua_pop(L, 1);
            push_value_copy(L, bson_iter_value((bson_iter_t *)it));
        }
        break;
    }
    default:
        push_value_copy(L, bson_iter_value((bson_iter_t *)it));
        break;
    }
}

/* Pushes a table with the elements of `it`; returns 0 when the table
 * does not hold them exactly (a repeated key: the last value wins, at the
 * first key's position). */
static int decode_fields(lua_State *L, bson_iter_t *it, int is_array,
                         int order)
{
    lua_Integer n = 0;
    int exact = 1, t, ranks = 0;

    luaL_checkstack(L, 8, "BSON nesting");
    lua_newtable(L);
    t = lua_gettop(L);
    if (!is_array) {
        lua_newtable(L);
        ranks = lua_gettop(L);
    }
    while (bson_iter_next(it)) {
        if (is_array) {
            push_element(L, it, order);
            lua_rawseti(L, t, ++n);
            continue;
        }
        lua_pushlstring(L, bson_iter_key(it), bson_iter_key_len(it));
        lua_pushvalue(L, -1);
        if (lua_rawget(L, t) == LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_pushinteger(L, ++n);
            lua_rawset(L, ranks);
        } else {
            exact = 0;
        }
        lua_pop(L, 1);
        push_element(L, it, order);
        lua_rawset(L, t);
    }
    if (is_array) {
        push_array_mt(L);
        lua_setmetatable(L, t);
    } else {
        if (n > 0) {
            lua_pushvalue(L, t);
            lua_pushvalue(L, ranks);
            lua_rawset(L, order);
        }
        lua_pop(L, 1); /* ranks */
    }
    return exact;
}

/* Pushes the document in bytes already checked by rs_token_validate and
 * returns 1; returns 0 with nothing pushed when a top-level key repeats (a
 * table would keep one value, so encoding it again would change bytes). */
static int push_validated(lua_State *L, const uint8_t *data, size_t len)
{
    int exact = 1;
    bson_t doc;
    bson_iter_t it;
    int order;

    luaL_checkstack(L, 4, "BSON decoding");
    push_order_table(L);
    order = lua_gettop(L);
    if (!bson_init_static(&doc, data, len) || !bson_iter_init(&it, &doc)) {
        lua_newtable(L); /* unreachable after validation */
    } else {
        exact = decode_fields(L, &it, 0, order);
    }
    lua_remove(L, order);
    if (!exact) lua_pop(L, 1);
    return exact;
}

int rs_lua_bson_push(lua_State *L, const uint8_t *data, size_t len)
{
    if (rs_token_validate(data, len, NULL) < 0)
        return 0;
    return push_validated(L, data, len);
}

/* ========================================================================
 * Lua functions: rs.bson.*, rs.binary, rs.token_time
 * ===================================================================== */

/* The BSON bytes of argument `arg`: a string as is, a table encoded (the
 * bytes then belong to a guard left on the stack). */
static const uint8_t *bytes_arg(lua_State *L, int arg, size_t *len)
{
    if (lua_istable(L, arg)) {
        bson_t *doc = encode_guarded(L, arg);
        *len = doc->len;
        return bson_get_data(doc);
    }
    return (const uint8_t *)luaL_checklstring(L, arg, len);
}

/* Raises a serialization error unless `data` is a valid document. */
static void check_bytes(lua_State *L, const uint8_t *data, size_t len)
{
    rs_error err;
    memset(&err, 0, sizeof err);
    if (rs_token_validate(data, len, &err) < 0)
        rs_lua_raise(L, &err);
}

static int l_encode(lua_State *L)
{
    bson_t *doc;
    luaL_checktype(L, 1, LUA_TTABLE);
    doc = encode_guarded(L, 1);
    lua_pushlstring(L, (const char *)bson_get_data(doc), doc->len);
    return 1;
}

static int l_decode(lua_State *L)
{
    size_t len;
    const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 1, &len);
    check_bytes(L, data, len);
    if (!push_validated(L, data, len))
        return rs_lua_raisef(L, RS_ERR_SERIALIZATION,
                             "a top-level key repeats: a table cannot hold the document exactly");
    return 1;
}

static int l_to_json(lua_State *L)
{
    size_t len, jlen = 0;
    const uint8_t *data = bytes_arg(L, 1, &len);
    guard *g;
    bson_t doc;

    check_bytes(L, data, len);
    bson_init_static(&doc, data, len);
    g = guard_push(L);
    g->text = bson_as_relaxed_extended_json(&doc, &jlen);
    if (!g->text)
        rs_lua_raisef(L, RS_ERR_SERIALIZATION,
                      "the document cannot be written as Extended JSON");
    lua_pushlstring(L, g->text, jlen);
    return 1;
}

static int l_from_json(lua_State *L)
{
    size_t len;
    const char *json = luaL_checklstring(L, 1, &len);
    bson_error_t berr;
    guard *g = guard_push(L);

    memset(&berr, 0, sizeof berr);
    g->doc = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &berr);
    if (!g->doc)
        rs_lua_raisef(L, RS_ERR_SERIALIZATION, "invalid Extended JSON: %s",
                      berr.message[0] ? berr.message : "parse error");
    /* Same rules as tokens read from Redis (UTF-8, depth, size). */
    check_bytes(L, bson_get_data(g->doc), g->doc->len);
    lua_pushlstring(L, (const char *)bson_get_data(g->doc), g->doc->len);
    return 1;
}

/* rs.bson.array(t): marks `t` so that it encodes as an array, even empty. */
static int l_array(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getmetatable(L, 1)) {
        push_array_mt(L);
        luaL_argcheck(L, lua_rawequal(L, -1, -2), 1,
                      "table already has a metatable");
        lua_pop(L, 2);
    }
    push_array_mt(L);
    lua_setmetatable(L, 1);
    lua_settop(L, 1);
    return 1;
}

/* rs.binary(bytes [, subtype]) */
static int l_binary(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    lua_Integer subtype = luaL_optinteger(L, 2, 0);
    bson_value_t v;

    luaL_argcheck(L, subtype >= 0 && subtype <= 255, 2,
                  "subtype must be 0..255");
    luaL_argcheck(L, len <= RS_MAX_TOKEN_SIZE, 1, "larger than 16 MiB");
    memset(&v, 0, sizeof v);
    v.value_type = BSON_TYPE_BINARY;
    v.value.v_binary.subtype = (bson_subtype_t)subtype;
    v.value.v_binary.data = (uint8_t *)data;
    v.value.v_binary.data_len = (uint32_t)len;
    push_value_copy(L, &v);
    return 1;
}

/* rs.token_time(token) -> seconds, increment | nil */
static int l_token_time(lua_State *L)
{
    size_t len;
    const uint8_t *data;
    uint32_t seconds, increment;

    luaL_argexpected(L, lua_istable(L, 1) || lua_type(L, 1) == LUA_TSTRING,
                     1, "table or BSON string");
    data = bytes_arg(L, 1, &len);
    if (!rs_token_cluster_time(data, len, &seconds, &increment)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)seconds);
    lua_pushinteger(L, (lua_Integer)increment);
    return 2;
}

static const luaL_Reg bson_funcs[] = {
    {"encode", l_encode},
    {"decode", l_decode},
    {"to_json", l_to_json},
    {"from_json", l_from_json},
    {"array", l_array},
    {NULL, NULL}
};

void rs_lua_open_bson(lua_State *L)
{
    int module = lua_gettop(L);

    luaL_checkstack(L, 4, "opening rigatoni_store.bson");
    push_value_mt(L);
    push_array_mt(L);
    push_order_table(L);
    lua_pop(L, 3);

    luaL_newlib(L, bson_funcs);
    push_null(L);
    lua_setfield(L, -2, "null");
    lua_setfield(L, module, "bson");

    lua_pushcfunction(L, l_binary);
    lua_setfield(L, module, "binary");
    lua_pushcfunction(L, l_token_time);
    lua_setfield(L, module, "token_time");
}
