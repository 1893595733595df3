"""crds/ is generated from the models, never edited: regenerate and compare. Also check, without
an API server, the structural-schema rules the API server enforces (the e2e tier applies them
to a real one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebeam.spec.crdgen import crd_documents, render, write_crds
from rebeam.spec.rules import RULES

CRDS = Path(__file__).parents[2] / "crds"


def test_crds_are_up_to_date(tmp_path: Path) -> None:
    write_crds(tmp_path)
    generated = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert committed == generated, "crds/ differs from the models: run `make crds`"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("name", sorted(crd_documents()))
def test_schemas_are_structural(name: str) -> None:
    crd = crd_documents()[name]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _nodes(schema):
        assert "$ref" not in node, path
        untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert "type" in node or untyped_ok, f"{path} has no type"
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
        assert node.get("additionalProperties") is not False, path
        assert node.get("default", "") is not None, f"{path}: null default"


def test_every_cel_rule_is_in_the_crd() -> None:
    text = (CRDS / "rebeam.io_supervisors.yaml").read_text()
    text += (CRDS / "rebeam.io_actors.yaml").read_text()
    for rules in RULES.values():
        for rule in rules:
            if rule.cel:
                assert rule.message in text


def test_children_are_a_list_keyed_by_name() -> None:
    crd = crd_documents()["rebeam.io_supervisors.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    children = spec["properties"]["children"]
    assert children["x-kubernetes-list-type"] == "map"
    assert children["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in children["items"]["required"]


def test_printer_columns_and_status_subresource() -> None:
    version = crd_documents()["rebeam.io_supervisors.yaml"]["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Strategy", "Ready", "Restarts", "Phase", "Age"]


def test_rendered_yaml_has_no_anchors() -> None:
    for document in crd_documents().values():
        text = render(document)
        assert "&id" not in text
        assert yaml.safe_load(text) == document
