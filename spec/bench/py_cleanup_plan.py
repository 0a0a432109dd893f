# SPDX-License-Identifier: MIT
# spec/bench/py_cleanup_plan.py PORT SECONDS -- the redis-py baseline of
# `cleanup --older-than` without --yes: the walk of py_walk.py, each value
# decoded with pymongo's bson, tokens whose cluster time is older than
# SECONDS counted (the first 50 printed), nothing changed.
import sys
import time

import bson

import py_walk

port, older = py_walk.args("py_cleanup_plan.py PORT SECONDS", 2)[:2]
older = int(older)
r = py_walk.connect(port)
now = int(time.time())
scanned = stale = unknown = 0
for coll, value, _ in py_walk.walk(r, with_ttl=False):   # ages only: no PTTL, as ours
    if value is None:
        continue
    scanned += 1
    try:
        ct = py_walk.cluster_time(bson.decode(value))
    except Exception:
        ct = None
    if ct is None:
        unknown += 1
    elif now - ct[0] > older:
        stale += 1
        if stale <= 50:
            print("would delete %s (cluster time %s)" % (coll, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ct[0]))))
if stale > 50:
    print("... and %d more" % (stale - 50))
print("py_cleanup_plan: would delete %d; %d of unknown age; %d scanned" % (stale, unknown, scanned), file=sys.stderr)
