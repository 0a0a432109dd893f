# SPDX-License-Identifier: MIT
# spec/bench/py_migrate.py FROM_PORT TO_PORT -- the redis-py baseline of
# `migrate --to`: SCAN on the source, per batch one pipeline of DUMP+PTTL
# per key, then one pipeline of RESTORE on the target (existing keys are
# kept: BUSYKEY replies are counted as skipped).
import sys

import redis

import py_walk

src_port, dst_port = py_walk.args("py_migrate.py FROM_PORT TO_PORT", 2)[:2]
src, dst = py_walk.connect(src_port), py_walk.connect(dst_port)
copied = skipped = 0
for keys in py_walk.batches(src, b"rigatoni:resume_token:*", 1000):
    pipe = src.pipeline(transaction=False)
    for k in keys:
        pipe.dump(k)
        pipe.pttl(k)
    replies = pipe.execute()
    pipe = dst.pipeline(transaction=False)
    for i, k in enumerate(keys):
        dumped, pttl = replies[2 * i], replies[2 * i + 1]
        if dumped is not None:
            pipe.restore(k, max(pttl, 0), dumped)
    for reply in pipe.execute(raise_on_error=False):
        if isinstance(reply, redis.ResponseError):
            skipped += 1
        else:
            copied += 1
print("py_migrate: %d copied, %d skipped" % (copied, skipped), file=sys.stderr)
