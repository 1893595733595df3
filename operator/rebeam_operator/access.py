"""Who may ask for what: a management request is decided by Kubernetes RBAC.

The subject of a request names who asks (the requester's client pid: the server lets an
admin publish there only as itself). The operator's issuer remembers the grant each pid was
let in under, and so the person behind it (identity.py); a SubjectAccessReview asks the API
server whether that person may ``get`` (``tree``) or ``patch`` (every other operation) the
object the request is about: the root Supervisor of the path (an Actor applied on its own:
that Actor), or for ``tree`` the namespace's Supervisors. docs/security.md, "Kubernetes
identity", says why each verb.

Without issuer secrets the operator knows nobody, and NATS lets anyone in anyway: every
request is allowed.
"""

from __future__ import annotations

from typing import Any, Protocol

from rebeam.auth.grants import Grant, Role
from rebeam.pids import Pid
from rebeam_operator.hosts import GROUP
from rebeam_operator.view import DriverView

__all__ = ["Binder", "Reviewer", "refusal"]

Json = dict[str, Any]


class Binder(Protocol):
    def bound(self, pid: Pid) -> Grant | None:
        """The grant a pid's connections were let in under (identity.py)."""


class Reviewer(Protocol):
    async def review_access(self, user: Json, attributes: Json) -> Json:
        """A SubjectAccessReview's status (kube.py)."""


async def refusal(
    identity: Binder | None,
    reviewer: Reviewer,
    requester: Pid,
    operation: str,
    target: DriverView | None,
    path: str,
) -> str | None:
    """None if the requester may ask for ``operation`` on ``path`` (handled by ``target``, if
    one was found), else the reason, naming the missing right. ``identity`` is None when the
    operator has no issuer secrets."""
    if identity is None:
        return None
    grant = identity.bound(requester)
    user = grant.extra.get("user") if grant is not None else None
    if grant is None or grant.role is not Role.ADMIN or not isinstance(user, dict):
        return (
            f"{requester} is unknown to this operator: connect with a Kubernetes identity "
            "(your own token) to manage trees"
        )
    namespace = requester.namespace
    attributes: dict[str, Any] = {"namespace": namespace, "group": GROUP}
    if operation == "tree":
        attributes.update(verb="get", resource="supervisors")
        right = "get supervisors"
    else:
        if target is not None:
            plural, name = target.host.plural, target.host.path.split("/")[0]
        else:
            plural, name = "supervisors", path.strip("/").split("/")[0]
        attributes.update(verb="patch", resource=plural, name=name)
        right = f"patch {plural}/{name}"
    status = await reviewer.review_access(user, attributes)
    if status.get("allowed") and not status.get("denied"):
        return None
    return f"user {user.get('username', '?')} may not {right} in namespace {namespace}"
