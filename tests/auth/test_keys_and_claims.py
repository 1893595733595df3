"""NKeys and NATS JWTs: what the issuer signs must verify, and nothing else may."""

from __future__ import annotations

import pytest

from rebeam.auth import jwt
from rebeam.auth.nkeys import ACCOUNT, SERVER, USER, KeyPair, NKeyError, kind_of, verify


def test_a_seed_gives_back_the_same_key_pair_and_kind() -> None:
    for kind, letter in ((ACCOUNT, "A"), (USER, "U"), (SERVER, "N")):
        pair = KeyPair.create(kind)
        assert pair.public_key.startswith(letter)
        assert len(pair.public_key) == 56
        assert pair.seed.startswith("S" + letter)
        again = KeyPair.from_seed(pair.seed)
        assert again.public_key == pair.public_key
        assert again.kind == kind
        assert kind_of(pair.public_key) == kind


def test_signatures_verify_only_for_their_key_and_data() -> None:
    pair, other = KeyPair.create(ACCOUNT), KeyPair.create(ACCOUNT)
    signature = pair.sign(b"data")
    assert verify(pair.public_key, b"data", signature)
    assert not verify(pair.public_key, b"date", signature)
    assert not verify(other.public_key, b"data", signature)
    assert not verify(pair.public_key, b"data", signature, kind=USER)


@pytest.mark.parametrize("bad", ["", "AB" * 28, "not base32!", "U" + "A" * 200])
def test_malformed_nkeys_are_refused_by_name(bad: str) -> None:
    with pytest.raises(NKeyError):
        kind_of(bad)
    with pytest.raises(NKeyError):
        KeyPair.from_seed(bad)


def test_a_jwt_round_trips_and_tampering_is_caught() -> None:
    issuer = KeyPair.create(ACCOUNT)
    token = jwt.encode({"sub": "x", "nats": {"type": "user"}}, issuer)
    claims = jwt.decode(token, kind="user", issuer_kind=ACCOUNT)
    assert claims["iss"] == issuer.public_key
    assert claims["nats"]["version"] == 2
    head, _body, sig = token.split(".")
    forged = jwt.encode({"sub": "y", "nats": {"type": "user"}}, issuer).split(".")[1]
    with pytest.raises(jwt.JwtError, match="signature"):
        jwt.decode(f"{head}.{forged}.{sig}", kind="user", issuer_kind=ACCOUNT)
    with pytest.raises(jwt.JwtError, match="not a"):
        jwt.decode(token, kind="authorization_request", issuer_kind=ACCOUNT)
    with pytest.raises(jwt.JwtError, match="issuer"):
        jwt.decode(token, kind="user", issuer_kind=SERVER)
    with pytest.raises(jwt.JwtError, match="expired"):
        jwt.decode(
            jwt.encode({"sub": "x", "nats": {"type": "user"}}, issuer, ttl=-10),
            kind="user",
            issuer_kind=ACCOUNT,
        )


@pytest.mark.parametrize("garbage", [b"", b"a.b", b"\xff\xfe.x.y", b"e30.e30.e30", b"x" * 70000])
def test_garbage_is_a_jwt_error(garbage: bytes) -> None:
    with pytest.raises(jwt.JwtError):
        jwt.decode(garbage, kind="user", issuer_kind=ACCOUNT)


def test_prepared_claims_are_signed_for_each_connection_alike() -> None:
    """The issuer prepares a grant's user claims once and signs them for each connection's
    own key: the JWT is the one whole claims would make."""
    issuer = KeyPair.create(ACCOUNT)
    nats_claims = {"pub": {"allow": ["a.>"]}, "subs": -1, "type": "user"}
    prepared = jwt.prepare({"aud": "ns_a", "name": "p", "nats": nats_claims}, issuer)
    first, second = KeyPair.create(USER).public_key, KeyPair.create(USER).public_key
    claims = jwt.decode(jwt.sign(prepared, first, issuer, ttl=60), kind="user", issuer_kind=ACCOUNT)
    assert claims["sub"] == first
    assert (claims["aud"], claims["name"], claims["iss"]) == ("ns_a", "p", issuer.public_key)
    assert claims["nats"] == {**nats_claims, "version": 2}
    assert claims["exp"] - claims["iat"] == 60
    assert len(claims["jti"]) == 52  # a hash of the claims, base32 without padding
    other = jwt.decode(jwt.sign(prepared, second, issuer), kind="user", issuer_kind=ACCOUNT)
    assert other["sub"] == second
    assert other["jti"] != claims["jti"]
    assert "exp" not in other
    whole = jwt.encode({"sub": first, "aud": "ns_a", "name": "p", "nats": nats_claims}, issuer)
    assert {
        k: v
        for k, v in jwt.decode(whole, kind="user", issuer_kind=ACCOUNT).items()
        if k not in ("iat", "jti")
    } == {k: v for k, v in claims.items() if k not in ("iat", "jti", "exp")}


def test_a_read_jwt_is_believed_only_once_verified() -> None:
    issuer = KeyPair.create(ACCOUNT)
    head, body, _sig = jwt.encode({"sub": "x", "nats": {"type": "user"}}, issuer).split(".")
    other = jwt.encode({"sub": "x", "nats": {"type": "user"}}, KeyPair.create(ACCOUNT))
    forged = jwt.parse(f"{head}.{body}.{other.split('.')[2]}", kind="user", issuer_kind=ACCOUNT)
    assert forged.claims["sub"] == "x"  # read, and not yet to be believed
    with pytest.raises(jwt.JwtError, match="signature"):
        forged.verified()
