"""The manifest models: ``Supervisor`` and ``Actor``, apiVersion ``rebeam.io/v1alpha1``.

These pydantic models are the one definition of the manifest format. ``rebeam run`` reads
them, the operator reads them, and ``crds/`` is generated from them (``make crds``), so a
field exists in one place. They check the *shape* of a manifest (types, enums, names,
durations); the rules that relate fields to each other (a significant child must not be
permanent, ...) live in :mod:`rebeam.spec.rules`, written once for Python and once as CEL
for the API server, side by side.

YAML uses camelCase (``autoShutdown``, ``startTimeout``); Python uses snake_case.
Durations are seconds (float) in Python and ``5s``-style strings in YAML.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from rebeam.spec.durations import DURATION_PATTERN, format_duration, parse_duration
from rebeam.supervision.childspec import (
    BRUTAL_KILL,
    DEFAULT_INTENSITY,
    INFINITY,
    AutoShutdown,
    RestartType,
    Strategy,
)

__all__ = [
    "API_VERSION",
    "MAX_NESTING",
    "Actor",
    "ActorSpec",
    "ActorStatus",
    "ActorTemplate",
    "Child",
    "ChildState",
    "Condition",
    "EnvVar",
    "ExitSummary",
    "MailboxSpec",
    "ObjectMeta",
    "Readiness",
    "Resource",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatus",
]

API_VERSION: Final = "rebeam.io/v1alpha1"
MAX_NESTING: Final = 4
"""How deep supervisors may nest inside one manifest (a root plus four levels). The CRD schema
cannot be recursive, so it is unrolled to this depth; both backends enforce the same limit."""

DEFAULT_START_TIMEOUT: Final = "60s"

_DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_LABEL_RE: Final = re.compile(_DNS_LABEL)
_ENTRY: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
_ENTRY_RE: Final = re.compile(_ENTRY)
_ENV_NAME: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
_ENV_NAME_RE: Final = re.compile(_ENV_NAME)
_SHUTDOWN_PATTERN: Final = rf"^(brutal_kill|infinity|{DURATION_PATTERN[1:-1]})$"
# A duration of more than 0: one of its numbers has a digit other than 0 (units have none).
# The API server's regular expressions have no lookahead, so: pairs that are all zeros, then
# one that is not, then any.
_DURATION_PART: Final = DURATION_PATTERN[len("^(?:") : -len(")+$")]
_ZERO_PART: Final = r"0+(?:\.0+)?(?:ms|s|m|h)"
_NONZERO_PART: Final = r"(?:[0-9]*[1-9][0-9]*(?:\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)(?:ms|s|m|h)"
POSITIVE_DURATION_PATTERN: Final = rf"^(?:{_ZERO_PART})*{_NONZERO_PART}(?:{_DURATION_PART})*$"
# The patterns above are also the CRD's (where '$' is the end of the text); in Python '$' also
# matches before a final newline, so the checks below use fullmatch.


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL_RE.fullmatch(value):
        raise ValueError(
            "must be a lowercase DNS label: at most 63 of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _entry(value: str) -> str:
    if not _ENTRY_RE.fullmatch(value):
        raise ValueError("must be 'package.module:ClassName'")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME_RE.fullmatch(value):
        raise ValueError("must be a valid environment variable name")
    return value


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError(
            "must not contain a NUL character (no program argument, environment value or path "
            "can hold one)"
        )
    return value


def _shutdown(value: object) -> float | str:
    if value in (BRUTAL_KILL, INFINITY):
        assert isinstance(value, str)
        return value
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError("must be brutal_kill, infinity, or a duration like 5s or 500ms") from None


def _serialize_duration(seconds: float) -> str:
    return format_duration(seconds)


def _serialize_shutdown(value: float | str) -> str:
    return value if isinstance(value, str) else format_duration(value)


_INT_OR_STRING: Final = {"x-kubernetes-int-or-string": True}

DnsLabel = Annotated[
    str,
    AfterValidator(_dns_label),
    WithJsonSchema({"type": "string", "pattern": _DNS_LABEL, "maxLength": 63}),
]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(_serialize_duration, return_type=str),
    WithJsonSchema({**_INT_OR_STRING, "pattern": DURATION_PATTERN, "minimum": 0}),
]
PositiveDuration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(_serialize_duration, return_type=str),
    # Only for the API server: rebeam validate refuses 0 through rebeam.spec.rules, in the
    # same words as the core; kubectl apply is refused by the schema before anything runs.
    WithJsonSchema({**_INT_OR_STRING, "pattern": POSITIVE_DURATION_PATTERN, "minimum": 1}),
]
ShutdownValue = Annotated[
    float | str,
    BeforeValidator(_shutdown),
    PlainSerializer(_serialize_shutdown, return_type=str),
    WithJsonSchema({**_INT_OR_STRING, "pattern": _SHUTDOWN_PATTERN, "minimum": 0}),
]
Entry = Annotated[
    str, AfterValidator(_entry), WithJsonSchema({"type": "string", "pattern": _ENTRY})
]
EnvName = Annotated[
    str, AfterValidator(_env_name), WithJsonSchema({"type": "string", "pattern": _ENV_NAME})
]
OsText = Annotated[str, AfterValidator(_no_nul)]
"""A string the operating system gets as it is: an argument, an environment value, a path."""
AnyJSON = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]
AnyObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
        frozen=True,
    )


# --- spec ------------------------------------------------------------------------------


class EnvVar(_Model):
    """An environment variable, in the form a Kubernetes container takes."""

    name: EnvName
    value: OsText | None = None
    value_from: AnyObject | None = Field(
        None,
        description="Kubernetes only: a secretKeyRef, configMapKeyRef or fieldRef, "
        "passed to the pod as it is. rebeam run refuses it.",
    )


class MailboxSpec(_Model):
    """How much an actor's mailbox holds, and whether it outlives incarnations."""

    max_messages: int | None = Field(
        None, ge=1, description="Messages held before new ones are refused (default 10000)."
    )
    max_bytes: int | None = Field(
        None, ge=1, description="Encoded bytes held before new ones are refused (default 16 MiB)."
    )
    durable: bool | None = Field(
        None,
        description="Keep sends and casts made durable in JetStream while the actor is down "
        "or restarting, and deliver them to its next incarnation (at least once). Unset: "
        "what the actor class says (off by default).",
    )
    max_deliver: int | None = Field(
        None, ge=1, description="Deliveries of one durable message before it is parked."
    )


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("a port is a number from 1 to 65535")
    return value


