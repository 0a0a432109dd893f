/* SPDX-License-Identifier: MIT */
/* host_conf.c -- the host's configuration: INI file, -s and -u, defaults.
 *
 * One pass of inih over the file (after a check of its line lengths); each
 * key is handled in one place (host_conf_set), which maps `[section] key`
 * to a core option name and hands the text to rs_config_set, so every
 * value is validated by the core exactly as rs.new would. Debian's libinih is built without line numbers
 * for the handler, so the file is fed through our own line reader that
 * counts lines (and sees section headers, which inih does not report):
 * every error reads `file:line: message`.
 *
 * A line is at most LINE_MAX_BYTES: a longer one is an error before
 * anything is applied (inih would cut it in two). A ';' after a blank
 * starts a comment, except in a password, where it is an error: a
 * password may contain " ;", and cutting it silently fails AUTH later.
 *
 * The file is read whole first: a UTF-8 BOM is dropped and CRLF, CR and LF
 * all end a line. A section header followed on its line by anything but a
 * comment is an error (inih would drop the rest, e.g. `[redis] url = x`).
 *
 * Values may use ${VAR} and ${VAR:-default} (default when VAR is unset or
 * empty; the default is itself expanded, so ${A:-${B}} is B); `$${` stands
 * for a literal `${`, and any other `${` that is not a complete reference
 * is an error. An environment value landing in
 * the user-info of the url is percent-encoded. Secrets seen on the way (the URL
 * password, password and sentinel_password, the contents of their _file
 * forms) are remembered so that the host can mask them in whatever it prints.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

#include "host.h"

#define VALUE_MAX 4096
#define LINE_MAX_BYTES 4096   /* of one INI line, without its line break */

/* ---------------------------------------------------------------------
 * Sections and keys
 * ------------------------------------------------------------------ */

static const char *const sections[] = {"redis", "sentinel", "tls", "durability", "log", NULL};

/* [section] key -> core option name (NULL: handled by the host itself). */
static const struct setting {
    const char *section, *key, *option;
} settings[] = {
    {"redis", "url", "url"},
    {"redis", "pool_size", "pool_size"},
    {"redis", "ttl", "ttl"},
    {"redis", "max_retries", "max_retries"},
    {"redis", "connection_timeout", "connection_timeout"},
    {"redis", "command_timeout", "command_timeout"},
    {"redis", "retry_base_delay", "retry_base_delay"},
    {"redis", "retry_max_delay", "retry_max_delay"},
    {"redis", "idle_check_after", "idle_check_after"},
    {"redis", "spin_wait", "spin_wait"},
    {"redis", "cluster_mode", "cluster_mode"},
    {"redis", "key_prefix", "key_prefix"},
    {"redis", "lock_prefix", "lock_prefix"},
    {"redis", "scan_count", "scan_count"},
    {"redis", "workers", "workers"},
    {"redis", "password", "password"},
    {"redis", "password_file", "password_file"},
    {"sentinel", "master", "sentinel_master"},
    {"sentinel", "username", "sentinel_username"},
    {"sentinel", "password", "sentinel_password"},
    {"sentinel", "password_file", "sentinel_password_file"},
    {"tls", "ca_file", "tls.ca_file"},
    {"tls", "ca_path", "tls.ca_path"},
    {"tls", "cert_file", "tls.cert_file"},
    {"tls", "key_file", "tls.key_file"},
    {"tls", "server_name", "tls.server_name"},
    {"tls", "verify", "tls.verify"},
    {"durability", "wait_replicas", "wait_replicas"},
    {"durability", "wait_timeout", "wait_timeout"},
    {"durability", "wait_policy", "wait_policy"},
    {"log", "level", NULL},
    {NULL, NULL, NULL},
};

static int known_section(const char *name)
{
    for (const char *const *s = sections; *s; s++)
        if (strcmp(*s, name) == 0) return 1;
    return 0;
}

static const struct setting *find_setting(const char *section, const char *key)
{
    for (const struct setting *s = settings; s->section; s++)
        if (strcmp(s->section, section) == 0 && strcmp(s->key, key) == 0) return s;
    return NULL;
}

static int core_has_option(const char *name)
{
    for (const char *const *n = rs_config_option_names(); *n; n++)
        if (strcmp(*n, name) == 0) return 1;
    return 0;
}

