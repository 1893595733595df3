"""What one driver supervises: a ``Supervisor`` object, or an ``Actor`` applied on its own.

A :class:`Host` is read from the object's body every time it changes. It carries the tree's
identity (the supervisor path, the incarnation a parent asked for), the manifest as
:mod:`rebeam.spec` models, and the names and labels everything below it is given.

An ``Actor`` applied on its own is supervised as the only child of an implicit one_for_one
supervisor with the default intensity and period: the child is named after the Actor, its
restart, shutdown and startTimeout come from the Actor's spec, and its pods are
``<actor>-<incarnation>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from rebeam.spec.models import ActorSpec, SupervisorSpec

__all__ = [
    "ANN_DECIDED_SEQ",
    "ANN_INCARNATION",
    "ANN_KILL",
    "ANN_PATH",
    "ANN_PID",
    "ANN_STOP",
    "FINALIZER",
    "GROUP",
    "LABEL_CHILD",
    "LABEL_HOST",
    "LABEL_INCARNATION",
    "LABEL_MANAGED",
    "LABEL_SUPERVISOR",
    "MANAGED_BY",
    "VERSION",
    "Host",
    "InvalidObject",
    "host_from_body",
    "is_actor_slot",
]

GROUP: Final = "rebeam.io"
VERSION: Final = "v1alpha1"
FINALIZER: Final = "rebeam.io/shutdown"
MANAGED_BY: Final = "rebeam-operator"
LABEL_MANAGED: Final = "app.kubernetes.io/managed-by"
LABEL_HOST: Final = "rebeam.io/host-uid"  # the driver that owns a pod or object
LABEL_SUPERVISOR: Final = "rebeam.io/supervisor"
LABEL_CHILD: Final = "rebeam.io/child"
LABEL_INCARNATION: Final = "rebeam.io/incarnation"
ANN_PATH: Final = "rebeam.io/path"  # the supervisor path: root/child/grandchild
ANN_PID: Final = "rebeam.io/pid"
ANN_INCARNATION: Final = "rebeam.io/incarnation"  # of a child Supervisor: the parent's ask
ANN_STOP: Final = "rebeam.io/stop-incarnation"  # the parent asks that incarnation to stop
ANN_KILL: Final = "rebeam.io/kill-incarnation"  # the parent killed that incarnation (subtrees.py)
ANN_DECIDED_SEQ: Final = "rebeam.io/decided-seq"  # a pod's decision's status seq (early_starts.py)

Json = dict[str, Any]


class InvalidObject(ValueError):
    """A Supervisor or Actor body the operator cannot drive; the message names the object and
    the field."""


@dataclass(frozen=True)
class Host:
    kind: str  # "Supervisor" or "Actor"
    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    path: str
    spec: SupervisorSpec
    incarnation: int  # which start of this supervisor (a parent restarts a child by asking +1)
    stop_incarnation: int  # the parent asked this incarnation to stop (0: never)
    kill_incarnation: int  # the parent killed this incarnation (0: never)
    deleting: bool
    finalizers: tuple[str, ...]
    owned_by_supervisor: bool
    status: Json

    @property
    def plural(self) -> str:
        return "supervisors" if self.kind == "Supervisor" else "actors"

    @property
    def standalone_actor(self) -> bool:
        return self.kind == "Actor"

    def pod_name(self, child: str, incarnation: int) -> str:
        if self.standalone_actor:
            return f"{self.name}-{incarnation}"
        return f"{self.name}-{child}-{incarnation}"

    def slot_object(self, child: str) -> str:
        """The Actor object of an actor child (the standalone Actor is its own slot)."""
        return self.name if self.standalone_actor else f"{self.name}-{child}"

    def child_supervisor(self, child: str) -> str:
        return f"{self.name}-{child}"

    def owner_reference(self) -> Json:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def _number(annotations: dict[str, str], key: str, default: int, where: str) -> int:
    raw = annotations.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        raise InvalidObject(f"{where}: annotation {key}: {raw!r} is not a whole number >= 0")
    return value


def is_actor_slot(body: Json) -> bool:
    """An Actor object a Supervisor made for one of its children: that Supervisor's driver
    writes it; it is not driven on its own."""
    owners = (body.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == "Supervisor" for o in owners)


def host_from_body(body: Json, known: tuple[Json, Host] | None = None) -> Host:
    """Read a Supervisor or Actor body. ``known``: an earlier body of the same object and
    the Host read from it, whose spec is taken as it is when this body's spec is equal: a
    driver reads its object after every status write and on every event, and validated the
    same spec again each time.

    Raises:
        InvalidObject: not a Supervisor or Actor, metadata missing, an annotation of ours that
            is not a number, or a spec the models refuse (the message names object and field).
    """
    kind = body.get("kind")
    meta = body.get("metadata") or {}
    where = f"{kind}/{meta.get('namespace', '?')}/{meta.get('name', '?')}"
    if kind not in ("Supervisor", "Actor"):
        raise InvalidObject(f"{where}: kind must be Supervisor or Actor")
    missing = [k for k in ("name", "namespace", "uid") if not meta.get(k)]
    if missing:
        raise InvalidObject(f"{where}: metadata.{', metadata.'.join(missing)} missing")
    annotations = meta.get("annotations") or {}
    owners = meta.get("ownerReferences") or []
    owned = any(
        o.get("kind") == "Supervisor" and o.get("apiVersion", "").startswith(GROUP) for o in owners
    )
    try:
        if known is not None and known[1].kind == kind and known[0].get("spec") == body.get("spec"):
            spec = known[1].spec
        elif kind == "Supervisor":
            spec = SupervisorSpec.model_validate(body.get("spec") or {})
        else:
            actor = ActorSpec.model_validate(body.get("spec") or {})
            spec = actor.as_supervisor(meta["name"])
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidObject(f"{where}: {problems}") from None
    return Host(
        kind=kind,
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        resource_version=meta.get("resourceVersion", ""),
        path=annotations.get(ANN_PATH, meta["name"]),
        spec=spec,
        incarnation=_number(annotations, ANN_INCARNATION, 1, where),
        stop_incarnation=_number(annotations, ANN_STOP, 0, where),
        kill_incarnation=_number(annotations, ANN_KILL, 0, where),
        deleting="deletionTimestamp" in meta,
        finalizers=tuple(meta.get("finalizers") or ()),
        owned_by_supervisor=owned,
        status=dict(body.get("status") or {}),
    )
