"""The intake's per-post shortcuts (issue 12) answer exactly what the general code did: the 202 written without
``json_response``, and the body read piece by piece with ``readany`` instead of ``iter_chunked``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import pytest
from aiohttp import web

from webhook_operator.api.events import ChangeEvent
from webhook_operator.intake.app import accepted_response

from .helpers import AUTH, EVENTS, FakeSubmitter, Result, dumps, intake, minimal_event


@pytest.mark.parametrize("counts", [(0, 0, 0), (1, 0, 1), (40, 3, 12_345), (10_000, 10_000, 2**40)])
async def test_the_202_is_what_json_response_wrote(counts: tuple[int, int, int]) -> None:
    accepted, duplicates, queued = counts
    ours = accepted_response(accepted, duplicates, queued)
    reference = web.json_response({"accepted": accepted, "duplicates": duplicates, "queued": queued}, status=202)
    assert ours.body == reference.body
    assert ours.status == reference.status == 202
    assert ours.content_type == reference.content_type == "application/json"
    assert ours.charset == reference.charset == "utf-8"
    assert ours.headers == reference.headers


class _CountingSubmitter(FakeSubmitter):
    async def submit(self, events: Sequence[ChangeEvent], bodies: Sequence[bytes] | None = None) -> Result:
        await super().submit(events, bodies)
        return Result(accepted=len(events) - 1, duplicates=1, queued=7)


async def test_the_202_over_http_carries_the_submitters_counts_and_json_headers() -> None:
    async with intake(_CountingSubmitter()) as client:
        items = [minimal_event(1), minimal_event(2), minimal_event(3)]
        resp = await client.post(EVENTS, data=json.dumps(items), headers=AUTH)
        assert resp.status == 202
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await resp.read() == b'{"accepted": 2, "duplicates": 1, "queued": 7}'


async def test_a_body_arriving_in_many_pieces_is_read_whole_and_in_order() -> None:
    """Chunked, 200 pieces with pauses between them: every piece is kept, none twice, in order."""
    sub = FakeSubmitter()
    items = [minimal_event(i, note="x" * (i % 50)) for i in range(200)]
    body = dumps(items)
    pieces = [body[i : i + 97] for i in range(0, len(body), 97)]

    async def chunks() -> AsyncIterator[bytes]:
        for n, piece in enumerate(pieces):
            yield piece
            if n % 20 == 0:
                await asyncio.sleep(0.001)  # let the server read what has arrived so far

    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=chunks(), headers=AUTH)
        assert resp.status == 202, await resp.text()
    assert [e.id for e in sub.events] == [item["id"] for item in items]
    assert sub.bodies == [dumps(item) for item in items]


async def test_a_chunked_body_exactly_at_the_limit_is_accepted_and_one_byte_more_is_413() -> None:
    body = dumps(minimal_event(1))

    def pieces(data: bytes) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 10):
                yield data[i : i + 10]
                await asyncio.sleep(0)

        return gen()

    async with intake(max_body=len(body)) as client:
        assert (await client.post(EVENTS, data=pieces(body), headers=AUTH)).status == 202
        resp = await client.post(EVENTS, data=pieces(body + b" "), headers=AUTH)
        assert resp.status == 413
        assert "larger than the limit" in (await resp.json())["error"]
