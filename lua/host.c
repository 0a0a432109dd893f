/* SPDX-License-Identifier: MIT */
/* host.c -- `rigatoni-store`: run maintenance scripts against the store.
 *
 *   rigatoni-store [-c FILE] [-u URL] [-s section.key=value]... [-v|-q] [--metrics FILE|-]
 *                  SCRIPT [ARGS...]
 *   rigatoni-store [-c FILE] -e 'LUA CODE' [ARGS...]
 *   rigatoni-store [-c FILE] --check
 *   rigatoni-store --version | --help
 *
 * Options follow getopt_long (bundled flags, -uURL, --url=URL, --) and
 * stop at SCRIPT: what follows belongs to the script. The config
 * is the file (-c, else $RIGATONI_STORE_CONFIG, else none), then every -s
 * in order, then -u; with no url at all, redis://127.0.0.1:6379.
 *
 * Exit status: 0 ok, 1 runtime failure, 2 usage or config error (a bad
 * option, a bad INI value, an unknown script, a script that does not
 * compile, or an error object of kind "config" or "usage" raised by the
 * script). A script may also return an integer: that is the status.
 * Errors print as one masked line on stderr; -v adds the traceback.
 * SIGINT, SIGTERM and SIGHUP stop the script (host_signal.c): its temporary
 * files are removed and the status is 130, 143 or 129.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "host.h"

#define PROG "rigatoni-store"
#define VERBOSE_KEY "rigatoni_store.host_verbose"
#define TRACEBACK_KEY "rigatoni_store.host_traceback"

static const char usage_text[] =
    "usage: " PROG " [-c FILE] [-u URL] [-s section.key=value]... [-v|-q] [--metrics FILE|-]\n"
    "                      SCRIPT [ARGS...]\n"
    "       " PROG " [-c FILE] -e 'LUA CODE' [ARGS...]\n"
    "       " PROG " [-c FILE] --check\n"
    "       " PROG " --version | --help\n";

static const char help_text[] =
    "\n"
    "Runs a maintenance script against the Rigatoni resume-token store.\n"
    "\n"
    "  -c, --config FILE   INI config (default: $RIGATONI_STORE_CONFIG, else none)\n"
    "  -u, --url URL       Redis URL, overrides [redis] url\n"
    "  -s, --set S.K=V     override one setting, e.g. -s redis.pool_size=20\n"
    "  -v, --verbose       tracebacks on errors, log level at least info (-vv: debug)\n"
    "  -q, --quiet         no progress line, log level error\n"
    "  -e, --eval CODE     run CODE with `store`, `rs`, `config`, `arg` bound\n"
    "      --check         validate the config, connect, PING, print it masked\n"
    "      --metrics FILE  when the script ends, write the store's metrics to FILE\n"
    "                      (- for stdout) in the Prometheus text format\n"
    "      --version       print the version\n"
    "  -h, --help          this help\n"
    "\n"
    "SCRIPT is a file (a path, or a name ending in .lua) or a bundled script:\n"
    "  list, export, import, migrate, cleanup, locks, stats, serve  (SCRIPT --help for each)\n"
    "\n"
    "Without a config, url is redis://127.0.0.1:6379. Exit status: 0 ok,\n"
    "1 runtime failure, 2 usage or config error, 130/143/129 stopped by\n"
    "SIGINT/SIGTERM/SIGHUP (temporary files removed; SIGPIPE removes them too and\n"
    "exits 141). Temporary files go to $TMPDIR (else /tmp).\n";

/* ---------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------ */

typedef struct options {
    const char *config_file;
    const char *url;
    const char **sets;
    int nsets;
    int verbose, quiet, check, version, help;
    const char *eval;
    const char *metrics;      /* --metrics FILE|- */
    const char *script;       /* NULL with -e / --check */
    int nargs;                /* script arguments */
    char **args;
} options;

