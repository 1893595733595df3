"""Registered names and process groups of a namespace, read from its registry buckets
(``rebeam._registry``): ``n.<name>`` global names, ``l.<scope>.<name>`` local ones,
``d.pg:<scope>.<group>....`` process group memberships. A bucket nobody created yet has
nothing in it: it is not created to be read."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import nats.js.errors as jserr

from rebeam._registry import Store
from rebeam._subjects import global_bucket, local_bucket
from rebeam.pids import unescape_token

__all__ = ["Directory", "read_directory"]

EVERY: Final = 5.0
MAX_ENTRIES: Final = 5000  # shown at most per kind: a page is for people
SHOWN_GLOBAL: Final = ("n.>", "d.>")  # global names, duplicate-key entries (groups)
SHOWN_LOCAL: Final = ("l.>",)  # names in local scopes


async def read_directory(js: Any, namespace: str) -> dict[str, Any]:
    """``{"names": [[name, pid]...], "groups": {"scope/group": [pid...]}}``."""
    store = Store(js, namespace)
    names: list[list[str]] = []
    groups: dict[str, list[str]] = {}
    for local in (False, True):
        bucket = local_bucket(namespace) if local else global_bucket(namespace)
        try:
            await js.key_value(bucket)
        except jserr.BucketNotFoundError:
            continue
        # Only the kinds shown: the owner index (o.) holds no {pid, value} records.
        for prefix in SHOWN_LOCAL if local else SHOWN_GLOBAL:
            for key, pid, _value in await store.scan(prefix, local=local):
                _file(key, str(pid), names, groups)
    names.sort()
    return {"names": names[:MAX_ENTRIES], "groups": dict(sorted(groups.items())[:MAX_ENTRIES])}


def _file(key: str, pid: str, names: list[list[str]], groups: dict[str, list[str]]) -> None:
    parts = key.split(".")
    try:
        if parts[0] == "n" and len(parts) == 2:
            names.append([unescape_token(parts[1]), pid])
        elif parts[0] == "l" and len(parts) == 3:
            names.append([f"{unescape_token(parts[2])} (local, {unescape_token(parts[1])})", pid])
        elif parts[0] == "d" and len(parts) >= 3:
            registry = unescape_token(parts[1])
            if registry.startswith("pg:"):
                group = f"{registry[3:]}/{unescape_token(parts[2])}"
                groups.setdefault(group, []).append(pid)
    except ValueError:
        return  # a key no rebeam process wrote: not shown


class Directory:
    """The latest names and groups, read again every ``every`` seconds."""

    def __init__(self, js: Any, namespace: str, every: float = EVERY) -> None:
        self.js = js
        self.namespace = namespace
        self.every = every
        self.latest: dict[str, Any] = {"names": [], "groups": {}}
        self.changed = asyncio.Event()
        self.failures = 0

    async def run(self) -> None:
        while True:
            try:
                found = await read_directory(self.js, self.namespace)
            except Exception:  # a registry that cannot be read now is tried again later
                self.failures += 1
            else:
                if found != self.latest:
                    self.latest = found
                    self.changed.set()
            await asyncio.sleep(self.every)
