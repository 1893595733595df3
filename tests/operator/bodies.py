"""Object bodies as the API server hands them to the operator, for the pure-module tests."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def supervisor_body(
    spec: Json | None = None,
    *,
    name: str = "app",
    uid: str = "uid-app",
    annotations: dict[str, str] | None = None,
    owners: list[Json] | None = None,
    **meta: Any,
) -> Json:
    metadata: Json = {
        "name": name,
        "namespace": "ns",
        "uid": uid,
        "generation": 3,
        "resourceVersion": "42",
        **meta,
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    if owners is not None:
        metadata["ownerReferences"] = owners
    return {
        "apiVersion": "rebeam.io/v1alpha1",
        "kind": "Supervisor",
        "metadata": metadata,
        "spec": spec if spec is not None else {"children": [{"name": "a", "actor": SLEEP}]},
    }


def actor_body(spec: Json | None = None, *, name: str = "solo", uid: str = "uid-solo") -> Json:
    return {
        "apiVersion": "rebeam.io/v1alpha1",
        "kind": "Actor",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": spec if spec is not None else {"module": "pkg.mod:Thing"},
    }


SLEEP: Json = {"command": ["sleep", "600"]}
