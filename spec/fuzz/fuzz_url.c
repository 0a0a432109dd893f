/* SPDX-License-Identifier: MIT */
/* fuzz_url.c -- libFuzzer target: URL parsing and masking.
 *
 * Arbitrary bytes (cut at the first NUL) go to rs_url_parse and
 * rs_mask_url. Checked: no memory error, the snprintf-like length contract
 * of rs_mask_url (small buffers too), and that a URL which parsed never has
 * its password in the masked text, unless those bytes also stand in the
 * host part of the URL or in the "***" markers themselves.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rigatoni_store.h"

#define FAIL(...)                                 \
    do {                                          \
        fprintf(stderr, "fuzz_url: " __VA_ARGS__); \
        fputc('\n', stderr);                      \
        abort();                                  \
    } while (0)

/* Does `secret` show in `masked`? The masked text is "scheme://" then
 * only stars and colons up to its first '@' (the userinfo marker), then
 * the URL's public part: the secret may appear there only when the URL's
 * public part (after its last '@') holds it anyway. */
static int leaks(const char *masked, const char *secret, const char *url)
{
    if (!secret || !*secret) return 0;
    const char *m_at = strchr(masked, '@');
    const char *shown = masked;
    if (m_at) {
        const char *p = strstr(masked, "://");
        if (!p || p > m_at) return 1;
        for (p += 3; p < m_at; p++)
            if (*p != '*' && *p != ':') return 1;   /* userinfo not masked */
        shown = m_at + 1;
    }
    if (!strstr(shown, secret)) return 0;
    const char *at = strrchr(url, '@');
    return strstr(at ? at + 1 : url, secret) == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    if (!url) return 0;
    memcpy(url, data, size);
    url[size] = '\0';

    rs_url parsed;
    rs_error err;
    memset(&err, 0, sizeof err);
    int rc = rs_url_parse(url, &parsed, &err);

    size_t need = rs_mask_url(url, NULL, 0);
    char *masked = malloc(need + 1);
    if (!masked) abort();
    size_t got = rs_mask_url(url, masked, need + 1);
    if (got != need) FAIL("rs_mask_url length changed: %zu then %zu", need, got);
    if (strlen(masked) != need) FAIL("rs_mask_url wrote %zu bytes, said %zu", strlen(masked), need);

    /* A short buffer is cut, NUL-terminated, and a prefix of the full text. */
    char small[8];
    size_t cut = rs_mask_url(url, small, sizeof small);
    if (cut != need || strlen(small) >= sizeof small || strncmp(small, masked, strlen(small)) != 0)
        FAIL("rs_mask_url into a small buffer broke the snprintf contract");

    if (rc == 0) {
        if (parsed.nhosts < 1 || !parsed.hosts) FAIL("parsed URL without hosts");
        for (size_t i = 0; i < parsed.nhosts; i++)
            if (!parsed.hosts[i].host || parsed.hosts[i].port < 0 || parsed.hosts[i].port > 65535)
                FAIL("bad host %zu", i);
        if (leaks(masked, parsed.password, url))
            FAIL("masked URL shows the password: \"%s\"", masked);
        /* The password as written (before percent-decoding), too. */
        const char *scheme_end = strstr(url, "://");
        const char *at = strrchr(url, '@');
        if (parsed.password && scheme_end && at) {
            const char *colon = memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3));
            if (colon && colon + 1 < at) {
                size_t n = (size_t)(at - colon - 1);
                char *raw = malloc(n + 1);
                memcpy(raw, colon + 1, n);
                raw[n] = '\0';
                if (leaks(masked, raw, url)) FAIL("masked URL shows the raw password: \"%s\"", masked);
                free(raw);
            }
        }
        rs_url_free(&parsed);
    } else {
        if (err.kind != RS_ERR_CONFIG) FAIL("parse error of kind %d", err.kind);
        if (memchr(err.message, '\0', sizeof err.message) == NULL) FAIL("unterminated message");
    }
    free(masked);
    free(url);
    return 0;
}
