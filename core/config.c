/* SPDX-License-Identifier: MIT */
/* config.c -- the options of a store, their defaults and validation.
 *
 * One table describes every option: name, type, where it lives in
 * struct rs_config, and its bounds. The text setter (INI files, command
 * lines), the typed setters (Lua, C) and the describer all go through that
 * table, so an option is declared and checked in exactly one place.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"

typedef enum {
    OPT_URL, OPT_STRING, OPT_SECRET, OPT_INT, OPT_SECONDS, OPT_TTL, OPT_BOOL,
    OPT_SECRET_FILE,         /* a path; the file's content sets `secret` */
    OPT_POLICY               /* "error" (0) or "warn" (1) */
} opt_type;

typedef struct option {
    const char *name;
    opt_type type;
    size_t offset;
    double min, max;       /* for numbers */
    size_t secret;         /* OPT_SECRET_FILE: where the content goes */
} option;

#define F(field) offsetof(struct rs_config, field)
static const option options[] = {
    {"url", OPT_URL, F(url), 0, 0, 0},
    {"pool_size", OPT_INT, F(pool_size), 1, 10000, 0},
    {"ttl", OPT_TTL, F(ttl), 0, 0, 0},   /* range: rs_ttl_check */
    {"max_retries", OPT_INT, F(max_retries), 0, 100, 0},
    {"connection_timeout", OPT_SECONDS, F(connection_timeout), 0.001, 3600, 0},
    {"command_timeout", OPT_SECONDS, F(command_timeout), 0.001, 3600, 0},
    {"retry_base_delay", OPT_SECONDS, F(retry_base_delay), 0, 3600, 0},
    {"retry_max_delay", OPT_SECONDS, F(retry_max_delay), 0, 3600, 0},
    {"idle_check_after", OPT_SECONDS, F(idle_check_after), 0, 1e9, 0},
    {"spin_wait", OPT_SECONDS, F(spin_wait), 0, 0.01, 0},
    {"cluster_mode", OPT_BOOL, F(cluster_mode), 0, 1, 0},
    {"key_prefix", OPT_STRING, F(key_prefix), 0, 0, 0},
    {"lock_prefix", OPT_STRING, F(lock_prefix), 0, 0, 0},
    {"scan_count", OPT_INT, F(scan_count), 1, 1000000, 0},
    {"workers", OPT_INT, F(workers), 1, 256, 0},
    {"sentinel_master", OPT_STRING, F(sentinel_master), 0, 0, 0},
    {"sentinel_username", OPT_STRING, F(sentinel_username), 0, 0, 0},
    {"sentinel_password", OPT_SECRET, F(sentinel_password), 0, 0, 0},
    {"sentinel_password_file", OPT_SECRET_FILE, F(sentinel_password_file), 0, 0,
     F(sentinel_password)},
    {"password", OPT_SECRET, F(password), 0, 0, 0},
    {"password_file", OPT_SECRET_FILE, F(password_file), 0, 0, F(password)},
    {"wait_replicas", OPT_INT, F(wait_replicas), 0, 1000, 0},
    {"wait_timeout", OPT_SECONDS, F(wait_timeout), 0, 3600, 0},
    {"wait_policy", OPT_POLICY, F(wait_policy_warn), 0, 1, 0},
    {"tls.ca_file", OPT_STRING, F(tls_ca_file), 0, 0, 0},
    {"tls.ca_path", OPT_STRING, F(tls_ca_path), 0, 0, 0},
    {"tls.cert_file", OPT_STRING, F(tls_cert_file), 0, 0, 0},
    {"tls.key_file", OPT_STRING, F(tls_key_file), 0, 0, 0},
    {"tls.server_name", OPT_STRING, F(tls_server_name), 0, 0, 0},
    {"tls.verify", OPT_BOOL, F(tls_verify), 0, 1, 0},
};
#undef F
#define NOPTIONS (sizeof options / sizeof options[0])

static const option *find_option(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].name, name) == 0) return &options[i];
    return NULL;
}

#define FIELD(cfg, opt, type) ((type *)((char *)(cfg) + (opt)->offset))
#define CFIELD(cfg, opt, type) ((const type *)((const char *)(cfg) + (opt)->offset))

/* Built once, even when two threads ask first at the same time. */
static const char *option_names[NOPTIONS + 1];
static pthread_once_t option_names_once = PTHREAD_ONCE_INIT;

static void fill_option_names(void)
{
    for (size_t i = 0; i < NOPTIONS; i++) option_names[i] = options[i].name;
}

const char *const *rs_config_option_names(void)
{
    pthread_once(&option_names_once, fill_option_names);
    return option_names;
}

