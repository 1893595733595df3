"""The e2e tier's NATS as the tests hold it (the ``nats`` fixture, tests/e2e/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["E2ENats"]


@dataclass
class E2ENats:
    """The e2e NATS: its URL, the issuer secrets the operator is given (``--issuer-secrets``),
    and a secondary issuer for the tests' own clients (event taps, raw connections)."""

    url: str
    issuer_file: Path | None  # None: an open server (the benchmarks' comparison row only)
    issuer: Any  # rebeam.auth.issuer.Issuer (lazily imported: the control plane needs no SDK)

    @classmethod
    def open(cls, url: str) -> E2ENats:
        """A server that lets anyone in: what security is measured against, never tested on."""
        return cls(url, None, None)

    @property
    def secured(self) -> bool:
        return self.issuer is not None

    def token(self, grant: Any) -> str:
        # An open server takes any connection; a token there is ignored.
        return str(self.issuer.issue(grant)) if self.issuer is not None else "open"

    def admin_token(self, namespace: str) -> str:
        """An admin of ``namespace`` (connect as a client pid of it): for event taps and raw
        connections. Management requests need a Kubernetes identity instead (RBAC decides)."""
        from rebeam.auth.grants import Grant, Role

        return self.token(Grant(Role.ADMIN, namespace, label="e2e test"))

    def backend_token(self) -> str:
        """Everything, in every namespace: what a backend may do."""
        from rebeam.auth.grants import Grant, Role

        return self.token(Grant(Role.BACKEND, "*", label="e2e test backend"))
