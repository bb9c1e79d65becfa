"""Issue 13, finding 10: a secret a receiver echoes back must not reach the delivery log in any common encoding,
and a secret cut at the response-body limit must not survive as a prefix.

The attempt pipeline is the only masking path (every delivery-log line and test result is built there), so these
tests drive it: with a scripted sender for the encoded echoes, and with the real ``AiohttpSender`` against a loopback
receiver that puts the secret right at the 4 KiB boundary for the truncation cases."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.attempt import Attempt, AttemptPipeline
from webhook_operator.delivery.sender import AiohttpSender, Outcome, OutcomeKind, Request, Sender
from webhook_operator.delivery.ssrf import AddressPolicy
from webhook_operator.delivery.target import WebhookTarget

from .receivers import serve

#: Every character class the encodings treat specially: a quote and a backslash (JSON), non-ASCII (JSON with
#: ensure_ascii, UTF-8 percent-escapes), "/", "+", "&", "=", "?" and a space (URL encoding), and a length that is not
#: a multiple of 3 (base64 padding).
SECRET = 'tok"en/\\ü+&=x?9 Z'
LIMIT = 4096


def b64(value: str, *, urlsafe: bool = False, pad: bool = True) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    text = encode(value.encode()).decode()
    return text if pad else text.rstrip("=")


ECHOES: dict[str, Callable[[str], str]] = {
    "json-escaped": lambda v: json.dumps(v)[1:-1],
    "json-escaped, non-ASCII kept": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "url-encoded": lambda v: quote(v, safe=""),
    "url-encoded, form style": lambda v: quote_plus(v, safe=""),
    "url-encoded, lowercase escapes": lambda v: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(v, safe="")),
    "base64": lambda v: b64(v),
    "base64 unpadded": lambda v: b64(v, pad=False),
    "urlsafe base64": lambda v: b64(v, urlsafe=True),
    "urlsafe base64 unpadded": lambda v: b64(v, urlsafe=True, pad=False),
}


class Scripted:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    async def send(self, request: Request) -> Outcome:
        return self.outcome

    async def close(self) -> None:
        return None


def event() -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": "ev-001", "eventType": "entityCreated", "entityType": "table", "entityId": "e-1",
        "timestamp": 1_700_000_000_000, "entity": {"id": "e-1", "name": "t1"},
    })  # fmt: skip


def target(endpoint: str = "http://receiver.test/hook", **secret_headers: str) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic",
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": endpoint, "timeout": 5},
    })  # fmt: skip
    return WebhookTarget(key="ns/hook", spec=spec, secrets=(SECRET,), secret_headers=secret_headers)


async def attempt(sender: Sender, hook: WebhookTarget) -> Attempt:
    pipeline = AttemptPipeline(sender, user_agent="wo-test/1")
    return await pipeline.run(hook, [event()], delivery="d-1", attempt=lambda: 1)


@pytest.mark.parametrize("encoding", list(ECHOES))
async def test_an_encoded_echo_of_a_secret_is_masked(encoding: str) -> None:
    echoed = ECHOES[encoding](SECRET)
    assert echoed != SECRET
    body = f'{{"received": "{echoed}", "ok": false}}'
    result = await attempt(Scripted(Outcome(OutcomeKind.RETRYABLE, 400, 1.0, f"HTTP 400 {echoed}", body)), target())
    for text in (result.record.response_body, result.record.error or "", result.outcome.response_body):
        assert echoed not in text
    assert result.record.response_body == '{"received": "***", "ok": false}'
    assert result.record.error == "HTTP 400 ***"


@pytest.mark.parametrize("offset", [0, 1, 2])
@pytest.mark.parametrize("urlsafe", [False, True])
async def test_a_secret_inside_a_longer_base64_string_is_masked(offset: int, urlsafe: bool) -> None:
    """``base64("user:" + secret)`` (HTTP Basic) does not contain ``base64(secret)``: the alignment differs. Every
    character that encodes only the secret's bytes is masked, whatever its offset; at most two characters at each
    edge mix in neighbouring bytes and stay."""
    prefix = "u" * (3 + offset)
    echoed = b64(prefix + SECRET + "!", urlsafe=urlsafe)
    result = await attempt(Scripted(Outcome(OutcomeKind.SUCCESS, 200, 1.0, None, f"seen {echoed}")), target())
    body = result.record.response_body
    assert "***" in body
    head, _, tail = body.removeprefix("seen ").partition("***")
    assert len(head) <= len(b64(prefix, pad=False)) and len(tail) <= 4  # only edge characters remain


async def test_secrets_in_every_form_are_masked_with_the_longest_form_first() -> None:
    padded = b64(SECRET)  # its unpadded form is a prefix: the "=" must go too
    result = await attempt(Scripted(Outcome(OutcomeKind.SUCCESS, 200, 1.0, None, f"[{padded}] [{SECRET}]")), target())
    assert result.record.response_body == "[***] [***]"


# --- the 4 KiB cut, with the real sender and a loopback receiver ----------------------------------------------------


@pytest.fixture
async def echo_url() -> AsyncIterator[Callable[[str], str]]:
    """A receiver that answers 500 with ``filler + secret-ish + tail``, the secret starting ``lead`` characters
    before the sender's 4 KiB limit: POST /echo?lead=N&value=NAME."""
    values: dict[str, str] = {}

    async def echo(request: web.Request) -> web.Response:
        lead = int(request.query["lead"])
        value = values[request.query["value"]]
        return web.Response(status=500, text="a" * (LIMIT - lead) + value + " and more text after it")

    app = web.Application()
    app.router.add_post("/echo", echo)
    async with serve(app) as server:

        def url(value: str, lead: int = 10) -> str:
            name = f"v{len(values)}"
            values[name] = value
            return f"http://127.0.0.1:{server.port}/echo?lead={lead}&value={name}"

        yield url


