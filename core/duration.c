/* SPDX-License-Identifier: MIT */
/* duration.c -- the one duration grammar of the project.
 *
 * INI values, `-s section.key=value`, every script option and the Lua
 * function rs.parse_duration read durations here, and everything that
 * prints a duration back for a user to reuse (the host's --check, the
 * config describer) writes it here, so what is printed can be read again.
 *
 *   duration = "none" (where allowed) | number | term { term }
 *   term     = number unit          unit = us | ms | s | m | h | d | w
 *   number   = digits [ "." digits ] | "." digits
 *
 * "1.5", "500ms", "30s", "1h30m", "7d", "2w". No sign, no exponent, no
 * hex: strtod's wider grammar (and its locale) would accept "1e3", "0x10"
 * and "inf". Surrounding blanks are ignored; case matters for units.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rigatoni_store.h"


static const struct { const char *name; double seconds; } units[] = {
    {"w", 604800}, {"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}, {"ms", 1e-3}, {"us", 1e-6},
};
#define NUNITS (sizeof units / sizeof units[0])

/* A number at *p (see the grammar); advances *p. -1 when there is none. */
static int read_number(const char **p, double *out)
{
    const char *s = *p;
    double v = 0, scale = 1;
    int digits = 0;
    for (; isdigit((unsigned char)*s); s++, digits++) v = v * 10 + (*s - '0');
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s)) return -1;          /* "1." is not a number here */
        for (; isdigit((unsigned char)*s); s++, digits++) v += (*s - '0') * (scale /= 10);
    }
    if (!digits) return -1;
    *p = s;
    *out = v;
    return 0;
}

/* The unit at *p, longest name first ("ms" before "m"); advances *p. */
static int read_unit(const char **p, double *seconds)
{
    size_t best = 0;
    int found = -1;
    for (size_t i = 0; i < NUNITS; i++) {
        size_t n = strlen(units[i].name);
        if (n > best && strncmp(*p, units[i].name, n) == 0) best = n, found = (int)i;
    }
    if (found < 0) return -1;
    *p += best;
    *seconds = units[found].seconds;
    return 0;
}

int rs_parse_duration(const char *text, double *seconds, int *is_none)
{
    if (is_none) *is_none = 0;
    if (!text) return -1;
    while (isspace((unsigned char)*text)) text++;
    size_t len = strlen(text);
    while (len && isspace((unsigned char)text[len - 1])) len--;
    if (len == 4 && strncasecmp(text, "none", 4) == 0) {
        if (!is_none) return -1;
        *is_none = 1;
        *seconds = 0;
        return 0;
    }
    const char *p = text, *end = text + len;
    double total = 0, v, unit;
    int terms = 0;
    while (p < end) {
        if (read_number(&p, &v) < 0) return -1;
        if (p == end && terms == 0) {        /* a bare number: seconds */
            total = v;
            terms = 1;
            break;
        }
        if (p == end || read_unit(&p, &unit) < 0) return -1;
        total += v * unit;
        terms++;
    }
    if (!terms || p != end || !isfinite(total)) return -1;
    *seconds = total;
    return 0;
}

size_t rs_format_duration(double seconds, char *buf, size_t bufsize)
{
    if (!isfinite(seconds) || seconds < 0) return (size_t)snprintf(buf, bufsize, "%g", seconds);
    /* In whole microseconds when it is one, so 5e-05 reads 50us, not 5e-05s. */
    double us = round(seconds * 1e6);
    if (seconds == 0) return (size_t)snprintf(buf, bufsize, "0s");
    if (us < 9e15 && fabs(us - seconds * 1e6) < 1e-6 * fmax(1, us)) {
        long long n = (long long)us;
        /* the largest unit the value is a whole number of (weeks read as days) */
        static const struct { const char *name; long long us; } whole[] = {
            {"d", 86400000000LL}, {"h", 3600000000LL}, {"m", 60000000LL}, {"s", 1000000LL},
            {"ms", 1000LL}, {"us", 1LL},
        };
        for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++)
            if (n % whole[i].us == 0)
                return (size_t)snprintf(buf, bufsize, "%lld%s", n / whole[i].us, whole[i].name);
    }
    return (size_t)snprintf(buf, bufsize, "%.9fs", seconds);
}
