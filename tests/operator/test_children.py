"""children.py: the spec an actor child's Actor slot object shows, and the patch that keeps it
current when the child is replaced under a new spec."""

from __future__ import annotations

from typing import Any

from rebeam.spec.models import Child
from rebeam_operator.children import slot_spec, slot_spec_patch

Json = dict[str, Any]


def child(**fields: Any) -> Child:
    return Child.model_validate({"name": "w", **fields})


def test_the_slot_spec_is_the_template_with_the_childs_restart_fields() -> None:
    spec = slot_spec(child(restart="transient", shutdown="2s", actor={"command": ["sleep", "1"]}))
    assert spec["command"] == ["sleep", "1"]
    assert spec["restart"] == "transient"
    assert spec["shutdown"] == "2s"
    assert "name" not in spec


def test_no_patch_when_the_object_shows_the_spec_already() -> None:
    c = child(actor={"command": ["sleep", "1"]})
    assert slot_spec_patch(c, slot_spec(c)) is None


def test_no_patch_for_what_the_api_server_defaults() -> None:
    """The server fills in the schema's defaults; they are no difference."""
    c = child(actor={"command": ["sleep", "1"]})
    assert slot_spec_patch(c, {"command": ["sleep", "1"]}) is None


def test_a_changed_child_patches_new_fields_and_nulls_removed_ones() -> None:
    old = slot_spec(child(actor={"command": ["sleep", "1"], "workingDir": "/tmp"}))
    new = child(actor={"command": ["sleep", "2"]})
    patch = slot_spec_patch(new, old)
    assert patch is not None
    assert patch["spec"]["command"] == ["sleep", "2"]
    assert patch["spec"]["workingDir"] is None


def test_an_unreadable_object_spec_is_replaced() -> None:
    c = child(actor={"command": ["sleep", "1"]})
    patch = slot_spec_patch(c, {"restart": "sometimes"})
    assert patch is not None
    assert patch["spec"]["restart"] == "permanent"
