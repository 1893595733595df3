"""NATS JWTs: the signed claims the auth callout reads and writes.

A NATS JWT is ``base64url(header).base64url(claims).base64url(signature)`` with the header
``{"typ":"JWT","alg":"ed25519-nkey"}``; the signature is the issuer's Ed25519 signature of
the first two parts, and ``iss`` in the claims is the issuer's public nkey. Claims of version
2 keep their kind-specific fields under ``nats`` (``nats.type`` says which kind).

Three kinds matter to rebeam (docs/security.md, "How a process is let in"):

* the server's **authorization request** (``authorization_request``), signed by the server's
  key (``N...``): who is connecting, with which token;
* rebeam's **user** claims (``user``), signed by the issuing account (``A...``): the
  connection's account (``aud``) and permissions;
* rebeam's **authorization response** (``authorization_response``), signed by the same
  account, addressed to the server (``aud`` = the server's id) and to the connecting user's
  key (``sub``), carrying the user JWT or an error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from rebeam.auth.nkeys import KeyPair, NKeyError, kind_of, verify

__all__ = ["JwtError", "Prepared", "Unverified", "decode", "encode", "parse", "prepare", "sign"]

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_MAX_TOKEN = 64 * 1024  # an authorization request with TLS chains stays far below this


class JwtError(ValueError):
    """A JWT that does not decode, is not signed by its issuer, or is of the wrong kind."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


_HEAD = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise JwtError("not base64url") from None


def encode(claims: dict[str, Any], issuer: KeyPair, *, ttl: float | None = None) -> str:
    """Sign ``claims`` (``sub`` and ``nats.type`` set by the caller) as ``issuer``."""
    rest = {k: v for k, v in claims.items() if k not in ("sub", "iat", "exp", "jti")}
    return sign(prepare(rest, issuer), str(claims.get("sub", "")), issuer, ttl=ttl)


@dataclass(frozen=True)
class Prepared:
    """Claims serialized ahead of signing: all but the ones each JWT has its own of (the
    subject, the times and the id). The issuer prepares a grant's user claims once, before
    its holder connects, so that a connection's callout only fills those in and signs."""

    members: str  # JSON object members, without the braces; "iss" among them


def prepare(claims: dict[str, Any], issuer: KeyPair) -> Prepared:
    """``claims`` (without ``sub``, ``iat``, ``exp`` or ``jti``) ready for :func:`sign`."""
    body = dict(claims)
    body["nats"] = {**body.get("nats", {}), "version": 2}
    body["iss"] = issuer.public_key
    return Prepared(json.dumps(body, separators=(",", ":"))[1:-1])


def sign(prepared: Prepared, sub: str, issuer: KeyPair, *, ttl: float | None = None) -> str:
    """The JWT of ``prepared`` for ``sub``, issued now (and expiring ``ttl`` seconds from
    now), signed as ``issuer`` (whose public key :func:`prepare` put in the claims)."""
    now = time.time()
    times = f'"iat":{int(now)}' + (f',"exp":{int(now + ttl)}' if ttl is not None else "")
    body = f'{{"sub":{json.dumps(sub)},{times},{prepared.members}'
    # The id is a hash of the claims, as NATS's own tools make it: repeatable, unique enough.
    digest = hashlib.sha512(f"{body}}}".encode()).digest()[:32]
    jti = base64.b32encode(digest).decode().rstrip("=")
    claims = body + f',"jti":"{jti}"}}'
    signed = f"{_HEAD}.{_b64(claims.encode())}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def decode(token: str | bytes, *, kind: str, issuer_kind: int) -> dict[str, Any]:
    """The claims of a JWT whose signature checks against its own ``iss``; raises JwtError.

    ``kind`` is the expected ``nats.type`` and ``issuer_kind`` the nkey kind its issuer must
    have: the caller decides whom it trusts by checking ``iss`` itself."""
    return parse(token, kind=kind, issuer_kind=issuer_kind).verified()


@dataclass(frozen=True)
class Unverified:
    """A JWT read, not yet checked: its claims are only its sender's word until
    :meth:`verified`. The issuer reads a request's token first, and checks the signature
    before anything it does for it (an issuer that will not answer need not check)."""

    claims: dict[str, Any]
    signed: bytes
    signature: bytes

    def verified(self) -> dict[str, Any]:
        """The claims, if the signature checks against their ``iss`` and they have not
        expired; raises JwtError."""
        if not verify(self.claims["iss"], self.signed, self.signature):
            raise JwtError("JWT signature does not verify")
        expires = self.claims.get("exp")
        if isinstance(expires, int) and expires and expires < time.time():
            raise JwtError("JWT has expired")
        return self.claims


def parse(token: str | bytes, *, kind: str, issuer_kind: int) -> Unverified:
    """A JWT of ``kind`` from an issuer of ``issuer_kind``, read but not verified; raises
    JwtError if it is not one."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise JwtError("a JWT is ASCII") from None
    if len(token) > _MAX_TOKEN:
        raise JwtError(f"JWT of {len(token)} characters is over {_MAX_TOKEN}")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three parts")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, RecursionError):
        raise JwtError("JWT parts are not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != _HEADER["alg"]:
        raise JwtError("JWT is not signed with ed25519-nkey")
    if not isinstance(claims, dict) or not isinstance(claims.get("nats"), dict):
        raise JwtError("JWT claims are not NATS claims")
    if claims["nats"].get("type") != kind:
        raise JwtError(f"JWT is a {claims['nats'].get('type')!r}, not a {kind!r}")
    issuer = claims.get("iss")
    try:
        if not isinstance(issuer, str) or kind_of(issuer) != issuer_kind:
            raise JwtError("JWT issuer is not of the expected kind")
    except NKeyError:
        raise JwtError("JWT issuer is not an nkey") from None
    return Unverified(claims, f"{parts[0]}.{parts[1]}".encode(), _unb64(parts[2]))
