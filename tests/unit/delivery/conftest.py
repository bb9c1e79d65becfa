"""Fixtures of the real sender's tests (``test_sender``, ``test_http1``, ``test_http1_pool``): a loopback-allowed
``AiohttpSender`` whose every connection attempt is logged, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from webhook_operator.delivery.sender import AiohttpSender
from webhook_operator.delivery.ssrf import AddressPolicy

from .receivers import ConnectionLog


@pytest.fixture
def log() -> ConnectionLog:
    return ConnectionLog()


@pytest.fixture
async def sender(log: ConnectionLog) -> AsyncIterator[AiohttpSender]:
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), user_agent="wo-test/1", socket_factory=log)
    yield sender
    await sender.close()
