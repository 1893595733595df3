"""permanent, transient and temporary children on normal and abnormal exits
(docs/semantics.md, "Restart types"), with real processes: each child exits once with its
code; if it is restarted, it then stays up."""

from __future__ import annotations

from tests.local.conftest import StartRun, supervisor

ONCE = (
    "{{command: [sh, -c, "
    "'if [ -e {n}.ran ]; then exec sleep 300; fi; touch {n}.ran; exit {code}']}}"
)
CASES = {
    # name: (restart type, exit code, restarted?)
    "perm-ok": ("permanent", 0, True),
    "perm-err": ("permanent", 3, True),
    "trans-ok": ("transient", 0, False),
    "trans-err": ("transient", 3, True),
    "temp-ok": ("temporary", 0, False),
    "temp-err": ("temporary", 3, False),
}


def test_restart_table(rebeam_run: StartRun) -> None:
    children = "".join(
        f"    - {{name: {n}, restart: {r}, actor: {ONCE.format(n=n, code=c)}}}\n"
        for n, (r, c, _) in CASES.items()
    )
    run = rebeam_run(supervisor("types", children, intensity=10))
    for name, (_, _, restarted) in CASES.items():
        run.events.wait("exited", name, incarnation=1)
        if restarted:
            run.events.wait("started", name, incarnation=2)
    # Every first exit has been handled (the supervisor handles them in order, and the
    # last restart's start is in): what each child got is final.
    starts = {n: [] for n in CASES}
    for e in run.events.poll():
        if e["event"] == "started":
            starts[e["child"]].append(e["incarnation"])
    expected = {n: [1, 2] if restarted else [1] for n, (_, _, restarted) in CASES.items()}
    assert starts == expected
