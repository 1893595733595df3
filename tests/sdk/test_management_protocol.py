"""The management protocol on its own: every error code's sentence, the core's reasons as
codes, reply parsing and the tree's one shape. What a backend answers with them is tested in
tests/local/test_management_errors.py and tests/e2e/operator/test_operator_management.py."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from rebeam._management_protocol import (
    SENTENCES,
    Refusal,
    child_path,
    core_refusal,
    parse_reply,
    parse_request,
    refusal_text,
    request_path,
    tree_child,
    tree_supervisor,
)
from rebeam._management_server import RequestAnswerer
from rebeam.exits import KILLED

# Each code with the fields its sentence takes, and the sentence (docs/sdk.md lists them).
EXPECTED = {
    "bad_request": ({"detail": "x"}, "bad request: x"),
    "forbidden": (
        {"detail": "user u may not get supervisors"},
        "not allowed: user u may not get supervisors",
    ),
    "no_supervisor": ({"supervisor": "shop"}, "no running supervisor at 'shop'"),
    "not_simple_one_for_one": (
        {"supervisor": "shop"},
        "shop is not simple_one_for_one: add children to its manifest",
    ),
    "simple_one_for_one": (
        {"supervisor": "pool"},
        "pool is simple_one_for_one: its children are started with start-child and stopped "
        "with terminate-child",
    ),
    "max_children": (
        {"supervisor": "pool", "limit": 3},
        "pool has reached max_children (3): terminate a child first",
    ),
    "bad_args": (
        {"supervisor": "pool", "detail": "x"},
        "the args do not fit the child template of pool: x",
    ),
    "not_found": ({"supervisor": "shop", "child": "cache"}, "shop has no child 'cache'"),
    "running": (
        {"supervisor": "shop", "child": "cache"},
        "shop/cache is running: terminate it first",
    ),
    "restarting": (
        {"supervisor": "shop", "child": "cache"},
        "shop/cache is being restarted: terminate it first",
    ),
    "start_failed": (
        {"target": "shop/cache", "detail": "killed"},
        "shop/cache failed to start: killed",
    ),
    "noproc": ({"supervisor": "shop"}, "shop is not running"),
    "timeout": ({"supervisor": "shop", "seconds": 25.0}, "no answer from shop within 25s"),
    "refused": (
        {"supervisor": "shop", "detail": "already_present"},
        "shop refused: already_present",
    ),
    "busy": ({"count": 64}, "busy: 64 requests are being answered; ask again later"),
    "internal": ({"operation": "tree", "detail": "KeyError('x')"}, "tree failed: KeyError('x')"),
}


def test_every_code_has_its_sentence() -> None:
    assert set(SENTENCES) == set(EXPECTED)
    for code, (fields, sentence) in EXPECTED.items():
        refusal = Refusal.of(code, **fields)
        assert (refusal.code, refusal.sentence) == (code, sentence)
        assert refusal.reply() == {"error": sentence, "code": code}


@pytest.mark.parametrize(
    ("reason", "child", "code", "sentence"),
    [
        ("not_found", "ghost", "not_found", "shop has no child 'ghost'"),
        ("running", "cache", "running", "shop/cache is running: terminate it first"),
        ("restarting", "cache", "restarting", "shop/cache is being restarted: terminate it first"),
        ("noproc", "cache", "noproc", "shop is not running"),
        (
            "simple_one_for_one",
            "3",
            "simple_one_for_one",
            SENTENCES["simple_one_for_one"].format(supervisor="shop"),
        ),
        (
            "max_children",
            "",
            "max_children",
            "shop has reached max_children (2): terminate a child first",
        ),
        (
            "bad_args: no list",
            "",
            "bad_args",
            "the args do not fit the child template of shop: no list",
        ),
        ("already_present", "x", "refused", "shop refused: already_present"),
        (KILLED, "cache", "start_failed", "shop/cache failed to start: killed"),
        (KILLED, "", "start_failed", "a new child of shop failed to start: killed"),
    ],
)
def test_the_cores_reasons_are_codes(reason: object, child: str, code: str, sentence: str) -> None:
    refusal = core_refusal(reason, supervisor="shop", child=child, limit=2)
    assert (refusal.code, refusal.sentence) == (code, sentence)


def test_paths() -> None:
    assert request_path({"path": "/shop/cache/"}) == "shop/cache"
    for bad in ({}, {"path": ""}, {"path": "/"}, {"path": 3}, {"path": "x" * 2000}):
        with pytest.raises(Refusal) as refused:
            request_path(bad)
        assert refused.value.code == "bad_request"
    assert child_path("shop/storage/cache") == ("shop/storage", "cache")
    with pytest.raises(Refusal, match="names no child"):
        child_path("cache")


def test_replies_are_parsed_and_refused_when_malformed() -> None:
    assert parse_reply(b'{"ok": 1}') == {"ok": 1}
    reply = parse_reply(json.dumps({"error": "shop is not running", "code": "noproc"}).encode())
    assert refusal_text("restart-child", "shop/a", reply) == (
        "restart-child shop/a: shop is not running (noproc)"
    )
    # A backend older than the codes: its words, code refused.
    assert parse_reply(b'{"error": "no"}') == {"error": "no", "code": "refused"}
    for bad in (b"[]", b'{"x": 1}', b'{"error": 3}', b'{"error": "x", "code": "a b"}', b"{"):
        with pytest.raises(ValueError, match="control reply"):
            parse_reply(bad)


def test_the_tree_has_one_shape() -> None:
    root = tree_supervisor(
        path="shop", strategy="one_for_one", state="running", restarts=0, intensity=1, period=5
    )
    inner = tree_supervisor(
        path="shop/storage",
        strategy="one_for_all",
        state="running",
        restarts=1,
        intensity=3,
        period=5,
    )
    common = {"state": "running", "incarnation": 1, "starts": 1, "last_exit": None, "os_pid": None}
    child = tree_child(
        name="storage",
        path="shop/storage",
        kind="supervisor",
        pid=None,
        pod=None,
        supervisor=inner,
        **common,
    )
    assert set(root) == {
        "path",
        "kind",
        "strategy",
        "state",
        "restarts",
        "intensity",
        "period",
        "children",
    }
    assert set(child) == {
        "name", "path", "kind", "state", "incarnation", "pid", "os_pid", "pod", "starts",
        "last_exit", "strategy", "restarts", "intensity", "period", "children",
    }  # fmt: skip
    assert (child["path"], child["state"], child["strategy"]) == (
        "shop/storage",
        "running",
        "one_for_all",
    )


def test_requests_are_read_or_refused_bad_request() -> None:
    assert parse_request("terminate-child", b'{"path": "a/b"}') == {"path": "a/b"}
    assert parse_request("tree", b"") == {}
    for operation, data, detail in [
        ("kill-all", b"{}", "no such management operation: 'kill-all'"),
        ("tree", b"[]", "a control request is a JSON object"),
        ("tree", b"{", "a control request is not valid JSON"),
        ("tree", b"[" * 100_000, "a control request is nested too deeply"),
    ]:
        with pytest.raises(Refusal) as refused:
            parse_request(operation, data)
        assert refused.value.code == "bad_request"
        assert refused.value.sentence.startswith(f"bad request: {detail}")


class Message:
    """What a control server reads of a NATS message, and what it answered."""

    def __init__(self, data: bytes, reply: str) -> None:
        self.data = data
        self.reply = reply
        self.answers: list[dict[str, object]] = []

    async def respond(self, data: bytes) -> None:
        self.answers.append(json.loads(data))


def test_every_request_on_an_inbox_is_answered_and_no_other() -> None:
    answerer = RequestAnswerer(logging.getLogger("test"))

    async def broken(operation: str, request: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("x")

    async def main() -> list[Message]:
        sent = [
            Message(b"{}", "_INBOX.abc"),
            Message(b"[]", "_INBOX.abc"),
            Message(b"{}", "$JS.API.STREAM.DELETE.x"),  # never answered there
        ]
        for msg in sent:
            await answerer.answer(msg, "tree", broken)
        return sent

    failed, bad, elsewhere = asyncio.run(main())
    assert failed.answers == [{"error": "tree failed: KeyError('x')", "code": "internal"}]
    assert bad.answers[0]["code"] == "bad_request"
    assert elsewhere.answers == []
    assert (answerer.refused, answerer.bad_requests) == (1, 1)
