"""settings.py: flags win over the environment, the environment over the defaults, and a bad
value is refused by name (from a flag or from the environment alike)."""

from __future__ import annotations

import pytest

from rebeam_operator.settings import DEFAULT_IMAGE, TERMINATION_MESSAGE_PATH, Settings, parse

ENV = (
    "REBEAM_OPERATOR_NAMESPACES",
    "REBEAM_NATS_URL",
    "REBEAM_OPERATOR_LOG_FORMAT",
    "REBEAM_OPERATOR_LOG_LEVEL",
    "REBEAM_OPERATOR_IMAGE",
    "REBEAM_OPERATOR_EXIT_RECORD",
    "REBEAM_LEASE_TTL",
    "REBEAM_OPERATOR_SHARDS",
    "REBEAM_OPERATOR_POD_NAMESPACE",
    "REBEAM_OPERATOR_POD_NAME",
    "REBEAM_OPERATOR_SHARD_LEASE_SECONDS",
    "REBEAM_OPERATOR_SHARD_LEASE_PREFIX",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = parse([])
    assert settings == Settings()
    assert settings.clusterwide
    assert settings.nats_url == "nats://nats:4222"
    assert settings.log_format == "json"
    assert settings.log_level == "INFO"
    assert settings.image == DEFAULT_IMAGE
    assert settings.exit_record == TERMINATION_MESSAGE_PATH
    assert settings.lease_ttl is None


def test_environment_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_OPERATOR_NAMESPACES", " a, b ,,c ")
    monkeypatch.setenv("REBEAM_NATS_URL", "nats://env:4222")
    monkeypatch.setenv("REBEAM_OPERATOR_LOG_FORMAT", "text")
    monkeypatch.setenv("REBEAM_OPERATOR_LOG_LEVEL", "debug")
    monkeypatch.setenv("REBEAM_OPERATOR_IMAGE", "env/image:1")
    monkeypatch.setenv("REBEAM_OPERATOR_EXIT_RECORD", "/env/log")
    monkeypatch.setenv("REBEAM_LEASE_TTL", "2.5")
    settings = parse([])
    assert settings.namespaces == ("a", "b", "c")
    assert not settings.clusterwide
    assert settings.nats_url == "nats://env:4222"
    assert settings.log_format == "text"
    assert settings.log_level == "DEBUG"
    assert settings.image == "env/image:1"
    assert settings.exit_record == "/env/log"
    assert settings.lease_ttl == 2.5


def test_flags_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_OPERATOR_NAMESPACES", "a,b")
    monkeypatch.setenv("REBEAM_NATS_URL", "nats://env:4222")
    monkeypatch.setenv("REBEAM_OPERATOR_LOG_FORMAT", "text")
    monkeypatch.setenv("REBEAM_OPERATOR_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("REBEAM_OPERATOR_IMAGE", "env/image:1")
    monkeypatch.setenv("REBEAM_OPERATOR_EXIT_RECORD", "/env/log")
    monkeypatch.setenv("REBEAM_LEASE_TTL", "2.5")
    settings = parse(
        [
            "-n",
            "x",
            "--namespace",
            "y",
            "--nats-url",
            "nats://flag:4222",
            "--log-format",
            "json",
            "--log-level",
            "warning",
            "--image",
            "flag/image:2",
            "--exit-record",
            "$(REBEAM_TERMINATION_LOG)",
            "--lease-ttl",
            "9",
        ]
    )
    assert settings.namespaces == ("x", "y")  # the flags replace the list, not extend it
    assert settings.nats_url == "nats://flag:4222"
    assert settings.log_format == "json"
    assert settings.log_level == "WARNING"
    assert settings.image == "flag/image:2"
    assert settings.exit_record == "$(REBEAM_TERMINATION_LOG)"
    assert settings.lease_ttl == 9.0


def test_empty_environment_values_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.setenv(name, "")
    assert parse([]) == Settings()


@pytest.mark.parametrize(
    ("env", "value", "says"),
    [
        ("REBEAM_OPERATOR_LOG_FORMAT", "xml", "--log-format"),
        ("REBEAM_OPERATOR_LOG_LEVEL", "loud", "--log-level"),
        ("REBEAM_LEASE_TTL", "soon", "--lease-ttl"),
        ("REBEAM_LEASE_TTL", "0", "--lease-ttl"),
        ("REBEAM_NATS_ACCOUNT", "SYS accounts", "--nats-account"),
        ("REBEAM_ISSUER_SECRETS", "/nonexistent/issuer.json", "--issuer-secrets"),
    ],
)
def test_a_bad_environment_value_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: str,
    value: str,
    says: str,
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SystemExit) as exited:
        parse([])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert says in err
    assert env in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--log-format", "xml"], "--log-format"),
        (["--log-level", "loud"], "--log-level"),
        (["--lease-ttl", "soon"], "--lease-ttl"),
        (["--lease-ttl", "-1"], "--lease-ttl"),
        (["--nats-account", "a.b"], "--nats-account"),
        (["--issuer-secrets", __file__], "not an issuer secrets file"),
    ],
)
def test_a_bad_flag_is_refused_by_name(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_sharding_settings() -> None:
    settings = parse(
        ["--shards", "16", "--shard-namespace", "rebeam-system", "--replica-name", "rb-op-7c9d.x"]
    )
    assert (settings.shards, settings.shard_namespace) == (16, "rebeam-system")
    assert settings.replica_name == "rb-op-7c9d.x"
    assert (settings.shard_lease_seconds, settings.shard_lease_prefix) == (15, "rebeam-operator")
    assert parse([]).shards == 0  # one operator, no leases


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--shards", "4"], "needs --shard-namespace"),
        (["--shards", "-1"], "--shards (or REBEAM_OPERATOR_SHARDS): '-1': a whole number"),
        (["--shards", "2000"], "from 0 to 1024"),
        (["--shard-lease-seconds", "2"], "from 3 to 300"),
        (["--shard-lease-prefix", "Op_1"], "--shard-lease-prefix (or REBEAM_OPERATOR_SHARD"),
        (["--replica-name", "pod-"], "--replica-name (or REBEAM_OPERATOR_POD_NAME): 'pod-'"),
    ],
)
def test_bad_sharding_settings_are_refused_by_name(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
    assert problem in capsys.readouterr().err
