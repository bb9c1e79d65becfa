"""Choosing the store backend (issue 15): ``--store postgres`` with a DSN from a mounted Secret file or the
environment; SQLite stays the default. The DSN carries a password, so it never appears in the config's repr or in
a message."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from webhook_operator.config import ConfigError, add_arguments, from_sources
from webhook_operator.service import build_store
from webhook_operator.store.postgres import PostgresStore
from webhook_operator.store.sqlite import SqliteStore

TOKENS = {"WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE": "/etc/webhook-operator/tokens"}
DSN = "postgresql://operator:s3cr3t-pw@db.example:5432/webhooks"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_sqlite_is_the_default_store(tmp_path: Path) -> None:
    config = from_sources(_parse("--store-path", str(tmp_path / "s.db")), TOKENS)
    assert config.store == "sqlite" and config.postgres_dsn is None and config.postgres_dsn_file is None
    assert isinstance(build_store(config), SqliteStore)


def test_postgres_reads_its_dsn_from_a_secret_file(tmp_path: Path) -> None:
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(DSN + "\n")  # a Secret's value often ends with a newline
    config = from_sources(_parse("--store", "postgres", "--postgres-dsn-file", str(dsn_file)), TOKENS)
    assert (config.store, config.postgres_dsn_file) == ("postgres", dsn_file)
    store = build_store(config)
    assert isinstance(store, PostgresStore) and store._db._dsn == DSN
    assert "s3cr3t-pw" not in repr(store) and "***" in repr(store)


def test_postgres_takes_its_dsn_from_the_environment_and_never_shows_it() -> None:
    config = from_sources(_parse(), {**TOKENS, "WEBHOOK_OPERATOR_STORE": "postgres",
                                     "WEBHOOK_OPERATOR_POSTGRES_DSN": DSN})  # fmt: skip
    assert config.postgres_dsn == DSN and "s3cr3t-pw" not in repr(config) and "s3cr3t-pw" not in str(config)
    assert isinstance(build_store(config), PostgresStore)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--store", "postgres"], {}, "--postgres-dsn-file / WEBHOOK_OPERATOR_POSTGRES_DSN_FILE"),
        (["--store", "postgres", "--postgres-dsn-file", "/x"], {"WEBHOOK_OPERATOR_POSTGRES_DSN": DSN}, "not both"),
        ([], {"WEBHOOK_OPERATOR_POSTGRES_DSN": DSN}, "--store postgres"),
        (["--store", "mysql"], {}, "expected one of sqlite, postgres"),
    ],
)
def test_a_store_choice_that_cannot_work_fails_at_start(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_sources(_parse(*argv), {**TOKENS, **env})
    assert message in str(caught.value) and "s3cr3t-pw" not in str(caught.value)


def test_an_unreadable_dsn_file_is_named_and_its_content_never_shown(tmp_path: Path) -> None:
    config = from_sources(_parse("--store", "postgres", "--postgres-dsn-file", str(tmp_path / "missing")), TOKENS)
    with pytest.raises(ConfigError, match="missing"):
        build_store(config)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    config = from_sources(_parse("--store", "postgres", "--postgres-dsn-file", str(empty)), TOKENS)
    with pytest.raises(ConfigError, match="empty"):
        build_store(config)
