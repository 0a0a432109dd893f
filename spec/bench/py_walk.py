# SPDX-License-Identifier: MIT
# spec/bench/py_walk.py -- the walk an operator would script with redis-py,
# shared by the baselines of spec/bench/bulk_bench.sh: SCAN MATCH
# <prefix>:resume_token:* COUNT n, then per batch one pipeline of MGET and
# a PTTL per key (one round trip; with_ttl=False: the MGET alone). Run with
# /usr/bin/python3 (Debian's python3-redis and python3-pymongo, `make
# bench-deps`).
import sys

import redis


def connect(port):
    return redis.Redis(host="127.0.0.1", port=int(port))


def walk(r, prefix="rigatoni:resume_token", batch=1000, with_ttl=True):
    """Yields (collection, value bytes or None, pttl ms or None) per key."""
    head = (prefix + ":").encode()
    cut = len(head)
    for keys in batches(r, head + b"*", batch):
        pipe = r.pipeline(transaction=False)
        pipe.mget(keys)
        for k in keys if with_ttl else ():
            pipe.pttl(k)
        replies = pipe.execute()
        values = replies[0]
        for i, k in enumerate(keys):
            yield k[cut:].decode("utf-8", "replace"), values[i], replies[i + 1] if with_ttl else None


def batches(r, match, batch):
    cursor = 0
    while True:
        cursor, keys = r.scan(cursor, match=match, count=batch)
        if keys:
            yield keys
        if cursor == 0:
            return


def cluster_time(doc):
    """(seconds, increment) from a change-stream token's _data, or None."""
    data = doc.get("_data") if isinstance(doc, dict) else None
    if not isinstance(data, str) or len(data) < 18 or data[:2] != "82":
        return None
    try:
        return int(data[2:10], 16), int(data[10:18], 16)
    except ValueError:
        return None


def args(usage, n):
    if len(sys.argv) < n + 1:
        sys.exit("usage: " + usage)
    return sys.argv[1:]
