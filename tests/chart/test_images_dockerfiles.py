"""The Dockerfiles of images/ cannot be built here (no Docker engine): check that everything
they name exists — COPY sources, the extras they install, the console scripts they run (and
the functions behind them), the modules the operator runs in actor images — and that they
are pinned and non-root."""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart_helpers import CHART, REPO

IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
EXTRAS: dict[str, Any] = PYPROJECT["project"]["optional-dependencies"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name}: a dangling continuation line"
    return out


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), arguments
    return [str(v) for v in value]


def resolve_args(path: Path, text: str) -> str:
    defaults = {}
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), text)


def dockerignore_keeps(path: Path, source: str) -> bool:
    """Whether a COPY source survives ``<Dockerfile>.dockerignore`` (last matching rule wins)."""
    ignore = path.with_name(path.name + ".dockerignore")
    if not ignore.exists():
        return True
    kept = True
    for raw in ignore.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(source.rstrip("/"), pattern):
            kept = negate
    return kept


def test_there_are_an_operator_and_an_actor_image() -> None:
    assert {p.name for p in DOCKERFILES} >= {"operator.Dockerfile", "actor.Dockerfile"}


def test_base_images_are_pinned() -> None:
    for path in DOCKERFILES:
        for word, rest in instructions(path):
            if word != "FROM":
                continue
            image = resolve_args(path, rest.split()[0])
            if path.name == "demo.Dockerfile":  # FROM the actor base image of this repo
                assert image.startswith("ghcr.io/rebeam/actor:"), image
                continue
            assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), (
                f"{path.name}: {image} is not an exact python 3.11 slim tag"
            )


def test_images_run_as_a_non_root_user() -> None:
    for path in DOCKERFILES:
        users = [rest for word, rest in instructions(path) if word == "USER"]
        if path.name == "demo.Dockerfile":
            assert not users  # inherits the actor image's user
            continue
        assert users, f"{path.name}: no USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit(), f"{path.name}: a numeric USER lets runAsNonRoot verify it"
        assert int(uid) != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["podSecurityContext"]["runAsUser"] == 10001


def test_copy_sources_exist_and_are_not_ignored() -> None:
    for path in DOCKERFILES:
        for word, rest in instructions(path):
            if word not in ("COPY", "ADD"):
                continue
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            if "--from=" in rest:
                continue
            for source in parts[:-1]:
                assert (REPO / source).exists(), f"{path.name}: COPY {source}: no such path"
                assert dockerignore_keeps(path, source), f"{path.name}: {source} is ignored"


def test_installed_extras_exist() -> None:
    for path in DOCKERFILES:
        for word, rest in instructions(path):
            if word == "RUN" and "pip " in rest:
                for extra in re.findall(r"\[(\w+)\]", rest):
                    assert extra in EXTRAS, f"{path.name}: no extra [{extra}] in pyproject"


def test_entrypoints_are_console_scripts_whose_functions_exist() -> None:
    for path in DOCKERFILES:
        for word, rest in instructions(path):
            if word not in ("ENTRYPOINT", "CMD"):
                continue
            program = exec_form(rest)[0]
            assert program in SCRIPTS, f"{path.name}: {program} is not a console script"
            module, _, function = SCRIPTS[program].partition(":")
            assert callable(getattr(importlib.import_module(module), function))


def test_the_chart_runs_the_operator_image_entrypoint() -> None:
    (entrypoint,) = [
        exec_form(rest)
        for word, rest in instructions(IMAGES / "operator.Dockerfile")
        if word == "ENTRYPOINT"
    ]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["command"] == entrypoint


def test_actor_images_have_what_operator_pods_run() -> None:
    """Actor pods run `sh -c 'exec python -m rebeam.runtime ...'` (rebeam_operator.pods)."""
    from rebeam_operator import pods, settings

    command = pods.runtime_command(_module_template("hello.greeter:Greeter"))
    assert command[:2] == ["sh", "-c"]
    assert "python -m rebeam.runtime" in command[2]
    importlib.import_module("rebeam.runtime")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["actorImage"] == settings.DEFAULT_IMAGE
    env = " ".join(
        rest for word, rest in instructions(IMAGES / "actor.Dockerfile") if word == "ENV"
    )
    assert "PYTHONPATH=/app" in env


def _module_template(module: str) -> Any:
    from rebeam.spec import ActorTemplate

    return ActorTemplate.model_validate({"module": module})


def test_actor_pods_run_as_the_actor_images_user() -> None:
    """Pods set runAsUser and runAsGroup (rebeam_operator.pods): the base image's user, which
    owns /app and HOME there."""
    from rebeam_operator import pods

    (user,) = [rest for word, rest in instructions(IMAGES / "actor.Dockerfile") if word == "USER"]
    assert user == f"{pods.RUN_AS}:{pods.RUN_AS}"
    run = " ".join(
        rest for word, rest in instructions(IMAGES / "actor.Dockerfile") if word == "RUN"
    )
    assert f"--uid {pods.RUN_AS} --gid {pods.RUN_AS}" in run
