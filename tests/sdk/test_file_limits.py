"""Every file a user names or a process wrote is read with a size limit, and one that breaks
it is refused by name, without reading it all (docs/sdk.md, "Input limits")."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rebeam._connecting import credentials_from_environment
from rebeam._limits import MAX_JSON_BYTES, TooLarge, read_bounded
from rebeam._tls import MAX_BUNDLE, TrustedCa
from rebeam.cli._common import CREDENTIALS_FILE_LIMIT, read_credentials_file
from rebeam.errors import TlsError
from rebeam.events import read_exit_record


def test_a_file_within_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_bounded(path, 10) == b"x" * 10


def test_a_regular_file_over_the_limit_is_refused_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 11)
    with pytest.raises(TooLarge) as refused:
        read_bounded(path, 10)
    assert (refused.value.size, refused.value.limit) == (11, 10)
    assert str(refused.value) == "11 bytes, the limit is 10"


def test_an_endless_file_is_refused_after_the_limit() -> None:
    with pytest.raises(TooLarge) as refused:
        read_bounded("/dev/zero", 1024)
    assert refused.value.size is None
    assert str(refused.value) == "more than the limit of 1024 bytes"


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", 10)


def test_an_endless_credentials_file_is_refused_by_name() -> None:
    with pytest.raises(OSError, match="the credentials file /dev/zero is larger than 64 KiB"):
        read_credentials_file(Path("/dev/zero"))
    assert CREDENTIALS_FILE_LIMIT == 64 * 1024


def test_a_process_refuses_an_endless_or_binary_credential_file_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a backend hands a process (REBEAM_CREDENTIALS_FILE) is refused, not cut to the
    limit or read as a traceback."""
    monkeypatch.delenv("REBEAM_CREDENTIALS", raising=False)
    monkeypatch.setenv("REBEAM_CREDENTIALS_FILE", "/dev/zero")
    with pytest.raises(ConnectionError, match="the credential file /dev/zero is larger than 64"):
        credentials_from_environment()
    binary = tmp_path / "cred"
    binary.write_bytes(b"\xff\xfe token")
    monkeypatch.setenv("REBEAM_CREDENTIALS_FILE", str(binary))
    with pytest.raises(ConnectionError, match=f"the credential file {binary} is not UTF-8"):
        credentials_from_environment()


def test_an_oversized_ca_bundle_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(b"-" * (MAX_BUNDLE + 1))
    with pytest.raises(TlsError, match=f"the CA file {path} is larger than {MAX_BUNDLE} bytes"):
        TrustedCa.resolve(str(path))


def test_an_oversized_exit_record_is_no_record_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "exit.json"
    with open(path, "wb") as out:
        out.truncate(MAX_JSON_BYTES + 1)  # sparse: large, and cheap to make
    assert os.path.getsize(path) == MAX_JSON_BYTES + 1
    with caplog.at_level(logging.WARNING):
        assert read_exit_record(path) is None
    assert f"{MAX_JSON_BYTES + 1} bytes, the limit is {MAX_JSON_BYTES}" in caplog.text
