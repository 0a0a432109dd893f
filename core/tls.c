/* SPDX-License-Identifier: MIT */
/* tls.c -- TLS for rediss:// connections, on OpenSSL through hiredis_ssl.
 *
 * We build the SSL_CTX ourselves (rather than hiredis' redisSSLContext) to
 * check the server's host name or IP address against its certificate, not
 * only the chain: hiredis sets SNI but does not verify the name. One
 * SSL_CTX per store is shared by all its connections (OpenSSL allows
 * SSL_new from many threads on one context). Handshake failures say why:
 * the verify result names an unknown CA, an expired or mismatched
 * certificate; a plain-text server shows up as a protocol error or timeout.
 * Certificate, name and protocol failures are final; a handshake cut by
 * the socket (reset, EOF, timeout: a server restarting) is retryable.
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis_ssl.h>
/* hiredict's compatibility shim (Debian 12) maps redisInitiateSSL to
 * redictInitiateSSL without declaring it; gcc hides that, clang does not. */
#if defined(redisInitiateSSL) && defined(__has_include)
#if __has_include(<hiredict/hiredict_ssl.h>)
#include <hiredis/hiredis.h>
#include <hiredict/hiredict_ssl.h>
#endif
#endif

#include "tls.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "nosigpipe.h"

struct rs_tls {
    SSL_CTX *ctx;
    int verify;
    char *server_name;       /* SNI and name to verify; NULL = the URL host */
    const rs_config *log_cfg;  /* where its warnings go: the store's config */
};

static void openssl_error(rs_error *err, const char *what, const char *file)
{
    char detail[256] = "unknown error";
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    rs_error_set(err, RS_ERR_CONFIG, 0, "TLS: cannot load %s%s%s: %s", what, file ? " " : "",
                 file ? file : "", detail);
}

rs_tls *rs_tls_new(const rs_config *cfg, rs_error *err)
{
    rs_tls *tls = calloc(1, sizeof *tls);
    if (!tls || !(tls->ctx = SSL_CTX_new(TLS_client_method()))) {
        free(tls);
        rs_error_set(err, RS_ERR_NOMEM, 0, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION);
    tls->verify = cfg->tls_verify;
    tls->log_cfg = cfg;
    if (cfg->tls_server_name && !(tls->server_name = strdup(cfg->tls_server_name))) goto nomem;

    if (cfg->tls_ca_file || cfg->tls_ca_path) {
        if (SSL_CTX_load_verify_locations(tls->ctx, cfg->tls_ca_file, cfg->tls_ca_path) != 1) {
            openssl_error(err, "CA certificates from",
                          cfg->tls_ca_file ? cfg->tls_ca_file : cfg->tls_ca_path);
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(tls->ctx) != 1) {
        openssl_error(err, "the system trust store", NULL);
        goto fail;
    }
    if (!cfg->tls_cert_file != !cfg->tls_key_file) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "TLS: cert_file and key_file go together");
        goto fail;
    }
    if (cfg->tls_cert_file) {
        if (SSL_CTX_use_certificate_chain_file(tls->ctx, cfg->tls_cert_file) != 1) {
            openssl_error(err, "client certificate", cfg->tls_cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(tls->ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
            openssl_error(err, "client key", cfg->tls_key_file);
            goto fail;
        }
    }
    SSL_CTX_set_verify(tls->ctx, tls->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return tls;
nomem:
    rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
fail:
    rs_tls_free(tls);
    return NULL;
}

void rs_tls_free(rs_tls *tls)
{
    if (!tls) return;
    SSL_CTX_free(tls->ctx);
    free(tls->server_name);
    free(tls);
}

/* Asks OpenSSL to check the peer's name: an IP literal against the
 * certificate's IP entries, anything else against its DNS names. */
static int expect_peer_name(SSL *ssl, const char *name)
{
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    unsigned char addr[16];
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(param, name);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return X509_VERIFY_PARAM_set1_host(param, name, 0) && SSL_set_tlsext_host_name(ssl, name);
}

/* OpenSSL 3 reports a peer closing mid-handshake as an error of its own,
 * not as a socket error. */
static int peer_went_away(unsigned long e)
{
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
#else
    (void)e;
    return 0;
#endif
}

int rs_tls_handshake(rs_tls *tls, redisContext *ctx, const char *host, int port, rs_error *err)
{
    const char *name = tls->server_name ? tls->server_name : host;
    SSL *ssl = SSL_new(tls->ctx);
    if (!ssl) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "TLS: cannot create a session");
        return -1;
    }
    if (tls->verify) {
        if (!expect_peer_name(ssl, name)) {
            SSL_free(ssl);
            rs_error_set(err, RS_ERR_CONFIG, 0, "TLS: cannot use server name '%.200s'", name);
            return -1;
        }
    } else {
        rs_log(tls->log_cfg, RS_LOG_WARN, "TLS verification is off (tls.verify = false) for %s:%d: "
               "the server is not authenticated", host, port);
    }
    ERR_clear_error();
    rs_sigpipe_guard guard;          /* the handshake writes too */
    rs_sigpipe_block(&guard);
    int rc = redisInitiateSSL(ctx, ssl);
    rs_sigpipe_unblock(&guard);
    if (rc == REDIS_OK) return 0;    /* ctx owns ssl now */

    long verify = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    if (tls->verify && verify != X509_V_OK) {
        rs_error_set(err, RS_ERR_CONNECTION, 0,
                     "TLS handshake with %s:%d failed: certificate verify failed: %s", host, port,
                     X509_verify_cert_error_string(verify));
    } else if (!e || peer_went_away(e)) {
        /* No TLS verdict, only the socket failing (reset, EOF, timeout):
         * a server restarting or overloaded, worth another attempt. */
        rs_error_set(err, RS_ERR_CONNECTION, 1,
                     "TLS handshake with %s:%d failed: %s (is it a TLS port?)", host, port,
                     ctx->errstr[0] ? ctx->errstr : "connection lost");
    } else {
        /* The peer spoke and TLS refused it (wrong version, alert, no
         * shared cipher): the same next time. */
        char detail[256];
        ERR_error_string_n(e, detail, sizeof detail);
        rs_error_set(err, RS_ERR_CONNECTION, 0,
                     "TLS handshake with %s:%d failed: %s (is it a TLS port?)", host, port, detail);
    }
    SSL_free(ssl);
    ERR_clear_error();
    return -1;
}
