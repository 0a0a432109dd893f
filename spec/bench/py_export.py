# SPDX-License-Identifier: MIT
# spec/bench/py_export.py PORT -- the redis-py baseline of `export`: the
# walk of py_walk.py, one JSON line per token with the exact BSON bytes
# (base64), the token as relaxed Extended JSON and the TTL in ms.
import base64
import json
import sys

import bson
from bson import json_util

import py_walk

port, = py_walk.args("py_export.py PORT", 1)[:1]
r = py_walk.connect(port)
out = sys.stdout
relaxed = json_util.RELAXED_JSON_OPTIONS
count = skipped = 0
for coll, value, pttl in py_walk.walk(r):
    if value is None:
        continue
    try:
        doc = bson.decode(value)
    except Exception:
        skipped += 1
        continue
    out.write('{"collection":%s,"bson_base64":"%s","token":%s,"ttl_ms":%s}\n' % (
        json.dumps(coll), base64.b64encode(value).decode(), json_util.dumps(doc, json_options=relaxed),
        str(max(pttl, 1)) if pttl >= 0 else "null"))
    count += 1
print("py_export: %d tokens (%d skipped)" % (count, skipped), file=sys.stderr)
