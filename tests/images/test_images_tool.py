"""tools/images.py on its own: where the base comes from, and what it says when it cannot
build (a named problem, never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import images


def test_the_mirror_is_the_one_apt_uses(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\n"
        "URIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64] http://other.example/debian bookworm main\n"
    )
    assert images.debian_mirror([deb822]) == "http://mirror.example/debian"
    assert images.debian_mirror([one_line]) == "http://other.example/debian"
    assert images.debian_mirror([tmp_path / "missing"]) == images.DEFAULT_MIRROR


def test_the_base_key_follows_the_recipe() -> None:
    key = images.base_key("http://a.example/debian")
    assert key == images.base_key("http://a.example/debian")
    assert key != images.base_key("http://b.example/debian")


def test_missing_tools_without_root_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda tool: None)
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(images.ImageError, match="apt-get install -y podman runc debootstrap"):
        images.ensure_tools(("podman", "runc", "debootstrap"))


def test_a_failed_build_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda tool: None)
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    assert images.main(["--base", "local"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("images: error: missing podman"), err
    assert "Traceback" not in err


def test_a_wrong_choice_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REBEAM_IMAGES_BASE", "laptop")
    assert images.main([]) == 1
    assert "REBEAM_IMAGES_BASE=laptop: it is local or registry" in capsys.readouterr().err
