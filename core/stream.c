/* SPDX-License-Identifier: MIT */
/* stream.c -- the names Rigatoni 0.2 pipelines give their resume tokens.
 *
 * A Rust pipeline does not save under "<prefix>:<collection>": it hands the
 * store the name of its watch level (WatchLevel::resume_token_key), read at
 * start-up and saved per acknowledged event:
 *   collection watch  resume_token:{db}:{coll}
 *   database watch    resume_token:database:{db}
 *   deployment watch  resume_token:deployment
 * and after each batch it also saves a "mirror" that is never read:
 * {coll}, __db:{db} and __deployment__. These functions build and parse
 * those names so tools can address what a real pipeline resumes from.
 *
 * A database named "database" makes the collection name of its
 * collection watch equal to another database's database-watch name; the
 * Rust key is ambiguous there, and parsing reads it as a database watch.
 */
#include <string.h>

#include "error.h"

static const char stream_prefix[] = "resume_token:";
#define STREAM_PREFIX_LEN (sizeof stream_prefix - 1)
static const char database_word[] = "database";
static const char deployment_name[] = "resume_token:deployment";

/* A database part must be non-empty UTF-8 without ':' (else the name could
 * not be parsed back); a collection part non-empty UTF-8. */
static int check_part(const char *what, const char *s, size_t len, int colon_ok, rs_error *err)
{
    if (len == 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "stream key: the %s name is empty", what);
        return -1;
    }
    if (!rs_utf8_valid(s, len, 0)) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "stream key: the %s name is not UTF-8 text", what);
        return -1;
    }
    if (!colon_ok && memchr(s, ':', len)) {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "stream key: the %s name contains ':' (the Rigatoni key would be ambiguous)",
                     what);
        return -1;
    }
    return 0;
}

typedef struct part {
    const char *s;
    size_t len;
} part;

#define LIT(text) ((part){text, sizeof text - 1})

/* Writes the parts one after another into buf like snprintf (always
 * NUL-terminated when bufsize > 0); returns the full length. */
static long join(const part *parts, int n, char *buf, size_t bufsize)
{
    size_t at = 0;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < parts[i].len; j++, at++)
            if (at + 1 < bufsize) buf[at] = parts[i].s[j];
    if (bufsize) buf[at < bufsize ? at : bufsize - 1] = '\0';
    return (long)at;
}

long rs_stream_key(const char *database, size_t db_len, const char *collection,
                   size_t coll_len, char *buf, size_t bufsize, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (!database && collection) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "stream key: a collection needs its database");
        return -1;
    }
    if (!database) return join((part[]){LIT("resume_token:deployment")}, 1, buf, bufsize);
    if (check_part("database", database, db_len, 0, err) < 0) return -1;
    part db = {database, db_len};
    if (!collection)
        return join((part[]){LIT("resume_token:database:"), db}, 2, buf, bufsize);
    if (check_part("collection", collection, coll_len, 1, err) < 0) return -1;
    return join((part[]){LIT("resume_token:"), db, LIT(":"), {collection, coll_len}}, 4, buf,
                bufsize);
}

long rs_stream_mirror_key(const char *database, size_t db_len, const char *collection,
                          size_t coll_len, char *buf, size_t bufsize, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    /* The same checks as the resume key: a mirror exists only beside one. */
    if (rs_stream_key(database, db_len, collection, coll_len, NULL, 0, err) < 0) return -1;
    if (!database) return join((part[]){LIT("__deployment__")}, 1, buf, bufsize);
    if (!collection) return join((part[]){LIT("__db:"), {database, db_len}}, 2, buf, bufsize);
    return join((part[]){{collection, coll_len}}, 1, buf, bufsize);
}

rs_stream_level rs_parse_stream_key(const char *name, size_t len, rs_stream *out)
{
    memset(out, 0, sizeof *out);
    if (len == sizeof deployment_name - 1 && memcmp(name, deployment_name, len) == 0)
        return out->level = RS_STREAM_DEPLOYMENT;
    if (len <= STREAM_PREFIX_LEN || memcmp(name, stream_prefix, STREAM_PREFIX_LEN) != 0)
        return RS_STREAM_NONE;
    const char *rest = name + STREAM_PREFIX_LEN;
    size_t rest_len = len - STREAM_PREFIX_LEN;
    const char *colon = memchr(rest, ':', rest_len);
    if (!colon || colon == rest || colon == rest + rest_len - 1) return RS_STREAM_NONE;
    const char *second = colon + 1;
    size_t second_len = rest_len - (size_t)(second - rest);
    if (!rs_utf8_valid(rest, rest_len, 0)) return RS_STREAM_NONE;
    if ((size_t)(colon - rest) == sizeof database_word - 1 &&
        memcmp(rest, database_word, sizeof database_word - 1) == 0 &&
        !memchr(second, ':', second_len)) {
        out->database = second;
        out->database_len = second_len;
        return out->level = RS_STREAM_DATABASE;
    }
    out->database = rest;
    out->database_len = (size_t)(colon - rest);
    out->collection = second;
    out->collection_len = second_len;
    return out->level = RS_STREAM_COLLECTION;
}

const char *rs_stream_level_name(rs_stream_level level)
{
    switch (level) {
    case RS_STREAM_COLLECTION: return "collection";
    case RS_STREAM_DATABASE: return "database";
    case RS_STREAM_DEPLOYMENT: return "deployment";
    default: return "none";
    }
}
