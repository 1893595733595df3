"""Hostile manifests: every one is refused with ``file:line: problem`` lines, within the
documented limits (README, "Manifest limits"), never with a Python exception.

The YAML-level cases run with both parsers the loader may use: libyaml's, and PyYAML's pure
Python one for an installation built without libyaml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rebeam.spec import Actor, load_files, load_text, safe_yaml
from rebeam.spec.loading import MAX_FILE_BYTES, MAX_PROBLEMS
from rebeam.spec.safe_yaml import MAX_ALIAS_NODES, MAX_DEPTH, MAX_DOCUMENTS

HEAD = "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: shop}\n"
MINIMAL = HEAD + "spec:\n  children:\n    - name: a\n      actor: {module: 'shop.a:A'}\n"


def with_actor(actor: str) -> str:
    """A one-child Supervisor whose actor is ``actor`` (YAML flow mapping)."""
    return HEAD + f"spec:\n  children:\n    - name: a\n      actor: {actor}\n"


def problems_of(text: str) -> list[str]:
    return [str(p) for p in load_text(text, "app.yaml").problems]


def one_problem(text: str) -> str:
    found = problems_of(text)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(safe_yaml, "_PARSER", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without libyaml here")
    return str(request.param)


# --- what used to be a Python traceback --------------------------------------------------


def test_a_mapping_as_kind_is_a_problem() -> None:
    text = HEAD.replace("kind: Supervisor", "kind: {a: 1}")
    assert one_problem(text) == "app.yaml:2: kind: must be Supervisor or Actor, got {'a': 1}"


@pytest.mark.parametrize("tag", ["!foo", "!!python/name:os.system", "!!binary", "!!set"])
def test_tags_beyond_json_data_are_refused(parser: str, tag: str) -> None:
    text = MINIMAL.replace("name: shop", f"name: {tag} shop")
    assert one_problem(text).startswith("app.yaml:3: invalid YAML: unsupported tag")


def test_a_sequence_as_a_mapping_key_is_refused(parser: str) -> None:
    assert one_problem("? [a, b]\n: 1\n") == (
        "app.yaml:1: invalid YAML: a mapping key must be a string, not a list"
    )


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    (problem,) = load_files([path]).problems
    assert str(problem) == f"{path}:8: not UTF-8 text: byte 0xe9 is not valid here"


@pytest.mark.parametrize("depth", [MAX_DEPTH, 20_000])
def test_deep_nesting_is_refused_at_the_limit(parser: str, depth: int) -> None:
    text = with_actor("{module: 'a:B', args: " + "[" * depth + "]" * depth + "}")
    problem = one_problem(text)
    assert problem.startswith("app.yaml:7: nested too deep: ")
    assert problem.endswith(f"levels here, the limit is {MAX_DEPTH}")


def test_nesting_just_under_the_limit_is_fine(parser: str) -> None:
    # root, spec, children, [0], actor, args: the args' own lists may take the rest.
    room = MAX_DEPTH - 6
    text = with_actor("{module: 'a:B', args: " + "[" * room + "]" * room + "}")
    assert problems_of(text) == []


def test_a_lone_surrogate_is_refused(parser: str) -> None:
    text = MINIMAL.replace("name: a", 'name: a\n      register: "\\ud800"')
    assert one_problem(text).startswith("app.yaml:7: invalid YAML")
    assert "invalid YAML" in one_problem("a: '\ud800'\n")  # and in text handed over as str


# --- NUL and other characters no program can receive -------------------------------------

NUL_CASES = [
    ("{command: [\"sle\\0ep\", '1']}", "spec.children[0].actor.command[0]"),
    ('{command: [sleep], args: ["1\\0"]}', "spec.children[0].actor.args"),
    ('{command: [sleep], env: [{name: A, value: "b\\0"}]}', "spec.children[0].actor.env[0].value"),
    ('{command: [sleep], workingDir: "/tmp\\0"}', "spec.children[0].actor.workingDir"),
    ('{module: "a:B", register: "r\\0"}', "spec.children[0].actor.register"),
]


@pytest.mark.parametrize(("actor", "path"), NUL_CASES, ids=[p for _, p in NUL_CASES])
def test_a_nul_character_where_it_reaches_the_os_is_refused(actor: str, path: str) -> None:
    problem = one_problem(with_actor(actor))
    assert problem.startswith(f"app.yaml:7: Supervisor/shop: {path}: ")
    assert "must not contain a NUL character" in problem


def test_a_nul_character_in_a_modules_json_args_is_fine() -> None:
    assert problems_of(with_actor('{module: "a:B", args: {text: "a\\0b"}}')) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (("name: shop", 'name: "shop\\n"'), "metadata.name"),
        (("name: a", 'name: "a\\n"'), "spec.children[0].name"),
        (("'shop.a:A'", '"shop.a:A\\n"'), "spec.children[0].actor.module"),
    ],
)
def test_a_trailing_newline_does_not_slip_through_a_pattern(
    change: tuple[str, str], path: str
) -> None:
    assert f": {path}: must be" in one_problem(MINIMAL.replace(*change))


def test_an_env_name_with_a_newline_is_refused() -> None:
    text = with_actor('{command: [sleep], env: [{name: "A\\n", value: b}]}')
    assert "env[0].name: must be a valid environment variable name" in one_problem(text)


# --- limits ------------------------------------------------------------------------------

BOMB = with_actor("{module: 'a:B', args: {}}").replace(
    "args: {}}",
    "args: {a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol], "
    + ", ".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "}}",
)


def test_an_alias_bomb_is_refused(parser: str) -> None:
    problem = one_problem(BOMB)
    assert problem.startswith("app.yaml:7: aliases expand too much: ")
    assert problem.endswith(f"nodes so far, the limit is {MAX_ALIAS_NODES} per file")


def test_aliases_within_the_budget_are_fine(parser: str) -> None:
    env = "&env [{name: A, value: a}, {name: B, value: b}]"
    text = with_actor(f"{{command: [sleep], env: {env}}}")
    text += "".join(
        f"    - {{name: b{i}, actor: {{command: [sleep], env: *env}}}}\n" for i in range(60)
    )
    (sup,) = load_text(text).raise_for_problems()
    assert [v.name for v in sup.spec.children[-1].actor.env] == ["A", "B"]


def test_an_alias_inside_its_own_anchor_is_refused(parser: str) -> None:
    text = with_actor("{module: 'a:B', args: &a [1, *a]}")
    assert one_problem(text) == (
        "app.yaml:7: invalid YAML: alias *a is inside its own anchor (a cycle)"
    )


def test_aliases_count_their_depth(parser: str) -> None:
    # Each part is well within the limit; the alias puts one inside the other.
    deep, deeper = "[" * 40 + "]" * 40, "[" * 20 + "*a" + "]" * 20
    text = with_actor(f"{{module: 'a:B', args: {{a: &a {deep}, b: {deeper}}}}}")
    assert one_problem(text).startswith("app.yaml:7: nested too deep: ")


def test_merge_keys_work_and_count_as_aliases(parser: str) -> None:
    text = HEAD + (
        "spec:\n  children:\n"
        "    - &base {name: a, restart: transient, actor: {command: [sleep]}}\n"
        "    - {<<: *base, name: b}\n"
    )
    (sup,) = load_text(text).raise_for_problems()
    assert [(c.name, c.restart.value) for c in sup.spec.children] == [
        ("a", "transient"),
        ("b", "transient"),
    ]


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(MINIMAL + "# " + "x" * (5 * 1024 * 1024) + "\n")
    (problem,) = load_files([path]).problems
    size = path.stat().st_size
    assert str(problem) == (
        f"{path}: file too large: {size} bytes, the limit is {MAX_FILE_BYTES} bytes (1 MiB)"
    )


def test_an_endless_file_is_refused(tmp_path: Path) -> None:
    (problem,) = load_files(["/dev/zero"]).problems
    assert str(problem) == (
        f"/dev/zero: file too large: more than {MAX_FILE_BYTES} bytes, the limit is "
        f"{MAX_FILE_BYTES} bytes (1 MiB)"
    )


def test_too_many_documents_are_refused(parser: str) -> None:
    text = (MINIMAL + "---\n") * (MAX_DOCUMENTS + 1)
    problem = one_problem(text)
    line = MAX_DOCUMENTS * 8  # the '---' that starts one document too many
    assert problem == (
        f"app.yaml:{line}: too many documents: more than {MAX_DOCUMENTS}, the limit is "
        f"{MAX_DOCUMENTS} per file"
    )


def test_problems_beyond_the_listing_limit_are_counted_not_listed() -> None:
    text = MINIMAL + "".join(f"  extra{i}: 1\n" for i in range(1000))
    result = load_text(text, "app.yaml")
    assert len(result.problems) == MAX_PROBLEMS + 1
    assert str(result.problems[-1]) == (
        f"app.yaml: {1000 - MAX_PROBLEMS} more problems not listed (the first {MAX_PROBLEMS} are)"
    )
    assert result.problem_count == 1000


def test_a_huge_value_is_cut_short_in_a_message() -> None:
    problem = one_problem(HEAD.replace("kind: Supervisor", "kind: " + "W" * 100_000))
    assert "kind: must be Supervisor or Actor, got 'WWWW" in problem
    assert len(problem) < 250


# --- data JSON and the Kubernetes API cannot hold ----------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1" * 5000, "a whole number must fit in 64 bits"),
        (str(2**63), "a whole number must fit in 64 bits"),
        (".inf", "a number must be finite"),
        (".nan", "a number must be finite"),
        ("1.0e+999", "a number must be finite"),
    ],
)
def test_numbers_beyond_json_are_refused(parser: str, value: str, message: str) -> None:
    text = with_actor(f"{{module: 'a:B', args: [{value}]}}")
    assert one_problem(text).startswith(f"app.yaml:7: invalid YAML: {message}")


def test_a_date_stays_the_string_it_reads_as(parser: str) -> None:
    (sup,) = load_text(with_actor("{module: 'a:B', args: [2024-01-31]}")).raise_for_problems()
    assert sup.spec.children[0].actor.args == ["2024-01-31"]


def test_keys_must_be_strings(parser: str) -> None:
    text = with_actor("{module: 'a:B', args: {1: one}}")
    assert (
        one_problem(text) == "app.yaml:7: invalid YAML: a mapping key must be a string: quote '1'"
    )


def test_a_duplicate_key_is_refused_not_silently_dropped(parser: str) -> None:
    text = MINIMAL + "  children: []\n"
    assert one_problem(text) == (
        "app.yaml:8: invalid YAML: duplicate key 'children' (first on line 5)"
    )


def test_a_file_without_a_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here yet\n---\n")
    assert [str(p) for p in load_files([path]).problems] == [
        f"{path}: no manifest in this file: expected a Supervisor or an Actor"
    ]


@pytest.mark.parametrize("duration", ["1" * 400 + "s", "8761h", 10**15])
def test_a_duration_beyond_a_year_is_refused(duration: object) -> None:
    text = f"{HEAD}spec:\n  period: {duration}\n".replace("kind: Supervisor", "kind: Supervisor")
    assert "spec.period: must be at most 8760h (a year)" in one_problem(text)


def test_an_actor_that_loads_can_be_turned_into_its_supervisor() -> None:
    # An infinite startTimeout used to load, then fail when run as its implicit supervisor.
    text = (
        "apiVersion: rebeam.io/v1alpha1\nkind: Actor\nmetadata: {name: j}\n"
        "spec: {command: [sleep], startTimeout: 8760h}\n"
    )
    (actor,) = load_text(text).raise_for_problems()
    assert isinstance(actor, Actor)
    assert actor.spec.as_supervisor("j").children[0].start_timeout == 8760 * 3600


def test_a_file_name_no_file_can_have_is_a_problem() -> None:
    (problem,) = load_files(["app\0.yaml"]).problems
    assert problem.message == "embedded null byte"
