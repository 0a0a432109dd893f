/* SPDX-License-Identifier: MIT */
/* rs_lua.h -- what the files of the Lua module share (internal).
 *
 * The module is cut into one file per handle type and concern:
 * rs_module.c (the library table, rs.new, the rs.config builder; it
 * assembles the others), rs_store_lua.c (store userdata), rs_op_lua.c
 * (methods as parse/run/push operations, store:start and its jobs),
 * rs_token_lua.c (one-token operations, command), rs_walk_lua.c (walks), rs_batch_lua.c (batches and their
 * values box), rs_job_lua.c (save jobs), rs_lock_lua.c (locks, leases),
 * rs_server_lua.c (stats and what the servers say), rs_error_lua.c
 * (structured error objects), rs_bson_lua.c (BSON <-> Lua), rs_log_lua.c
 * (log lines to a Lua handler), rs_open_lua.c (opening a store as a job,
 * for event loops), rs_stream_lua.c (Rigatoni 0.2 stream key
 * names), rs_rows_lua.c (rows of list and export), rs_options_lua.c
 * (options tables of the bindings). Calls go one way: the handle files
 * use rs_store_lua.c's and rs_op_lua.c's helpers, rs_op_lua.c uses
 * rs_store_lua.c's, never the reverse; rs_job_lua.c uses rs_batch_lua.c's.
 */
#ifndef RS_LUA_H
#define RS_LUA_H

#include <lua.h>
#include <lauxlib.h>

#include "rigatoni_store.h"

/* ---- errors (rs_error_lua.c) ---- */

/* Raises an error object {kind=, message=, retryable=, attempts=} built
 * from `err`. Never returns. */
int rs_lua_raise(lua_State *L, const rs_error *err);
/* The same error object, pushed instead of raised (to add fields to it). */
void rs_lua_push_error(lua_State *L, const rs_error *err);
/* Raises an error object of `kind` with a formatted message (the format
 * must not carry secrets). Never returns. */
int rs_lua_raisef(lua_State *L, rs_error_kind kind, const char *fmt, ...);
/* Registers the error metatable. */
void rs_lua_open_error(lua_State *L);

/* ---- options tables (rs_options_lua.c) ---- */

/* Checks the options table at argument `arg` (a positive index): 0 when it
 * is none or nil, 1 when it is a table whose keys (read raw) are all among
 * `known` (NULL-terminated). Raises an argument error naming an unknown
 * key and the known ones, or a key that is not a string. */
int rs_lua_check_options(lua_State *L, int arg, const char *const known[]);

/* Types of rs_lua_opt_field besides LUA_T*: a number with an integer
 * value, and a string without NUL bytes (passed on as a C string). */
#define RS_LUA_TINTEGER (LUA_NUMTYPES + 1)
#define RS_LUA_TCSTRING (LUA_NUMTYPES + 2)

/* Pushes option `name` of the table at argument `arg` (__index honoured)
 * and returns 1; 0 when it is nil (pushed). Raises an argument error when
 * it is not of `type`. The value stays on the stack for as long as C
 * uses a pointer into it. */
int rs_lua_opt_field(lua_State *L, int arg, const char *name, int type);

/* ---- BSON (rs_bson_lua.c) ---- */

/* Encodes the Lua table at `idx` as a BSON document and returns its bytes
 * (*len of them), owned by a guard value pushed on the stack: they stay
 * valid until the caller pops it, and an error raised meanwhile leaks
 * nothing. Raises a `serialization` error (strings not UTF-8, unsupported
 * values, cycles, over RS_MAX_TOKEN_SIZE) naming the offending field. */
const uint8_t *rs_lua_bson_encode(lua_State *L, int idx, size_t *len);
/* Pushes the document decoded from `data`; returns 1, or pushes nothing
 * and returns 0 when `data` is not a valid BSON document. */
int rs_lua_bson_push(lua_State *L, const uint8_t *data, size_t len);
/* Puts the `bson` sub-table, `binary` and `token_time` into the table at
 * the top of the stack. */
void rs_lua_open_bson(lua_State *L);

/* ---- store (rs_store_lua.c) ---- */

/* Adds a part of the store's methods to the method table at the top of
 * the stack (and registers the metatables of that part's handles). */
typedef void (*rs_lua_add_methods_fn)(lua_State *L);

/* Pushes a new store userdata opened with `cfg` (config is copied).
 * Raises on failure. */
int rs_lua_store_open(lua_State *L, const rs_config *cfg);
/* Pushes a closed store userdata and returns its slot: a store put there
 * is the userdata's (closed by its __gc), so one opened elsewhere (an open
 * job) is handed over without a window where a memory error leaks it. */
rs_store **rs_lua_push_store_box(lua_State *L);
/* A copy of cfg whose log lines go to the Lua handler (rs_log_lua.c), as
 * every store the module opens; NULL when out of memory. Free it. */
rs_config *rs_lua_logged_config(const rs_config *cfg);

/* ---- open jobs (rs_open_lua.c) ---- */

/* Pushes a job that opens a store with `cfg` on a thread of its own
 * (rs.start_open): pollfd/events/timeout/ready/wait. Raises on failure. */
