/* SPDX-License-Identifier: MIT */
/* rs_rows_lua.c -- the JSON rows of `list` and the lines of `export`, in C.
 *
 * Formatted per token in Lua, these rows cost more than the whole Redis
 * side of a walk; here one call writes a whole batch (store:token_lines in
 * rs_walk_lua.c) or one row:
 *
 *   rs.list_row(collection, bytes, ttl|nil, now [, mirror_of]) -> text
 *       one `list --format json/jsonl` object (no newline); mirror_of: the
 *       names a per-batch mirror key mirrors
 *   rs.export_line(collection, bytes, ttl|nil) -> line | nil, message
 *       one `export` line with its "\n"; nil and why for a value that is
 *       not valid BSON (export skips those)
 *
 * The bytes are the documented formats of scripts/list.lua and
 * scripts/export.lua: JSON strings escape '"', '\\' and control bytes
 * (\b \f \n \r \t, else \u00XX), other bytes pass as they are; numbers as
 * Lua's %d / %.15g; cluster times ISO 8601 UTC; tokens in libbson's
 * relaxed Extended JSON; BSON in base64 (OpenSSL's encoder).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bson/bson.h>
#include <openssl/evp.h>

#include "rs_lua.h"

/* ---------------------------------------------------------------------
 * A growable byte buffer (reused from batch to batch)
 * ------------------------------------------------------------------ */

