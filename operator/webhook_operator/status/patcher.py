"""One status patch call: made in the writer's own small thread pool (the official client blocks, the event loop
must not), then classified, counted and logged.

Logging follows what an operator of the operator can act on: a 404 is quiet (the Webhook was deleted), a rejected
body is an error (the status does not validate: a bug), and an API server outage warns once, not once per webhook
and retry, and says so again when writes succeed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from webhook_operator.status.entry import Write
from webhook_operator.status.kube import classify, describe
from webhook_operator.status.schedule import PatchOutcome

log = logging.getLogger(__name__)

Patcher = Callable[[str, str, dict[str, Any]], None]  # (namespace, name, status) -> None; blocking, raises on error


@dataclass
class PatchStats:
    patches_total: int = 0  # patch calls made (succeeded or not): the API server's load
    patch_failures_total: int = 0
    skipped_total: int = 0  # writes avoided because nothing changed
    patches_by_key: Counter[str] = field(default_factory=Counter)


class PatchClient:
    """Sends patches through ``patch`` on ``threads`` worker threads."""

    def __init__(self, patch: Patcher, *, threads: int) -> None:
        self._patch = patch
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="status-writer")
        self._failing = False  # an outage was reported and no write has succeeded since
        self.stats = PatchStats()

    async def send(self, write: Write) -> PatchOutcome:
        entry = write.entry
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._patch, entry.namespace, entry.name, write.status)
            outcome = PatchOutcome.WRITTEN
        except Exception as exc:
            outcome = classify(exc)
            self._log_failure(entry.key, outcome, exc)
        self.stats.patches_total += 1
        if outcome is not PatchOutcome.GONE:
            self.stats.patches_by_key[entry.key] += 1
        if outcome is PatchOutcome.WRITTEN and self._failing:
            self._failing = False
            log.info("status writes succeed again")
        return outcome

    def _log_failure(self, key: str, outcome: PatchOutcome, exc: BaseException) -> None:
        if outcome is PatchOutcome.GONE:
            log.debug("webhook %s is gone; forgetting its status", key)
            return
        self.stats.patch_failures_total += 1
        if outcome is PatchOutcome.REJECTED:
            log.error("status of %s rejected by the API server: %s", key, describe(exc))
        elif not self._failing:
            self._failing = True
            log.warning("status writes failing (%s: %s); retrying with backoff", key, describe(exc))
        else:
            log.debug("status write of %s failed again: %s", key, describe(exc))

    def forget(self, key: str) -> None:
        self.stats.patches_by_key.pop(key, None)

    def close(self) -> None:
        """Calls still queued are cancelled; one in progress finishes in its thread, unawaited."""
        self._executor.shutdown(wait=False, cancel_futures=True)
