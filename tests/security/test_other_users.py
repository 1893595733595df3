"""`rebeam run` answers its own user only: the owner's credential is in a file only the owner
can read, and without it the server refuses (docs/security.md, "How a process is let in").

Another user is played by a command with an empty state folder of its own: what the file's
mode keeps from other users (this machine's Python lives under a home folder only its owner
can enter, so a real second user cannot run rebeam here)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.local.conftest import SLEEPER, StartRun, rebeam_run, supervisor  # noqa: F401


def test_another_user_cannot_manage_the_tree(rebeam_run: StartRun, tmp_path: Path) -> None:  # noqa: F811
    run = rebeam_run(supervisor("app", f"    - {{name: idle, actor: {SLEEPER}}}\n"))
    run.events.wait("started", "idle")
    instance = run.instance_file()
    assert instance.stat().st_mode & 0o777 == 0o600
    for folder in (instance.parent, instance.parent.parent):  # nor can they list the folders
        assert folder.stat().st_mode & 0o077 == 0
    url = json.loads(instance.read_text())["nats_url"]
    stranger = dict(run.env, XDG_STATE_HOME=str(tmp_path / "stranger"))
    for command in (
        ("terminate-child", "app/idle"),
        ("terminate-child", "app/idle", "--nats", url),
        ("call", "idle", "{}", "--nats", url),
    ):
        run.env, mine = stranger, run.env
        try:
            refused = run.rebeam(*command)
        finally:
            run.env = mine
        assert refused.returncode != 0, command
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "exited idle" not in " ".join(run.events.lines())
    owner = run.rebeam("tree", "--json")
    assert owner.returncode == 0, owner.stderr
