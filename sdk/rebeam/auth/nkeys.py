"""NKeys: the Ed25519 key pairs NATS names its operators, accounts, servers and users with.

An nkey is printed as base32 (no padding) of ``prefix byte(s) + key + CRC16``. The first
letter says what the key is for: ``U`` a user, ``A`` an account, ``N`` a server, ``O`` an
operator; a private seed starts with ``S`` and the letter of its kind (``SA...``, ``SU...``).
The CRC is CRC-16/XMODEM of everything before it, little-endian.

rebeam signs only what the auth callout needs (docs/security.md, "How a process is let in"):
an account key pair that issues user JWTs, and verification of the server's signed
authorization requests. The Ed25519 arithmetic is ``cryptography``'s.

Example::

    account = KeyPair.create(ACCOUNT)
    account.public_key           # 'A...' (56 characters)
    KeyPair.from_seed(account.seed).public_key == account.public_key
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ACCOUNT",
    "OPERATOR",
    "SERVER",
    "USER",
    "KeyPair",
    "NKeyError",
    "kind_of",
    "verify",
]

ACCOUNT = 0
SERVER = 13 << 3
OPERATOR = 14 << 3
USER = 20 << 3
_SEED = 18 << 3
_KINDS = {ACCOUNT, SERVER, OPERATOR, USER}
_RAW_KEY = 32


class NKeyError(ValueError):
    """A malformed nkey: wrong length, alphabet, kind or checksum."""


def _crc16(data: bytes) -> int:
    return binascii.crc_hqx(data, 0)  # CRC-16/CCITT with init 0: XMODEM


def _encode(raw: bytes) -> str:
    checked = raw + _crc16(raw).to_bytes(2, "little")
    return base64.b32encode(checked).decode().rstrip("=")


def _decode(text: str) -> bytes:
    if not text.isascii() or len(text) > 128:
        raise NKeyError("an nkey is a short base32 string")
    try:
        checked = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise NKeyError("an nkey is base32") from None
    raw, crc = checked[:-2], checked[-2:]
    if len(checked) < 3 or _crc16(raw).to_bytes(2, "little") != crc:
        raise NKeyError("nkey checksum mismatch")
    return raw


def kind_of(public_key: str) -> int:
    """The kind (``USER``, ``ACCOUNT``, ...) of a public nkey; raises NKeyError."""
    raw = _decode(public_key)
    if len(raw) != 1 + _RAW_KEY or raw[0] not in _KINDS:
        raise NKeyError(f"not a public nkey: {public_key[:8]}...")
    return raw[0]


def _public_bytes(public_key: str, kind: int | None) -> bytes:
    raw = _decode(public_key)
    if len(raw) != 1 + _RAW_KEY or raw[0] not in _KINDS:
        raise NKeyError("not a public nkey")
    if kind is not None and raw[0] != kind:
        raise NKeyError("public nkey of the wrong kind")
    return raw[1:]


@functools.lru_cache(maxsize=64)
def _verifier(public_key: str, kind: int | None) -> Ed25519PublicKey:
    """The key object of a public nkey, decoded once: a server signs every authorization
    request with the same key, and the issuer checks one per connection."""
    return Ed25519PublicKey.from_public_bytes(_public_bytes(public_key, kind))


def verify(public_key: str, data: bytes, signature: bytes, kind: int | None = None) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data``."""
    try:
        _verifier(public_key, kind).verify(signature, data)
    except (NKeyError, InvalidSignature, ValueError):
        return False
    return True


class KeyPair:
    """A private nkey of one kind: signs, and knows its public key."""

    def __init__(self, kind: int, private: Ed25519PrivateKey) -> None:
        if kind not in _KINDS:
            raise NKeyError(f"unknown nkey kind {kind}")
        self.kind = kind
        self._private = private
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = _encode(bytes([kind]) + raw)

    @classmethod
    def create(cls, kind: int) -> KeyPair:
        return cls(kind, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: str) -> KeyPair:
        raw = _decode(seed)
        if len(raw) != 2 + _RAW_KEY or raw[0] & 0xF8 != _SEED:
            raise NKeyError("not an nkey seed")
        kind = ((raw[0] & 0x07) << 5) | (raw[1] >> 3)
        return cls(kind, Ed25519PrivateKey.from_private_bytes(raw[2:]))

    @property
    def seed(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return _encode(bytes([_SEED | (self.kind >> 5), (self.kind & 31) << 3]) + raw)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:  # never print the seed
        return f"KeyPair({self.public_key})"
