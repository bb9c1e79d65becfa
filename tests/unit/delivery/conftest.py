"""Fixtures of the real sender's tests (``test_sender``, ``test_http1``, ``test_http1_pool``): a loopback-allowed
``AiohttpSender`` whose every connection attempt is logged, closed after the test; and ``parses``, the stored bodies
parsed during a test, and ``sqlite_engine``, the engine on a SQLite file (``test_parsed``, ``test_parsed_attacks``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.sender import AiohttpSender
from webhook_operator.delivery.ssrf import AddressPolicy

from .fakes import SqliteEngine
from .receivers import ConnectionLog


@pytest.fixture
def log() -> ConnectionLog:
    return ConnectionLog()


@pytest.fixture
async def sender(log: ConnectionLog) -> AsyncIterator[AiohttpSender]:
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), user_agent="wo-test/1", socket_factory=log)
    yield sender
    await sender.close()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes | str]]:
    """Every ``ChangeEvent.model_validate_json`` call (a parse of a stored body), recorded."""
    seen: list[bytes | str] = []
    original = ChangeEvent.model_validate_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ChangeEvent], data: bytes | str, /, **kwargs: object) -> ChangeEvent:
        seen.append(data)
        return original(cls, data, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(ChangeEvent, "model_validate_json", classmethod(counting))
    yield seen


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[SqliteEngine]:
    engine = SqliteEngine(tmp_path / "store.db")
    await engine.start()
    yield engine
    await engine.graph.close()