/* A message that quotes the user's words or names from Redis goes to a
 * terminal: control bytes (ESC sequences; line feeds and tabs too unless
 * `lines`, a traceback's), C1 controls and, in a message that is not
 * UTF-8, bytes above 0x7f are written \xNN, as lib/output.lua's text does. */
static void write_escaped(FILE *f, const char *s, int lines)
{
    size_t len = strlen(s);
    int utf8 = rs_utf8_valid(s, len, 0);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int kept = lines && (c == '\n' || c == '\t');
        /* U+0080..U+009F (C2 80..9F): C1 controls, CSI among them */
        if (utf8 && c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] <= 0x9f) {
            fprintf(f, "\\x%02x\\x%02x", c, (unsigned char)s[i + 1]);
            i++;
        } else if ((c < 0x20 && !kept) || c == 0x7f || (c >= 0x80 && !utf8)) {
            fprintf(f, "\\x%02x", c);
        } else {
            fputc(c, f);
        }
    }
}

static int usage_error(const char *fmt, const char *what)
{
    char text[600];
    snprintf(text, sizeof text, fmt, what);
    fprintf(stderr, PROG ": ");
    write_escaped(stderr, text, 0);
    fprintf(stderr, "\n%s(" PROG " --help for more)\n", usage_text);
    return HOST_EXIT_USAGE;
}

/* getopt_long's grammar, as every GNU tool: bundled flags (-qv, -vvv),
 * attached values (-uURL), --long=value, unambiguous long prefixes, and
 * "--". The leading '+' stops at the first non-option (SCRIPT), ':' lets
 * us word a missing value ourselves. */
static const char short_options[] = "+:c:u:s:e:vqh";
static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"url", required_argument, NULL, 'u'},
    {"set", required_argument, NULL, 's'},
    {"eval", required_argument, NULL, 'e'},
    {"metrics", required_argument, NULL, 'M'},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"check", no_argument, NULL, 'C'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* What a missing value of each option should have been. */
static const char *value_of(int opt)
{
    switch (opt) {
    case 'c': return "a file";
    case 'u': return "a URL";
    case 's': return "section.key=value";
    case 'e': return "Lua code";
    case 'M': return "a file (or - for stdout)";
    default: return "a value";
    }
}

/* Words getopt_long's error for `word` (the argument it was reading) as
 * the user wrote it: -c, or --config (glibc sets optopt for a long option
 * too, so the word itself tells). A long option's optopt is its value when
 * it was known but given a value it does not take, 0 when unknown or an
 * ambiguous prefix. */
static void bad_option(int opt, const char *word, char *what, size_t size)
{
    int is_long = strncmp(word, "--", 2) == 0;
    int len = is_long ? (int)strcspn(word, "=") : 2;
    char shown[110];
    if (is_long || !optopt) snprintf(shown, sizeof shown, "%.*s", len > 100 ? 100 : len, word);
    else snprintf(shown, sizeof shown, "-%c", optopt);
    if (opt == ':') {
        snprintf(what, size, "option %s needs %s", shown, value_of(optopt));
        return;
    }
    if (is_long && optopt) {
        snprintf(what, size, "option %s takes no value", shown);
        return;
    }
    char could[200] = "";
    int matches = 0;
    for (const struct option *l = long_options; is_long && l->name; l++) {
        if (len - 2 > 0 && strncmp(l->name, word + 2, (size_t)(len - 2)) == 0) {
            size_t used = strlen(could);
            snprintf(could + used, sizeof could - used, "%s--%s", matches++ ? ", " : "", l->name);
        }
    }
    if (matches > 1) snprintf(what, size, "option %s is ambiguous (%s)", shown, could);
    else snprintf(what, size, "unknown option %s", shown);
}

