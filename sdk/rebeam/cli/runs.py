"""``rebeam runs``: the ``rebeam run`` processes of this user, from their instance files.

Several runs may serve one namespace (each has a file of its own); commands talk to the one
started last unless given ``--run ID``. This lists them, marking that one.
"""

from __future__ import annotations

import argparse
import json
import time

from rebeam.local.instances import InstanceFile

# What the listing shows of an instance file: never the owner's credential.
SHOWN = ("run_id", "namespace", "pid", "nats_url", "started")


def run(args: argparse.Namespace) -> int:
    runs = InstanceFile.runs(args.namespace)
    if args.json:
        print(json.dumps([{k: info.get(k) for k in SHOWN} for info in runs], indent=2))
        return 0
    if not runs:
        where = f" for namespace {args.namespace!r}" if args.namespace else ""
        print(f"no rebeam run is running{where}")
        return 0
    # Where a namespace has several runs, its commands talk to the one started last unless
    # given --run: that one is marked.
    latest = {info["namespace"]: info["run_id"] for info in runs}
    shared = {ns for ns in latest if sum(info["namespace"] == ns for info in runs) > 1}
    rows = [("", "RUN", "NAMESPACE", "PID", "NATS", "STARTED")]
    for info in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        namespace = info["namespace"]
        mark = "*" if namespace in shared and latest[namespace] == info["run_id"] else ""
        rows.append((mark, info["run_id"], namespace, str(info["pid"]), info["nats_url"], started))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    if shared:
        print("* what commands of that namespace talk to without --run ID")
    return 0