static int reserve(rs_rowbuf *b, size_t more)
{
    if (b->oom) return -1;
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static void add(rs_rowbuf *b, const char *s, size_t n)
{
    if (reserve(b, n) < 0) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

#define ADD_LIT(b, lit) add((b), (lit), sizeof(lit) - 1)

static void addf(rs_rowbuf *b, const char *fmt, ...)
{
    char tmp[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void rs_rowbuf_free(rs_rowbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------------
 * Pieces
 * ------------------------------------------------------------------ */

/* The length of the UTF-8 sequence at s[0..n) (1..4), or 0 when s[0]
 * does not start a valid one. */
static size_t utf8_sequence(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t k = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3
             : c >= 0xf0 && c < 0xf5 ? 4 : 0;
    return k && k <= n && rs_utf8_valid(s, k, 1) ? k : 0;
}

/* A JSON string literal of s[0..n), as cli.json_string writes it. JSON
 * text is UTF-8: a byte that is not part of UTF-8 text is written as the
 * four characters \xNN (as in the table and Prometheus formats), so the
 * output stays JSON a strict reader takes; the exact bytes of such a
 * name travel in "collection_base64" (add_name). */
static void add_json_string(rs_rowbuf *b, const char *s, size_t n)
{
    if (reserve(b, 2 + 6 * n) < 0) return;
    static const char hex[] = "0123456789abcdef";
    char *p = b->data + b->len;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t k = utf8_sequence(s + i, n - i);
            if (k == 0) {
                *p++ = '\\', *p++ = '\\', *p++ = 'x';
                *p++ = hex[c >> 4], *p++ = hex[c & 15];
                continue;
            }
            memcpy(p, s + i, k);
            p += k;
            i += k - 1;
        } else if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            *p++ = '\\';
            switch (c) {
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            default:
                *p++ = 'u', *p++ = '0', *p++ = '0';
                *p++ = hex[c >> 4], *p++ = hex[c & 15];
            }
        } else {
            *p++ = (char)c;
        }
    }
    *p++ = '"';
    b->len = (size_t)(p - b->data);
}

/* A TTL in seconds as cli.json_number writes it; < 0 (none) and NAN
 * (unknown: the server refused PTTL) = null. */
static void add_ttl_seconds(rs_rowbuf *b, double ttl)
{
    if (ttl < 0 || isnan(ttl)) ADD_LIT(b, "null");
    else if (ttl == floor(ttl) && ttl < 9007199254740992.0) addf(b, "%lld", (long long)ttl);
    else addf(b, "%.15g", ttl);
}

static void add_iso_time(rs_rowbuf *b, uint32_t seconds)
{
    time_t t = (time_t)seconds;
    struct tm tm;
    char tmp[32];
    size_t n = gmtime_r(&t, &tm) ? strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%SZ", &tm) : 0;
    add(b, tmp, n);
}

static void add_base64(rs_rowbuf *b, const uint8_t *data, size_t len)
{
    /* EVP_EncodeBlock takes an int length: a token is at most 16 MiB. */
    if (len > (size_t)RS_MAX_TOKEN_SIZE || reserve(b, 4 * ((len + 2) / 3) + 1) < 0) {
        b->oom = 1;
        return;
    }
    int n = EVP_EncodeBlock((unsigned char *)b->data + b->len, data, (int)len);
    b->len += (size_t)n;
}

/* A token's relaxed Extended JSON: either libbson's text (heap, bson_free)
 * or, for the usual token {_data: "<printable ASCII, no quote or
 * backslash>"}, the string inside the BSON, which libbson would write as
 * { "_data" : "<it>" } with nothing escaped (its generic writer costs more
 * than the rest of a row). */
typedef struct token_json {
    char *heap;
    const char *data;         /* the _data string, when not heap */
    size_t len;
} token_json;

/* The usual token: one string element _data whose bytes need no escape. */
static int plain_data(const uint8_t *v, size_t vlen, token_json *out)
{
    static const uint8_t head[] = {0x02, '_', 'd', 'a', 't', 'a', 0};
    if (vlen < 4 + sizeof head + 4 + 1 + 1 || memcmp(v + 4, head, sizeof head) != 0) return 0;
    const uint8_t *p = v + 4 + sizeof head;
    uint32_t slen = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    /* the string (slen bytes, NUL included), then the document's NUL: nothing else */
    if (slen < 1 || slen != vlen - (4 + sizeof head + 4 + 1)) return 0;
    const uint8_t *s = p + 4;
    for (uint32_t i = 0; i + 1 < slen; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') return 0;
    out->heap = NULL;
    out->data = (const char *)s;
    out->len = slen - 1;
    return 1;
}

/* 0 with *out set, or -1 with *why as rs.bson.to_json would raise. */
static int token_json_of(const uint8_t *v, size_t vlen, token_json *out, rs_error *why)
{
    memset(why, 0, sizeof *why);
    if (rs_token_validate(v, vlen, why) < 0) return -1;
    if (plain_data(v, vlen, out)) return 0;
    bson_t doc;
    out->heap = bson_init_static(&doc, v, vlen) ? bson_as_relaxed_extended_json(&doc, &out->len) : NULL;
    if (!out->heap) {
        why->kind = RS_ERR_SERIALIZATION;
        snprintf(why->message, sizeof why->message,
                 "the document cannot be written as Extended JSON");
        return -1;
    }
    return 0;
}

/* Appends the JSON and releases it. */
static void add_token_json(rs_rowbuf *b, token_json *j)
{
    if (j->heap) {
        add(b, j->heap, j->len);
        bson_free(j->heap);
        j->heap = NULL;
        return;
    }
    ADD_LIT(b, "{ \"_data\" : \"");
    add(b, j->data, j->len);
    ADD_LIT(b, "\" }");
}

/* "collection":NAME, and "collection_base64":BYTES after it when the name
 * is not UTF-8 text (its JSON string then holds \xNN for such bytes). */
static void add_name(rs_rowbuf *b, const char *name, size_t len)
{
    ADD_LIT(b, "\"collection\":");
    add_json_string(b, name, len);
    if (rs_utf8_valid(name, len, 1)) return;
    ADD_LIT(b, ",\"collection_base64\":\"");
    add_base64(b, (const uint8_t *)name, len);
    ADD_LIT(b, "\"");
}

/* ---------------------------------------------------------------------
 * Rows
 * ------------------------------------------------------------------ */

int rs_rows_list(lua_State *L, rs_rowbuf *b, const rs_scan_entry *e, double now, int mirror_of,
                 int newline)
{
    const uint8_t *v = (const uint8_t *)e->value;
    rs_error why;
    token_json json;
    int bad = token_json_of(v, e->value_len, &json, &why) < 0;
    uint32_t seconds, increment;

    ADD_LIT(b, "{");
    add_name(b, e->collection, e->collection_len);
    ADD_LIT(b, ",\"ttl_seconds\":");
    add_ttl_seconds(b, e->ttl);
    addf(b, ",\"size\":%zu", e->value_len);
    if (!bad && rs_token_cluster_time(v, e->value_len, &seconds, &increment)) {
        ADD_LIT(b, ",\"cluster_time\":\"");
        add_iso_time(b, seconds);
        addf(b, "\",\"cluster_time_seconds\":%lu,\"increment\":%lu,\"age_seconds\":%lld",
             (unsigned long)seconds, (unsigned long)increment,
             (long long)floor(now - (double)seconds));
    } else {
        ADD_LIT(b, ",\"cluster_time\":null");
    }
    if (!bad) {
        ADD_LIT(b, ",\"token\":");
        add_token_json(b, &json);
    } else {
        ADD_LIT(b, ",\"token\":null,\"error\":");
        add_json_string(b, why.message, strlen(why.message));
    }
    rs_stream st;
    if (rs_parse_stream_key(e->collection, e->collection_len, &st) != RS_STREAM_NONE) {
        ADD_LIT(b, ",\"stream\":{\"level\":");
        const char *level = rs_stream_level_name(st.level);
        add_json_string(b, level, strlen(level));
        ADD_LIT(b, ",\"database\":");
        if (st.database) add_json_string(b, st.database, st.database_len);
        else ADD_LIT(b, "null");
        ADD_LIT(b, ",\"collection\":");
        if (st.collection) add_json_string(b, st.collection, st.collection_len);
        else ADD_LIT(b, "null");
        ADD_LIT(b, "}");
    } else if (mirror_of) {
        ADD_LIT(b, ",\"mirror_of\":[");
        lua_Integer n = luaL_len(L, mirror_of);
        for (lua_Integer i = 1; i <= n; i++) {
            size_t len;
            lua_rawgeti(L, mirror_of, i);
            const char *name = lua_tolstring(L, -1, &len);
            if (i > 1) ADD_LIT(b, ",");
            if (name) add_json_string(b, name, len);   /* copied before the pop */
            lua_pop(L, 1);
        }
        ADD_LIT(b, "]");
    }
    if (newline) ADD_LIT(b, "}\n");
    else ADD_LIT(b, "}");
    return bad;
}

int rs_rows_export(rs_rowbuf *b, const rs_scan_entry *e, rs_error *why)
{
    token_json json;
    if (token_json_of((const uint8_t *)e->value, e->value_len, &json, why) < 0) return 1;
    ADD_LIT(b, "{");
    add_name(b, e->collection, e->collection_len);
    ADD_LIT(b, ",\"bson_base64\":\"");
    add_base64(b, (const uint8_t *)e->value, e->value_len);
    ADD_LIT(b, "\",\"token\":");
    add_token_json(b, &json);
    ADD_LIT(b, ",\"ttl_ms\":");
    if (e->ttl < 0) {
        ADD_LIT(b, "null");
    } else {
        double ms = floor(e->ttl * 1000 + 0.5);
        addf(b, "%lld", (long long)(ms < 1 ? 1 : ms));
    }
    ADD_LIT(b, "}\n");
    return 0;
}

/* ---------------------------------------------------------------------
 * rs.list_row, rs.export_line
 * ------------------------------------------------------------------ */

/* The entry of a (collection, bytes, ttl) call at stack index 1..3. */
static void entry_args(lua_State *L, rs_scan_entry *e)
{
    e->collection = luaL_checklstring(L, 1, &e->collection_len);
    e->value = luaL_checklstring(L, 2, &e->value_len);
    e->ttl = lua_isnoneornil(L, 3) ? -1 : luaL_checknumber(L, 3);
    luaL_argcheck(L, e->ttl >= 0 || lua_isnoneornil(L, 3), 3, "a TTL is not negative");
}

/* Pushes the buffer's text and frees it, or raises when it ran out of memory. */
static int push_rowbuf(lua_State *L, rs_rowbuf *b)
{
    if (b->oom) {
        rs_rowbuf_free(b);
        return rs_lua_raisef(L, RS_ERR_NOMEM, "out of memory");
    }
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    rs_rowbuf_free(b);
    return 1;
}

static int l_list_row(lua_State *L)
{
    rs_scan_entry e;
    entry_args(L, &e);
    double now = luaL_checknumber(L, 4);
    int mirror_of = 0;
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        mirror_of = 5;
    }
    rs_rowbuf b = {0};
    rs_rows_list(L, &b, &e, now, mirror_of, 0);
    return push_rowbuf(L, &b);
}

static int l_export_line(lua_State *L)
{
    rs_scan_entry e;
    entry_args(L, &e);
    rs_rowbuf b = {0};
    rs_error why;
    if (rs_rows_export(&b, &e, &why)) {
        rs_rowbuf_free(&b);
        lua_pushnil(L);
        lua_pushstring(L, why.message);
        return 2;
    }
    return push_rowbuf(L, &b);
}

/* Value of one base64 character, or -1. */
static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* rs.base64_decode(text) -> bytes, or nil and why. Strict, as export
 * writes it: groups of 4, "=" only as the last one or two characters, no
 * whitespace. (OpenSSL's decoder skips whitespace and counts the padding
 * as bytes.) The reasons name the 1-based offset of the bad group. */
static int l_base64_decode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    if (n % 4 != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "base64 length is not a multiple of 4");
        return 2;
    }
    size_t pad = n >= 2 && s[n - 2] == '=' && s[n - 1] == '=' ? 2 : n >= 1 && s[n - 1] == '=' ? 1 : 0;
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3);
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            /* the padding reads as zero bits */
            v[k] = i + (size_t)k >= n - pad ? 0 : base64_value(s[i + (size_t)k]);
            if (v[k] < 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "invalid base64 at offset %I", (lua_Integer)i + 1);
                return 2;
            }
        }
        unsigned long bits = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 |
                             (unsigned long)v[2] << 6 | (unsigned long)v[3];
        out[i / 4 * 3] = (unsigned char)(bits >> 16);
        out[i / 4 * 3 + 1] = (unsigned char)(bits >> 8);
        out[i / 4 * 3 + 2] = (unsigned char)bits;
    }
    luaL_pushresultsize(&b, n / 4 * 3 - pad);
    return 1;
}

static const luaL_Reg row_funcs[] = {
    {"list_row", l_list_row},
    {"export_line", l_export_line},
    {"base64_decode", l_base64_decode},
    {NULL, NULL}
};

void rs_lua_open_rows(lua_State *L)
{
    luaL_setfuncs(L, row_funcs, 0);
}