static int parse_args(int argc, char **argv, options *o)
{
    o->sets = calloc((size_t)argc, sizeof *o->sets);
    if (!o->sets) return HOST_EXIT_FAILURE;
    opterr = 0;           /* our own messages, with the usage */
    optind = 1;
    char what[512];   /* "option SHOWN is ambiguous (COULD)" fits whole */
    while (!o->eval) {
        /* The word getopt reads now: optind stays on a bundle (-qx) until
         * its last letter, so argv[optind - 1] after the call may be the
         * word before it (a long option, or a value). */
        int at = optind;
        int opt = getopt_long(argc, argv, short_options, long_options, NULL);
        if (opt == -1) break;
        switch (opt) {
        case 'c': o->config_file = optarg; break;
        case 'u': o->url = optarg; break;
        case 's': o->sets[o->nsets++] = optarg; break;
        case 'e':                              /* what follows -e CODE is the code's */
            /* Empty (an unset $VAR): running nothing would exit 0. */
            if (!*optarg) return usage_error("%s", "the Lua code of -e is empty");
            o->eval = optarg;
            break;
        case 'M': o->metrics = optarg; break;
        case 'v': o->verbose++; break;
        case 'q': o->quiet = 1; break;
        case 'C': o->check = 1; break;
        case 'V': o->version = 1; break;
        case 'h': o->help = 1; break;
        case ':':
        default:
            bad_option(opt, argv[at], what, sizeof what);
            return usage_error("%s", what);
        }
    }
    int i = optind;
    if (o->verbose && o->quiet) return usage_error("%s", "-v and -q exclude each other");
    if (!o->eval && !o->check && i < argc) o->script = argv[i++];
    o->nargs = argc - i;
    o->args = argv + i;
    if (o->help || o->version) return HOST_EXIT_OK;
    if (o->check && (o->eval || o->script || o->nargs))
        return usage_error("%s", "--check takes no script");
    if (!o->check && !o->eval && !o->script) return usage_error("%s", "no script given");
    return HOST_EXIT_OK;
}

/* ---------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------ */

static int build_conf(const options *o, host_conf *hc)
{
    char msg[800];
    const char *file = o->config_file;
    if (!file) {
        file = getenv("RIGATONI_STORE_CONFIG");
        if (file && !*file) file = NULL;
    }
    if (file && host_conf_load(hc, file, msg, sizeof msg) < 0) goto fail;
    for (int i = 0; i < o->nsets; i++)
        if (host_conf_set_arg(hc, o->sets[i], msg, sizeof msg) < 0) goto fail;
    if (o->url && host_conf_set(hc, "redis", "url", o->url, msg, sizeof msg) < 0) {
        char why[800];
        snprintf(why, sizeof why, "-u: %.700s", msg);
        snprintf(msg, sizeof msg, "%s", why);
        goto fail;
    }
    if (host_conf_finish(hc, msg, sizeof msg) < 0) goto fail;
    if (o->quiet) hc->log_level = HOST_LOG_ERROR;
    if (o->verbose > 1) hc->log_level = HOST_LOG_DEBUG;
    else if (o->verbose && hc->log_level < HOST_LOG_INFO) hc->log_level = HOST_LOG_INFO;
    /* HOST_LOG_* follow rs_log_level's order. */
    rs_log_set_level((rs_log_level)hc->log_level);
    rs_config_set_log_handler(hc->cfg, host_log_write, NULL);   /* --check's store */
    if (hc->warning[0] && hc->log_level >= HOST_LOG_WARN)
        host_log_write(RS_LOG_WARN, hc->warning, NULL);
    return 0;
fail: {
    char masked[1600];
    host_conf_mask(hc, msg, masked, sizeof masked);
    fprintf(stderr, PROG ": ");
    write_escaped(stderr, masked, 1);
    fputc('\n', stderr);
    return -1;
}
}

/* ---------------------------------------------------------------------
 * --check
 * ------------------------------------------------------------------ */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_error(const host_conf *hc, const char *text)
{
    size_t size = strlen(text) * 3 + 64;   /* "***" for a one-letter secret */
    char *masked = malloc(size);
    if (!masked) {
        fprintf(stderr, PROG ": an error occurred (out of memory to print it)\n");
        return;
    }
    host_conf_mask(hc, text, masked, size);
    fprintf(stderr, PROG ": ");
    write_escaped(stderr, masked, 1);
    fputc('\n', stderr);
    free(masked);
}

