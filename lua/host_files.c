/* host_files.c -- the files a script writes: temporary files that never
 * outlive the run, and what an output path really is.
 *
 * Lua's io cannot make a file with a name nobody else can guess (os.tmpname
 * ignores $TMPDIR and the name is chosen before the file is opened), nor
 * tell a FIFO from a regular file. So the host gives the scripts:
 *
 *   host.temp_file(dir [, mode [, name [, uid, gid]]]) -> file, path
 *                                      mkstemp(3): dir/name.XXXXXX (name:
 *                                      rigatoni-store), chmod mode (default
 *                                      0666 & ~umask), chown uid:gid when
 *                                      allowed (as sed -i: the file it will
 *                                      replace keeps its owner when root
 *                                      writes it); nil, msg when it cannot
 *   host.commit_temp(tmp, path) -> true | nil, msg   rename(2) into place
 *   host.remove_temp(tmp)                        unlink it now
 *   host.file_info(path) -> {type=, mode=, uid=, gid=, target=, stdio=} | nil, msg
 *   host.same_terminal() -> bool                 stdout and stderr: one tty
 *
 * Every temporary file is registered in a fixed table until it is
 * committed or removed; host_files_cleanup() unlinks what is left. The
 * host calls it when the script ends (an error, SIGINT/SIGTERM), and it is
 * safe in a signal handler: a slot's path is complete before the slot is
 * marked live, and unlink(2) is async-signal-safe.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "host.h"

/* ---------------------------------------------------------------------
 * The table of live temporary files
 * ------------------------------------------------------------------ */

#define MAX_TEMPS 16

static struct temp_slot {
    volatile sig_atomic_t live;
    char path[PATH_MAX];
} temps[MAX_TEMPS];

static struct temp_slot *find_temp(const char *path)
{
    for (int i = 0; i < MAX_TEMPS; i++)
        if (temps[i].live && strcmp(temps[i].path, path) == 0) return &temps[i];
    return NULL;
}

void host_files_cleanup(void)
{
    for (int i = 0; i < MAX_TEMPS; i++) {
        if (!temps[i].live) continue;
        unlink(temps[i].path);
        temps[i].live = 0;
    }
}

/* ---------------------------------------------------------------------
 * Temporary files
 * ------------------------------------------------------------------ */

static int close_stream(lua_State *L)
{
    luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
    int ok = fclose(p->f) == 0;
    return luaL_fileresult(L, ok, NULL);
}

static mode_t default_mode(void)
{
    mode_t mask = umask(077);   /* read it: umask has no getter */
    umask(mask);
    return 0666 & ~mask;
}

static int host_temp_file(lua_State *L)
{
    size_t dlen;
    const char *dir = luaL_checklstring(L, 1, &dlen);
    const char *name = luaL_optstring(L, 3, "rigatoni-store");
    mode_t mode = lua_isnoneornil(L, 2) ? default_mode() : (mode_t)(luaL_checkinteger(L, 2) & 07777);
    int chown_to = !lua_isnoneornil(L, 4);
    uid_t uid = chown_to ? (uid_t)luaL_checkinteger(L, 4) : 0;
    gid_t gid = chown_to ? (gid_t)luaL_checkinteger(L, 5) : 0;
    struct temp_slot *slot = NULL;
    for (int i = 0; i < MAX_TEMPS && !slot; i++)
        if (!temps[i].live) slot = &temps[i];
    if (!slot) return luaL_error(L, "too many temporary files at once (%d)", MAX_TEMPS);
    /* The Lua handle exists (closed) before the file does: an error in
     * between leaves nothing open. */
    luaL_Stream *p = (luaL_Stream *)lua_newuserdatauv(L, sizeof(luaL_Stream), 0);
    p->closef = NULL;
    p->f = NULL;
    luaL_setmetatable(L, LUA_FILEHANDLE);
    int n = snprintf(slot->path, sizeof slot->path, "%s/%s.XXXXXX", dlen ? dir : ".", name);
    if (n < 0 || (size_t)n >= sizeof slot->path) return luaL_error(L, "temporary file name too long");
    int fd = mkstemp(slot->path);
    if (fd < 0) {
        int e = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "cannot create a temporary file in %s: %s", dlen ? dir : ".", strerror(e));
        return 2;
    }
    slot->live = 1;
    /* Not allowed (not root): the file becomes ours, as with sed -i. The
     * mode comes after: a chown clears the set-id bits. */
    if (chown_to && (uid != geteuid() || gid != getegid())) (void)!fchown(fd, uid, gid);
    if (fchmod(fd, mode) < 0 || !(p->f = fdopen(fd, "w+b"))) {
        int e = errno;
        close(fd);
        unlink(slot->path);
        slot->live = 0;
        lua_pushnil(L);
        lua_pushfstring(L, "cannot set up a temporary file in %s: %s", dlen ? dir : ".", strerror(e));
        return 2;
    }
    p->closef = close_stream;
    lua_pushstring(L, slot->path);
    return 2;
}