/* The section and key under which a core option is written in INI. */
static void option_place(const char *option, const char **section, const char **key)
{
    for (const struct setting *s = settings; s->section; s++)
        if (s->option && strcmp(s->option, option) == 0) {
            *section = s->section;
            *key = s->key;
            return;
        }
    *section = "redis";
    *key = option;
}

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

int host_log_level_parse(const char *name)
{
    for (int i = 0; level_names[i]; i++)
        if (strcmp(level_names[i], name) == 0) return i;
    return -1;
}

const char *host_log_level_name(int level)
{
    return level >= 0 && level <= HOST_LOG_DEBUG ? level_names[level] : "?";
}

/* ---------------------------------------------------------------------
 * The conf object
 * ------------------------------------------------------------------ */

host_conf *host_conf_new(void)
{
    host_conf *hc = calloc(1, sizeof *hc);
    if (!hc) return NULL;
    hc->log_level = HOST_LOG_WARN;
    if (!(hc->cfg = rs_config_new())) {
        free(hc);
        return NULL;
    }
    return hc;
}

host_conf *host_conf_copy(const host_conf *src)
{
    host_conf *hc = calloc(1, sizeof *hc);
    if (!hc) return NULL;
    hc->log_level = src->log_level;
    hc->cfg = rs_config_copy(src->cfg);
    hc->file = src->file ? strdup(src->file) : NULL;
    for (int i = 0; i < src->nsecrets; i++)
        if ((hc->secrets[i] = strdup(src->secrets[i]))) hc->nsecrets++;
    if (!hc->cfg) {
        host_conf_free(hc);
        return NULL;
    }
    return hc;
}

void host_conf_free(host_conf *hc)
{
    if (!hc) return;
    rs_config_free(hc->cfg);
    free(hc->file);
    for (int i = 0; i < hc->nsecrets; i++) {
        memset(hc->secrets[i], 0, strlen(hc->secrets[i]));
        free(hc->secrets[i]);
    }
    free(hc);
}

static void remember_secret(host_conf *hc, const char *secret)
{
    if (!secret || !*secret) return;
    for (int i = 0; i < hc->nsecrets; i++)
        if (strcmp(hc->secrets[i], secret) == 0) return;
    if (hc->nsecrets == HOST_MAX_SECRETS) {
        /* Oldest out: the latest values are the ones in effect. */
        free(hc->secrets[0]);
        memmove(hc->secrets, hc->secrets + 1, (HOST_MAX_SECRETS - 1) * sizeof *hc->secrets);
        hc->nsecrets--;
    }
    char *copy = strdup(secret);
    if (copy) hc->secrets[hc->nsecrets++] = copy;
}

/* The password inside a URL text, or NULL (caller frees). */
static char *url_password(const char *url)
{
    rs_url parsed;
    rs_error err = {0};
    if (rs_url_parse(url, &parsed, &err) < 0) return NULL;
    char *password = parsed.password && *parsed.password ? strdup(parsed.password) : NULL;
    rs_url_free(&parsed);
    return password;
}

