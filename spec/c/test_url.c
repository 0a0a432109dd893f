/* SPDX-License-Identifier: MIT */
/* test_url.c -- URL parsing and masking, config options and errors. */
#include "config.h"
#include "test_support.h"

#include <math.h>

static void parses(const char *url, int tls, const char *user, const char *pass,
                   const char *host, int port, int db, size_t nhosts)
{
    rs_url u;
    rs_error err = {0};
    int rc = rs_url_parse(url, &u, &err);
    CHECK(rc == 0);
    if (rc < 0) {
        fprintf(stderr, "  %s: %s\n", url, err.message);
        return;
    }
    CHECK(u.tls == tls);
    CHECK((user == NULL) == (u.username == NULL));
    if (user && u.username) CHECK_STR(u.username, user);
    CHECK((pass == NULL) == (u.password == NULL));
    if (pass && u.password) CHECK_STR(u.password, pass);
    CHECK_STR(u.hosts[0].host, host);
    CHECK(u.hosts[0].port == port);
    CHECK(u.db == db);
    CHECK(u.nhosts == nhosts);
    rs_url_free(&u);
}

static void refuses(const char *url, const char *secret)
{
    rs_url u;
    rs_error err = {0};
    CHECK(rs_url_parse(url, &u, &err) == -1);
    CHECK(err.kind == RS_ERR_CONFIG);
    CHECK(err.message[0] != '\0');
    if (secret) CHECK(strstr(err.message, secret) == NULL);
}

static void masks(const char *url, const char *expected)
{
    char buf[256];
    rs_mask_url(url, buf, sizeof buf);
    CHECK_STR(buf, expected);
}

