"""``rebeam validate FILE...``: check manifests without running anything.

Prints every problem, one line each, and exits 1 if there was any; otherwise prints a
one-line summary per resource and exits 0.
"""

from __future__ import annotations

import argparse
import sys

from rebeam.spec import Supervisor, SupervisorSpec, load_files


def run(args: argparse.Namespace) -> int:
    result = load_files(args.files)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if result.problems:
        count = result.problem_count
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    for resource in result.resources:
        summary = _describe(resource.spec) if isinstance(resource, Supervisor) else "actor"
        print(f"{resource.ref}: ok ({summary})")
    return 0


def _describe(spec: SupervisorSpec) -> str:
    actors = supervisors = 0
    stack = [spec]
    while stack:
        current = stack.pop()
        for child in [*current.children, *filter(None, [current.child_template])]:
            if child.supervisor is not None:
                supervisors += 1
                stack.append(child.supervisor)
            else:
                actors += 1
    parts = [spec.strategy.value, f"{actors} actor{'s' if actors != 1 else ''}"]
    if supervisors:
        parts.append(f"{supervisors} nested supervisor{'s' if supervisors != 1 else ''}")
    return ", ".join(parts)
