/* SPDX-License-Identifier: MIT */
/* url.c -- parsing and masking of redis:// and rediss:// URLs.
 *
 * Accepted: scheme://[user[:password]@]host[:port][,host[:port]...][/db]
 * where scheme is redis or rediss, user and password may be percent-encoded,
 * hosts are names, IPv4 or [IPv6], and several hosts mean Sentinel nodes
 * (or cluster seeds). The userinfo ends at the last '@', so a password may
 * hold '@', ':' or '/' unencoded.
 *
 * Error messages never quote the URL: they name the part that is wrong.
 * Masking rebuilds the URL with the userinfo replaced by "***"; anything
 * that does not parse is shown as its scheme and "***" so nothing leaks.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define DEFAULT_PORT 6379

/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------ */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+len) into a new string; NULL on a bad escape or a
 * decoded NUL (it could not be sent to AUTH as a C string). */
static char *percent_decode(const char *s, size_t len, int *bad)
{
    char *out = malloc(len + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < len ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                *bad = 1;
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static int parse_port(const char *s, size_t len, int *port)
{
    if (len == 0 || len > 5) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535) return -1;
    *port = (int)v;
    return 0;
}

static int valid_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_') return 0;
    }
    return 1;
}

static int valid_ipv6(const char *s, size_t len)
{
    if (len < 2 || len > 45) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isxdigit(c) && c != ':' && c != '.') return 0;
    }
    return 1;
}

/* The scheme length when `url` starts with "<scheme>://", else 0. */
static size_t scheme_length(const char *url)
{
    size_t n = 0;
    while (isalnum((unsigned char)url[n]) || url[n] == '+' || url[n] == '-' || url[n] == '.')
        n++;
    return n > 0 && strncmp(url + n, "://", 3) == 0 ? n : 0;
}

/* ---------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------ */

static int parse_host(const char *s, size_t len, rs_host *out, rs_error *err)
{
    const char *host = s, *port = NULL;
    size_t host_len = len, port_len = 0;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "invalid URL: unclosed '[' in IPv6 host");
            return -1;
        }
        host = s + 1;
        host_len = (size_t)(close - s - 1);
        size_t after = (size_t)(close - s + 1);
        if (after < len) {
            if (s[after] != ':') {
                rs_error_set(err, RS_ERR_CONFIG, 0, "invalid URL: unexpected text after IPv6 host");
                return -1;
            }
            port = s + after + 1;
            port_len = len - after - 1;
        }
        if (!valid_ipv6(host, host_len)) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "invalid URL: bad IPv6 address");
            return -1;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon) {
            host_len = (size_t)(colon - s);
            port = colon + 1;
            port_len = len - host_len - 1;
        }
        if (host_len == 0) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "invalid URL: missing host");
            return -1;
        }
        if (!valid_hostname(host, host_len)) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "invalid URL: bad host name");
            return -1;
        }
    }

    out->port = DEFAULT_PORT;
    if (port && parse_port(port, port_len, &out->port) < 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "invalid URL: port must be a number from 1 to 65535");
        return -1;
    }
    out->host = strndup(host, host_len);
    if (!out->host) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_userinfo(const char *s, size_t len, rs_url *out, rs_error *err)
{
    const char *colon = memchr(s, ':', len);
    size_t user_len = colon ? (size_t)(colon - s) : len;
    int bad = 0;

    if (user_len > 0) {
        out->username = percent_decode(s, user_len, &bad);
        if (!out->username) goto fail;
    }
    /* An empty password is no password: "redis://:${REDIS_PASSWORD}@h"
     * with the variable empty must not send AUTH "". */
    if (colon && len - user_len - 1 > 0) {
        size_t pass_len = len - user_len - 1;
        out->password = percent_decode(colon + 1, pass_len, &bad);
        if (!out->password) goto fail;
    }
    return 0;
fail:
    if (bad)
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "invalid URL: bad percent-encoding in user or password");
    else
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
    return -1;
}

static int parse_db(const char *s, size_t len, int *db, rs_error *err)
{
    long v = 0;
    if (len == 0) return 0;                 /* "host/" means db 0 */
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]) || v > 100000000) {
            rs_error_set(err, RS_ERR_CONFIG, 0,
                         "invalid URL: database must be a number after '/'");
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    *db = (int)v;
    return 0;
}

