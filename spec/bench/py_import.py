# SPDX-License-Identifier: MIT
# spec/bench/py_import.py PORT FILE -- the redis-py baseline of `import`:
# reads an `export` file (json + base64 per line), pipelines SET NX with
# PX when the line has a TTL, 1000 lines per pipeline. No validation pass
# and no duplicate rule: the least an operator's script would do.
import base64
import json
import sys

import py_walk

port, path = py_walk.args("py_import.py PORT FILE", 2)[:2]
r = py_walk.connect(port)
written = skipped = 0


def send(pipe):
    global written, skipped
    for done in pipe.execute():
        if done:
            written += 1
        else:
            skipped += 1


with open(path, "rb") as f:
    pipe, n = r.pipeline(transaction=False), 0
    for line in f:
        if not line.strip():
            continue
        rec = json.loads(line)
        key = b"rigatoni:resume_token:" + rec["collection"].encode("utf-8")
        ttl = rec.get("ttl_ms")
        pipe.set(key, base64.b64decode(rec["bson_base64"], validate=True), nx=True,
                 px=max(ttl, 1) if ttl is not None else None)
        n += 1
        if n == 1000:
            send(pipe)
            pipe, n = r.pipeline(transaction=False), 0
    send(pipe)
print("py_import: %d written, %d skipped" % (written, skipped), file=sys.stderr)
