"""``python -m rebeam.runtime``: host one actor in this OS process.

See ``docs/runtime-contract.md`` for the contract with supervisors (flags, environment, the
ready handshake, the exit record, signals and exit codes).
"""

from rebeam.runtime._main import main, run

__all__ = ["main", "run"]
