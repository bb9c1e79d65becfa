"""The ``h`` fixture: one store of every backend (memory, SQLite, PostgreSQL), for the contract suites."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ._backends import BACKENDS, Clock, Harness


@pytest.fixture(params=sorted(BACKENDS))
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    backend, clock = BACKENDS[request.param], Clock()
    store = backend.make(tmp_path, clock)
    await store.open()
    harness = Harness(backend, tmp_path, clock, store)
    yield harness
    await harness.store.close()