/* ---------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------ */

rs_config *rs_config_new(void)
{
    rs_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    cfg->pool_size = 10;
    cfg->max_retries = 3;
    cfg->connection_timeout = 5;
    cfg->command_timeout = 5;
    cfg->retry_base_delay = 0.1;
    cfg->retry_max_delay = 5;
    cfg->idle_check_after = 30;
    cfg->spin_wait = 0.0001;
    cfg->scan_count = 1000;
    /* Jobs' worker threads: at least 2, so one call stuck on a frozen
     * server does not hold every job; few, as each may hold one of the
     * pool's connections (pool_size 10); started by the first job. */
    cfg->workers = 4;
    cfg->wait_timeout = 1;
    cfg->tls_verify = 1;
    cfg->key_prefix = strdup("rigatoni:resume_token");
    cfg->lock_prefix = strdup("rigatoni:lock");
    cfg->sentinel_master = strdup("mymaster");
    if (!cfg->key_prefix || !cfg->lock_prefix || !cfg->sentinel_master) {
        rs_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void free_secret(char *s)
{
    if (!s) return;
    memset(s, 0, strlen(s));
    free(s);
}

void rs_config_free(rs_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option *o = &options[i];
        if (o->type == OPT_URL || o->type == OPT_STRING || o->type == OPT_SECRET ||
            o->type == OPT_SECRET_FILE)
            free_secret(*FIELD(cfg, o, char *));
    }
    rs_url_free(&cfg->parsed);
    free(cfg);
}

rs_config *rs_config_copy(const rs_config *src)
{
    rs_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    *cfg = *src;
    memset(&cfg->parsed, 0, sizeof cfg->parsed);
    int failed = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option *o = &options[i];
        if (o->type != OPT_URL && o->type != OPT_STRING && o->type != OPT_SECRET &&
            o->type != OPT_SECRET_FILE)
            continue;
        char **f = FIELD(cfg, o, char *);
        if (*f && !(*f = strdup(*f))) failed = 1;
    }
    if (!failed && cfg->url && rs_url_parse(cfg->url, &cfg->parsed, NULL) < 0) failed = 1;
    if (failed) {
        rs_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* ---------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------ */

static int parse_bool(const char *text, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(text, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

const char *rs_config_password(const rs_config *cfg)
{
    return cfg->password ? cfg->password : cfg->parsed.password;
}

const char *rs_config_secret(const rs_config *cfg, const char *name)
{
    const option *o = find_option(name);
    if (!o) return NULL;
    if (o->type == OPT_SECRET) return *CFIELD(cfg, o, char *);
    if (o->type == OPT_SECRET_FILE) return *(char *const *)((const char *)cfg + o->secret);
    return NULL;
}

static int unknown_option(const char *name, rs_error *err)
{
    rs_error_set(err, RS_ERR_CONFIG, 0, "unknown option '%.64s'", name);
    return -1;
}

static int set_string(char **field, const char *value, rs_error *err)
{
    char *copy = value ? strdup(value) : NULL;
    if (value && !copy) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    free_secret(*field);
    *field = copy;
    return 0;
}

int rs_config_set_url(rs_config *cfg, const char *url, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_url parsed;
    if (rs_url_parse(url, &parsed, err) < 0) return -1;
    if (set_string(&cfg->url, url, err) < 0) {
        rs_url_free(&parsed);
        return -1;
    }
    rs_url_free(&cfg->parsed);
    cfg->parsed = parsed;
    return 0;
}

static int check_range(const option *o, double v, rs_error *err)
{
    /* A ttl's range is Redis's own (rs_ttl_check); 0 = no expiry. */
    if (o->type == OPT_TTL && v > 0) return rs_ttl_check(v, err);
    if (isnan(v) || v < o->min || v > o->max) {
        if (o->type == OPT_TTL && v < 0)
            rs_error_set(err, RS_ERR_CONFIG, 0, "ttl must not be negative (use none for no expiry)");
        else
            rs_error_set(err, RS_ERR_CONFIG, 0, "%s must be between %g and %g", o->name,
                         o->min, o->max);
        return -1;
    }
    return 0;
}

int rs_config_set_int(rs_config *cfg, const char *name, long long value, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    const option *o = find_option(name);
    if (!o) return unknown_option(name, err);
    switch (o->type) {
    case OPT_INT:
        if (check_range(o, (double)value, err) < 0) return -1;
        *FIELD(cfg, o, int) = (int)value;
        return 0;
    case OPT_SECONDS:
    case OPT_TTL:
        return rs_config_set_seconds(cfg, name, (double)value, err);
    case OPT_BOOL:
        return rs_config_set_bool(cfg, name, value != 0, err);
    default:
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s must be a string", name);
        return -1;
    }
}

int rs_config_set_seconds(rs_config *cfg, const char *name, double seconds, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    const option *o = find_option(name);
    if (!o) return unknown_option(name, err);
    if (o->type == OPT_INT) {
        /* In range first: casting ±inf, NaN or 1e30 to an integer is undefined. */
        if (check_range(o, seconds, err) < 0) return -1;
        if (seconds != floor(seconds)) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "%s must be an integer", name);
            return -1;
        }
        return rs_config_set_int(cfg, name, (long long)seconds, err);
    }
    if (o->type != OPT_SECONDS && o->type != OPT_TTL) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s is not a number option", name);
        return -1;
    }
    if (check_range(o, seconds, err) < 0) return -1;
    *FIELD(cfg, o, double) = seconds;
    return 0;
}

int rs_config_set_bool(rs_config *cfg, const char *name, int value, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    const option *o = find_option(name);
    if (!o) return unknown_option(name, err);
    if (o->type != OPT_BOOL) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s is not a boolean option", name);
        return -1;
    }
    *FIELD(cfg, o, int) = value ? 1 : 0;
    return 0;
}

