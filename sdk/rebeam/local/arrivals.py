"""Waking requests that wait for a supervisor to appear in a tree that is still starting.

While ``rebeam run`` starts its trees, a management request may name a supervisor that does
not exist yet (its parent has not come to it). OTP queues a request to a supervisor that is
initialising; here the request waits for the supervisor to be created, then its core queues
the request until its init is done (docs/sdk.md, "While a tree starts"). :class:`Arrivals`
is how the waiting requests hear that a supervisor was created: each one looks again.
"""

from __future__ import annotations

from rebeam._wakeups import Wakeups

__all__ = ["Arrivals"]


class Arrivals(Wakeups):
    """:meth:`announce` once a supervisor was created."""