int main(void)
{
    parses("redis://127.0.0.1:6379", 0, NULL, NULL, "127.0.0.1", 6379, 0, 1);
    parses("redis://localhost", 0, NULL, NULL, "localhost", 6379, 0, 1);
    parses("redis://:secret@h", 0, NULL, "secret", "h", 6379, 0, 1);
    parses("redis://:@h", 0, NULL, NULL, "h", 6379, 0, 1);
    parses("redis://user:pa%40ss%3A@h:7000/3", 0, "user", "pa@ss:", "h", 7000, 3, 1);
    parses("redis://u:p@ss/w@rd@h:1/", 0, "u", "p@ss/w@rd", "h", 1, 0, 1);
    parses("rediss://h:6380", 1, NULL, NULL, "h", 6380, 0, 1);
    parses("redis://[::1]:6380", 0, NULL, NULL, "::1", 6380, 0, 1);
    parses("redis://[::1]", 0, NULL, NULL, "::1", 6379, 0, 1);
    parses("redis://s1:26379,s2:26380,s3", 0, NULL, NULL, "s1", 26379, 0, 3);

    refuses("", NULL);
    refuses("http://h", NULL);
    refuses("redis://", NULL);
    refuses("redis://h:0", NULL);
    refuses("redis://h:99999", NULL);
    refuses("redis://h:abc", NULL);
    refuses("redis://h/notanumber", NULL);
    refuses("redis://u:s3cr%zzet@h", "s3cr");
    refuses("redis://u:topsecret@h:port", "topsecret");
    refuses("redis://u:topsecret@[::1", "topsecret");
    refuses("redis://h,", NULL);
    refuses("redis://h?db=1", NULL);
    refuses("redis://h o", NULL);

    masks("redis://user:pass@h:6379", "redis://***:***@h:6379");
    masks("redis://:pass@h", "redis://:***@h");
    masks("redis://user@h/2", "redis://***@h/2");
    masks("rediss://u:p%40w@[::1]:6380/1", "rediss://***:***@[::1]:6380/1");
    masks("redis://h:6379", "redis://h:6379");
    masks("redis://us er:p@ss@@@", "redis://***");
    masks("garbage with secret", "***");

    char buf[64];
    rs_mask_secret("AUTH hunter2 hunter2x", "hunter2", buf, sizeof buf);
    CHECK_STR(buf, "AUTH *** ***x");

    /* Config: defaults, text setters, errors that name the option. */
    rs_config *cfg = rs_config_new();
    rs_error err = {0};
    CHECK(rs_config_validate(cfg, &err) == -1 && err.kind == RS_ERR_CONFIG);
    CHECK(strstr(err.message, "url") != NULL);
    rs_config_get(cfg, "pool_size", buf, sizeof buf);
    CHECK_STR(buf, "10");
    rs_config_get(cfg, "ttl", buf, sizeof buf);
    CHECK_STR(buf, "none");
    rs_config_get(cfg, "max_retries", buf, sizeof buf);
    CHECK_STR(buf, "3");
    rs_config_get(cfg, "connection_timeout", buf, sizeof buf);
    CHECK_STR(buf, "5s");
    rs_config_get(cfg, "cluster_mode", buf, sizeof buf);
    CHECK_STR(buf, "false");
    CHECK(rs_config_set(cfg, "ttl", "7d", &err) == 0);
    rs_config_get(cfg, "ttl", buf, sizeof buf);
    CHECK_STR(buf, "7d");
    CHECK(rs_config_set(cfg, "ttl", "none", &err) == 0);
    rs_config_get(cfg, "ttl", buf, sizeof buf);
    CHECK_STR(buf, "none");
    CHECK(rs_config_set(cfg, "connection_timeout", "500ms", &err) == 0);
    rs_config_get(cfg, "connection_timeout", buf, sizeof buf);
    CHECK_STR(buf, "500ms");
    CHECK(rs_config_set(cfg, "pool_size", "0", &err) == -1 && err.kind == RS_ERR_CONFIG);
    CHECK(strstr(err.message, "pool_size") != NULL);
    CHECK(rs_config_set(cfg, "ttl", "-5", &err) == -1 && strstr(err.message, "ttl"));
    CHECK(rs_config_set(cfg, "ttl", "5 weeks", &err) == -1);
    CHECK(rs_config_set(cfg, "cluster_mode", "maybe", &err) == -1);
    CHECK(rs_config_set(cfg, "no_such_option", "1", &err) == -1 &&
          strstr(err.message, "no_such_option"));
    CHECK(rs_config_set(cfg, "url", "redis://u:hunter2@h:1", &err) == 0);
    rs_config_get(cfg, "url", buf, sizeof buf);
    CHECK_STR(buf, "redis://***:***@h:1");
    CHECK(rs_config_set(cfg, "url", "redis://u:hunter3@h:bad", &err) == -1);
    CHECK(strstr(err.message, "hunter3") == NULL);
    rs_config_get(cfg, "url", buf, sizeof buf);          /* unchanged on error */
    CHECK_STR(buf, "redis://***:***@h:1");
    char line[1024];
    rs_config_describe(cfg, line, sizeof line);
    CHECK(strstr(line, "hunter2") == NULL && strstr(line, "***") != NULL);
    /* password_file: the first line of the file; shown as its path only. */
    char path[] = "/tmp/rs-pwfile-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "file-secret-1\nignored\n", 22) == 22);
    close(fd);
    CHECK(rs_config_set(cfg, "password_file", path, &err) == 0);
    CHECK_STR(rs_config_password(cfg), "file-secret-1");
    rs_config_get(cfg, "password", buf, sizeof buf);
    CHECK_STR(buf, "***");
    rs_config_get(cfg, "password_file", buf, sizeof buf);
    CHECK_STR(buf, path);
    unlink(path);
    CHECK(rs_config_set(cfg, "password_file", path, &err) == -1 && strstr(err.message, path));
    CHECK_STR(rs_config_password(cfg), "file-secret-1");          /* unchanged on error */
    rs_config_free(cfg);

    double s;
    int none;
    CHECK(rs_parse_duration("1.5", &s, NULL) == 0 && s == 1.5);
    CHECK(rs_parse_duration("15m", &s, NULL) == 0 && s == 900);
    CHECK(rs_parse_duration("12h", &s, NULL) == 0 && s == 43200);
    CHECK(rs_parse_duration("none", &s, NULL) == -1);
    CHECK(rs_parse_duration("none", &s, &none) == 0 && none == 1);
    CHECK(rs_parse_duration("", &s, NULL) == -1);
    /* one grammar: compound terms, weeks and microseconds; nothing of strtod's */
    CHECK(rs_parse_duration("1h30m", &s, NULL) == 0 && s == 5400);
    CHECK(rs_parse_duration("2w", &s, NULL) == 0 && s == 1209600);
    CHECK(rs_parse_duration(" 500us ", &s, NULL) == 0 && fabs(s - 5e-4) < 1e-12);
    CHECK(rs_parse_duration("1d2h3m4s5ms", &s, NULL) == 0 && fabs(s - 93784.005) < 1e-9);
    CHECK(rs_parse_duration(".5s", &s, NULL) == 0 && s == 0.5);
    const char *bad[] = {"1e3", "-5", "0x10", "inf", "nan", "5 s", "s", "5x", "1h30", "1.", ".", "5mss"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(rs_parse_duration(bad[i], &s, NULL) == -1);
    /* printed back in the same grammar, and read back to the same value */
    const double back[] = {0, 5e-5, 0.001, 0.5, 1.5, 30, 90, 5400, 86400, 1209600, 0.1, 3.25};
    const char *text[] = {"0s", "50us", "1ms", "500ms", "1500ms", "30s", "90s", "90m", "1d", "14d",
                          "100ms", "3250ms"};
    for (size_t i = 0; i < sizeof back / sizeof back[0]; i++) {
        char b[64];
        rs_format_duration(back[i], b, sizeof b);
        CHECK_STR(b, text[i]);
        CHECK(rs_parse_duration(b, &s, NULL) == 0 && fabs(s - back[i]) < 1e-9);
    }
    return t_report("test_url");
}
