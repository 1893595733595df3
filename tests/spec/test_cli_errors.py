"""The CLI with hostile input, as a user meets it: one clear line and an exit code (0 done,
1 failed, 2 refused or misused, 70 internal error), never a traceback, never a runaway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rebeam import cli
from rebeam.cli import validate
from rebeam.pids import unescape_token, validate_namespace
from tests.spec.test_hostile_manifests import BOMB, with_actor

REBEAM = str(Path(sys.executable).parent / "rebeam")
EXAMPLES = sorted(str(p) for p in (Path(__file__).parents[2] / "examples").glob("*.yaml"))
MiB = 1024 * 1024


def rebeam(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REBEAM, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def test_run_refuses_a_nul_in_a_command_before_starting_anything(tmp_path: Path) -> None:
    # This used to pass validation; run then failed inside, started nothing and hung.
    manifest = tmp_path / "app.yaml"
    manifest.write_text(with_actor('{command: ["sleep\\0", "300"]}'))
    events, state = tmp_path / "events.jsonl", tmp_path / "state"
    result = subprocess.run(
        [REBEAM, "run", str(manifest), "--plain", "--events", str(events)],
        capture_output=True,
        text=True,
        timeout=60,  # a guard only: the run ends by itself at once
        check=False,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{manifest}:7: Supervisor/shop: spec.children[0].actor.command[0]: must not contain "
        "a NUL character (no program argument, environment value or path can hold one)",
        "rebeam: nothing was started",
    ]
    assert not events.exists()
    assert not state.exists()  # no instance was announced: no nats-server, no tree


def _peak_rss_of_validate(path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """``rebeam validate path`` run by a small parent that reports its child's peak RSS:
    RUSAGE_CHILDREN of this test process would include every earlier test's children."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(r.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, REBEAM, "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    *lines, peak_kib = result.stdout.splitlines()
    return subprocess.CompletedProcess(result.args, result.returncode, "", "\n".join(lines)), (
        int(peak_kib) * 1024
    )


@pytest.mark.timeout(120)
def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    result, peak = _peak_rss_of_validate(path)
    assert result.returncode == 1
    assert f"{path}:7: aliases expand too much" in result.stderr
    assert "Traceback" not in result.stderr
    assert peak < 300 * MiB


@pytest.mark.timeout(120)
def test_a_5mb_manifest_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    children = "".join(
        f"    - {{name: c{i}, actor: {{command: [sleep, '1']}}}}\n" for i in range(120_000)
    )
    path.write_text(with_actor("{command: [sleep]}") + children)
    assert path.stat().st_size > 5_000_000
    result, peak = _peak_rss_of_validate(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: file too large: {path.stat().st_size} bytes, the limit is 1048576 bytes (1 MiB)",
        "1 problem found",
    ]
    assert peak < 300 * MiB


@pytest.mark.parametrize(
    "content",
    [b"kind: {a: 1}\n", b"a: !!python/name:os.system x\n", b"? [a]\n: 1\n", b"kind: \xff\n"],
    ids=["mapping-kind", "python-tag", "sequence-key", "not-utf8"],
)
def test_validate_refuses_what_used_to_be_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "app.yaml"
    path.write_bytes(content)
    result = rebeam("validate", str(path))
    assert result.returncode == 1
    problem, summary = result.stderr.splitlines()
    assert problem.startswith(f"{path}:1: ")
    assert summary == "1 problem found"


# --- the top level: exit codes, and no traceback unless asked for ------------------------


def _explode(args: object) -> int:
    raise RuntimeError("something\nunexpected")


def test_an_unexpected_exception_is_one_line_and_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(validate, "run", _explode)
    monkeypatch.delenv("REBEAM_DEBUG", raising=False)
    assert cli.main(["validate", "x.yaml"]) == 70
    assert capsys.readouterr().err.splitlines() == [
        "rebeam: internal error: RuntimeError: something unexpected (please report; --debug "
        "shows the traceback)"
    ]


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--debug", "validate", "x.yaml"], {}),
        (["validate", "x.yaml", "--debug"], {}),
        (["validate", "x.yaml"], {"REBEAM_DEBUG": "1"}),
    ],
)
def test_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
) -> None:
    monkeypatch.setattr(validate, "run", _explode)
    monkeypatch.delenv("REBEAM_DEBUG", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(argv) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("rebeam: internal error: RuntimeError")


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--help"], 0), (["no-such-command"], 2), ([], 2), (["tree", "--bogus"], 2)],
)
def test_usage_is_an_exit_code_not_an_exception(argv: list[str], code: int) -> None:
    assert cli.main(argv) == code


def test_a_reader_that_went_away_is_no_error_to_report(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `rebeam validate ... | head -0`: nobody reads stdout
    try:
        result = subprocess.run(
            [REBEAM, "validate", *EXAMPLES],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == ""


@pytest.mark.parametrize(
    "argv",
    [["call", "counter"], ["cast", "counter"], ["send", "counter"], ["start-child", "jobs"]],
)
def test_json_nested_too_deep_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Parsed before anything connects: no instance is needed to see the refusal.
    what = "the args" if argv[0] == "start-child" else "the message"
    for deep, problem in [(5000, "is nested too deeply"), (65, "nests more than 64 levels")]:
        assert cli.main([*argv, "[" * deep + "]" * deep]) == 2
        assert capsys.readouterr().err.splitlines() == [f"rebeam: {what} {problem}"]


@pytest.mark.parametrize("namespace", ["", "Shop", "../x", "shop\n", "a" * 64])
@pytest.mark.parametrize("command", [["tree"], ["events"], ["call", "x", "1"], ["run", "x.yaml"]])
def test_a_namespace_no_tree_can_have_is_a_usage_error(
    command: list[str], namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to reach the subject builders and come back as an internal error (or, with a
    # final newline, pass as a namespace of its own).
    assert cli.main([*command, "--namespace", namespace]) == 2
    assert "argument --namespace/-n: invalid namespace" in capsys.readouterr().err


def test_a_final_newline_is_not_part_of_a_valid_name() -> None:
    with pytest.raises(ValueError, match="invalid namespace"):
        validate_namespace("shop\n")
    with pytest.raises(ValueError, match="malformed token"):
        unescape_token("slot\n")
