"""A replica that lost a webhook (work sharing) forgets the state it last saw, so taking it back later posts no
transition Event for a state that was never written (seen in the three-replica SIGSTOP e2e run: a replica continued
after its lease lapsed saw its in-flight request time out, then, having taken the webhook back, posted
``DeliveryRecovered`` for a webhook that never failed)."""

from __future__ import annotations

import time

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.webhook_status import WebhookState as S
from webhook_operator.status.writer import StatusWriter

from .fakes import Recorder, unused_client


def snap(key: str, state: S) -> WebhookSnapshot:
    reason = Reason.DELIVERING if state is S.ACTIVE else Reason.DELIVERY_FAILING
    return WebhookSnapshot(key, state, reason, "m", 1, 0, 0)


async def _events_after(release: bool) -> list[str]:
    events = Recorder(unused_client)
    owned = {"ns/w"}
    writer = StatusWriter(patcher=lambda *a: None, interval=0.0, events=events, clock=time.monotonic)

    async def claim(key: str) -> bool:
        return key in owned

    writer.share(lambda key: key in owned, claim)
    try:
        writer.set_generation("ns/w", 1, uid="u")
        writer.webhook_changed(snap("ns/w", S.ACTIVE))
        await writer.flush_now()
        owned.clear()  # lease lost; the lane's last (fenced, never recorded) attempt failed
        writer.webhook_changed(snap("ns/w", S.AWAITING_RETRY))
        if release:
            writer.released("ns/w")
        owned.add("ns/w")  # taken back: the lane is read from the store again
        writer.webhook_changed(snap("ns/w", S.ACTIVE))
        await writer.flush_now()
        return [reason for reason, _, _ in events.sent]
    finally:
        await writer.stop(grace=1)
        events.close()


async def test_a_released_webhook_taken_back_posts_no_recovered_event() -> None:
    assert "DeliveryRecovered" not in await _events_after(release=True)


async def test_without_the_release_the_stale_state_would_make_one() -> None:
    """The test above can fail: the same sequence without ``released`` does post it."""
    assert "DeliveryRecovered" in await _events_after(release=False)