#define SECRET_FILE_MAX 4096   /* bytes of a password_file, its line break included */

/* password_file = PATH: the password is the file's first line (so that it
 * stays out of config files, URLs and process arguments). The file must
 * be a regular file: opened without blocking and checked before reading,
 * so a FIFO or a device cannot hang the caller. A longer file is an error,
 * never cut: a cut password would fail AUTH far from here. */
static int set_secret_file(rs_config *cfg, const option *o, const char *path, rs_error *err)
{
    char buf[SECRET_FILE_MAX + 1];
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: cannot read '%.200s': %s", o->name, path,
                     strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: '%.200s' is not a regular file", o->name, path);
        return -1;
    }
    size_t n = 0;
    ssize_t got = 0;
    /* One byte more than allowed, to tell a file of the limit from a longer one. */
    while (n < sizeof buf && (got = read(fd, buf + n, sizeof buf - n)) != 0) {
        if (got < 0) {
            if (errno == EINTR) continue;
            break;
        }
        n += (size_t)got;
    }
    int read_errno = got < 0 ? errno : 0;
    close(fd);
    int rc = -1;
    if (read_errno) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: cannot read '%.200s': %s", o->name, path,
                     strerror(read_errno));
    } else if (n > SECRET_FILE_MAX) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: '%.200s' is longer than %d bytes: not a password "
                     "file", o->name, path, SECRET_FILE_MAX);
    } else {
        /* A UTF-8 byte order mark (an editor's, as the INI reader drops it)
         * is not part of the password. */
        size_t start = n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
        size_t line = start;
        while (line < n && buf[line] != '\r' && buf[line] != '\n') line++;
        buf[line] = '\0';
        memmove(buf, buf + start, line - start + 1);
        line -= start;
        if (memchr(buf, '\0', line))
            rs_error_set(err, RS_ERR_CONFIG, 0, "%s: '%.200s' holds a NUL byte in its first line",
                         o->name, path);
        else if (!buf[0])
            rs_error_set(err, RS_ERR_CONFIG, 0, "%s: '%.200s' is empty", o->name, path);
        else if (set_string((char **)((char *)cfg + o->secret), buf, err) == 0)
            rc = set_string(FIELD(cfg, o, char *), path, err);
    }
    memset(buf, 0, sizeof buf);
    return rc;
}