static int run_check(host_conf *hc)
{
    printf("; config: %s\n", hc->file ? hc->file : "(none: defaults)");
    host_conf_print(hc, stdout);
    fflush(stdout);

    rs_error err = {0};
    char url[1024], line[700];
    rs_config_get(hc->cfg, "url", url, sizeof url);
    if (rs_config_validate(hc->cfg, &err) < 0) goto fail;
    double t0 = now_seconds();
    rs_store *store = rs_store_open(hc->cfg, &err);   /* validates and PINGs */
    if (!store) goto fail;
    double t1 = now_seconds();
    char version[64] = "?";
    const char *argv[] = {"INFO", "server"};
    size_t argvlen[] = {4, 6};
    char *info;
    size_t info_len;
    if (rs_command_flags(store, 2, argv, argvlen, RS_COMMAND_IDEMPOTENT, &info, &info_len,
                         &err) == 1) {
        const char *v = strstr(info, "redis_version:");
        if (v) sscanf(v + 14, "%63[^\r\n]", version);
        rs_free(info);
    }
    rs_store_close(store);
    printf("; ok: %s answered PING in %.1f ms (redis %s)\n", url, (t1 - t0) * 1000.0, version);
    return HOST_EXIT_OK;
fail:
    snprintf(line, sizeof line, "%s: %s", rs_error_kind_name(err.kind), err.message);
    print_error(hc, line);
    return err.kind == RS_ERR_CONFIG ? HOST_EXIT_USAGE : HOST_EXIT_FAILURE;
}

