/* SPDX-License-Identifier: MIT */
/* token.c -- checks on resume-token bytes (BSON), and their cluster time.
 *
 * A token travels as the raw BSON bytes Rigatoni writes (bson::to_vec), so
 * the store never parses more than it must: rs_token_validate says whether
 * bytes are one well-formed document, rs_token_cluster_time reads the
 * timestamp MongoDB packs at the front of `_data`.
 *
 * Validation is stricter than "libbson can iterate it":
 *  - the length prefix must cover exactly the bytes given (no trailing
 *    garbage: a value read from Redis is one document, nothing more);
 *  - string values and keys must be UTF-8, so anything we accept can be
 *    decoded into Lua and encoded again without complaint (NUL bytes are
 *    allowed inside string values, as BSON allows them);
 *  - documents may nest at most RS_MAX_TOKEN_DEPTH levels (MongoDB's own
 *    limit is 100). libbson's validator recurses on the C stack, so the
 *    depth is checked first by an iterative walk: a hostile 16 MiB value
 *    of nested empty documents must not be able to overflow our stack.
 */
#include <string.h>

#include <bson/bson.h>
#include <stdint.h>

#include "error.h"


/* ------------------------------------------------------------------------
 * Errors
 * --------------------------------------------------------------------- */

static int token_fail(rs_error *err, const char *reason)
{
    rs_error_clear(err);
    rs_error_set(err, RS_ERR_SERIALIZATION, 0, "not a BSON document: %s",
                 reason);
    return -1;
}

/* ------------------------------------------------------------------------
 * Structure walk: nesting depth and key encoding
 * --------------------------------------------------------------------- */

/* Opens the nested document (document, array or the scope of code with
 * scope) that `it` points at into `child`. Returns 0 when `it` holds no
 * nested document, -1 when the nested bytes are corrupt. */
static int open_nested(const bson_iter_t *it, bson_iter_t *child)
{
    uint32_t len = 0, code_len;
    const uint8_t *data = NULL;
    bson_t doc;

    if (BSON_ITER_HOLDS_DOCUMENT(it))
        bson_iter_document(it, &len, &data);
    else if (BSON_ITER_HOLDS_ARRAY(it))
        bson_iter_array(it, &len, &data);
    else if (BSON_ITER_HOLDS_CODEWSCOPE(it))
        bson_iter_codewscope(it, &code_len, &len, &data);
    else
        return 0;
    /* bson_init_static also checks the final NUL, which bson_iter_recurse
     * does not. The iterator keeps pointers into the caller's buffer, so
     * the temporary bson_t may go out of scope. */
    if (!data || !bson_init_static(&doc, data, len) ||
        !bson_iter_init(child, &doc))
        return -1;
    return 1;
}

/* Are the text parts of the value at `it` UTF-8 and NUL-terminated? NUL
 * is allowed inside length-prefixed strings. (libbson 1.23's bson_validate does not catch
 * every bad string value, hence our own check.) */
static int value_utf8_ok(const bson_iter_t *it)
{
    uint32_t len = 0;
    const char *s = NULL, *opts = NULL;

    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8:
        s = bson_iter_utf8(it, &len);
        break;
    case BSON_TYPE_CODE:
        s = bson_iter_code(it, &len);
        break;
    case BSON_TYPE_SYMBOL:
        s = bson_iter_symbol(it, &len);
        break;
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t scope_len;
        const uint8_t *scope;
        s = bson_iter_codewscope(it, &len, &scope_len, &scope);
        break;
    }
    case BSON_TYPE_DBPOINTER:
        bson_iter_dbpointer(it, &len, &s, NULL);
        break;
    case BSON_TYPE_REGEX:
        s = bson_iter_regex(it, &opts);
        len = s ? (uint32_t)strlen(s) : 0;
        if (opts && !bson_utf8_validate(opts, strlen(opts), false))
            return 0;
        break;
    default:
        return 1;
    }
    /* libbson checks the terminator of plain strings but not of every
     * string (the code of code-with-scope): a missing NUL would make the
     * value change when written again. */
    if (!s)
        return 1;
    if (bson_iter_type(it) != BSON_TYPE_REGEX && s[len] != '\0')
        return 0;
    /* libbson appends code, code-with-scope and DBPointer names as C
     * strings: an embedded NUL would cut them when written again. Only
     * strings and symbols keep it (found by spec/fuzz/fuzz_bson.c). */
    return rs_utf8_valid(s, len, bson_iter_type(it) == BSON_TYPE_UTF8 ||
                                     bson_iter_type(it) == BSON_TYPE_SYMBOL);
}

