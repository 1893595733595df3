"""The management protocol both backends answer (``rebeam run`` and the operator), defined once.

A request goes to ``rebeam.<ns>.control.<operation>.<requester>`` (``_subjects.control``):
one of :data:`OPERATIONS`, with a JSON object body, ``{"path": "shop/cache"}`` (and
``"args"`` for ``start-child``). A reply is ``{"ok": value}`` or
``{"error": sentence, "code": code}``: the code is for programs, the sentence for people,
and each code has one sentence template (:data:`SENTENCES`), so both backends say the same
thing in the same words for the same request (docs/sdk.md, "Management errors").

``tree`` answers a list of root supervisors, each built by :func:`tree_supervisor` and its
children by :func:`tree_child`: one shape on both backends, fields a backend does not have
(an OS pid on Kubernetes, a pod locally) are ``null``.

Pure: no I/O, no backend. The client side (``rebeam.start_child`` ...) is ``rebeam._management``.
"""

from __future__ import annotations

from typing import Any

from rebeam._limits import describe, loads_json

__all__ = [
    "CHILD_OPERATIONS",
    "MAX_PATH_CHARS",
    "OPERATIONS",
    "SENTENCES",
    "Refusal",
    "child_path",
    "core_refusal",
    "error_reply",
    "parse_reply",
    "parse_request",
    "refusal_text",
    "request_path",
    "tree_child",
    "tree_supervisor",
]

CHILD_OPERATIONS = ("terminate-child", "restart-child", "delete-child")
OPERATIONS = ("tree", "start-child", *CHILD_OPERATIONS)

MAX_REPLY_BYTES = 64 * 1024 * 1024  # NATS's largest max_payload: a big tree still fits
MAX_REPLY_DEPTH = 256  # two levels per supervisor in a tree
MAX_PATH_CHARS = 1024  # far above any real path: a supervisor path is a few names

# code -> the sentence a person reads. The fields are filled by :class:`Refusal`.
SENTENCES: dict[str, str] = {
    "bad_request": "bad request: {detail}",
    "forbidden": "not allowed: {detail}",
    "no_supervisor": "no running supervisor at {supervisor!r}",
    "not_simple_one_for_one": (
        "{supervisor} is not simple_one_for_one: add children to its manifest"
    ),
    "simple_one_for_one": (
        "{supervisor} is simple_one_for_one: its children are started with start-child "
        "and stopped with terminate-child"
    ),
    "max_children": "{supervisor} has reached max_children ({limit}): terminate a child first",
    "bad_args": "the args do not fit the child template of {supervisor}: {detail}",
    "not_found": "{supervisor} has no child {child!r}",
    "running": "{supervisor}/{child} is running: terminate it first",
    "restarting": "{supervisor}/{child} is being restarted: terminate it first",
    "start_failed": "{target} failed to start: {detail}",
    "noproc": "{supervisor} is not running",
    "timeout": "no answer from {supervisor} within {seconds:g}s",
    "refused": "{supervisor} refused: {detail}",
    "busy": "busy: {count} requests are being answered; ask again later",
    "internal": "{operation} failed: {detail}",
}


class Refusal(Exception):
    """A management request answered with an error: its code and its sentence."""

    def __init__(self, code: str, sentence: str) -> None:
        super().__init__(code, sentence)
        self.code = code
        self.sentence = sentence

    @classmethod
    def of(cls, code: str, **fields: Any) -> Refusal:
        """The refusal ``code`` with its template filled from ``fields``."""
        return cls(code, SENTENCES[code].format(**fields))

    def reply(self) -> dict[str, Any]:
        return {"error": self.sentence, "code": self.code}

    def __str__(self) -> str:
        return f"{self.sentence} ({self.code})"


def error_reply(code: str, **fields: Any) -> dict[str, Any]:
    return Refusal.of(code, **fields).reply()


def parse_request(operation: str, data: bytes) -> dict[str, Any]:
    """The body of a request for ``operation``: :class:`Refusal` (``bad_request``) for an
    operation that does not exist or a body that is no JSON object, too large or too deep
    included."""
    if operation not in OPERATIONS:
        raise Refusal.of("bad_request", detail=f"no such management operation: {operation[:100]!r}")
    try:
        request = loads_json(data or b"{}", what="a control request")
    except ValueError as exc:
        raise Refusal.of("bad_request", detail=str(exc)) from None
    if not isinstance(request, dict):
        raise Refusal.of("bad_request", detail="a control request is a JSON object")
    return request


