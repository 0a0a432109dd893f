/* SPDX-License-Identifier: MIT */
/* fuzz_ini.c -- libFuzzer target: the host's INI loading (lua/host_conf.c).
 *
 * The input is written to a memfd and read by host_conf_load through
 * /proc/self/fd/N, exactly as a config file on disk. A few environment
 * variables are set once so that ${VAR} and ${VAR:-default} expand.
 * Checked: no memory error or leak; an error message is one terminated
 * line; a loaded config prints and masks without leaking a password that
 * was given literally in the file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("REDIS_URL", "redis://fuzz:EnvSecret-42@127.0.0.1:6390/1", 1);
    setenv("EMPTY", "", 1);
    setenv("POOL", "7", 1);
    devnull = fopen("/dev/null", "w");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_ini", 0);
    if (fd < 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) abort();
        off += (size_t)n;
    }
    char path[64], msg[1024];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

    host_conf *hc = host_conf_new();
    if (!hc) abort();
    memset(msg, 0x5a, sizeof msg);
    int rc = host_conf_load(hc, path, msg, sizeof msg);
    if (rc < 0) {
        if (!memchr(msg, '\0', sizeof msg)) abort();
        if (strncmp(msg, path, strlen(path)) != 0) {
            fprintf(stderr, "error without file name: %s\n", msg);
            abort();
        }
        if (strstr(msg, "EnvSecret-42") && !memmem(data, size, "EnvSecret-42", 12)) {
            fprintf(stderr, "error shows an environment password: %s\n", msg);
            abort();
        }
    } else {
        char fmsg[512];
        if (host_conf_finish(hc, fmsg, sizeof fmsg) == 0) {
            host_conf_print(hc, devnull);
            /* Whatever secret the conf knows is masked in text that holds it. */
            for (int i = 0; i < hc->nsecrets; i++) {
                if (strlen(hc->secrets[i]) < 3 || strchr(hc->secrets[i], '*')) continue;
                char text[600], masked[1300];
                snprintf(text, sizeof text, "x %s y", hc->secrets[i]);
                host_conf_mask(hc, text, masked, sizeof masked);
                if (strstr(masked, hc->secrets[i])) {
                    fprintf(stderr, "secret not masked: %s\n", masked);
                    abort();
                }
            }
            char url[2048];
            rs_config_get(hc->cfg, "url", url, sizeof url);
            if (strstr(url, "EnvSecret-42") && !memmem(data, size, "EnvSecret-42", 12)) {
                fprintf(stderr, "config shows the password: %s\n", url);
                abort();
            }
            host_conf *copy = host_conf_copy(hc);
            host_conf_free(copy);
        }
    }
    /* The masker over the raw input text, too (any bytes, cut at NUL). */
    char *text = strndup((const char *)data, size);
    if (text) {
        char out[256];
        host_conf_mask(hc, text, out, sizeof out);
        free(text);
    }
    host_conf_free(hc);
    close(fd);
    return 0;
}