static int failf(char *msg, size_t msgsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msgsize, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------ */

int host_conf_set(host_conf *hc, const char *section, const char *key, const char *value,
                  char *msg, size_t msgsize)
{
    if (!*section) return failf(msg, msgsize, "key '%s' outside of a section", key);
    if (!known_section(section))
        return failf(msg, msgsize, "unknown section [%s] (known: redis, sentinel, tls, durability, log)",
                     section);
    const struct setting *s = find_setting(section, key);
    if (!s) return failf(msg, msgsize, "unknown key '%s' in section [%s]", key, section);
    if (!s->option) {   /* [log] level */
        int level = host_log_level_parse(value);
        if (level < 0)
            return failf(msg, msgsize, "log level must be error, warn, info or debug, not '%s'", value);
        hc->log_level = level;
        return 0;
    }
    if (!core_has_option(s->option))
        return failf(msg, msgsize, "%s.%s is not supported by this version of rigatoni_store",
                     section, key);
    rs_error err = {0};
    if (rs_config_set(hc->cfg, s->option, value, &err) < 0)
        return failf(msg, msgsize, "%s", err.message);
    if (strcmp(s->option, "url") == 0) {
        char *password = url_password(value);
        remember_secret(hc, password);
        free(password);
    } else {
        /* password, sentinel_password and the content of their _file forms */
        remember_secret(hc, rs_config_secret(hc->cfg, s->option));
    }
    return 0;
}

/* The error for a malformed -s: it names the setting the argument starts
 * with, if any, and shows nothing else of it (it may carry the value,
 * e.g. "redis.password:secret"). */
static int bad_set_arg(const char *arg, char *msg, size_t msgsize)
{
    const struct setting *seen = NULL;   /* the longest that matches */
    for (const struct setting *s = settings; s->section; s++) {
        size_t slen = strlen(s->section), klen = strlen(s->key);
        if (strncmp(arg, s->section, slen) == 0 && arg[slen] == '.' &&
            strncmp(arg + slen + 1, s->key, klen) == 0 &&
            (!seen || strlen(seen->key) < klen))
            seen = s;
    }
    if (seen)
        return failf(msg, msgsize,
                     "-s wants section.key=value; the argument starting with %s.%s has no "
                     "'=' right after the key (the rest is not shown)",
                     seen->section, seen->key);
    return failf(msg, msgsize,
                 "-s wants section.key=value (the argument is not shown: it may hold a secret)");
}

int host_conf_set_arg(host_conf *hc, const char *arg, char *msg, size_t msgsize)
{
    const char *dot = strchr(arg, '.');
    const char *eq = strchr(arg, '=');
    if (!dot || !eq || dot > eq || dot == arg || eq == dot + 1) return bad_set_arg(arg, msg, msgsize);
    char section[64], key[64];
    size_t slen = (size_t)(dot - arg), klen = (size_t)(eq - dot - 1);
    if (slen >= sizeof section || klen >= sizeof key)
        return failf(msg, msgsize, "-s: section or key too long");
    memcpy(section, arg, slen);
    section[slen] = '\0';
    memcpy(key, dot + 1, klen);
    key[klen] = '\0';
    char why[512];
    if (host_conf_set(hc, section, key, eq + 1, why, sizeof why) < 0)
        return failf(msg, msgsize, "-s %s.%s: %s", section, key, why);
    return 0;
}

int host_conf_finish(host_conf *hc, char *msg, size_t msgsize)
{
    char url[16];
    rs_config_get(hc->cfg, "url", url, sizeof url);
    if (strcmp(url, "none") == 0)
        return host_conf_set(hc, "redis", "url", "redis://127.0.0.1:6379", msg, msgsize);
    return 0;
}

/* ---------------------------------------------------------------------
 * ${VAR} expansion
 * ------------------------------------------------------------------ */

/* Whether text put at out[n] lands in the user-info of a URL: after
 * "scheme://" with no '@' or '/' since, and an '@' still to come in the
 * rest of the value before any '/'. */
static int in_userinfo(const char *out, size_t n, const char *rest)
{
    const char *authority = NULL;
    for (size_t i = 0; !authority && i + 3 <= n; i++)
        if (memcmp(out + i, "://", 3) == 0) authority = out + i + 3;
    if (!authority) return 0;
    for (const char *p = authority; p < out + n; p++)
        if (*p == '@' || *p == '/') return 0;
    return rest[strcspn(rest, "@/")] == '@';
}

/* The '}' that closes the reference whose name starts at `p`, skipping
 * nested references and `$${` in a default; NULL when there is none. */
static const char *matching_close(const char *p)
{
    int depth = 0;
    for (; *p; p++) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            p += 2;
        } else if (p[0] == '$' && p[1] == '{') {
            depth++;
            p++;
        } else if (*p == '}') {
            if (depth == 0) return p;
            depth--;
        }
    }
    return NULL;
}

typedef struct expansion {
    char *out;
    size_t outsize, n;
    int literal, url;
    char *msg;
    size_t msgsize;
    int depth;            /* of defaults being expanded, bounded */
} expansion;

#define NESTING_MAX 8

/* Expands [p, end) into x->out at x->n. `rest` is the text after the
 * outermost reference being expanded (for the user-info test). A default
 * is itself expanded, as a shell does: ${A:-${B}} is B when A is unset. */
