"""The store-bound settings (issue 13, finding 4): per-webhook queue limits and the store's space budget, as flags
and WEBHOOK_OPERATOR_* variables like every other setting, with safe defaults and start-up errors for bad values."""

from __future__ import annotations

import argparse

import pytest

from webhook_operator.config import ConfigError, add_arguments, from_sources
from webhook_operator.delivery.limits import QueueLimits
from webhook_operator.store.base import SpaceBudget

ANON = {"WEBHOOK_OPERATOR_INTAKE_ALLOW_ANONYMOUS": "true"}


def parse(*argv: str, **env: str) -> object:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_sources(parser.parse_args(list(argv)), {**ANON, **env})


def test_defaults_bound_every_queue_and_the_store() -> None:
    config = parse()
    assert config.queue_limits == QueueLimits(100_000, 7 * 86400.0)  # type: ignore[attr-defined]
    assert config.store_max_bytes == SpaceBudget(fraction=0.8)  # type: ignore[attr-defined]


def test_flags_and_environment() -> None:
    config = parse("--max-queued-per-webhook", "500", "--max-queued-age", "2h", "--store-max-bytes", "800MiB")
    assert config.queue_limits == QueueLimits(500, 7200.0)  # type: ignore[attr-defined]
    assert config.store_max_bytes == SpaceBudget(max_bytes=800 * 1024**2)  # type: ignore[attr-defined]
    env = parse(WEBHOOK_OPERATOR_MAX_QUEUED_PER_WEBHOOK="7", WEBHOOK_OPERATOR_MAX_QUEUED_AGE="30m",
                WEBHOOK_OPERATOR_STORE_MAX_BYTES="50%")  # fmt: skip
    assert env.queue_limits == QueueLimits(7, 1800.0)  # type: ignore[attr-defined]
    assert env.store_max_bytes == SpaceBudget(fraction=0.5)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--max-queued-per-webhook", "0"), ("--max-queued-per-webhook", "many"), ("--max-queued-age", "0s"),
     ("--store-max-bytes", "0"), ("--store-max-bytes", "120%"), ("--store-max-bytes", "lots")],
)  # fmt: skip
def test_bad_values_name_the_flag(flag: str, value: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        parse(flag, value)
