"""cache.py: a driver keeps the newest view of what it owns, whatever order the views arrive in
(a write's response after a later watch event, a LIST answered during a watch)."""

from __future__ import annotations

from typing import Any

from rebeam_operator.cache import Cache

Json = dict[str, Any]


def _object(name: str, version: int, phase: str) -> Json:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": str(version)},
        "status": {"phase": phase},
    }


def test_a_child_object_view_older_than_the_one_kept_is_ignored() -> None:
    cache = Cache()
    cache.on_child_object(_object("team-1", 10, "Terminated"), deleted=False)
    # the response of a write made before the child terminated, read after its event
    cache.on_child_object(_object("team-1", 9, "Stopping"), deleted=False)
    assert cache.child_objects["team-1"]["status"]["phase"] == "Terminated"
    cache.on_child_object(_object("team-1", 11, "Terminated"), deleted=False)
    assert cache.child_objects["team-1"]["metadata"]["resourceVersion"] == "11"


def test_a_deleted_child_object_is_not_brought_back_by_a_late_view() -> None:
    cache = Cache()
    cache.on_child_object(_object("team-1", 10, "Terminated"), deleted=False)
    cache.on_child_object(_object("team-1", 12, "Terminated"), deleted=True)
    cache.on_child_object(_object("team-1", 11, "Terminated"), deleted=False)
    assert "team-1" not in cache.child_objects
    # an object made again under the same name is newer than its deletion
    cache.on_child_object(_object("team-1", 13, "Running"), deleted=False)
    assert cache.child_objects["team-1"]["status"]["phase"] == "Running"


def test_deleted_child_objects_are_remembered_only_up_to_a_bound() -> None:
    cache = Cache()
    for n in range(2000):
        cache.on_child_object(_object(f"w-{n}", n + 1, "Terminated"), deleted=True)
    assert len(cache.deleted_objects) <= 256
    assert "w-1999" in cache.deleted_objects