int rs_url_parse(const char *url, rs_url *out, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    memset(out, 0, sizeof *out);
    if (!url || !*url) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "invalid URL: empty");
        return -1;
    }
    const char *rest;
    if (strncmp(url, "redis://", 8) == 0) {
        rest = url + 8;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        rest = url + 9;
        out->tls = 1;
    } else {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "invalid URL: scheme must be redis:// or rediss://");
        return -1;
    }
    for (const char *p = rest; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            rs_error_set(err, RS_ERR_CONFIG, 0,
                         "invalid URL: contains spaces or control characters");
            return -1;
        }
    }

    const char *at = strrchr(rest, '@');
    if (at && parse_userinfo(rest, (size_t)(at - rest), out, err) < 0) goto fail;
    const char *hosts = at ? at + 1 : rest;

    if (strchr(hosts, '?') || strchr(hosts, '#')) {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "invalid URL: query parameters are not supported; use config options");
        goto fail;
    }
    const char *slash = strchr(hosts, '/');
    size_t hosts_len = slash ? (size_t)(slash - hosts) : strlen(hosts);
    if (slash && parse_db(slash + 1, strlen(slash + 1), &out->db, err) < 0) goto fail;
    if (hosts_len == 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "invalid URL: missing host");
        goto fail;
    }

    size_t n = 1;
    for (size_t i = 0; i < hosts_len; i++) n += hosts[i] == ',';
    out->hosts = calloc(n, sizeof *out->hosts);
    if (!out->hosts) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto fail;
    }
    const char *p = hosts, *end = hosts + hosts_len;
    while (out->nhosts < n) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (parse_host(p, len, &out->hosts[out->nhosts], err) < 0) goto fail;
        out->nhosts++;
        p = comma ? comma + 1 : end;
    }
    return 0;
fail:
    rs_url_free(out);
    return -1;
}

void rs_url_free(rs_url *url)
{
    if (!url) return;
    free(url->username);
    if (url->password) {
        /* Do not leave the secret in freed memory (core dumps). */
        memset(url->password, 0, strlen(url->password));
        free(url->password);
    }
    for (size_t i = 0; i < url->nhosts; i++) free(url->hosts[i].host);
    free(url->hosts);
    memset(url, 0, sizeof *url);
}

/* ---------------------------------------------------------------------
 * Masking
 * ------------------------------------------------------------------ */

size_t rs_mask_url(const char *url, char *buf, size_t bufsize)
{
    if (!url) return (size_t)snprintf(buf, bufsize, "%s", "");
    rs_url parsed;
    if (rs_url_parse(url, &parsed, NULL) < 0) {
        size_t n = scheme_length(url);
        if (n == 0) return (size_t)snprintf(buf, bufsize, "***");
        return (size_t)snprintf(buf, bufsize, "%.*s://***", (int)n, url);
    }
    const char *rest = strstr(url, "://") + 3;
    const char *at = strrchr(rest, '@');
    const char *mask = "";
    if (parsed.username && parsed.password) mask = "***:***@";
    else if (parsed.password) mask = ":***@";
    else if (parsed.username) mask = "***@";
    int r = snprintf(buf, bufsize, "%s://%s%s", parsed.tls ? "rediss" : "redis",
                     mask, at ? at + 1 : rest);
    rs_url_free(&parsed);
    return (size_t)r;
}

size_t rs_mask_secret(const char *text, const char *secret, char *buf,
                      size_t bufsize)
{
    size_t need = 0, slen = secret ? strlen(secret) : 0;
    const char *p = text;
    while (*p) {
        const char *piece;
        size_t plen;
        if (slen && strncmp(p, secret, slen) == 0) {
            piece = "***";
            plen = 3;
            p += slen;
        } else {
            piece = p;
            plen = 1;
            p++;
        }
        for (size_t i = 0; i < plen; i++, need++)
            if (bufsize && need < bufsize - 1) buf[need] = piece[i];
    }
    if (bufsize) buf[need < bufsize - 1 ? need : bufsize - 1] = '\0';
    return need;
}