static int expand_range(expansion *x, const char *p, const char *end, const char *rest)
{
#define PUT(c)                                                                          \
    do {                                                                                \
        if (x->n + 1 >= x->outsize) return failf(x->msg, x->msgsize, "value too long"); \
        x->out[x->n++] = (c);                                                           \
    } while (0)
    while (p < end) {
        if (end - p >= 3 && p[0] == '$' && p[1] == '$' && p[2] == '{') {
            PUT('$');
            PUT('{');
            p += 3;
            continue;
        }
        if (!(end - p >= 2 && p[0] == '$' && p[1] == '{')) {
            PUT(*p++);
            continue;
        }
        const char *name = p + 2, *close = matching_close(name);
        if (!close || close >= end)
            return failf(x->msg, x->msgsize,
                         "unterminated ${ in value (write ${VAR} or ${VAR:-default}; $${ for a "
                         "literal ${)");
        size_t name_len = 0;
        while (name + name_len < close &&
               (name[name_len] == '_' || isalpha((unsigned char)name[name_len]) ||
                (name_len > 0 && isdigit((unsigned char)name[name_len]))))
            name_len++;
        const char *after = name + name_len;
        int has_default = after + 1 < close && after[0] == ':' && after[1] == '-';
        if (name_len == 0 || name_len > 255 || (after != close && !has_default))
            return failf(x->msg, x->msgsize,
                         "bad variable reference ${%.*s} (write ${VAR} or ${VAR:-default}; $${ "
                         "for a literal ${)",
                         (int)(close - name > 100 ? 100 : close - name), name);
        char var[256];
        memcpy(var, name, name_len);
        var[name_len] = '\0';
        const char *outer_rest = rest ? rest : close + 1;
        const char *value = x->literal ? NULL : getenv(var);
        if (has_default) {
            if (!value || !*value) {
                value = NULL;
                if (++x->depth > NESTING_MAX)
                    return failf(x->msg, x->msgsize, "${...} nested deeper than %d", NESTING_MAX);
                if (expand_range(x, after + 2, close, outer_rest) < 0) return -1;
                x->depth--;
            }
        } else if (!value) {
            if (!x->literal)
                return failf(x->msg, x->msgsize,
                             "environment variable %s is not set (write ${%s:-default} for a default)",
                             var, var);
            value = "";
        }
        int encode = value && x->url && in_userinfo(x->out, x->n, outer_rest);
        for (const char *v = value; v && *v; v++) {
            unsigned char c = (unsigned char)*v;
            if (!encode || (c < 128 && (isalnum(c) || strchr("-._~", c)))) {
                PUT(*v);
            } else {
                static const char hex[] = "0123456789ABCDEF";
                PUT('%');
                PUT(hex[c >> 4]);
                PUT(hex[c & 15]);
            }
        }
        p = close + 1;
    }
    return 0;
#undef PUT
}

/* Expands `in` into out. With `literal`, every variable counts as unset and
 * a missing one as "": what is left is the text the file itself holds
 * (used to tell whether the file contains a password). With `url`, an
 * environment value that lands in the URL's user-info is percent-encoded
 * (a password "p%41@x" stays exactly that); defaults are taken as written.
 * A `${` that does not start a complete reference is an error. */
static int expand(const char *in, char *out, size_t outsize, int literal, int url, char *msg,
                  size_t msgsize)
{
    expansion x = {out, outsize, 0, literal, url, msg, msgsize, 0};
    if (expand_range(&x, in, in + strlen(in), NULL) < 0) return -1;
    out[x.n] = '\0';
    return 0;
}

/* ---------------------------------------------------------------------
 * INI file
 * ------------------------------------------------------------------ */

typedef struct parse_ctx {
    host_conf *hc;
    char *text;          /* the whole file, line breaks made "\n", no BOM */
    size_t len, pos;     /* its length, and where the reader is */
    const char *path;
    int lineno;          /* line being parsed */
    int at_line_start;   /* the next chunk read starts a new line */
    int error_line;      /* first error, 0 = none */
    char error[600];
    int literal_secret;  /* the file itself holds a password */
    /* Where each setting was given (0: not yet): a key given twice is an
     * error, not "the last one wins" (two edits of one file that disagree). */
    int given_at[sizeof settings / sizeof settings[0]];
} parse_ctx;

static void record_error(parse_ctx *ctx, const char *fmt, ...)
{
    if (ctx->error_line) return;
    ctx->error_line = ctx->lineno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
}

/* What a section header line holds after its ']': nothing, or a comment
 * (inih ignores the rest, so `[redis] url = x` would drop the setting). */
static int header_tail_ok(const char *tail)
{
    while (isspace((unsigned char)*tail)) tail++;
    return *tail == '\0' || *tail == '\n' || *tail == ';' || *tail == '#';
}

/* inih calls this fgets-like reader for every line (and again for the rest
 * of a line longer than its buffer). */
