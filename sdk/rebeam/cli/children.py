"""``rebeam start-child|terminate-child|restart-child|delete-child``: OTP's management API
against a running ``rebeam run`` or the operator, by path (``shop/storage/cache``). A refusal
is one line, its sentence and its code (docs/sdk.md, "Management errors"), and exit 1."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rebeam._limits import loads_json
from rebeam.cli.inspect import ask


def run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"path": args.path}
    if getattr(args, "args", None) is not None:
        try:
            body["args"] = loads_json(args.args, what="the args")
        except ValueError as exc:  # not JSON, too large or nested too deep: one line, exit 2
            print(f"rebeam: {exc}", file=sys.stderr)
            return 2
    reply = ask(args, args.operation, body)
    if reply is None:
        return 1
    print(reply["ok"] if reply["ok"] is not None else "ok")
    return 0