/* Iterative depth-first walk over every element (nesting depth, UTF-8 of
 * keys and strings, corrupt elements), with an explicit stack of
 * iterators. libbson's validator runs afterwards for the finer points
 * (boolean bytes, binary lengths, ...). */
static int check_structure(const bson_t *doc, rs_error *err)
{
    /* bson_iter_t is over-aligned, so arrays of it need a wrapper. */
    struct frame { bson_iter_t it; } stack[RS_MAX_TOKEN_DEPTH + 1];
    int top = 0;

    if (!bson_iter_init(&stack[0].it, doc))
        return token_fail(err, "corrupt document");
    while (top >= 0) {
        bson_iter_t *it = &stack[top].it;
        if (!bson_iter_next(it)) {
            /* err_off is how libbson tells a corrupt element from the end
             * (its validator in 1.23 misses some such cases). */
            if (it->err_off)
                return token_fail(err, "corrupt element");
            top--;
            continue;
        }
        const char *key = bson_iter_key(it);
        if (!rs_utf8_valid(key, bson_iter_key_len(it), 0))
            return token_fail(err, "a key is not valid UTF-8");
        if (!value_utf8_ok(it))
            return token_fail(err, "a string is not valid UTF-8 or not "
                                   "NUL-terminated");

        bson_iter_t child;
        int nested = open_nested(it, &child);
        if (nested < 0)
            return token_fail(err, "corrupt nested document");
        if (nested > 0) {
            if (top == RS_MAX_TOKEN_DEPTH)
                return token_fail(err, "nested more than 100 levels deep");
            stack[++top].it = child;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Public API
 * --------------------------------------------------------------------- */

int rs_utf8_valid(const char *s, size_t len, int allow_nul)
{
    /* Resume tokens are hex text: skip the ASCII prefix cheaply and hand
     * only the rest (from a character boundary) to libbson. */
    size_t i = 0;
    while (i < len && (unsigned char)s[i] < 0x80 && (s[i] != 0 || allow_nul))
        i++;
    if (i == len)
        return 1;
    if (s[i] == 0)
        return 0;
    return bson_utf8_validate(s + i, len - i, allow_nul != 0);
}

int rs_token_validate(const void *bytes, size_t len, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    bson_t doc;
    bson_error_t berr;
    uint32_t declared;

    if (!bytes || len < 5)
        return token_fail(err, "shorter than the 5 bytes of an empty "
                               "document");
    if (len > RS_MAX_TOKEN_SIZE)
        return token_fail(err, "larger than 16 MiB");
    /* BSON lengths are little endian whatever the host. */
    memcpy(&declared, bytes, sizeof declared);
    declared = BSON_UINT32_FROM_LE(declared);
    if (declared != len)
        return token_fail(err, "length prefix does not match the data "
                               "(truncated, or trailing bytes)");
    if (!bson_init_static(&doc, bytes, len))
        return token_fail(err, "missing the final NUL byte");
    if (check_structure(&doc, err) < 0)
        return -1;
    /* Structure only: check_structure already checked every string. */
    if (!bson_validate_with_error(&doc, BSON_VALIDATE_NONE, &berr))
        return token_fail(err, berr.message[0] ? berr.message
                                               : "corrupt document");
    return 0;
}

/* 0..15 for a hex digit (either case), -1 otherwise. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes `n` bytes from 2n hex digits; -1 on a non-hex character. */
static int hex_decode(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int rs_token_cluster_time(const void *bson, size_t len, uint32_t *seconds,
                          uint32_t *increment)
{
    bson_t doc;
    bson_iter_t it;
    uint8_t head[9]; /* 0x82, then seconds and increment big endian */

    if (!bson || len < 5 || len > RS_MAX_TOKEN_SIZE ||
        !bson_init_static(&doc, bson, len) ||
        !bson_iter_init_find(&it, &doc, "_data"))
        return 0;

    if (BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t n;
        const char *hex = bson_iter_utf8(&it, &n);
        if (n < 2 * sizeof head || hex_decode(hex, head, sizeof head) < 0)
            return 0;
    } else if (BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t subtype;
        uint32_t n;
        const uint8_t *data;
        bson_iter_binary(&it, &subtype, &n, &data);
        if (!data || n < sizeof head)
            return 0;
        memcpy(head, data, sizeof head);
    } else {
        return 0;
    }
    /* 0x82 is the key-string type byte of a Timestamp: without it the
     * following bytes are something else entirely. */
    if (head[0] != 0x82)
        return 0;
    if (seconds) *seconds = read_be32(head + 1);
    if (increment) *increment = read_be32(head + 5);
    return 1;
}