static int host_commit_temp(lua_State *L)
{
    const char *tmp = luaL_checkstring(L, 1);
    const char *path = luaL_checkstring(L, 2);
    struct temp_slot *slot = find_temp(tmp);
    luaL_argcheck(L, slot != NULL, 1, "not a live temporary file of host.temp_file");
    if (rename(tmp, path) < 0) {
        int e = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "cannot rename %s to %s: %s", tmp, path, strerror(e));
        return 2;
    }
    slot->live = 0;
    lua_pushboolean(L, 1);
    return 1;
}

static int host_remove_temp(lua_State *L)
{
    struct temp_slot *slot = find_temp(luaL_checkstring(L, 1));
    if (slot) {
        unlink(slot->path);     /* first: a signal in between still finds it live */
        slot->live = 0;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * What a path is
 * ------------------------------------------------------------------ */

/* Follows the symlinks of `path` by hand into `out` (the file a write
 * would reach, existing or not). 0, or -1 with errno. */
static int follow_links(const char *path, char *out, size_t size)
{
    char cur[PATH_MAX], link[PATH_MAX];
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur) return errno = ENAMETOOLONG, -1;
    for (int hops = 0; hops < 40; hops++) {
        struct stat st;
        if (lstat(cur, &st) < 0) {
            if (errno != ENOENT) return -1;
            break;                             /* a file to create */
        }
        if (!S_ISLNK(st.st_mode)) break;
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) return -1;
        link[n] = '\0';
        if (link[0] == '/') {
            memcpy(cur, link, (size_t)n + 1);
        } else {
            char *slash = strrchr(cur, '/');
            size_t keep = slash ? (size_t)(slash - cur) + 1 : 0;
            if (keep + (size_t)n + 1 > sizeof cur) return errno = ENAMETOOLONG, -1;
            memcpy(cur + keep, link, (size_t)n + 1);
        }
        if (hops == 39) return errno = ELOOP, -1;
    }
    if (snprintf(out, size, "%s", cur) >= (int)size) return errno = ENAMETOOLONG, -1;
    return 0;
}

static const char *type_name(mode_t m)
{
    if (S_ISREG(m)) return "regular";
    if (S_ISDIR(m)) return "directory";
    if (S_ISFIFO(m)) return "fifo";
    if (S_ISCHR(m)) return "char";
    if (S_ISBLK(m)) return "block";
    if (S_ISSOCK(m)) return "socket";
    return "other";
}

static int same_file(const struct stat *a, int fd)
{
    struct stat b;
    return fstat(fd, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* host.file_info(path): type (regular, missing, directory, fifo, char,
 * block, socket, other), mode (permission bits), target (the path a
 * rename must replace: symlinks followed) and stdio ("stdout", "stderr"
 * when path is that open file, e.g. /dev/stdout or /dev/fd/1). A path
 * whose symlinks cannot be followed by name (/proc/self/fd/N of a pipe)
 * has no target. nil and a message when it cannot be looked at. */
static int host_file_info(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (!exists && errno != ENOENT) {
        int e = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(e));
        return 2;
    }
    lua_createtable(L, 0, 6);
    lua_pushstring(L, exists ? type_name(st.st_mode) : "missing");
    lua_setfield(L, -2, "type");
    if (exists) {
        lua_pushinteger(L, st.st_mode & 07777);
        lua_setfield(L, -2, "mode");
        lua_pushinteger(L, (lua_Integer)st.st_uid);
        lua_setfield(L, -2, "uid");
        lua_pushinteger(L, (lua_Integer)st.st_gid);
        lua_setfield(L, -2, "gid");
        if (same_file(&st, 1)) lua_pushliteral(L, "stdout");
        else if (same_file(&st, 2)) lua_pushliteral(L, "stderr");
        else lua_pushnil(L);
        lua_setfield(L, -2, "stdio");
    }
    char target[PATH_MAX];
    if (follow_links(path, target, sizeof target) == 0) {
        struct stat tst;
        int texists = stat(target, &tst) == 0;
        /* The name must lead to the same file (magic links do not). */
        if (exists ? texists && tst.st_dev == st.st_dev && tst.st_ino == st.st_ino : !texists) {
            lua_pushstring(L, target);
            lua_setfield(L, -2, "target");
        }
    }
    return 1;
}

/* host.same_terminal(): stdout and stderr are the same terminal, so a
 * progress line on stderr would land among the data rows. */
static int host_same_terminal(lua_State *L)
{
    struct stat a, b;
    lua_pushboolean(L, isatty(1) && isatty(2) && fstat(1, &a) == 0 && fstat(2, &b) == 0 &&
                           a.st_rdev == b.st_rdev);
    return 1;
}

static const luaL_Reg file_funcs[] = {
    {"temp_file", host_temp_file},
    {"commit_temp", host_commit_temp},
    {"remove_temp", host_remove_temp},
    {"file_info", host_file_info},
    {"same_terminal", host_same_terminal},
    {NULL, NULL},
};

void host_files_register(lua_State *L)
{
    lua_getglobal(L, "host");
    luaL_setfuncs(L, file_funcs, 0);
    lua_pop(L, 1);
}
