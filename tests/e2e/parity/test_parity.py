"""Same on both backends: every row of the parity table (rows.py) runs under ``rebeam run``
and on the operator, and each backend's normalized lifecycle events and management answers
must be the row's, and so each other's (docs/semantics.md, "Same on both backends").

A row the operator is known to get wrong has its operator run marked
``xfail(strict=True)`` with the difference: the day it is fixed the run passes, the mark
fails the suite, and the mark goes. A difference that is a race in the operator (seen only
now and then) is a plain ``xfail``: a strict one would fail whenever the race is won."""

from __future__ import annotations

import pytest
from tests.e2e.parity.harness import Backend, Row, Transcript, play
from tests.e2e.parity.rows import ROWS

pytestmark = pytest.mark.e2e

BACKENDS = ("local", "operator")


def _params() -> list[object]:
    params = []
    for row in ROWS:
        for name in BACKENDS:
            marks = []
            if name == "operator" and row.operator_differs:
                strict = not row.operator_race
                marks.append(pytest.mark.xfail(reason=row.operator_differs, strict=strict))
            params.append(pytest.param(row, name, id=f"{row.name}-{name}", marks=marks))
    return params


# Each backend's transcript of a row, so that the second backend to run it is also compared
# with the first (both run in one session unless -k picks one).
_SEEN: dict[tuple[str, str], Transcript] = {}


@pytest.mark.parametrize(("row", "backend"), _params(), indirect=["backend"])
def test_same_on_both_backends(row: Row, backend: Backend) -> None:
    got = play(row, backend)
    _SEEN[(row.name, backend.name)] = got
    print(f"{backend.name}:", *got.events, "--", *got.answers, sep="\n")  # shown on a failure
    assert {"events": got.events, "answers": got.answers} == {
        "events": list(row.events),
        "answers": list(row.answers),
    }
    other = next((t for (n, b), t in _SEEN.items() if n == row.name and b != backend.name), None)
    if other is not None:
        assert got == other