/* ---------------------------------------------------------------------
 * Scripts
 * ------------------------------------------------------------------ */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Where `make install` puts the scripts (the Makefile's SCRIPTSDIR). */
#ifndef HOST_SCRIPTS_DIR
#error "compile host.c with -DHOST_SCRIPTS_DIR='\"/path/to/scripts\"'"
#endif

/* The bundled scripts: $RIGATONI_STORE_SCRIPTS, else <exe dir>/../scripts
 * (source tree), else <exe dir>/../share/rigatoni_store/scripts (installed,
 * maybe moved), else HOST_SCRIPTS_DIR (a LuaRocks tree: the binary is
 * copied to <tree>/bin, the scripts stay in the rock's own folder). */
static char *find_scripts_dir(void)
{
    const char *env = getenv("RIGATONI_STORE_SCRIPTS");
    if (env && *env) return is_dir(env) ? strdup(env) : NULL;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0';
    static const char *const rel[] = {"/../scripts", "/../share/rigatoni_store/scripts", NULL};
    for (const char *const *r = rel; *r; r++) {
        char dir[PATH_MAX + 64];
        snprintf(dir, sizeof dir, "%s%s", exe, *r);
        char real[PATH_MAX];
        if (is_dir(dir) && realpath(dir, real)) return strdup(real);
    }
    return is_dir(HOST_SCRIPTS_DIR) ? strdup(HOST_SCRIPTS_DIR) : NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The file to run for SCRIPT, or NULL (malloc'd). */
static char *resolve_script(const char *script, const char *scripts_dir)
{
    if (strchr(script, '/') || ends_with(script, ".lua")) return strdup(script);
    if (scripts_dir) {
        size_t size = strlen(scripts_dir) + strlen(script) + 8;
        char *path = malloc(size);
        if (!path) return NULL;
        snprintf(path, size, "%s/%s.lua", scripts_dir, script);
        if (is_file(path)) return path;
        free(path);
    }
    return is_file(script) ? strdup(script) : NULL;
}

/* run_script(chunk, args...) -> what the script returns. A chunk that
 * returns a declaration (a table with name and run: the bundled scripts)
 * is run by lib/options.lua's main, which reads the arguments by it; any
 * other chunk has run already, and its return value is the result. */
static int run_script(lua_State *L)
{
    int nargs = lua_gettop(L) - 1;
    luaL_checkstack(L, nargs + 4, "too many arguments");
    lua_createtable(L, nargs, 0);                       /* the arguments, for main */
    for (int i = 1; i <= nargs; i++) {
        lua_pushvalue(L, i + 1);
        lua_rawseti(L, -2, i);
    }
    int argv_index = lua_gettop(L);
    for (int i = 1; i <= nargs + 1; i++) lua_pushvalue(L, i);
    lua_call(L, nargs, 1);
    int result = lua_gettop(L);
    if (!lua_istable(L, result) || lua_getfield(L, result, "run") != LUA_TFUNCTION) {
        lua_settop(L, result);
        return 1;   /* a plain script: it has run */
    }
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lib.options");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "is_declaration");
    lua_pushvalue(L, result);
    lua_call(L, 1, 1);
    if (!lua_toboolean(L, -1)) {
        lua_settop(L, result);
        return 1;
    }
    lua_getfield(L, -2, "main");
    lua_pushvalue(L, result);
    lua_pushvalue(L, argv_index);
    lua_call(L, 2, 1);
    return 1;
}

/* Message handler: keeps the error object as it is (its kind decides the
 * exit status) and, with -v, files a traceback in the registry. */
static int message_handler(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, VERBOSE_KEY);
    int verbose = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (verbose) {
        const char *msg = luaL_tolstring(L, 1, NULL);
        luaL_traceback(L, L, msg, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
        lua_pop(L, 1);
    }
    lua_settop(L, 1);
    return 1;
}

/* What report_error learns of an error object. */
typedef struct error_report {
    int status;
    char *text;      /* malloc'd; NULL when it could not be made */
} error_report;

/* describe_error(report, err): reads the status and the text of `err`.
 * Run in a protected call: __index and __tostring of an error object are
 * Lua code that may raise, and copying its text may run out of memory. */
static int describe_error(lua_State *L)
{
    error_report *r = lua_touserdata(L, 1);
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_getfield(L, 2, "kind");
        const char *kind = lua_tostring(L, -1);
        if (kind && (strcmp(kind, "config") == 0 || strcmp(kind, "usage") == 0))
            r->status = HOST_EXIT_USAGE;
    }
    size_t len;
    const char *text;
    if (lua_getfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY) == LUA_TSTRING) {
        text = lua_tolstring(L, -1, &len);
    } else {
        text = luaL_tolstring(L, 2, &len);
        const char *nl = memchr(text, '\n', len);   /* one line: the first */
        if (nl) len = (size_t)(nl - text);
    }
    if ((r->text = malloc(len + 1))) {
        memcpy(r->text, text, len);
        r->text[len] = '\0';
    }
    return 0;
}

/* Prints the error at the top of the stack; returns the exit status. */
static int report_error(lua_State *L, const host_conf *hc)
{
    error_report r = {.status = HOST_EXIT_FAILURE, .text = NULL};
    int rc = -1;   /* not run: no room on the stack */
    if (lua_checkstack(L, 3)) {
        lua_pushcfunction(L, describe_error);   /* a light C function: no allocation */
        lua_pushlightuserdata(L, &r);
        lua_pushvalue(L, -3);
        rc = lua_pcall(L, 2, 0, 0);
    }
    if (r.text) {
        print_error(hc, r.text);
    } else {
        /* Lua's own second error is a string: "not enough memory", or
         * what a failing __tostring raised. */
        const char *why = "out of memory";
        if (rc > LUA_OK && lua_type(L, -1) == LUA_TSTRING) why = lua_tostring(L, -1);
        char line[600];
        snprintf(line, sizeof line, "the error could not be printed: %.500s", why);
        line[strcspn(line, "\n")] = '\0';
        print_error(hc, line);
    }
    free(r.text);
    return r.status;
}

static int run_lua(const options *o, host_conf *hc, const char *scripts_dir, const char *exe)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, PROG ": cannot create a Lua state (out of memory)\n");
        return HOST_EXIT_FAILURE;
    }
    host_env env = {.conf = hc, .verbose = o->verbose, .quiet = o->quiet,
                    .scripts_dir = scripts_dir, .exe = exe};
    host_env_open(L, &env);
    host_files_register(L);
    host_signal_register(L);
    lua_pushboolean(L, o->verbose);
    lua_setfield(L, LUA_REGISTRYINDEX, VERBOSE_KEY);

    int status = HOST_EXIT_OK, rc;
    char *path = NULL;
    lua_pushcfunction(L, message_handler);
    int base = lua_gettop(L);
    if (o->eval) {
        rc = luaL_loadbuffer(L, o->eval, strlen(o->eval), "=(command line)");
    } else {
        path = resolve_script(o->script, scripts_dir);
        if (!path) {
            fprintf(stderr,
                    PROG ": unknown script '%s': neither a file nor a bundled script "
                         "(list, export, import, migrate, cleanup, locks, stats, serve%s)\n",
                    o->script, scripts_dir ? "" : "; no scripts directory was found");
            lua_close(L);
            return HOST_EXIT_USAGE;
        }
        rc = luaL_loadfilex(L, path, "t");
    }
    if (rc != LUA_OK) {
        print_error(hc, lua_tostring(L, -1));
        free(path);
        lua_close(L);
        return HOST_EXIT_USAGE;
    }
    if (path) {   /* a script file: run_script(chunk, args...) */
        lua_pushcfunction(L, run_script);
        lua_insert(L, -2);
    }
    int nargs = host_env_push_args(L, path ? path : "-e", o->nargs, o->args);
    host_signal_install(L);
    rc = lua_pcall(L, nargs + (path != NULL), 1, base);
    host_signal_detach(L);
    int sig = host_signal_caught();
    if (rc != LUA_OK && sig) {
        /* Whatever the script raised on its way out, the signal stopped it. */
        lua_pop(L, 1);
        host_signal_run_on_stop(L);
        fprintf(stderr, PROG ": interrupted by %s; temporary files removed\n", host_signal_name(sig));
        status = 128 + sig;
    } else if (rc != LUA_OK) {
        status = report_error(L, hc);
    } else if (lua_isinteger(L, -1)) {
        lua_Integer code = lua_tointeger(L, -1);
        status = code >= 0 && code <= 255 ? (int)code : HOST_EXIT_FAILURE;
    }
    if (rc == LUA_OK && sig)
        fprintf(stderr, PROG ": %s arrived as the script ended; it had completed\n",
                host_signal_name(sig));
    if (o->metrics && !(rc != LUA_OK && sig) && host_metrics_write(L, o->metrics, hc) < 0 &&
        status == HOST_EXIT_OK)
        status = HOST_EXIT_FAILURE;
    free(path);
    lua_close(L);   /* closes the store, if the script opened one */
    host_files_cleanup();   /* what the script neither committed nor removed */
    if (fflush(stdout) != 0 && status == HOST_EXIT_OK) {
        fprintf(stderr, PROG ": writing output: %s\n", strerror(errno));
        status = HOST_EXIT_FAILURE;
    }
    return status;
}

/* ---------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    options o = {0};
    int status = parse_args(argc, argv, &o);
    if (status != HOST_EXIT_OK || o.help || o.version) {
        if (status == HOST_EXIT_OK && o.help) printf("%s%s", usage_text, help_text);
        else if (status == HOST_EXIT_OK) printf(PROG " %s (%s)\n", RS_VERSION, LUA_RELEASE);
        free(o.sets);
        return status;
    }
    host_conf *hc = host_conf_new();
    if (!hc) {
        fprintf(stderr, PROG ": out of memory\n");
        return HOST_EXIT_FAILURE;
    }
    if (build_conf(&o, hc) < 0) {
        status = HOST_EXIT_USAGE;
    } else if (o.check) {
        status = run_check(hc);
    } else {
        char *scripts_dir = find_scripts_dir();
        status = run_lua(&o, hc, scripts_dir, argv[0]);
        free(scripts_dir);
    }
    host_conf_free(hc);
    free(o.sets);
    return status;
}