static char *read_line(char *str, int num, void *stream)
{
    parse_ctx *ctx = stream;
    if (ctx->pos >= ctx->len || num < 2) return NULL;
    size_t len = 0;
    while (len + 1 < (size_t)num && ctx->pos < ctx->len) {
        char c = ctx->text[ctx->pos++];
        str[len++] = c;
        if (c == '\n') break;
    }
    str[len] = '\0';
    char *line = str;
    if (ctx->at_line_start) {
        ctx->lineno++;
        /* Section headers: inih does not report them, unknown ones are errors.
         * Skipped as inih skips them: a BOM on line 1 (a second one, when the
         * file had two) and any isspace(), \f and \v too; else the header
         * and the setting after it would pass unchecked. */
        const char *p = line;
        if (ctx->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
        while (isspace((unsigned char)*p)) p++;
        if (*p == '[') {
            const char *end = strchr(p, ']');
            if (end) {
                char name[64];
                size_t n = (size_t)(end - p - 1);
                if (n >= sizeof name) n = sizeof name - 1;
                memcpy(name, p + 1, n);
                name[n] = '\0';
                if (!known_section(name))
                    record_error(ctx, "unknown section [%s] (known: redis, sentinel, tls, durability, log)",
                                 name);
                else if (!header_tail_ok(end + 1))
                    record_error(ctx, "text after the section header [%s]: write each setting on "
                                      "a line of its own", name);
            }
        }
    }
    ctx->at_line_start = len > 0 && line[len - 1] == '\n';
    return line;
}

static int is_password_option(const char *option)
{
    return strcmp(option, "sentinel_password") == 0 || strcmp(option, "password") == 0;
}

static int literal_holds_secret(const char *option, const char *raw)
{
    char text[VALUE_MAX], msg[128];
    if (expand(raw, text, sizeof text, 1, 0, msg, sizeof msg) < 0) return 0;
    if (is_password_option(option)) return text[0] != '\0';
    if (strcmp(option, "url") == 0) {
        char *password = url_password(text);
        free(password);
        return password != NULL;
    }
    return 0;
}

/* Where an inline comment starts in a value: a ';' after a blank (inih's
 * rule, applied here so that a password is not cut silently), or NULL. */
static const char *inline_comment(const char *raw)
{
    for (const char *p = raw; *p; p++)
        if (*p == ';' && p > raw && (p[-1] == ' ' || p[-1] == '\t')) return p - 1;
    return NULL;
}

static int on_key(void *user, const char *section, const char *key, const char *raw)
{
    parse_ctx *ctx = user;
    /* Unknown sections were reported by the reader already. */
    if (*section && !known_section(section)) return 0;
    const struct setting *s = find_setting(section, key);
    if (s) {
        int *given = &ctx->given_at[s - settings];
        if (*given) {
            record_error(ctx, "[%s] %s is given twice (first on line %d): keep one", section, key, *given);
            return 0;
        }
        *given = ctx->lineno;
    }
    char uncommented[VALUE_MAX], value[VALUE_MAX], msg[600];
    const char *cut = inline_comment(raw);
    if (cut && s && s->option && is_password_option(s->option)) {
        /* A password may hold " ;": cutting it would fail AUTH far from here. */
        record_error(ctx, "[%s] %s: ' ;' would start a comment and cut the password; write no "
                          "comment after a password (or give it as ${VAR} or in password_file)",
                     section, key);
        return 0;
    }
    size_t len = cut ? (size_t)(cut - raw) : strlen(raw);
    while (len && (raw[len - 1] == ' ' || raw[len - 1] == '\t')) len--;
    if (len >= sizeof uncommented) {   /* lines are checked shorter, but be sure */
        record_error(ctx, "[%s] %s: value too long", section, key);
        return 0;
    }
    memcpy(uncommented, raw, len);
    uncommented[len] = '\0';
    raw = uncommented;
    int url = strcmp(section, "redis") == 0 && strcmp(key, "url") == 0;
    if (expand(raw, value, sizeof value, 0, url, msg, sizeof msg) < 0 ||
        host_conf_set(ctx->hc, section, key, value, msg, sizeof msg) < 0) {
        /* The message may quote the expanded value, and ${VAR} may hold a
         * password (found by spec/fuzz/fuzz_ini.c). */
        char masked[600];
        host_conf_mask(ctx->hc, msg, masked, sizeof masked);
        record_error(ctx, "%s", masked);
        return 0;
    }
    if (s && s->option && literal_holds_secret(s->option, raw)) ctx->literal_secret = 1;
    return 1;
}

/* The first line longer than LINE_MAX_BYTES in the normalised text, or 0.
 * inih would cut it and parse the rest as a line of its own, after
 * applying the first half; checked before anything is applied. */
static int find_long_line(const char *text, size_t len)
{
    int lineno = 1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] != '\n') continue;
        if (i - start > LINE_MAX_BYTES) return lineno;
        lineno++;
        start = i + 1;
    }
    return 0;
}

