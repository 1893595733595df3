"""Manifests that break one rule each, with the problem ``rebeam validate`` reports.

Shared by tests/spec (the Python side of each rule) and tests/e2e (its CEL twin, enforced by
a real API server): the same mistake must be refused on a laptop and by ``kubectl apply``.
"""

from __future__ import annotations

ACTOR = "actor: {module: 'm:A'}"

# (the spec, indented under "spec:"; "field.path: message"). OTP's rules among them:
# docs/semantics.md, "Flags", "Child specs", "Significant children and auto_shutdown".
RULE_CASES: list[tuple[str, str]] = [
    (  # OTP: significant=true with a permanent child is a bad combination
        f"  autoShutdown: any_significant\n  children:\n"
        f"    - {{name: a, significant: true, {ACTOR}}}\n",
        "spec.children[0].significant: a significant child must be transient or "
        "temporary, not permanent",
    ),
    (  # OTP: significant children need auto_shutdown
        f"  children:\n    - {{name: a, restart: transient, significant: true, {ACTOR}}}\n",
        "spec.autoShutdown: significant children need autoShutdown any_significant or "
        "all_significant",
    ),
    (  # OTP (recent releases): auto_shutdown with simple_one_for_one
        f"  strategy: simple_one_for_one\n  autoShutdown: all_significant\n"
        f"  childTemplate: {{name: t, {ACTOR}}}\n",
        "spec.autoShutdown: autoShutdown must be never with simple_one_for_one",
    ),
    (  # OTP: duplicate child names
        f"  children:\n    - {{name: a, {ACTOR}}}\n    - {{name: a, {ACTOR}}}\n",
        "spec.children[1].name: duplicate child name a",
    ),
    (  # OTP: a simple_one_for_one supervisor has exactly one spec
        "  strategy: simple_one_for_one\n",
        "spec.childTemplate: simple_one_for_one needs a childTemplate",
    ),
    (
        f"  strategy: simple_one_for_one\n  childTemplate: {{name: t, {ACTOR}}}\n"
        f"  children:\n    - {{name: a, {ACTOR}}}\n",
        "spec.children: simple_one_for_one takes a childTemplate, not children",
    ),
    (
        f"  childTemplate: {{name: t, {ACTOR}}}\n",
        "spec.childTemplate: childTemplate is only for simple_one_for_one",
    ),
    ("  maxChildren: 3\n", "spec.maxChildren: maxChildren is only for simple_one_for_one"),
    (  # OTP: period 0 is invalid
        "  period: 0s\n",
        "spec.period: period must be more than 0",
    ),
    (
        "  children:\n    - {name: a}\n",
        "spec.children[0]: a child needs exactly one of actor or supervisor",
    ),
    (
        "  children:\n    - {name: a, actor: {}}\n",
        "spec.children[0].actor: an actor needs exactly one of module or command",
    ),
    (
        "  children:\n    - {name: a, actor: {command: [x], args: {a: 1}}}\n",
        "spec.children[0].actor.args: the args of a command must be a list of strings",
    ),
    (
        "  children:\n    - {name: a, actor: {command: [x], readiness: {}}}\n",
        "spec.children[0].actor.readiness: readiness needs exactly one of spawned, notify, "
        "fd, tcp, http or exec",
    ),
    (
        "  children:\n    - {name: a, actor: {command: [x], "
        "readiness: {fd: {}, tcp: {port: 80}}}}\n",
        "spec.children[0].actor.readiness: readiness needs exactly one of spawned, notify, "
        "fd, tcp, http or exec",
    ),
    (
        "  children:\n    - {name: a, actor: {command: [x], "
        "readiness: {fd: {}, watchdog: {interval: 1s}}}}\n",
        "spec.children[0].actor.readiness.watchdog: a watchdog needs notify, tcp, http or exec "
        "readiness",
    ),
    (
        "  children:\n    - {name: a, actor: {module: 'm:A', readiness: {notify: {}}}}\n",
        "spec.children[0].actor.readiness: readiness is for a command; a Python actor is ready "
        "when its init returns",
    ),
]
