"""A lane that lost its lease can never write with a token taken later (issue 15's fencing, found by review)."""

from __future__ import annotations

import asyncio
from typing import Any

from webhook_operator.store.base import StoreUnavailable

from .replicas import LEASE, Cluster, endpoint, event

KEYS = [f"team-{i % 3}/hook-{i}" for i in range(24)]


async def test_a_key_is_not_taken_again_while_its_old_lane_still_retries_a_write() -> None:
    """Found by review: r1's completion hangs in a partition, r1 loses the webhook, the interim owner holds a failed
    batch, r1 takes the webhook back; the old lane's write, retried a second later, read the NEW token from the
    fence, passed it and wiped the interim owner's hold. Now a key is not taken again until its old lane is
    stopped (its late writes cancelled), so the hold survives."""
    c = Cluster(("r0", "r1", "r2"))
    await c.start()
    await c.register(*KEYS)
    for _ in range(3):
        await c.tick()
    r1 = c["r1"]
    victim = sorted(r1.owned())[0]
    assert r1.manager.token(victim) is not None

    # r1's first completion write for the victim hangs (network partition), then fails StoreUnavailable.
    real_complete = r1.view.__getattr__("complete")
    gate = asyncio.Event()
    calls = []

    async def complete(webhook: str, *a: Any, **kw: Any) -> Any:
        calls.append((webhook, r1.manager.token(webhook)))
        if webhook == victim and len([x for x in calls if x[0] == victim]) == 1:
            await gate.wait()
            raise StoreUnavailable("connection reset")
        return await real_complete(webhook, *a, **kw)

    r1.view.complete = complete
    await c["r0"].dispatcher.submit([event(7)])
    for _ in range(30):
        await asyncio.sleep(0)
    assert c.delivered(victim) == [event(7).id]  # sent by r1, completion hanging

    r1.alive = False  # partitioned: no ticks
    await c.advance(LEASE + LEASE / 3)
    new = c["r0"] if victim in c["r0"].owned() else c["r2"]
    assert victim in new.owned()
    new.sender.down.add(endpoint(victim))
    await c["r0"].dispatcher.submit([event(8)])
    await c.settle()
    held_before = (await c.store.lane_state(victim)).retry
    assert held_before.held_qids

    # partition heals: r1 ticks (drops its lanes, the hung write still inside its drain grace), the interim owner
    # hands the victim back (r1 is live again), r1 takes it with a NEW token.
    r1.alive = True
    await r1.manager.tick()
    await c.tick(new.name)
    await r1.manager.tick()
    assert r1.manager.token(victim) is None  # not retaken while the old lane is still being stopped
    gate.set()  # the old attempt fails; it is never written with a newer token
    await asyncio.sleep(1.5)
    after = (await c.store.lane_state(victim)).retry
    await c.close()
    assert after == held_before, "an old lane's write overwrote the interim owner's hold"
