"""Which NATS servers a client trusts over TLS: one place builds the ``ssl.SSLContext`` of
every rebeam connection (docs/security.md, "TLS").

A ``tls://`` URL asks for an encrypted connection to a server that proves who it is with a
certificate for the URL's host, signed by a CA the client trusts. That CA comes from, first
found:

1. the ``ca`` given (``tls_ca=`` of :func:`rebeam.connect`, ``rebeam --nats-ca FILE``): a
   file of PEM certificates;
2. ``REBEAM_NATS_CA``: the same, named in the environment (the operator's pod has it);
3. ``REBEAM_NATS_CA_PEM``: the PEM certificates themselves (what the operator gives each
   actor pod, so that no pod needs a volume or a right to read a Secret);
4. else the system's trust store (a server with a certificate from a public CA).

When a CA is given, only it is trusted: a private CA is the point of giving one.

A ``nats://`` URL gets the same context when a CA is configured: nats-py upgrades to TLS by
itself whenever the server requires it, and should then check the server against that CA.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

from rebeam._limits import TooLarge, read_bounded
from rebeam.errors import TlsError

__all__ = [
    "ENV_CA",
    "ENV_CA_PEM",
    "MAX_BUNDLE",
    "TrustedCa",
    "client_context",
    "failure",
    "handshake_failed",
    "nats_options",
    "plaintext_refused",
    "wants_tls",
]

ENV_CA = "REBEAM_NATS_CA"
ENV_CA_PEM = "REBEAM_NATS_CA_PEM"
# A CA bundle is a few KiB; a whole system trust store about 200 KiB.
MAX_BUNDLE = 1024 * 1024
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = (62, 64)
_HINT = "give the CA that signed the server's certificate (tls_ca=, $REBEAM_NATS_CA, --nats-ca)"


@dataclass(frozen=True)
class TrustedCa:
    """The CA certificates a client trusts, and where they came from (for messages)."""

    pem: str | None  # None: the system's trust store
    source: str

    @classmethod
    def resolve(cls, ca: str | None = None) -> TrustedCa:
        """The CA of the list in this module's docstring; TlsError names a file that cannot
        be used."""
        if ca:
            return cls(_read_bundle(ca, f"the CA file {ca}"), f"the CA in {ca}")
        path = os.environ.get(ENV_CA)
        if path:
            return cls(_read_bundle(path, f"{ENV_CA}={path}"), f"the CA in {path} ({ENV_CA})")
        pem = os.environ.get(ENV_CA_PEM)
        if pem:
            if len(pem) > MAX_BUNDLE:
                raise TlsError(f"{ENV_CA_PEM} is larger than {MAX_BUNDLE} bytes")
            return cls(pem, f"the CA in {ENV_CA_PEM}")
        return cls(None, "the system's trust store")

    @property
    def configured(self) -> bool:
        return self.pem is not None


def _read_bundle(path: str, what: str) -> str:
    try:
        data = read_bounded(path, MAX_BUNDLE)
    except TooLarge:
        raise TlsError(f"{what} is larger than {MAX_BUNDLE} bytes: not a CA bundle") from None
    except OSError as exc:
        raise TlsError(f"cannot read {what}: {exc.strerror or exc}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise TlsError(f"{what} is not PEM text (CA certificates)") from None


def client_context(trusted: TrustedCa) -> ssl.SSLContext:
    """A context that checks the server's certificate and host name against ``trusted``,
    TLS 1.2 or later."""
    if trusted.pem is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        # PROTOCOL_TLS_CLIENT checks the certificate and the host name, and trusts nothing
        # until told: only the given CA.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cadata=trusted.pem)
        except (ssl.SSLError, ValueError) as exc:
            raise TlsError(f"{trusted.source} holds no usable PEM certificate ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def wants_tls(url: str) -> bool:
    """Whether ``url`` asks for TLS: then nothing may be sent in plaintext."""
    return url.strip().lower().startswith("tls://")


def nats_options(url: str, ca: str | None = None) -> tuple[dict[str, Any], TrustedCa]:
    """nats-py's options for ``url`` (``tls=``: a context of :func:`client_context`) when it
    is a ``tls://`` URL or a CA is configured; none otherwise. And the CA it trusts."""
    trusted = TrustedCa.resolve(ca)
    if not (wants_tls(url) or trusted.configured):
        return {}, trusted
    return {"tls": client_context(trusted)}, trusted


def failure(exc: BaseException, url: str, trusted: TrustedCa) -> TlsError | None:
    """What a connection attempt's failure means when it is one that will not go away by
    trying again, in words: a server that does not speak TLS for a tls:// URL, a certificate
    that does not verify. None for any other error."""
    if isinstance(exc, TlsError):
        return exc
    if not isinstance(exc, ssl.SSLCertVerificationError):
        return None
    why = (exc.verify_message or str(exc)).rstrip(".")
    if exc.verify_code in _NAME_MISMATCH:
        return TlsError(
            f"NATS at {url}: TLS: the server's certificate is not for this host ({why}): "
            "connect by a name it has (on Kubernetes: the NATS Service, localhost, or one of "
            "tls.extraDNSNames)"
        )
    return TlsError(
        f"NATS at {url}: TLS: the server's certificate is not trusted ({why}), checked "
        f"against {trusted.source}: {_HINT}"
    )


def handshake_failed(exc: ssl.SSLError, url: str) -> TlsError:
    """The last of handshakes that failed for another reason (a server that closed the
    connection during the handshake, a protocol it does not speak), once retries are spent."""
    return TlsError(f"NATS at {url}: TLS handshake failed: {exc.reason or exc}")


def plaintext_refused(url: str) -> TlsError:
    return TlsError(
        f"NATS at {url} does not require TLS: a tls:// URL is never used in plaintext "
        "(the credential would travel unencrypted)"
    )