_HTTP_PATH: Final = r"^/[!-~]*$"
_HTTP_PATH_RE: Final = re.compile(_HTTP_PATH)


def _http_path(value: str) -> str:
    if len(value) > 1024 or not _HTTP_PATH_RE.fullmatch(value):
        raise ValueError(
            "must start with / and hold only visible ASCII characters (no spaces), at most 1024"
        )
    return value


def _interval(value: float) -> float:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


Port = Annotated[
    int,
    AfterValidator(_port),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 65535}),
]
HttpPath = Annotated[
    str,
    AfterValidator(_http_path),
    WithJsonSchema({"type": "string", "pattern": _HTTP_PATH, "maxLength": 1024}),
]
Interval = Annotated[Duration, AfterValidator(_interval)]


class Nothing(_Model):
    """A readiness kind that takes no settings: written ``{}``."""


class TcpCheck(_Model):
    port: Port = Field(description="Ready once this port of the child accepts a connection.")


class HttpCheck(_Model):
    port: Port = Field(description="The port of the child's HTTP server.")
    path: HttpPath = Field("/healthz", description="Ready once a GET of it answers 2xx.")


class ExecCheck(_Model):
    command: list[OsText] = Field(
        min_length=1, max_length=64, description="Ready once this command exits 0."
    )


class Watchdog(_Model):
    interval: Interval = Field(
        description="notify: a WATCHDOG=1 must arrive at least this often; tcp, http, exec: "
        "the check must pass at least this often. Otherwise the child is killed."
    )