def request_path(request: dict[str, Any]) -> str:
    """The path a request names, without surrounding slashes; :class:`Refusal` if it has none
    or one no tree can have."""
    path = request.get("path")
    if not isinstance(path, str) or not path.strip("/"):
        raise Refusal.of("bad_request", detail="a path is needed, e.g. pool or shop/storage/cache")
    if len(path) > MAX_PATH_CHARS:
        raise Refusal.of("bad_request", detail=f"a path is at most {MAX_PATH_CHARS} characters")
    return path.strip("/")


def child_path(path: str) -> tuple[str, str]:
    """``(supervisor, child)`` of a child's path; :class:`Refusal` if it names no supervisor."""
    supervisor, _, child = path.rpartition("/")
    if not supervisor:
        raise Refusal.of(
            "bad_request",
            detail=f"{path!r} names no child: give <supervisor>/<child>, e.g. shop/cache",
        )
    return supervisor, child


def core_refusal(reason: Any, *, supervisor: str, child: str, limit: int | None) -> Refusal:
    """The supervision core's error ``reason`` for a request (``child`` as the requester named
    it, empty for start-child), as the refusal both backends answer."""
    fields = {"supervisor": supervisor, "child": child}
    if reason in ("simple_one_for_one", "not_found", "running", "restarting", "noproc"):
        return Refusal.of(reason, **fields)
    if reason == "max_children":
        return Refusal.of("max_children", supervisor=supervisor, limit=limit)
    if isinstance(reason, str) and reason.startswith("bad_args: "):
        return Refusal.of("bad_args", supervisor=supervisor, detail=reason[len("bad_args: ") :])
    if isinstance(reason, str):
        return Refusal.of("refused", supervisor=supervisor, detail=reason)
    # Anything else is how the child ended while it started (an exit reason).
    target = f"{supervisor}/{child}" if child else f"a new child of {supervisor}"
    return Refusal.of("start_failed", target=target, detail=str(reason))


def refusal_text(operation: str, path: Any, reply: dict[str, Any]) -> str:
    """One line for an error reply (of :func:`parse_reply`): what was asked, the sentence and
    the code, as the CLI prints it and ``SupervisorRefused`` says it."""
    asked = f"{operation} {path}" if path else operation
    return f"{asked}: {reply['error']} ({reply['code']})"


def parse_reply(data: bytes) -> dict[str, Any]:
    """A control reply, ``{"ok": value}`` or ``{"error": sentence, "code": code}``;
    ValueError for anything else (too large or deep included). A reply of a backend older
    than the codes has no ``code``: it is read as ``refused``."""
    reply = loads_json(
        data, what="the control reply", max_bytes=MAX_REPLY_BYTES, max_depth=MAX_REPLY_DEPTH
    )
    if not (isinstance(reply, dict) and ("ok" in reply or "error" in reply)):
        raise ValueError("the control reply is neither {ok: ...} nor {error: ...}")
    if "error" in reply:
        if not isinstance(reply["error"], str):
            raise ValueError(f"the control reply's error is {describe(reply['error'])}, no text")
        code = reply.setdefault("code", "refused")
        if not (isinstance(code, str) and code.isidentifier() and len(code) <= 64):
            raise ValueError(f"the control reply's code is {describe(code)}, no code")
    return reply


def tree_supervisor(
    *,
    path: str,
    strategy: str,
    state: str,
    restarts: int,
    intensity: int,
    period: float,
) -> dict[str, Any]:
    """A supervisor of ``tree``'s answer (``state``: starting, running or terminated); its
    ``children`` are appended by the caller."""
    return {
        "path": path,
        "kind": "supervisor",
        "strategy": strategy,
        "state": state,
        "restarts": restarts,
        "intensity": intensity,
        "period": period,
        "children": [],
    }


def tree_child(
    *,
    name: str,
    path: str,
    kind: str,
    state: str,
    incarnation: int | None,
    pid: str | None,
    os_pid: int | None,
    pod: str | None,
    starts: int,
    last_exit: Any,
    supervisor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A child of ``tree``'s answer. A child that is a supervisor also carries that
    supervisor's fields (strategy, restarts, children ...), from ``supervisor``."""
    child: dict[str, Any] = {
        "name": name,
        "path": path,
        "kind": kind,
        "state": state,
        "incarnation": incarnation,
        "pid": pid,
        "os_pid": os_pid,
        "pod": pod,
        "starts": starts,
        "last_exit": last_exit,
    }
    if supervisor is not None:
        child |= {k: v for k, v in supervisor.items() if k not in ("path", "state")}
    return child
