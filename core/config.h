/* SPDX-License-Identifier: MIT */
/* config.h -- the fields of rs_config (config.c parses and checks them),
 * read by the files that act on an option.
 */
#ifndef RS_CONFIG_H
#define RS_CONFIG_H

#include "rigatoni_store.h"

struct rs_config {
    char *url;               /* as given; never printed unmasked */
    rs_url parsed;           /* valid when url != NULL */
    int pool_size;
    double ttl;              /* seconds; 0 = none */
    int max_retries;
    double connection_timeout;
    double command_timeout;
    double retry_base_delay;
    double retry_max_delay;
    double idle_check_after;
    double spin_wait;        /* seconds; 0 = never spin (exec.c) */
    int cluster_mode;
    char *key_prefix;
    char *lock_prefix;
    int scan_count;
    int workers;             /* worker threads for jobs (jobs.c) */
    char *sentinel_master;
    char *sentinel_username;
    char *sentinel_password;
    char *sentinel_password_file;
    char *password;          /* overrides the URL's password */
    char *password_file;
    int wait_replicas;
    double wait_timeout;
    int wait_policy_warn;    /* wait_policy = warn (default error) */
    char *tls_ca_file, *tls_ca_path, *tls_cert_file, *tls_key_file;
    char *tls_server_name;
    int tls_verify;
    rs_log_fn log_fn;        /* rs_config_set_log_handler; NULL = silent */
    void *log_data;
    /* Not an option: a lease refresh's private pool (lock.c) sets it so that
     * every step of a new connection, and of a Sentinel discovery, ends by
     * then (rs_now seconds; 0 = none; conn.c, sentinel.c). */
    double deadline;
};

/* Below a few ms the cut timeouts would round to nothing: no step starts
 * with less left before a deadline. */
#define RS_DEADLINE_MIN_LEFT 0.004

/* The data nodes' password: the `password` option, else the URL's. */
const char *rs_config_password(const rs_config *cfg);

#endif /* RS_CONFIG_H */