def assert_no_secret_prefix_at_the_end(text: str, value: str) -> None:
    for k in range(4, len(value)):
        assert not text.endswith(value[:k]), f"the log ends with the first {k} characters of the secret"


@pytest.mark.parametrize("lead", [4, 10, 17])
async def test_a_secret_cut_at_the_body_limit_does_not_survive_as_a_prefix(echo_url: Callable[..., str],
                                                                           lead: int) -> None:  # fmt: skip
    sender = AiohttpSender(AddressPolicy(allow_loopback=True))
    try:
        result = await attempt(sender, target(echo_url(SECRET, lead)))
    finally:
        await sender.close()
    body = result.record.response_body
    assert result.record.status_code == 500
    assert len(body) <= LIMIT and body.startswith("a" * (LIMIT - lead))
    assert_no_secret_prefix_at_the_end(body, SECRET)
    assert SECRET[:4] not in body[LIMIT - lead - 4 :]
    assert "***" in body
    assert result.outcome.response_body == body


@pytest.mark.parametrize("encode", [ECHOES["base64"], ECHOES["json-escaped"]], ids=["base64", "json"])
async def test_an_encoded_secret_cut_at_the_body_limit_does_not_survive(
    echo_url: Callable[..., str], encode: Callable[[str], str]
) -> None:
    sender = AiohttpSender(AddressPolicy(allow_loopback=True))
    try:
        result = await attempt(sender, target(echo_url(encode(SECRET), 12)))
    finally:
        await sender.close()
    body = result.record.response_body
    assert len(body) <= LIMIT
    assert_no_secret_prefix_at_the_end(body, encode(SECRET))
    assert body.endswith("***") or "***" in body[-40:]


async def test_a_secret_longer_than_the_read_margin_cut_at_the_limit_is_masked(echo_url: Callable[..., str]) -> None:
    """A header value longer than what the sender reads past the limit cannot be seen whole: the kept text ends with
    a prefix of it, and that tail is masked."""
    long_value = "K" + "".join(f"{i:04x}" for i in range(1000))  # 4001 characters
    sender = AiohttpSender(AddressPolicy(allow_loopback=True))
    try:
        hook = target(echo_url(long_value, 50), **{"X-Api-Key": long_value})
        result = await attempt(sender, hook)
    finally:
        await sender.close()
    body = result.record.response_body
    assert len(body) <= LIMIT
    assert_no_secret_prefix_at_the_end(body, long_value)
    assert body == "a" * (LIMIT - 50) + "***"
