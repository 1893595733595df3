"""An Actor applied on its own: ``rebeam run`` supervises it as the single child of an implicit
one_for_one supervisor with the default intensity, named after the Actor, with the Actor's
restart fields — the same mapping the operator uses (``ActorSpec.as_supervisor``)."""

from __future__ import annotations

import signal

from rebeam.spec.models import ActorSpec
from tests.local.conftest import StartRun, kill_os_pid

LONE = """\
apiVersion: rebeam.io/v1alpha1
kind: Actor
metadata: {name: solo}
spec:
  command: [sleep, '300']
  startTimeout: 20s
  shutdown: 2s
"""


def test_a_lone_actor_runs_and_is_restarted(rebeam_run: StartRun) -> None:
    run = rebeam_run(LONE)
    first = run.events.wait("started", "solo", incarnation=1)
    assert first["supervisor"] == "solo"
    kill_os_pid(first["os_pid"], signal.SIGKILL)
    run.events.wait("exited", "solo", incarnation=1, reason="killed")
    run.events.wait("started", "solo", incarnation=2)


def test_the_implicit_supervisor_keeps_the_slot_fields() -> None:
    spec = ActorSpec.model_validate(
        {"command": ["sleep", "1"], "restart": "transient", "shutdown": "2s", "startTimeout": 20}
    )
    implicit = spec.as_supervisor("solo")
    assert implicit.strategy.value == "one_for_one"
    (child,) = implicit.children
    assert child.name == "solo"
    assert child.restart.value == "transient"
    assert child.shutdown == 2.0
    assert child.start_timeout == 20.0
    assert child.actor is not None
    assert child.actor.command == ["sleep", "1"]