#define FILE_MAX_BYTES (1024 * 1024)

/* Reads the file at `f` whole and normalises it: a UTF-8 byte order mark
 * at the start is dropped, and CRLF, CR and LF each end a line (written
 * "\n"), so files from any editor parse as they look. A NUL byte is an
 * error naming its line: inih would end the line there. Returns the
 * text (caller frees) or NULL with msg. */
static char *read_normalised(FILE *f, const char *path, size_t *out_len, char *msg,
                             size_t msgsize)
{
    size_t cap = 4096, len = 0;
    char *raw = malloc(cap);
    errno = 0;
    for (;;) {
        if (!raw) return failf(msg, msgsize, "%s: out of memory", path), NULL;
        len += fread(raw + len, 1, cap - len, f);
        if (len < cap && len <= FILE_MAX_BYTES) break;
        if (len > FILE_MAX_BYTES) {
            free(raw);
            return failf(msg, msgsize, "%s: larger than %d bytes: not a config file", path,
                         FILE_MAX_BYTES), NULL;
        }
        char *grown = realloc(raw, cap *= 2);
        if (!grown) free(raw);
        raw = grown;
    }
    if (ferror(f)) {
        int why = errno;   /* a directory opens, then fails to read: say so */
        free(raw);
        return failf(msg, msgsize, "%s: cannot read config file%s%s", path, why ? ": " : "",
                     why ? strerror(why) : ""), NULL;
    }
    char *text = malloc(len + 1);
    if (!text) {
        free(raw);
        return failf(msg, msgsize, "%s: out of memory", path), NULL;
    }
    size_t i = 0, n = 0;
    int lineno = 1;
    if (len >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0) i = 3;
    for (; i < len; i++) {
        char c = raw[i];
        if (c == '\0') {
            free(raw);
            free(text);
            return failf(msg, msgsize, "%s:%d: a NUL byte: not a text file", path, lineno), NULL;
        }
        if (c == '\r') {
            if (i + 1 < len && raw[i + 1] == '\n') i++;
            c = '\n';
        }
        if (c == '\n') lineno++;
        text[n++] = c;
    }
    text[n] = '\0';
    free(raw);
    *out_len = n;
    return text;
}

int host_conf_load(host_conf *hc, const char *path, char *msg, size_t msgsize)
{
    parse_ctx ctx = {.hc = hc, .path = path, .at_line_start = 1};
    FILE *f = fopen(path, "r");
    if (!f) return failf(msg, msgsize, "%s: cannot read config file: %s", path, strerror(errno));
    struct stat st;
    int have_stat = fstat(fileno(f), &st) == 0;
    ctx.text = read_normalised(f, path, &ctx.len, msg, msgsize);
    fclose(f);
    if (!ctx.text) return -1;
    int long_line = find_long_line(ctx.text, ctx.len);
    if (long_line) {
        free(ctx.text);
        return failf(msg, msgsize, "%s:%d: line longer than %d bytes", path, long_line,
                     LINE_MAX_BYTES);
    }

    /* Long URLs must not be cut at inih's default 200 bytes (its buffer
     * holds the line break and a NUL too); an indented key must not
     * silently continue the previous value; inline comments are cut by
     * on_key, which knows which values are passwords. */
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = LINE_MAX_BYTES + 3;
    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    int rc = ini_parse_stream(read_line, &ctx, on_key, &ctx);
    free(ctx.text);

    if (rc == -2) return failf(msg, msgsize, "%s: out of memory", path);
    if (rc < 0) return failf(msg, msgsize, "%s: cannot read config file", path);
    if (ctx.error_line && (rc == 0 || ctx.error_line <= rc))
        return failf(msg, msgsize, "%s:%d: %s", path, ctx.error_line, ctx.error);
    if (rc > 0)
        return failf(msg, msgsize, "%s:%d: syntax error (expected [section] or key = value)",
                     path, rc);

    free(hc->file);
    hc->file = strdup(path);
    hc->warning[0] = '\0';
    if (ctx.literal_secret && have_stat && (st.st_mode & (S_IRGRP | S_IROTH)))
        snprintf(hc->warning, sizeof hc->warning,
                 "%s holds a password and is readable by %s (mode %04o): chmod 600 it, or give "
                 "the password as ${VAR}",
                 path, (st.st_mode & S_IROTH) ? "others" : "its group", (unsigned)(st.st_mode & 07777));
    return 0;
}

