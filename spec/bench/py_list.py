# SPDX-License-Identifier: MIT
# spec/bench/py_list.py PORT -- the redis-py baseline of `list --format
# jsonl`: the walk of py_walk.py, each value decoded with pymongo's bson,
# one JSON object per line on stdout (the fields of ours).
import json
import sys
import time

import bson
from bson import json_util

import py_walk

port, = py_walk.args("py_list.py PORT", 1)[:1]
r = py_walk.connect(port)
now = int(time.time())
out = sys.stdout
relaxed = json_util.RELAXED_JSON_OPTIONS
count = 0
for coll, value, pttl in py_walk.walk(r):
    if value is None:
        continue
    row = {"collection": coll, "ttl_seconds": pttl / 1000 if pttl >= 0 else None, "size": len(value)}
    try:
        doc = bson.decode(value)
    except Exception as e:  # not BSON: listed as corrupt
        row.update(cluster_time=None, token=None, error=str(e))
    else:
        ct = py_walk.cluster_time(doc)
        if ct:
            row.update(cluster_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ct[0])),
                       cluster_time_seconds=ct[0], increment=ct[1], age_seconds=now - ct[0])
        else:
            row["cluster_time"] = None
        row["token"] = json.loads(json_util.dumps(doc, json_options=relaxed))
    out.write(json.dumps(row, separators=(",", ":")) + "\n")
    count += 1
print("py_list: %d tokens" % count, file=sys.stderr)
