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
