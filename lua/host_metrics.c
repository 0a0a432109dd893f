/* SPDX-License-Identifier: MIT */
/* host_metrics.c -- `--metrics FILE|-`: the store's metrics when the script ends.
 *
 * Written after the script returned or failed (a failed run's retries and
 * errors are what an operator most wants to see), before the Lua state
 * closes the store. Only the script's `store` is reported, and only when
 * the script opened it (it is lazy) and did not close it; otherwise the
 * output is a single comment line, which Prometheus parsers accept. The
 * text itself comes from the core (rs_metrics_prometheus).
 */
#include <errno.h>
#include <string.h>

#include <lauxlib.h>

#include "host.h"
#include "rs_lua.h"

int host_metrics_write(lua_State *L, const char *path, const host_conf *hc)
{
    /* rawget: reading `store` through _G would open it just for this. */
    lua_pushglobaltable(L);
    lua_pushliteral(L, "store");
    lua_rawget(L, -2);
    rs_store *store = rs_lua_test_store(L, -1);
    lua_pop(L, 2);

    char *text = NULL;
    if (store) {
        rs_metrics_snapshot snapshot;
        rs_store_metrics(store, &snapshot);
        if (!(text = rs_metrics_prometheus(&snapshot))) {
            fprintf(stderr, "rigatoni-store: --metrics: out of memory\n");
            return -1;
        }
    }
    const char *body = text ? text : "# rigatoni_store: the script left no open store\n";
    int to_stdout = strcmp(path, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(path, "w");
    int ok = out != NULL;
    if (ok) {
        ok = fputs(body, out) >= 0;
        ok = (to_stdout ? fflush(out) : fclose(out)) == 0 && ok;
    }
    if (!ok) {
        char masked[1200];
        host_conf_mask(hc, path, masked, sizeof masked);
        fprintf(stderr, "rigatoni-store: --metrics %s: %s\n", masked, strerror(errno));
    }
    rs_free(text);
    return ok ? 0 : -1;
}
