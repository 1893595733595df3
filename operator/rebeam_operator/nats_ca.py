"""The CA certificates actor pods trust NATS with (docs/security.md, "TLS").

The operator's pod has them in a file (``--nats-ca``/``REBEAM_NATS_CA``, mounted by the
chart); each actor pod gets them as the value of ``REBEAM_NATS_CA_PEM``, which the SDK reads
(rebeam._tls). In the environment, because a CA certificate is public and an environment
value needs nothing else: no volume, no object the operator would have to keep in every
namespace where it creates pods, and so no right to write ConfigMaps (or read Secrets) there.

The file is read again when it changed (the kubelet rewrites a mounted Secret after a
rotation): pods created afterwards trust the new CA. A file that cannot be used then keeps the
last good bundle, and says why in the log at most once a minute.
"""

from __future__ import annotations

import logging
import os
import time

from rebeam._tls import TrustedCa, client_context
from rebeam.errors import TlsError

__all__ = ["MAX_PEM", "ca_bundle", "check"]

log = logging.getLogger("rebeam.operator")

# An environment value is at most 128 KiB on Linux; a CA bundle is a few KiB.
MAX_PEM = 64 * 1024
_LOG_EVERY = 60.0

_cache: dict[str, tuple[tuple[int, int], str]] = {}  # path -> ((mtime_ns, size), pem)
_logged_at: dict[str, float] = {}


def check(path: str) -> str:
    """The PEM certificates in ``path``; TlsError (or ValueError, too large) says why not."""
    trusted = TrustedCa.resolve(path)
    assert trusted.pem is not None
    if len(trusted.pem) > MAX_PEM:
        raise ValueError(f"the CA file {path} is larger than {MAX_PEM} bytes")
    client_context(trusted)  # holds at least one usable certificate
    return trusted.pem


def ca_bundle(path: str) -> str | None:
    """The CA certificates of ``path``, read again when the file changed; the last good ones
    when it cannot be used now (None if it never could)."""
    cached = _cache.get(path)
    try:
        stat = os.stat(path)
        key = (stat.st_mtime_ns, stat.st_size)
        if cached is not None and cached[0] == key:
            return cached[1]
        pem = check(path)
    except (OSError, ValueError) as exc:  # TlsError is an OSError
        _log_failure(path, exc)
        return cached[1] if cached is not None else None
    _cache[path] = (key, pem)
    return pem


def _log_failure(path: str, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _logged_at.get(path, -_LOG_EVERY) >= _LOG_EVERY:
        _logged_at[path] = now
        what = exc if isinstance(exc, TlsError | ValueError) else f"cannot read {path}: {exc}"
        log.error("NATS CA for actor pods: %s; pods keep the last good CA", what)
