/* SPDX-License-Identifier: MIT */
/* host.h -- what the files of the `rigatoni-store` host share (internal).
 *
 * The host is cut into these concerns: host_conf.c builds the effective
 * rs_config from an INI file, -s overrides and -u (errors carry
 * `file:line`); host_env.c gives a Lua state the script environment
 * (`rs`, lazy `store`, `config`, `host`, `arg`); host_metrics.c writes
 * --metrics; host_files.c the temporary files and output paths of the
 * scripts; host_signal.c turns SIGINT/SIGTERM into a clean stop;
 * host_http.c is the HTTP server of `serve`; host_log.c the one format
 * of the log lines on stderr; host.c is
 * the command line, running a script and turning errors into exit codes.
 */
#ifndef RS_HOST_H
#define RS_HOST_H

#include <stddef.h>
#include <stdio.h>

#include <lua.h>

#include "rigatoni_store.h"

/* host_log.c: writes "rigatoni-store: <level>: <message>" on stderr, the
 * one format of every log line the host shows (an rs_log_fn). */
void host_log_write(rs_log_level level, const char *message, void *userdata);

/* Exit statuses of the contract (DESIGN.md). */
#define HOST_EXIT_OK 0
#define HOST_EXIT_FAILURE 1
#define HOST_EXIT_USAGE 2

/* [log] level, in increasing verbosity. */
enum { HOST_LOG_ERROR, HOST_LOG_WARN, HOST_LOG_INFO, HOST_LOG_DEBUG };

#define HOST_MAX_SECRETS 8

/* The effective configuration: the core options plus what only the host
 * knows (log level, the file it came from, the secrets to mask). */
typedef struct host_conf {
    rs_config *cfg;
    int log_level;
    char *file;                         /* NULL when no file was read */
    char *secrets[HOST_MAX_SECRETS];    /* plain passwords, masked in output */
    int nsecrets;
    char warning[512];                  /* "" or a warning for stderr */
} host_conf;

/* A conf with the core defaults and log level warn. NULL when out of memory. */
host_conf *host_conf_new(void);
/* An independent copy (for stores opened by scripts on top of the main one). */
host_conf *host_conf_copy(const host_conf *hc);
void host_conf_free(host_conf *hc);

/* Reads an INI file into `hc`. 0, or -1 with msg "file:line: message"
 * (or "file: message" when the file cannot be read). A world- or
 * group-readable file that holds a literal password sets hc->warning. */
int host_conf_load(host_conf *hc, const char *path, char *msg, size_t msgsize);

/* Applies one setting given as section, key and value text (no ${VAR}
 * expansion: the shell already did it). 0, or -1 with msg. */
int host_conf_set(host_conf *hc, const char *section, const char *key, const char *value,
                  char *msg, size_t msgsize);

/* Applies "section.key=value" as given to -s. 0 or -1 with msg. */
int host_conf_set_arg(host_conf *hc, const char *arg, char *msg, size_t msgsize);

/* Adds the secrets `src` knows to those `dst` masks. */
void host_conf_merge_secrets(host_conf *dst, const host_conf *src);

/* Fills what is still unset with its default (url redis://127.0.0.1:6379). */
int host_conf_finish(host_conf *hc, char *msg, size_t msgsize);

/* Prints the effective config as INI, secrets masked. */
void host_conf_print(const host_conf *hc, FILE *out);

/* Copies `text` into buf with URL credentials and known secrets masked. */
void host_conf_mask(const host_conf *hc, const char *text, char *buf, size_t bufsize);

/* "error", "warn", "info", "debug"; -1 for anything else. */
int host_log_level_parse(const char *name);
const char *host_log_level_name(int level);

/* ---- --metrics (host_metrics.c) ---- */

/* Writes the metrics of the script's `store` (if it was opened and is
 * still open) to `path` ("-": stdout) in the Prometheus text format.
 * 0, or -1 after printing why on stderr. */
int host_metrics_write(lua_State *L, const char *path, const host_conf *hc);

/* ---- serve's HTTP server (host_http.c) ---- */

/* Registers the server's metatable and pushes host.http_server. */
void host_http_open(lua_State *L);

/* ---- the script environment (host_env.c) ---- */

typedef struct host_env {
    host_conf *conf;       /* borrowed; lives as long as the Lua state */
    int verbose;           /* -v: tracebacks, log level debug */
    int quiet;             /* -q: no progress, log level error */
    const char *scripts_dir;   /* bundled scripts, or NULL when not found */
    const char *exe;       /* argv[0] as given */
} host_env;

/* Opens the standard libraries and the module (as package.loaded
 * "rigatoni_store"), and binds rs, store (lazy), config, host. */
void host_env_open(lua_State *L, host_env *env);

/* Sets `arg` (arg[0] = script, arg[1..] = args) and returns how many
 * arguments it pushed for the chunk's `...`. */
int host_env_push_args(lua_State *L, const char *script, int argc, char **argv);

/* ---- files the scripts write (host_files.c) ---- */

/* Adds temp_file, commit_temp, remove_temp, file_info and same_terminal to
 * the global `host` table. */
void host_files_register(lua_State *L);

/* Removes every temporary file still registered. Async-signal-safe. */
void host_files_cleanup(void);

/* ---- SIGINT and SIGTERM (host_signal.c) ---- */

/* Catches SIGINT, SIGTERM and SIGHUP (unless ignored at start): the script
 * running in L stops at its next Lua instruction with an error of kind
 * "interrupted"; SIGPIPE removes the temporary files, then ends the host as
 * its default would. Call host_signal_detach before L is closed. */
void host_signal_install(lua_State *L);
void host_signal_detach(lua_State *L);

/* Adds host.interrupted() and host.on_stop(fn) to the global `host` table. */
void host_signal_register(lua_State *L);

/* The signal caught (SIGINT, SIGTERM, SIGHUP), or 0; and its name. */
int host_signal_caught(void);
/* After a stop unwound the run (detached): calls the script's
 * host.on_stop function, if it registered one, so it reports its work. */
void host_signal_run_on_stop(lua_State *L);
const char *host_signal_name(int sig);

#endif /* RS_HOST_H */
