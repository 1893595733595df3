"""Manifests in, resources or every problem out: each problem names file, line, resource,
field path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebeam.spec import Supervisor, load_files, load_text
from rebeam.spec.models import Actor
from rebeam.supervision import AutoShutdown, RestartType, Strategy

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))

MINIMAL = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: shop}
spec:
  children:
    - name: a
      actor: {module: "shop.a:A"}
"""


def problems_of(text: str) -> list[str]:
    return [str(p) for p in load_text(text, "app.yaml").problems]


def one_problem(text: str) -> str:
    found = problems_of(text)
    assert len(found) == 1, found
    return found[0]


def test_defaults_follow_the_documented_choices() -> None:
    (sup,) = load_text(MINIMAL).raise_for_problems()
    assert isinstance(sup, Supervisor)
    spec = sup.spec
    assert (spec.strategy, spec.intensity, spec.period) == (Strategy.ONE_FOR_ONE, 3, 5.0)
    assert spec.auto_shutdown is AutoShutdown.NEVER
    child = spec.children[0]
    assert (child.restart, child.shutdown, child.significant) == (
        RestartType.PERMANENT,
        None,
        False,
    )
    assert child.start_timeout == 60.0


def test_the_issue_example_message() -> None:
    text = MINIMAL.replace("- name: a\n", "- name: a\n      restart: sometimes\n")
    assert one_problem(text) == (
        "app.yaml:7: Supervisor/shop: spec.children[0].restart: "
        "must be one of permanent, transient, temporary"
    )


def test_a_typo_in_a_field_name_suggests_the_right_one() -> None:
    text = MINIMAL.replace("children:", "childern:")
    assert "spec.childern: unknown field 'childern' (did you mean children?)" in one_problem(text)


def test_every_problem_in_a_file_is_reported_not_just_the_first() -> None:
    text = MINIMAL.replace("children:", "strategy: sideways\n  intensity: -1\n  children:")
    found = problems_of(text)
    assert [p.split(": ")[2] for p in found] == ["spec.strategy", "spec.intensity"]
    assert "must be at least 0" in found[1]


def test_problems_in_several_documents_and_files(tmp_path: Path) -> None:
    bad = MINIMAL.replace("name: a", "name: A_bad")
    (tmp_path / "one.yaml").write_text(bad + "---\n" + bad.replace("shop", "shop2"))
    (tmp_path / "two.yaml").write_text("kind: Widget\n")
    result = load_files([tmp_path / "one.yaml", tmp_path / "two.yaml"])
    files = [p.file.rsplit("/", 1)[-1] for p in result.problems]
    assert files == ["one.yaml", "one.yaml", "two.yaml"]
    assert result.problems[1].line == 14  # line numbers count across documents


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("kind: Supervisor", "kind: Widget"), "kind: must be Supervisor or Actor, got 'Widget'"),
        (("rebeam.io/v1alpha1", "rebeam.io/v2"), "apiVersion: must be rebeam.io/v1alpha1"),
        (("metadata: {name: shop}", "metadata: {}"), "metadata.name: is required"),
        (("shop.a:A", "not a module"), "must be 'package.module:ClassName'"),
        (("children:", "period: 0.5\n  children:"), "not a whole number of seconds"),
        (("children:", "period: soon\n  children:"), "must be a duration like 5s"),
        (("children:", "intensity: lots\n  children:"), "spec.intensity: must be a whole number"),
        (("name: a\n", "name: a\n      shutdown: later\n"), "must be brutal_kill, infinity"),
    ],
)
def test_clear_messages_for_common_mistakes(change: tuple[str, str], expected: str) -> None:
    assert expected in one_problem(MINIMAL.replace(*change))


def test_invalid_yaml_is_reported_with_its_line() -> None:
    assert one_problem("kind: [unclosed\n").startswith("app.yaml:2: invalid YAML")


def test_empty_documents_are_skipped() -> None:
    assert load_text("---\n" + MINIMAL + "---\n").raise_for_problems()


def test_durations_accept_whole_seconds_and_unit_strings() -> None:
    text = MINIMAL.replace("children:", "period: 90\n  children:").replace(
        "name: a\n", "name: a\n      shutdown: 1m30s\n      startTimeout: 250ms\n"
    )
    (sup,) = load_text(text).raise_for_problems()
    assert isinstance(sup, Supervisor)
    assert sup.spec.period == 90.0
    assert (sup.spec.children[0].shutdown, sup.spec.children[0].start_timeout) == (90.0, 0.25)


def test_the_same_resource_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text("# the same again\n" + MINIMAL)
    result = load_files([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert [str(p) for p in result.problems] == [
        f"{tmp_path}/b.yaml:2: Supervisor/shop: defined more than once (first at "
        f"{tmp_path}/a.yaml:1)"
    ]


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    result = load_files([tmp_path / "nope.yaml"])
    assert "No such file" in str(result.problems[0])


def test_mailbox_bounds_are_part_of_an_actor() -> None:
    text = MINIMAL.replace(
        'actor: {module: "shop.a:A"}',
        'actor: {module: "shop.a:A", mailbox: {maxMessages: 5, durable: true}}',
    )
    (sup,) = load_text(text).raise_for_problems()
    assert isinstance(sup, Supervisor)
    actor = sup.spec.children[0].actor
    assert actor is not None
    assert actor.mailbox is not None
    assert (actor.mailbox.max_messages, actor.mailbox.durable) == (5, True)
    bad = MINIMAL.replace(
        'actor: {module: "shop.a:A"}', 'actor: {module: "shop.a:A", mailbox: {maxMessages: 0}}'
    )
    assert "spec.children[0].actor.mailbox.maxMessages: must be at least 1" in one_problem(bad)


def test_an_actor_resource_loads() -> None:
    text = """\
apiVersion: rebeam.io/v1alpha1
kind: Actor
metadata: {name: janitor}
spec: {command: [sleep, "1"], restart: transient}
"""
    (actor,) = load_text(text).raise_for_problems()
    assert isinstance(actor, Actor)
    assert actor.spec.restart is RestartType.TRANSIENT


def test_resources_round_trip_through_their_yaml_form() -> None:
    (sup,) = load_text(MINIMAL).raise_for_problems()
    again = Supervisor.model_validate(sup.model_dump(by_alias=True, exclude_none=True))
    assert again == sup


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    assert load_files([path]).raise_for_problems()


def test_mailbox_settings_become_the_runtimes_environment() -> None:
    from rebeam.spec.models import ActorTemplate
    from rebeam.spec.runtime_env import mailbox_env

    template = ActorTemplate.model_validate(
        {"module": "m:A", "mailbox": {"maxMessages": 5, "durable": True, "maxDeliver": 3}}
    )
    assert mailbox_env(template) == {
        "REBEAM_MAILBOX_DURABLE": "true",
        "REBEAM_MAILBOX_MAX_MESSAGES": "5",
        "REBEAM_MAILBOX_MAX_DELIVER": "3",
    }
    assert mailbox_env(ActorTemplate(module="m:A")) == {}
    # Unset durability leaves the actor class's own choice alone.
    bounded_only = ActorTemplate.model_validate({"module": "m:A", "mailbox": {"maxBytes": 9}})
    assert mailbox_env(bounded_only) == {"REBEAM_MAILBOX_MAX_BYTES": "9"}
