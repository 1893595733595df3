"""A client of a namespace no backend has set up is told so, in a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

import rebeam
from rebeam.natsd import NatsServer, ServerOptions


async def test_a_namespace_nobody_serves_is_refused_by_name(tmp_path: Path) -> None:
    server = NatsServer.start(tmp_path / "nats", ServerOptions(namespaces=("lonely",)))
    try:
        with pytest.raises(rebeam.NotPermitted, match="only its backend"):
            await rebeam.connect(
                server.url, namespace="lonely", credentials=server.admin_credentials("lonely")
            )
    finally:
        server.stop()