READINESS_KINDS: Final = ("spawned", "notify", "fd", "tcp", "http", "exec")


class Readiness(_Model):
    """When a command child counts as started (docs/readiness.md): exactly one kind."""

    spawned: Nothing | None = Field(
        None, description="Started once spawned (the default when readiness is absent)."
    )
    notify: Nothing | None = Field(
        None,
        description="The systemd notify protocol: READY=1 on the socket named by NOTIFY_SOCKET.",
    )
    fd: Nothing | None = Field(
        None, description="Any line written to the file descriptor named by REBEAM_READY_FD."
    )
    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    exec_: ExecCheck | None = Field(None, alias="exec")
    watchdog: Watchdog | None = Field(
        None, description="notify, tcp, http or exec only: keep checking once it is ready."
    )

    @property
    def kind(self) -> str | None:
        """The one kind set (None if none is: rules.py refuses that)."""
        found = [k for k in READINESS_KINDS if getattr(self, "exec_" if k == "exec" else k)]
        return found[0] if len(found) == 1 else None


class ActorTemplate(_Model):
    """What runs in one actor slot: a Python actor class, or any command."""

    module: Entry | None = Field(
        None, description="The actor class, as 'package.module:ClassName'."
    )
    command: list[OsText] | None = Field(
        None,
        min_length=1,
        description="A program to run instead of a Python actor, as a container command.",
    )
    args: AnyJSON = Field(
        None,
        description="For a module: the value its init(args) receives (any JSON). "
        "For a command: its arguments, a list of strings.",
    )
    env: list[EnvVar] = Field(default_factory=list)
    register_as: OsText | None = Field(
        None,
        alias="register",
        min_length=1,
        max_length=255,
        description="A name the runtime registers for the actor before it is ready.",
    )
    mailbox: MailboxSpec | None = Field(
        None, description="Python actors: mailbox bounds and durability."
    )
    image: str | None = Field(
        None, description="Kubernetes only: the container image (default: the base image)."
    )
    resources: AnyObject | None = Field(
        None, description="Kubernetes only: the container's resources (requests, limits)."
    )
    working_dir: OsText | None = None
    readiness: Readiness | None = Field(
        None,
        description="Commands only: when the command counts as started (bounded by "
        "startTimeout), and an optional watchdog. Python actors are ready when init returns.",
    )


class Child(_Model):
    """One child of a supervisor: an actor or a nested supervisor, with how it is restarted."""

    name: DnsLabel = Field(description="Unique among the supervisor's children.")
    restart: RestartType = Field(
        RestartType.PERMANENT,
        description="permanent: always restarted; transient: restarted after an abnormal "
        "exit only; temporary: never restarted.",
    )
    shutdown: ShutdownValue | None = Field(
        None,
        description="brutal_kill, infinity, or the time it gets to stop after SIGTERM "
        "before SIGKILL. Default: 5s for actors, infinity for supervisors.",
    )
    significant: bool = Field(
        False,
        description="Its own exit may end the supervisor (see autoShutdown). Only for "
        "transient or temporary children.",
    )
    start_timeout: Duration = Field(
        DEFAULT_START_TIMEOUT,  # type: ignore[assignment]
        description="How long a start may take before it counts as failed.",
    )
    actor: ActorTemplate | None = None
    supervisor: SupervisorSpec | None = None


class SupervisorSpec(_Model):
    """A supervisor's flags and children, as OTP defines them."""

    strategy: Strategy = Field(
        Strategy.ONE_FOR_ONE,
        description="Who is restarted when a child must be: one_for_one (the child), "
        "one_for_all (every child), rest_for_one (the child and those after it), "
        "simple_one_for_one (dynamic children from childTemplate).",
    )
    intensity: int = Field(
        DEFAULT_INTENSITY,
        ge=0,
        description="At most this many restarts within period; one more and the "
        "supervisor gives up (stops its children and exits shutdown).",
    )
    period: PositiveDuration = Field("5s", description="The restart intensity window, more than 0.")  # type: ignore[assignment]
    auto_shutdown: AutoShutdown = Field(
        AutoShutdown.NEVER,
        description="never, any_significant or all_significant: whether significant "
        "children ending by themselves end the supervisor.",
    )
    children: list[Child] = Field(
        default_factory=list,
        max_length=64,
        description="Static children, in start order.",
    )
    child_template: Child | None = Field(
        None, description="simple_one_for_one only: what every dynamic child is made from."
    )
    max_children: int | None = Field(
        None, ge=0, description="simple_one_for_one only: at most this many dynamic children."
    )