int rs_lua_open_job_start(lua_State *L, const rs_config *cfg);
/* Registers the open job's metatable, and a guard whose __gc waits at
 * lua_close for the threads of jobs abandoned unfinished. */
void rs_lua_open_open_jobs(lua_State *L);
/* Registers the store metatable; its method table gets the store's own
 * methods and those each of `parts` (NULL-terminated) adds. */
void rs_lua_open_store(lua_State *L, const rs_lua_add_methods_fn parts[]);
/* The open store at `idx`; raises on a closed one or another type. */
rs_store *rs_lua_check_store(lua_State *L, int idx);
/* The open store at `idx`, or NULL (another value, or a closed store). */
rs_store *rs_lua_test_store(lua_State *L, int idx);
/* Has the store at `store` call close(object) when it closes, for an
 * object at `obj` that uses the store from a thread of its own (held
 * weakly: a collected object is forgotten). */
void rs_lua_store_track(lua_State *L, int store, int obj, lua_CFunction close);
/* Encodes the token at `token_idx` and saves it under the collection at
 * `coll_idx`; fenced by lock_key/owner when lock_key is not NULL. */
int rs_lua_save_token(lua_State *L, rs_store *store, int coll_idx, int token_idx,
                      const char *lock_key, const char *owner);
/* Collection names: non-empty strings. Raises a serialization error. */
const char *rs_lua_check_collection(lua_State *L, int idx, size_t *len);
/* Decodes stored token bytes and pushes the table; on corrupt bytes pushes
 * nil and returns 0 with `err` naming the key (the collection when `store`
 * is NULL: closed). */
int rs_lua_push_token(lua_State *L, rs_store *store, const char *coll, size_t coll_len,
                      const char *bytes, size_t len, rs_error *err);
/* An optional ttl argument: nil = configured (RS_TTL_DEFAULT), false or 0
 * = none; raises on another value or a negative one. */
double rs_lua_opt_ttl(lua_State *L, int idx);
/* Pushes an empty box for a malloc'd result of the core (freed by __gc if
 * an error is raised before it is copied); rs_lua_result_to_string
 * replaces the box by a Lua string of the first `len` bytes, freeing them. */
char **rs_lua_push_result(lua_State *L);
void rs_lua_result_to_string(lua_State *L, char **box, size_t len);

/* ---- operations: parse, run, push (rs_op_lua.c) ---- */

/* A store method that talks to the server, cut in three so that it runs
 * blocking (store:method(...)) or as a job (store:start("method", ...))
 * through one code path:
 *   parse: Lua thread; the store at 1, the method's arguments from 2
 *          (missing ones up to `nargs` + 1 are nil), and the op's owner
 *          at the top (a variadic parse reads up to lua_gettop - 1).
 *          Checks them (raising the errors the method raises for bad
 *          input, before anything is sent) and COPIES what run needs into
 *          `op` (a zeroed struct of `size` bytes): rs_lua_op_copy and
 *          rs_lua_op_alloc give memory freed with the op. Never keeps a
 *          pointer into a Lua value.
 *   run:   any thread, never Lua: the core's blocking calls; returns what
 *          they return (< 0: failed, `err` set).
 *   push:  Lua thread, after run returned rc >= 0: pushes the results and
 *          returns their count (or raises, as the method would). `store`
 *          is NULL when it was closed while the op ran as a job.
 *   fail:  optional; Lua thread, run failed: adds fields to the error
 *          object at the top before it is raised (save_many's written).
 *   free:  optional; any thread: frees what run left in `op` (core
 *          results); the copies go with the op by themselves. */
typedef struct rs_lua_op {
    const char *name;
    size_t size;
    int nargs;
    void (*parse)(lua_State *L, void *op);
    int (*run)(rs_store *store, void *op, rs_error *err);
    int (*push)(lua_State *L, rs_store *store, void *op, int rc);
    void (*fail)(lua_State *L, void *op);
    void (*free)(void *op);
} rs_lua_op;

/* An op that starts as a job the workers know (rs_job_start_get_raw,
 * which they may coalesce) instead of `run` as an opaque fn: start gives
 * the same outcome as run; `owner` is the job's arg (what an abandoned
 * job frees). */
typedef struct rs_lua_op_job {
    const rs_lua_op *op;
    rs_job *(*start)(rs_store *store, rs_job_group *group, void *op, void *owner,
                     rs_error *err);
} rs_lua_op_job;
/* Registers them (a NULL op ends the list) for store:start and group:start. */
void rs_lua_add_op_jobs(lua_State *L, const rs_lua_op_job *jobs);

/* Adds the operations of `ops` (NULL-terminated) to the store method
 * table at the top of the stack, as blocking methods, and makes them
 * startable as jobs by name. */
void rs_lua_add_ops(lua_State *L, const rs_lua_op *const ops[]);
/* Makes store:start(name, ...) call `start` (store at 1, the arguments
 * from 2) for something that is not a single job (a walk by batch). */
