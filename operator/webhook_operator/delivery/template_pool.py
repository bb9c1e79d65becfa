"""Custom templates render here: in a small pool of worker processes with hard limits, never on the event loop.

A template is code a tenant wrote, and one event loop serves every tenant: rendered in-process, nested
``range(100000)`` loops stalled ``/healthz`` and the intake, and a gigabyte string OOM-killed the pod (issue 13,
finding 1). Each render therefore goes to a worker (``delivery.template_worker``: a fresh interpreter started with
``python -I -m``, empty environment — no fork of the running, multithreaded operator) over pipes the event loop
awaits, under four limits:

* wall clock (``timeout``, default 2 s): past it the worker is killed (SIGKILL) and replaced by a new one on the
  next render — "exceeded the time limit (2 s)";
* address space (``memory_bytes``, RLIMIT_AS, default 256 MiB): a MemoryError in the worker, or its death, is
  "exceeded the memory limit (256 MiB)"; the worker also volunteers as the OOM killer's first victim;
* CPU (RLIMIT_CPU, the timeout rounded up plus one second per render): the kernel's backstop should the parent not
  get to kill it — "exceeded the CPU time limit";
* output (``template_sandbox.MAX_OUTPUT_CHARS``), counted while the template produces it, and a size check in every
  string-building operation of the sandbox itself.

Each is a ``FormatError`` whose message names the limit: a permanent failure of that batch, shown in status. The
pool is small (``workers``, default 2) and lazy: no process starts until the first Custom template needs one (at
reconcile time, ``check`` compiles there too: a 64 KiB template can take seconds to parse). ``close`` stops them.

The workers are shared by every tenant, so they are handed out fairly: each render and check names its ``tenant``
(the Webhook's namespace), and a tenant has at most one of them in a worker at a time — the rest wait in that
tenant's own turn, before asking for a worker. One namespace's hostile templates can therefore hold one worker, never
all of them; with two or more workers another namespace's render (or its compile check at reconcile, which waits
holding that Webhook's lock) does not queue behind them. Without this, eight renders that each ran into the 2 s limit
made another namespace's harmless render wait 8.6 s (adversarial review of issue 13). A tenant's turn exists only
while it has a render or check pending, so the table of turns stays as small as the work in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook_operator.formats.base import FormatError, Rendered
from webhook_operator.formats.template_sandbox import MAX_OUTPUT_CHARS, TEMPLATE_NAME, TEXT_CONTENT_TYPE

MIB = 1024 * 1024
#: How long a new worker may take to start (import Jinja) before it counts as broken; not part of any render.
START_TIMEOUT = 30.0
#: Largest reply accepted from a worker: a body of MAX_OUTPUT_CHARS characters in UTF-8, plus slack.
MAX_REPLY_BYTES = 4 * MAX_OUTPUT_CHARS + 65536
_WORKER_MODULE = "webhook_operator.delivery.template_worker"


@dataclass(frozen=True)
class TemplateLimits:
    """Limits of the template workers (flags ``--template-workers``, ``--template-timeout``,
    ``--template-memory-limit``)."""

    workers: int = 2
    timeout: float = 2.0
    memory_bytes: int = 256 * MIB
    #: CPU seconds per render; None: the timeout rounded up plus one, so the wall clock normally acts first.
    cpu: int | None = None

    @property
    def cpu_seconds(self) -> int:
        return self.cpu if self.cpu is not None else math.ceil(self.timeout) + 1

    @property
    def memory_text(self) -> str:
        mib = self.memory_bytes / MIB
        return f"{mib:g} MiB"


class _WorkerGone(Exception):
    """The worker closed its pipe or broke the protocol: it died (or must be treated as dead)."""


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self._stdin, self._stdout = process.stdin, process.stdout

    @classmethod
    async def start(cls, limits: TemplateLimits) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-B", "-m", _WORKER_MODULE, str(limits.memory_bytes), str(limits.cpu_seconds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env={}, start_new_session=True, limit=1024 * 1024,
        )  # fmt: skip
        worker = cls(process)
        try:
            await asyncio.wait_for(worker._stdout.readexactly(1), START_TIMEOUT)
        except BaseException:
            await worker.stop(kill=True)
            raise
        return worker

    @property
    def pid(self) -> int:
        return self.process.pid

    async def exchange(self, request: bytes) -> tuple[bytes, bool, bytes]:
        try:
            self._stdin.write(len(request).to_bytes(4, "big"))
            self._stdin.write(request)
            await self._stdin.drain()
            header = await self._stdout.readexactly(6)
            length = int.from_bytes(header[2:], "big")
            if length > MAX_REPLY_BYTES:
                raise _WorkerGone(f"reply of {length} bytes")
            return header[:1], header[1] != 0, await self._stdout.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise _WorkerGone(str(exc)) from None

    async def stop(self, *, kill: bool = False) -> int:
        """End the worker (closing its stdin lets a healthy one exit by itself) and reap it."""
        if self.process.returncode is None:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
            with contextlib.suppress(OSError):
                self._stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        return await self.process.wait()


class _Slot:
    def __init__(self) -> None:
        self.worker: _Worker | None = None


class _Turn:
    """One tenant's turn at the workers: the lock its renders and checks take, one at a time, before waiting for an
    idle worker, and how many of them hold or wait for it (at zero the turn is dropped)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class TemplatePool:
    """``render`` and ``check`` a template in a worker; every failure is a FormatError naming what was exceeded."""

    def __init__(self, limits: TemplateLimits | None = None) -> None:
        self.limits = limits or TemplateLimits()
        if self.limits.workers < 1 or self.limits.timeout <= 0 or self.limits.memory_bytes < 32 * MIB:
            raise ValueError(f"invalid template limits: {self.limits}")
        self._slots = [_Slot() for _ in range(self.limits.workers)]
        self._idle: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._slots:
            self._idle.put_nowait(slot)
        self._stopping: set[asyncio.Task[int]] = set()
        self._turns: dict[str, _Turn] = {}
        self._closed = False

    def pids(self) -> list[int]:
        """The running workers' process ids (tests and diagnostics)."""
        return [slot.worker.pid for slot in self._slots if slot.worker is not None]

    def waiting(self) -> dict[str, int]:
        """Renders and checks pending (running or queued) per tenant (tests and diagnostics)."""
        return {tenant: turn.users for tenant, turn in self._turns.items()}

    async def render(self, source: str, variables: Mapping[str, Any], *, tenant: str) -> Rendered:
        """Render ``source`` in a worker, in ``tenant``'s turn (the Webhook's namespace; see the module docstring)."""
        request = {"op": "render", "source": source, "variables": variables}
        status, payload = await self._call(request, tenant)
        return Rendered(body=payload, content_type="application/json" if status == b"J" else TEXT_CONTENT_TYPE)

    async def check(self, source: str, *, tenant: str) -> None:
        """Compile ``source`` in a worker (bounded in time and memory), in ``tenant``'s turn: FormatError if it does
        not compile."""
        await self._call({"op": "check", "source": source}, tenant)

    async def close(self) -> None:
        self._closed = True
        stops = [self._discard(slot, kill=False) for slot in self._slots if slot.worker is not None]
        await asyncio.gather(*stops, *self._stopping, return_exceptions=True)

    # -- one request -------------------------------------------------------------------------------------------

    async def _call(self, request: dict[str, Any], tenant: str) -> tuple[bytes, bytes]:
        if self._closed:
            raise FormatError(f"{TEMPLATE_NAME}: the template workers are closed")
        data = _encode(request)
        turn = self._turns.get(tenant)
        if turn is None:
            turn = self._turns[tenant] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:  # one worker per tenant at most: its other requests wait here, not for a worker
                slot = await self._idle.get()
                try:
                    return await self._call_in(slot, data)
                finally:
                    self._idle.put_nowait(slot)
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[tenant]

    async def _call_in(self, slot: _Slot, data: bytes) -> tuple[bytes, bytes]:
        if self._closed:
            raise FormatError(f"{TEMPLATE_NAME}: the template workers are closed")
        if slot.worker is None:
            try:
                slot.worker = await _Worker.start(self.limits)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                raise FormatError(f"{TEMPLATE_NAME}: could not start a template worker: {exc}") from None
        worker = slot.worker
        try:
            status, retire, payload = await asyncio.wait_for(worker.exchange(data), self.limits.timeout)
        except TimeoutError:
            self._discard_later(slot, kill=True)
            raise FormatError(f"{TEMPLATE_NAME}: exceeded the time limit ({self.limits.timeout:g} s)") from None
        except _WorkerGone:
            slot.worker = None
            code = await worker.stop(kill=True)
            if self._closed:
                raise FormatError(f"{TEMPLATE_NAME}: the template workers are closed") from None
            raise self._died(code) from None
        except BaseException:  # cancelled mid-exchange: the worker's state is unknown, so it goes
            self._discard_later(slot, kill=True)
            raise
        if retire:
            self._discard_later(slot, kill=False)
        if status in (b"J", b"T", b"C"):
            return status, payload
        if status == b"X":
            raise FormatError(f"{TEMPLATE_NAME}: exceeded the CPU time limit ({self.limits.cpu_seconds} s)")
        message = payload.decode("utf-8", "replace")
        if status == b"M":
            raise FormatError(f"{message}: exceeded the memory limit ({self.limits.memory_text})")
        raise FormatError(message)

    def _died(self, code: int) -> FormatError:
        """A worker that died mid-render: the kernel ended it for CPU (SIGXCPU), or it ran out of memory (a
        MemoryError it could not report, or the OOM killer's SIGKILL)."""
        if code == -signal.SIGXCPU:
            return FormatError(f"{TEMPLATE_NAME}: exceeded the CPU time limit ({self.limits.cpu_seconds} s)")
        how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else None
        how = how or f"exit status {code}"
        return FormatError(
            f"{TEMPLATE_NAME}: exceeded the memory limit ({self.limits.memory_text}): the template worker "
            f"stopped ({how})"
        )  # fmt: skip

    def _discard_later(self, slot: _Slot, *, kill: bool) -> None:
        """Take the worker out of its slot now (the next request starts a new one) and stop it in the background."""
        worker, slot.worker = slot.worker, None
        if worker is not None:
            task = asyncio.ensure_future(worker.stop(kill=kill))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _discard(self, slot: _Slot, *, kill: bool) -> int:
        worker, slot.worker = slot.worker, None
        return await worker.stop(kill=kill) if worker is not None else 0


def _encode(request: dict[str, Any]) -> bytes:
    """JSON for the worker: orjson (fast), or ``json`` with ASCII escapes for what orjson refuses (lone
    surrogates, integers beyond 64 bits), so every event a template may see can cross."""
    try:
        return orjson.dumps(request)
    except TypeError:
        pass
    try:
        return json.dumps(request, ensure_ascii=True).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        raise FormatError(f"{TEMPLATE_NAME}: the batch cannot be passed to the template: {exc}") from None
