"""The intake's request counter on the real ``OperatorService`` (loopback): one series per status code, counted by
the outermost middleware from the labelled child it keeps per code (no ``.labels()`` per POST)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from kubernetes import client as k8s

from webhook_operator.service import OperatorService

from .test_availability import EVENT
from .test_transport import ClosingAuth, _config


async def test_every_post_is_counted_once_under_its_status_code(tmp_path: Path) -> None:
    service = OperatorService(_config(tmp_path), api=k8s.ApiClient(), secrets=None,  # type: ignore[arg-type]
                              api_auth=ClosingAuth())  # fmt: skip
    await service.start()
    try:
        url = f"http://127.0.0.1:{service.bound_port(0)}/api/v1/events"
        async with aiohttp.ClientSession() as session:
            for body in (EVENT, {**EVENT, "id": "00000000-0000-0000-0000-000000000002"}, EVENT):
                async with session.post(url, json=body) as resp:
                    assert resp.status == 202
            for _ in range(2):
                async with session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 400
        counted = {
            s.labels["code"]: s.value
            for m in service.metrics.intake_requests.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }
        assert counted == {"202": 3.0, "400": 2.0}
        rejected = service.metrics.intake_events.labels("rejected")._value.get()
        assert rejected == 2.0
    finally:
        await service.stop()
