"""Start-up in two stages (``availability``, issue 15 intake availability), on the real ``OperatorService`` servers
on loopback: the intake answers 503 (taking nothing) until the store opens, which is retried; then it accepts at
once, before the Webhook list is known, and ``/readyz`` says so; the list is retried in the background until it
can be read, and then delivery is ready and the events accepted meanwhile are routed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client as k8s

from webhook_operator import availability
from webhook_operator.reconcile import Resource
from webhook_operator.service import OperatorService

from .test_transport import ClosingAuth, _config

EVENT = {"id": "00000000-0000-0000-0000-000000000001", "eventType": "entityCreated", "entityType": "table",
         "entityId": "e-1", "timestamp": 1_700_000_000_000, "entity": {"id": "e-1"}}  # fmt: skip


async def post(session: aiohttp.ClientSession, service: OperatorService) -> int:
    async with session.post(f"http://127.0.0.1:{service.bound_port(0)}/api/v1/events", json=EVENT) as resp:
        return resp.status


async def readyz(session: aiohttp.ClientSession, service: OperatorService) -> tuple[int, dict[str, Any]]:
    async with session.get(f"http://127.0.0.1:{service.bound_port(1)}/readyz") as resp:
        return resp.status, json.loads(await resp.read())


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_intake_waits_for_the_store_not_for_the_api_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(availability, "FIRST", 0.05)
    monkeypatch.setattr(availability, "LAST", 0.1)
    (tmp_path / "store.db").mkdir()  # the store cannot be opened (a directory where its file should be)
    service = OperatorService(_config(tmp_path), api=k8s.ApiClient(), secrets=None,  # type: ignore[arg-type]
                              api_auth=ClosingAuth())  # fmt: skip
    starting = asyncio.create_task(service.start())
    try:
        async with aiohttp.ClientSession() as session:
            await until(lambda: _serving(service))
            await asyncio.sleep(0.3)  # several attempts to open the store
            assert await post(session, service) == 503
            status, body = await readyz(session, service)
            assert status == 503 and body["intake"] == "starting" and body["store"] == "unavailable"
            assert not starting.done()
            (tmp_path / "store.db").rmdir()  # the volume is there now: the next attempt opens it
            await asyncio.wait_for(starting, 5)
            assert await post(session, service) == 202  # before anything was read from the API server
            status, body = await readyz(session, service)
            assert (status, body) == (200, {"status": "ready", "intake": "ready", "delivery": "starting",
                                            "webhooks": 0, "unrouted": 1})  # fmt: skip
            assert await service.store.events_by_id([EVENT["id"]]), "the 503s took nothing; the 202 is stored"

            calls = 0

            async def list_webhooks() -> Sequence[Resource]:
                nonlocal calls
                calls += 1
                if calls < 3:
                    raise ConnectionRefusedError("the API server is away")
                return []

            syncing = asyncio.create_task(service.sync_webhooks(list_webhooks))

            async def delivery_ready() -> bool:
                return (await readyz(session, service))[1]["delivery"] == "ready"

            await until(delivery_ready)
            await syncing
            assert calls == 3
            await until(lambda: _unrouted_is(service, 0))  # routed (to no webhook: none exists)
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await service.stop()


async def _serving(service: OperatorService) -> bool:
    return len(service._runners) == 2


async def _unrouted_is(service: OperatorService, n: int) -> bool:
    return await service.store.unrouted_count() == n
