"""The store side of parallel delivery (issue 12, part 2) on every backend: per-key holds round-trip exactly, across
a restart, and ``complete`` with a retry state saves it instead of clearing (another key is still held)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from webhook_operator.store.base import AttemptOutcome, Counters, KeyHold, LaneState, RetryState, Store
from webhook_operator.store.codec import retry_from_json, retry_to_json

from ..store._backends import BACKENDS, T0, Clock, ev, record


class Opened:
    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.tmp, self.clock = name, tmp, Clock()
        self.store: Store = BACKENDS[name].make(tmp, self.clock)

    async def restart(self) -> Store:
        self.store = await BACKENDS[self.name].reopen(self.store, self.tmp, self.clock)
        return self.store


@pytest.fixture(params=sorted(BACKENDS))
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opened]:
    o = Opened(request.param, tmp_path)
    await o.store.open()
    yield o
    await o.store.close()


def holding(*holds: KeyHold) -> RetryState:
    held = tuple(sorted(q for h in holds for q in h.qids))
    return RetryState(held_qids=held, attempts=max(h.attempts for h in holds),
                      next_attempt_at=min(h.next_attempt_at or 0 for h in holds), last_failed_at=T0,
                      last_status_code=503, last_reason="HTTP 503", holds=holds)  # fmt: skip


async def test_holds_round_trip_and_complete_with_a_retry_state_keeps_the_other_keys_held(opened: Opened) -> None:
    s = opened.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a"), ev(3, "ns/a")])).queued["ns/a"]
    a = KeyHold("entity-a", (q[0].qid,), 2, T0 + 60, T0, 503, "HTTP 503")
    b = KeyHold("entity-b", (q[1].qid,), 1, T0 + 30, T0 - 5, None, "timeout after 5 s")
    both = holding(a, b)
    await s.fail("ns/a", record("ns/a", AttemptOutcome.FAILED, "id-1"), both)
    assert (await s.lane_state("ns/a")).retry == both
    only_a = holding(a)
    await s.complete("ns/a", [q[1].qid], record("ns/a", AttemptOutcome.DELIVERED, "id-2"), only_a)
    assert await s.lane_state("ns/a") == LaneState(only_a, Counters(1, 1, T0 + 1.5), 2)
    s = await opened.restart()
    assert (await s.lane_state("ns/a")).retry == only_a, "a restart reads every hold back exactly"
    await s.complete("ns/a", [q[0].qid], record("ns/a", AttemptOutcome.DELIVERED, "id-1"))
    assert (await s.lane_state("ns/a")).retry == RetryState(), "without a retry state, complete clears it"


def test_the_json_form_is_the_old_one_without_holds_and_tolerant_with_them() -> None:
    plain = RetryState(held_qids=(3,), attempts=1)
    assert "holds" not in json.loads(retry_to_json(plain)), "ordering webhook rows stay exactly as before"
    newer = {"held_qids": [4], "holds": [{"key": "e", "qids": [4], "attempts": 2, "jitter": 1}], "later": True}
    assert retry_from_json(json.dumps(newer)) == RetryState(held_qids=(4,), holds=(KeyHold("e", (4,), 2),))