/* ---------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------ */

void host_conf_print(const host_conf *hc, FILE *out)
{
    for (const char *const *section = sections; *section; section++) {
        fprintf(out, "[%s]\n", *section);
        if (strcmp(*section, "log") == 0) {
            fprintf(out, "level = %s\n", host_log_level_name(hc->log_level));
            continue;
        }
        for (const char *const *name = rs_config_option_names(); *name; name++) {
            const char *sec, *key;
            option_place(*name, &sec, &key);
            if (strcmp(sec, *section) != 0) continue;
            char value[1024];
            rs_config_get(hc->cfg, *name, value, sizeof value);
            fprintf(out, "%s = %s\n", key, value);
        }
    }
}

/* Masks the user-info part of every redis:// or rediss:// URL in `text`. */
static void mask_urls(const char *text, char *buf, size_t bufsize)
{
    size_t n = 0;
    const char *p = text;
#define PUTS(s, len)                                                  \
    do {                                                              \
        size_t l_ = (len);                                            \
        if (n + l_ >= bufsize) l_ = bufsize - 1 - n;                  \
        memcpy(buf + n, (s), l_);                                     \
        n += l_;                                                      \
    } while (0)
    while (*p) {
        const char *hit = strstr(p, "redis");
        if (!hit) break;
        const char *scheme_end = NULL;
        if (strncmp(hit, "redis://", 8) == 0) scheme_end = hit + 8;
        else if (strncmp(hit, "rediss://", 9) == 0) scheme_end = hit + 9;
        if (!scheme_end) {
            PUTS(p, (size_t)(hit - p) + 5);
            p = hit + 5;
            continue;
        }
        /* The URL runs to the next blank or quote; credentials end at its last '@'. */
        const char *end = scheme_end;
        while (*end && !strchr(" \t\r\n'\"<>", *end)) end++;
        const char *at = NULL;
        for (const char *q = scheme_end; q < end; q++)
            if (*q == '@') at = q;
        PUTS(p, (size_t)(scheme_end - p));
        if (at) {
            /* As rs_mask_url: ***:*** , :*** without a user, *** without a password. */
            int has_colon = memchr(scheme_end, ':', (size_t)(at - scheme_end)) != NULL;
            if (!has_colon) PUTS("***", 3);
            else if (*scheme_end == ':') PUTS(":***", 4);
            else PUTS("***:***", 7);
            p = at;
        } else {
            p = scheme_end;
        }
    }
    PUTS(p, strlen(p));
    buf[n] = '\0';
#undef PUTS
}

void host_conf_mask(const host_conf *hc, const char *text, char *buf, size_t bufsize)
{
    if (bufsize == 0) return;
    size_t size = strlen(text) * 3 + 64;   /* "***" for a one-letter secret */
    char *a = malloc(size), *b = malloc(size);
    if (!a || !b) {
        free(a);
        free(b);
        snprintf(buf, bufsize, "(message withheld: out of memory)");
        return;
    }
    mask_urls(text, a, size);
    /* Longest first, so that a short secret inside a longer one cannot
     * leave the rest of the longer one showing. Every length is masked: a
     * one-letter password costs readable messages, never the password. */
    const char *order[HOST_MAX_SECRETS];
    int n = hc ? hc->nsecrets : 0;
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && strlen(order[j - 1]) < strlen(hc->secrets[i]); j--) order[j] = order[j - 1];
        order[j] = hc->secrets[i];
    }
    for (int i = 0; i < n; i++) {
        rs_mask_secret(a, order[i], b, size);
        char *t = a;
        a = b;
        b = t;
    }
    snprintf(buf, bufsize, "%s", a);
    free(a);
    free(b);
}

void host_conf_merge_secrets(host_conf *dst, const host_conf *src)
{
    for (int i = 0; i < src->nsecrets; i++) remember_secret(dst, src->secrets[i]);
}
