"""Grants: the permissions of each role, checked against the subjects the SDK really uses."""

from __future__ import annotations

import re

from rebeam import _subjects
from rebeam.auth.grants import Grant, Role, client_pid_allowed, permissions
from rebeam.pids import Pid

A = Pid.for_incarnation("shop", "run1/bank/teller", 3)
B = Pid.for_incarnation("shop", "run1/bank/vault", 1)


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more at the end."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def _may(grant: Grant, verb: str, subject: str) -> bool:
    rules = permissions(grant)[verb]
    if any(_matches(p, subject) for p in rules.get("deny", [])):
        return False
    return any(_matches(p, subject) for p in rules["allow"])


def test_an_actor_sends_to_anyone_but_only_as_itself() -> None:
    actor = Grant(Role.ACTOR, "shop", A, names=("teller",))
    assert _may(actor, "pub", _subjects.mailbox(B, A))
    assert not _may(actor, "pub", _subjects.mailbox(B, B))  # a forged sender
    assert _may(actor, "sub", _subjects.mailbox(A, B))
    assert not _may(actor, "sub", _subjects.mailbox(B, A))  # someone else's mailbox


def test_an_actor_never_speaks_for_the_backend() -> None:
    actor = Grant(Role.ACTOR, "shop", A)
    for subject in (
        _subjects.events_of(B),
        _subjects.events_of(A),
        _subjects.fence(A),
        _subjects.fence(B),
        _subjects.control("shop", "restart-child", A),
        f"$KV.{_subjects.global_bucket('shop')}.s.{A.slot_token}",  # slot records
        f"$KV.{_subjects.leases_bucket('shop')}.{B.tokens}",
        "$JS.API.STREAM.CREATE.evil",
        "$JS.API.STREAM.PURGE.rebeam_mbox_shop",
        f"$JS.API.STREAM.DELETE.KV_{_subjects.global_bucket('shop')}",
        f"_INBOX_rebeam.shop.{B.tokens}.abc.1",
    ):
        assert not _may(actor, "pub", subject), subject


def test_an_actor_claims_only_the_names_its_manifest_declares() -> None:
    actor = Grant(Role.ACTOR, "shop", A, names=("teller",))
    kv = f"$KV.{_subjects.global_bucket('shop')}"
    assert _may(actor, "pub", f"{kv}.n.teller")
    assert not _may(actor, "pub", f"{kv}.n.bank")
    assert _may(actor, "pub", f"{kv}.o.{A.tokens}.n.teller")
    assert not _may(actor, "pub", f"{kv}.o.{B.tokens}.n.teller")
    assert _may(actor, "pub", f"$KV.{_subjects.leases_bucket('shop')}.{A.tokens}")


def test_no_role_reaches_another_namespace() -> None:
    other = Pid.for_incarnation("other", "x", 1)
    for role in (Role.ACTOR, Role.ADMIN):
        grant = Grant(role, "shop", A if role is Role.ACTOR else Pid.for_client("shop"))
        for verb in ("pub", "sub"):
            for pattern in permissions(grant)[verb]["allow"]:
                assert "other" not in pattern
                assert pattern == ">" or re.search(r"shop|\$JS\.API\.INFO", pattern), pattern
        assert not _may(grant, "pub", _subjects.mailbox(other, A))


def test_an_admin_is_a_client_pid_with_management_rights() -> None:
    me = Pid.for_client("shop")
    admin = Grant(Role.ADMIN, "shop", me)
    assert _may(admin, "pub", _subjects.control("shop", "tree", me))
    # Who asks is in the subject: an admin asks only as itself.
    assert not _may(admin, "pub", _subjects.control("shop", "tree", Pid.for_client("shop")))
    assert not _may(admin, "pub", f"rebeam.shop.control.tree.{me.tokens}.x")
    assert _may(admin, "pub", f"$KV.{_subjects.global_bucket('shop')}.n.anything")
    assert not _may(admin, "pub", f"$KV.{_subjects.global_bucket('shop')}.s.{A.slot_token}")
    assert client_pid_allowed(admin, Pid.for_client("shop"))
    assert not client_pid_allowed(admin, A)  # never a supervised child
    assert not client_pid_allowed(admin, Pid.for_client("other"))
    assert not client_pid_allowed(Grant(Role.ACTOR, "shop", A), Pid.for_client("shop"))
