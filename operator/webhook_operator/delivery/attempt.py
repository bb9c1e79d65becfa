"""The attempt pipeline: the only way anything is sent.

batch → request (format, headers, signature) → send → a masked ``AttemptRecord`` → an outcome. Lane workers and
the test operation both go through here, so a test request is exactly what a delivery would be, and masking cannot
drift between the two (it did once: the test path forgot ``mask_credentials``). Every line of the delivery log is
built by ``record`` below, whatever wrote it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.request import build_request, has_template, render_in_pool
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Sender
from webhook_operator.delivery.target import WebhookTarget, mask, mask_credentials, mask_cut_tail
from webhook_operator.delivery.template_pool import TemplatePool
from webhook_operator.formats.base import FormatError, Rendered
from webhook_operator.store.base import AttemptOutcome, AttemptRecord, QueuedEvent

_DELIVERY_NS = uuid.UUID("5b0f4f36-8a43-4a4e-9b8e-6e2b0d1c7a11")


_DELIVERY_NS_BYTES = _DELIVERY_NS.bytes


def delivery_id(key: str, batch: Sequence[QueuedEvent]) -> str:
    """Stable across every attempt of the same batch, so receivers can deduplicate retries.

    ``str(uuid.uuid5(_DELIVERY_NS, name))``, computed directly (RFC 4122 §4.3: SHA-1 of namespace and name, version
    and variant bits set): a third of the CPU of building the ``UUID`` object, once per delivery."""
    name = f"{key}|{batch[0].qid}|{batch[-1].qid}|{len(batch)}"
    digest = bytearray(hashlib.sha1(_DELIVERY_NS_BYTES + name.encode("utf-8"), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def redact(text: str | None, secrets: Sequence[str]) -> str:
    """Every given form of every secret (``WebhookTarget.masked_forms``: the values and their encodings), then
    anything credential-shaped: for text we do not control (error messages that may quote a header, receiver
    bodies that echo what they got)."""
    return mask_credentials(mask(text, secrets) or "")


def redact_body(body: str, more: str, forms: Sequence[str]) -> str:
    """A response body for the log: masked *before* it is cut, so a secret straddling the cut is masked whole.
    ``more`` is what the sender read past its cut (``Outcome.response_more``); the result is at most
    ``len(body)`` characters, and if it was cut and now ends with the start of a secret form (one longer than
    what was read past the cut), that tail is masked too."""
    if not more:
        return redact(body, forms)
    masked = redact(body + more, forms)
    return mask_cut_tail(masked[: len(body)], forms)


def record(webhook: str, outcome: AttemptOutcome, *, delivery: str = "-", event_ids: Sequence[str] = (),
           attempt: int = 0, started_at: float, duration_ms: float = 0.0, status_code: int | None = None,
           error: str | None = None, response_body: str = "", note: str = "") -> AttemptRecord:  # fmt: skip
    """One line of the delivery log. The only constructor of ``AttemptRecord`` outside the store."""
    return AttemptRecord(
        webhook=webhook, delivery_id=delivery, event_ids=list(event_ids), attempt=attempt, started_at=started_at,
        duration_ms=duration_ms, outcome=outcome, status_code=status_code, error=error,
        response_body=response_body, note=note,
    )  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    """What one try produced: the outcome (its error and body already masked) and its delivery-log line."""

    outcome: Outcome
    record: AttemptRecord


class AttemptPipeline:
    """Sends a batch for a target, bounded by one process-wide concurrency limit (many webhooks share a fixed
    number of in-flight requests), and turns whatever happened into an outcome plus a masked log line.

    Custom templates render in ``templates`` (worker processes with time and memory limits, off the event loop);
    without a pool (unit tests that build a pipeline by hand) they render inline, sandboxed and size-bounded."""

    def __init__(self, sender: Sender, *, user_agent: str, max_concurrency: int = 64,
                 clock: Callable[[], float] = time.time,
                 on_attempt: Callable[[AttemptRecord], None] | None = None,
                 templates: TemplatePool | None = None) -> None:  # fmt: skip
        self._sender = sender
        self._templates = templates
        self._user_agent = user_agent
        self._sem = asyncio.Semaphore(max_concurrency)
        self._clock = clock
        self._on_attempt = on_attempt

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    async def run(self, target: WebhookTarget, events: Sequence[ChangeEvent], *, delivery: str,
                  attempt: Callable[[], int], test_by: str | None = None,
                  extra_headers: Mapping[str, str] | None = None) -> Attempt:  # fmt: skip
        """One try. ``attempt`` numbers it once the send is over (a spec change during the send restarts the
        schedule, and the log line must agree with the retry state). ``test_by`` marks a test request: logged as
        ``test``, not counted in the delivery metrics, and sent outside the delivery concurrency limit, so a test
        neither waits behind real deliveries nor holds a slot they need."""
        started = self._clock()
        outcome = await self._send(target, events, delivery, started, extra_headers, test=test_by is not None)
        if outcome.error or outcome.response_body:  # most deliveries have neither: no copy for them
            forms = target.masked_forms
            outcome = dataclasses.replace(
                outcome, error=redact(outcome.error, forms) or None,
                response_body=redact_body(outcome.response_body, outcome.response_more, forms), response_more="",
            )  # fmt: skip
        if test_by is not None:
            kind, note = AttemptOutcome.TEST, f"test requested by {test_by}"
        else:
            kind, note = (AttemptOutcome.DELIVERED if outcome.ok else AttemptOutcome.FAILED), ""
        line = record(
            target.key, kind, delivery=delivery, event_ids=[e.id for e in events], attempt=attempt(),
            started_at=started, duration_ms=outcome.duration_ms, status_code=outcome.status_code, error=outcome.error,
            response_body=outcome.response_body, note=note,
        )  # fmt: skip
        if test_by is None and self._on_attempt is not None:
            self._on_attempt(line)
        return Attempt(outcome, line)

    async def _send(self, target: WebhookTarget, events: Sequence[ChangeEvent], delivery: str, started: float,
                    extra_headers: Mapping[str, str] | None, *, test: bool) -> Outcome:  # fmt: skip
        if target.config_error:
            return Outcome(OutcomeKind.PERMANENT, None, 0.0, f"configuration error: {target.config_error}")
        try:
            rendered: Rendered | None = None
            if self._templates is not None and has_template(target):
                rendered = await render_in_pool(target, events, self._templates)
            request = build_request(target, events, delivery, started, user_agent=self._user_agent,
                                    extra_headers=extra_headers, rendered=rendered)  # fmt: skip
        except FormatError as exc:
            return Outcome(OutcomeKind.PERMANENT, None, 0.0, f"payload could not be rendered: {exc}")
        if test:
            return await self._sender.send(request)
        async with self._sem:
            return await self._sender.send(request)
