"""Re:BEAM - Erlang/OTP's supervision trees, registry and actor messaging for Python."""

from rebeam.exits import ExitReason

__all__ = ["ExitReason"]
__version__ = "0.1.0"
