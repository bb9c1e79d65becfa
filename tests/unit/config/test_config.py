"""Configuration: flags over environment over defaults, clear errors, and a documented table that cannot drift."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from webhook_operator.config import SETTINGS, ConfigError, OperatorConfig, add_arguments, from_sources, markdown_table

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


TOKENS = {"WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE": "/etc/webhook-operator/tokens"}


def test_defaults_are_safe() -> None:
    config = from_sources(_parse(), TOKENS)
    assert config == OperatorConfig(intake_token_file=Path("/etc/webhook-operator/tokens"))
    assert config.allow_loopback is False and config.intake_allow_anonymous is False
    assert config.retry.schedule == (60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0)


def test_flags_win_over_environment_and_lists_merge() -> None:
    env = {"WEBHOOK_OPERATOR_NAMESPACES": "x,y", "WEBHOOK_OPERATOR_STATUS_INTERVAL": "500ms", **TOKENS}
    config = from_sources(_parse("--namespaces", "a,b", "--namespaces", "c"), env)
    assert config.namespaces == ("a", "b", "c")
    assert config.status_interval == 0.5
    assert from_sources(_parse(), env).namespaces == ("x", "y")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEBHOOK_OPERATOR_INTAKE_ADDRESS": "nowhere"}, "--intake-address / WEBHOOK_OPERATOR_INTAKE_ADDRESS"),
        ({"WEBHOOK_OPERATOR_RETRY_SCHEDULE": "1m,soon"}, "--retry-schedule"),
        ({"WEBHOOK_OPERATOR_SSRF_DENY_CIDR": "10.0.0.0/33"}, "--ssrf-deny-cidr"),
        ({"WEBHOOK_OPERATOR_ALLOW_LOOPBACK": "maybe"}, "--allow-loopback"),
        ({"WEBHOOK_OPERATOR_LOG_FORMAT": "xml"}, "--log-format"),
        ({"WEBHOOK_OPERATOR_MAX_CONCURRENCY": "0"}, "--max-concurrency"),
        ({"WEBHOOK_OPERATOR_INTAKE_MAX_BODY": "lots"}, "--intake-max-body"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_sources(_parse(), {**TOKENS, **env})


def test_the_intake_is_never_open_by_accident() -> None:
    with pytest.raises(ConfigError, match="--intake-token-file"):
        from_sources(_parse(), {})
    assert from_sources(_parse("--intake-allow-anonymous", "true"), {}).intake_allow_anonymous


def test_every_setting_has_a_parser_and_a_field() -> None:
    fields = set(OperatorConfig.__dataclass_fields__)
    for setting in SETTINGS:
        assert (setting.name if setting.name != "retry_schedule" else "retry") in fields, setting.name


def test_documented_table_matches_the_code() -> None:
    assert markdown_table() in DOC.read_text(), "docs/configuration.md is stale: regenerate with config-table"


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("false", False), ("true", True)])
async def test_ssrf_allow_private_reaches_the_operators_address_policy(
    tmp_path: Path, value: str | None, expected: bool
) -> None:
    """Issue 13, finding 6: the service built its policy without ``allow_private``, so private ranges were open
    whatever the configuration said. Now the setting (default off) is what the running sender enforces."""
    from kubernetes import client as k8s

    from webhook_operator.delivery.sender import AiohttpSender
    from webhook_operator.service import OperatorService

    env = {"WEBHOOK_OPERATOR_INTAKE_ALLOW_ANONYMOUS": "true", "WEBHOOK_OPERATOR_STORE_PATH": str(tmp_path / "s.db")}
    if value is not None:
        env["WEBHOOK_OPERATOR_SSRF_ALLOW_PRIVATE"] = value
    config = from_sources(_parse(), env)
    assert config.ssrf_allow_private is expected
    service = OperatorService(config, api=k8s.ApiClient(), secrets=None)  # type: ignore[arg-type]
    try:
        sender = service.graph.sender
        assert isinstance(sender, AiohttpSender)
        policy = sender._policy
        assert policy.allow_private is expected
        assert (policy.check("10.96.0.1") is None) is expected
        assert (policy.check("::ffff:10.96.0.1") is None) is expected
        assert "cloud metadata" in (policy.check("fd00:ec2::23") or "")
    finally:
        await service.graph.sender.close()
        await service.graph.store.close()


def test_ssrf_allow_private_flag_and_bad_value() -> None:
    assert from_sources(_parse("--ssrf-allow-private", "true"), TOKENS).ssrf_allow_private is True
    with pytest.raises(ConfigError, match="--ssrf-allow-private / WEBHOOK_OPERATOR_SSRF_ALLOW_PRIVATE"):
        from_sources(_parse(), {**TOKENS, "WEBHOOK_OPERATOR_SSRF_ALLOW_PRIVATE": "sometimes"})
