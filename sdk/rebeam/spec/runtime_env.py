"""What a manifest's actor template asks of the runtime, as the environment both backends
(``rebeam run`` and the operator) pass to ``python -m rebeam.runtime``
(docs/runtime-contract.md). One mapping, so the two backends cannot drift apart."""

from __future__ import annotations

from rebeam.spec.models import ActorTemplate

__all__ = ["mailbox_env"]


def mailbox_env(template: ActorTemplate) -> dict[str, str]:
    """``REBEAM_MAILBOX_*`` from the template's ``mailbox``; empty when it has none."""
    mailbox = template.mailbox
    if mailbox is None:
        return {}
    # Only what the manifest says: an unset field leaves the actor class's own setting alone
    # (the runtime's environment wins over the class).
    env = {}
    if mailbox.durable is not None:
        env["REBEAM_MAILBOX_DURABLE"] = "true" if mailbox.durable else "false"
    for name, value in (
        ("REBEAM_MAILBOX_MAX_MESSAGES", mailbox.max_messages),
        ("REBEAM_MAILBOX_MAX_BYTES", mailbox.max_bytes),
        ("REBEAM_MAILBOX_MAX_DELIVER", mailbox.max_deliver),
    ):
        if value is not None:
            env[name] = str(value)
    return env