void rs_lua_add_starter(lua_State *L, const char *name, lua_CFunction start);
/* Memory owned by the op (freed with it); raises on failure. */
void *rs_lua_op_alloc(lua_State *L, void *op, size_t size);
/* A NUL-terminated copy of len bytes owned by the op. */
char *rs_lua_op_copy(lua_State *L, void *op, const char *bytes, size_t len);
/* Pushes an owner of a new op of `desc` (for rs_lua_op_start) and returns
 * the op, zeroed, to be filled by the caller instead of desc->parse. */
void *rs_lua_op_new(lua_State *L, const rs_lua_op *desc);
/* Starts the op whose owner is at the top as a job of the store at
 * `store` and replaces the owner by the job; `anchor` (an index, or 0)
 * is a value the job keeps alive until it is done or waited for. */
void rs_lua_op_start(lua_State *L, int store, int anchor);
/* store:start and the job metatable (a rs_lua_add_methods_fn). */
void rs_lua_add_op_methods(lua_State *L);

/* ---- one-token operations, walks, batches, jobs, reports
 * (rs_token_lua.c, rs_walk_lua.c, rs_batch_lua.c, rs_job_lua.c,
 * rs_server_lua.c): their parts of the store methods ---- */

void rs_lua_add_token_methods(lua_State *L);
void rs_lua_add_walk_methods(lua_State *L);
void rs_lua_add_batch_methods(lua_State *L);
void rs_lua_add_job_methods(lua_State *L);
void rs_lua_add_server_methods(lua_State *L);

/* The values of a batch (get_many, a job's read_back) in a userdata whose
 * __gc frees the bytes the core malloc'd: `n` is set once they are filled
 * (and back to 0 once freed), so a memory error while they are copied
 * leaks nothing. */
typedef struct rs_lua_values {
    size_t n;
    rs_value values[];
} rs_lua_values;
/* Pushes an empty values box with room for `n` values. */
rs_lua_values *rs_lua_push_values_box(lua_State *L, size_t n);
/* Pushes the box's values as a Lua array: bytes, or false when absent. */
void rs_lua_push_values(lua_State *L, const rs_lua_values *box);
/* Pushes save_many's answer: an array of booleans. */
void rs_lua_push_written(lua_State *L, const int *written, size_t n);
/* The items of a save_many batch at index 2, in scratch memory owned by
 * the Lua stack; their strings are anchored in a table pushed before it.
 * Options at index 3: nx, and read_back when `read_back` is not NULL. */
size_t rs_lua_check_save_items(lua_State *L, const char *what, rs_save_item **out, int *flags,
                               int *read_back);

/* ---- logging (rs_log_lua.c) ---- */

/* Hands the log lines queued for this state's handler to it (a no-op
 * when none wait or another state set the handler). Call only where
 * running Lua code is safe. */
void rs_lua_log_drain(lua_State *L);
/* The log handler of every store the module opens (rs_lua_store_open). */
void rs_lua_log_hook(rs_log_level level, const char *message, void *userdata);
/* The handler the lines go to while no Lua handler is set (and where a
 * failing Lua handler is reported): the host's formatter; none = dropped.
 * Set before any Lua state runs. */
void rs_lua_set_log_default(rs_log_fn fn, void *userdata);
/* Puts set_log_handler, set_log_level, log_level and flush_log into the
 * library table at the top of the stack. */
void rs_lua_open_log(lua_State *L);

/* ---- locks (rs_lock_lua.c) ---- */

/* Adds the lock methods to the store method table at the top of the
 * stack, and registers the lease metatable (a rs_lua_add_methods_fn). */
void rs_lua_add_lock_methods(lua_State *L);
/* Puts rs.owner_id into the library table at the top of the stack. */
void rs_lua_open_lock(lua_State *L);

/* ---- stream keys (rs_stream_lua.c) ---- */

/* Puts stream_key, stream_mirror_key and parse_stream_key into the library
 * table at the top of the stack. */
void rs_lua_open_stream(lua_State *L);

/* rs_rows_lua.c: the rows of list --format json[l] and of export, in C.
 * rs_rows_list appends one list row ("\n" ended when `newline`) and returns 1 when the
 * value is not valid BSON; mirror_of: stack index of the names a mirror
 * key mirrors, or 0. rs_rows_export appends one export line ("\n" ended),
 * or returns 1 with *why (the value is skipped). A failed allocation sets
 * oom (the buffer is then to be dropped). Registers rs.list_row and
 * rs.export_line on the table at the top. */
typedef struct rs_rowbuf {
    char *data;
    size_t len, cap;
    int oom;
} rs_rowbuf;
int rs_rows_list(lua_State *L, rs_rowbuf *b, const rs_scan_entry *e, double now, int mirror_of,
                 int newline);
int rs_rows_export(rs_rowbuf *b, const rs_scan_entry *e, rs_error *why);
void rs_rowbuf_free(rs_rowbuf *b);
void rs_lua_open_rows(lua_State *L);

/* ---- config (rs_module.c) ---- */

/* Pushes the text of option `name` of `cfg` (rs_config_get: secrets
 * masked), whole whatever its length. */
void rs_lua_push_config_value(lua_State *L, const rs_config *cfg, const char *name);

#endif /* RS_LUA_H */