int rs_config_set(rs_config *cfg, const char *name, const char *value, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    const option *o = find_option(name);
    if (!o) return unknown_option(name, err);
    if (!value) value = "";
    double d;
    int is_none, b;
    char *end;
    switch (o->type) {
    case OPT_URL:
        return rs_config_set_url(cfg, value, err);
    case OPT_STRING:
    case OPT_SECRET:
        if (o->offset == offsetof(struct rs_config, key_prefix) ||
            o->offset == offsetof(struct rs_config, lock_prefix) ||
            o->offset == offsetof(struct rs_config, sentinel_master)) {
            if (!*value) {
                rs_error_set(err, RS_ERR_CONFIG, 0, "%s must not be empty", name);
                return -1;
            }
        }
        return set_string(FIELD(cfg, o, char *), *value ? value : NULL, err);
    case OPT_INT: {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "%s must be an integer", name);
            return -1;
        }
        return rs_config_set_int(cfg, name, v, err);
    }
    case OPT_SECONDS:
    case OPT_TTL:
        if (rs_parse_duration(value, &d, o->type == OPT_TTL ? &is_none : NULL) < 0) {
            rs_error_set(err, RS_ERR_CONFIG, 0,
                         "%s must be a duration like 30, 1.5, 500ms, 30s, 1h30m, 7d or 2w%s",
                         name, o->type == OPT_TTL ? ", or none" : "");
            return -1;
        }
        return rs_config_set_seconds(cfg, name, d, err);
    case OPT_SECRET_FILE:
        return set_secret_file(cfg, o, value, err);
    case OPT_POLICY:
        if (strcasecmp(value, "error") && strcasecmp(value, "warn")) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "%s must be error or warn", name);
            return -1;
        }
        *FIELD(cfg, o, int) = strcasecmp(value, "warn") == 0;
        return 0;
    case OPT_BOOL:
        if (parse_bool(value, &b) < 0) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "%s must be true or false", name);
            return -1;
        }
        return rs_config_set_bool(cfg, name, b, err);
    }
    return -1;
}

/* ---------------------------------------------------------------------
 * Validation and description
 * ------------------------------------------------------------------ */

void rs_config_set_log_handler(rs_config *cfg, rs_log_fn fn, void *userdata)
{
    cfg->log_fn = fn;
    cfg->log_data = userdata;
}

int rs_config_validate(const rs_config *cfg, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    if (!cfg->url) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "url is required");
        return -1;
    }
    if (cfg->retry_max_delay < cfg->retry_base_delay) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "retry_max_delay must be at least retry_base_delay");
        return -1;
    }
    /* WAIT 0 blocks forever, and a WAIT that outlasts command_timeout turns
     * a slow replica into a lost connection whose write's fate is unknown. */
    if (cfg->wait_replicas > 0 &&
        !(cfg->wait_timeout > 0 && cfg->wait_timeout < cfg->command_timeout)) {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "wait_timeout (%gs) must be greater than 0 and less than command_timeout "
                     "(%gs) when wait_replicas is set",
                     cfg->wait_timeout, cfg->command_timeout);
        return -1;
    }
    return 0;
}

size_t rs_config_get(const rs_config *cfg, const char *name, char *buf, size_t bufsize)
{
    const option *o = find_option(name);
    if (!o) {
        if (bufsize) buf[0] = '\0';
        return 0;
    }
    switch (o->type) {
    case OPT_URL: {
        const char *url = *CFIELD(cfg, o, char *);
        if (!url) return (size_t)snprintf(buf, bufsize, "none");
        return rs_mask_url(url, buf, bufsize);
    }
    case OPT_SECRET:
        return (size_t)snprintf(buf, bufsize, "%s", *CFIELD(cfg, o, char *) ? "***" : "none");
    case OPT_STRING: {
        const char *s = *CFIELD(cfg, o, char *);
        return (size_t)snprintf(buf, bufsize, "%s", s ? s : "none");
    }
    case OPT_INT:
        return (size_t)snprintf(buf, bufsize, "%d", *CFIELD(cfg, o, int));
    case OPT_TTL:
        if (*CFIELD(cfg, o, double) == 0) return (size_t)snprintf(buf, bufsize, "none");
        /* fall through */
    case OPT_SECONDS:
        return rs_format_duration(*CFIELD(cfg, o, double), buf, bufsize);
    case OPT_BOOL:
        return (size_t)snprintf(buf, bufsize, "%s", *CFIELD(cfg, o, int) ? "true" : "false");
    case OPT_POLICY:
        return (size_t)snprintf(buf, bufsize, "%s", *CFIELD(cfg, o, int) ? "warn" : "error");
    case OPT_SECRET_FILE: {
        const char *path = *CFIELD(cfg, o, char *);
        return (size_t)snprintf(buf, bufsize, "%s", path ? path : "none");
    }
    }
    return 0;
}

size_t rs_config_describe(const rs_config *cfg, char *buf, size_t bufsize)
{
    static const char *shown[] = {"url", "pool_size", "ttl", "max_retries",
                                  "connection_timeout", "command_timeout",
                                  "cluster_mode", "key_prefix"};
    size_t need = 0;
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        char value[512];
        rs_config_get(cfg, shown[i], value, sizeof value);
        int n = snprintf(need < bufsize ? buf + need : NULL, need < bufsize ? bufsize - need : 0,
                         "%s%s=%s", i ? " " : "", shown[i], value);
        need += (size_t)n;
    }
    if (bufsize && need >= bufsize) buf[bufsize - 1] = '\0';
    return need;
}
