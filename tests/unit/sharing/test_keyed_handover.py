"""Hand-over of an ``ordering: entity`` lane between replicas (issue 12 part 2 with issue 15's work sharing)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from webhook_operator.sharing.rendezvous import assign

from .replicas import OK, Cluster, endpoint, event, target

KEYS = [f"team-{i % 3}/hook-{i}" for i in range(24)]
NAMES = ["r0", "r1", "r2"]


async def test_a_keyed_lane_handed_over_lets_every_batch_in_flight_finish() -> None:
    """Found by review: the first batch of an entity lane to finish during a hand-over made the lane cancel the
    others still in flight, which the new owner then sent again (a hand-over must send nothing twice)."""
    c = Cluster(NAMES)
    await c.start()
    await c.register(*KEYS, ordering="entity", maxInFlight=4)
    for _ in range(3):
        await c.tick()
    late = c.add("r3")
    await late.start()
    for k in KEYS:
        await late.dispatcher.register(target(k, ordering="entity", maxInFlight=4))
    moving = sorted(k for k, o in assign(KEYS, [*NAMES, "r3"]).items() if o == "r3")[0]
    old = c[assign(KEYS, NAMES)[moving]]
    gates = {event(1).id: asyncio.Event(), event(2).id: asyncio.Event()}
    cancelled = []

    async def send(request: Any) -> Any:
        body = json.loads(request.body)
        ids = [e["id"] for e in body["data"]] if "data" in body else [body["id"]]
        c.log.append((old.name, request.url, ids))
        if request.url == endpoint(moving):
            try:
                await gates[ids[0]].wait()
            except asyncio.CancelledError:
                cancelled.append(ids)
                raise
        return OK

    old.sender.send = send
    await c["r0"].dispatcher.submit([event(1, entity="a"), event(2, entity="b")])
    for _ in range(20):
        await asyncio.sleep(0)
    await late.manager.tick()
    await old.manager.tick()
    assert not old.manager.may_send(moving)
    handing = asyncio.ensure_future(old.manager.settled())
    for _ in range(10):
        await asyncio.sleep(0)
    gates[event(1).id].set()  # one of the two in-flight batches answers
    for _ in range(30):
        await asyncio.sleep(0)
    gates[event(2).id].set()
    await handing
    await c.tick()
    await c.settle()
    await c.close()
    assert not cancelled
    assert c.delivered(moving) == [event(1).id, event(2).id]  # each once
