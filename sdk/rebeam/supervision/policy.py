"""Which exits are restarted and when significant children end a supervisor
(docs/semantics.md, "Restart types", "Significant children and auto_shutdown").

The whole restart rule fits in one table::

    restart type   normal    shutdown, {shutdown,_}    anything else
    permanent      restart   restart                   restart
    transient      -         -                         restart
    temporary      -         -                         -
"""

from __future__ import annotations

from rebeam.exits import ExitReason
from rebeam.supervision.childspec import AutoShutdown, RestartType

__all__ = ["should_restart", "triggers_auto_shutdown"]


def should_restart(restart: RestartType, reason: ExitReason) -> bool:
    if restart is RestartType.PERMANENT:
        return True
    if restart is RestartType.TRANSIENT:
        return not reason.is_clean
    return False


def triggers_auto_shutdown(mode: AutoShutdown, *, significant_children_left: int) -> bool:
    """After a significant child ended by itself and was not restarted: does the supervisor
    shut down? ``any_significant``: yes. ``all_significant``: only when no significant child
    is left (one that is restarting still counts as there)."""
    if mode is AutoShutdown.ANY_SIGNIFICANT:
        return True
    if mode is AutoShutdown.ALL_SIGNIFICANT:
        return significant_children_left == 0
    return False