Child.model_rebuild()


class ActorSpec(ActorTemplate):
    """An Actor resource: one supervised actor slot. Applied on its own, it is supervised
    as the single child of an implicit one_for_one supervisor with these settings."""

    restart: RestartType = RestartType.PERMANENT
    shutdown: ShutdownValue | None = None
    start_timeout: Duration = DEFAULT_START_TIMEOUT  # type: ignore[assignment]

    def as_supervisor(self, name: str) -> SupervisorSpec:
        """The implicit one_for_one supervisor (default intensity and period) of an Actor
        applied on its own: one child, named ``name``, with this slot's restart fields. The
        one mapping both backends use."""
        as_json = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        slot = {k: as_json.pop(k) for k in ("restart", "shutdown", "startTimeout") if k in as_json}
        child = Child.model_validate({"name": name, **slot, "actor": as_json})
        return SupervisorSpec(children=[child])


# --- status ----------------------------------------------------------------------------


class Condition(_Model):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class ExitSummary(_Model):
    """How an incarnation ended: reason is normal, shutdown, killed, noconnection or crash;
    the other fields say more when there is more to say."""

    reason: str
    message: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    time: str | None = None


class ChildState(_Model):
    name: str
    state: Literal["running", "starting", "stopping", "restarting", "undefined"]
    incarnation: int | None = None
    pid: str | None = None
    restarts: int = 0
    last_exit: ExitSummary | None = None


class SupervisorStatus(_Model):
    model_config = ConfigDict(extra="allow")  # written by newer operators; keep what we read

    observed_generation: int | None = None
    phase: str | None = None
    ready: str | None = Field(None, description="Running children / children, e.g. 3/3.")
    ready_children: int | None = None
    total_children: int | None = None
    restarts_in_window: int | None = None
    restart_history: list[float] | None = Field(
        None, description="Restart times (Unix seconds) inside the intensity window."
    )
    incarnations: dict[str, int] | None = None
    children: list[ChildState] | None = None
    conditions: list[Condition] | None = None
    supervisor_incarnation: int | None = Field(
        None, description="A nested supervisor: which start of it this is (its parent asks)."
    )
    exit_reason: AnyJSON = Field(
        None, description="How this supervisor ended, in the exit-reason wire form."
    )
    core_snapshot: str | None = Field(
        None,
        description="The operator's record of the supervision core (JSON), so that its own "
        "restarts lose no restart and count none twice.",
    )


class ActorStatus(_Model):
    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = None
    phase: str | None = None
    incarnation: int | None = None
    pid: str | None = None
    pod: str | None = None
    restarts: int | None = None
    last_exit: ExitSummary | None = None
    conditions: list[Condition] | None = None


# --- resources -------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    # Objects read back from a cluster carry uid, resourceVersion, ...: accept and keep them.
    model_config = ConfigDict(extra="allow", frozen=True)

    name: DnsLabel
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _Resource(_Model):
    api_version: Literal["rebeam.io/v1alpha1"]
    metadata: ObjectMeta

    @property
    def ref(self) -> str:
        """``Kind/name``, as messages name a resource."""
        return f"{type(self).__name__}/{self.metadata.name}"


class Supervisor(_Resource):
    kind: Literal["Supervisor"]
    spec: SupervisorSpec
    status: SupervisorStatus | None = None


class Actor(_Resource):
    kind: Literal["Actor"]
    spec: ActorSpec
    status: ActorStatus | None = None


Resource = Supervisor | Actor
