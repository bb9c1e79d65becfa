"""A template worker process: renders Custom templates under hard limits, for ``delivery.template_pool``.

Run as ``python -I -m webhook_operator.delivery.template_worker MEMORY_BYTES CPU_SECONDS`` with an empty
environment (the pool starts it; a sandbox escape finds no operator environment variables here). Before importing
Jinja it limits itself: address space (RLIMIT_AS: a template that allocates too much gets MemoryError, or the
process dies), CPU (RLIMIT_CPU, re-armed before each request to "used so far + CPU_SECONDS": the kernel ends a
render the parent failed to stop with SIGXCPU), no core files, no files written, no child processes, and the OOM
killer's first choice in the pod, so memory pressure ends a render, never the operator.

Protocol on stdin/stdout, one request at a time: after start-up the worker writes one byte (ready). A request is a
4-byte big-endian length and a JSON object ``{"op": "render"|"check", "source": ..., "variables": ...}``; the reply
is a status byte, a retire byte (1: this worker is done, start another) and a 4-byte length, then the payload:
``J``/``T`` a rendered JSON/text body, ``C`` compiled, ``F`` a failure message, ``M`` a MemoryError (the payload
names the template line; the pool adds the limit). Only JSON and bytes cross, never pickles: the parent does not
trust what comes back beyond its length cap.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import signal
import sys
from typing import Any, BinaryIO

#: CPU seconds a worker may use in its life; it retires (exits after replying) well before, so the hard limit is
#: never what stops a healthy worker.
LIFETIME_CPU_SECONDS = 3600


def _limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, LIFETIME_CPU_SECONDS))
    for limit in (resource.RLIMIT_CORE, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC):
        with contextlib.suppress(ValueError, OSError):  # not every platform lets a process lower each one
            resource.setrlimit(limit, (0, 0))
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("1000")  # raising one's own score needs no privilege


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _arm_cpu(cpu_seconds: int) -> bool:
    """Allow ``cpu_seconds`` more CPU for the next request; False when the lifetime budget is nearly spent."""
    soft = math.ceil(_cpu_used()) + cpu_seconds
    if soft + cpu_seconds >= LIFETIME_CPU_SECONDS:
        return False
    resource.setrlimit(resource.RLIMIT_CPU, (soft, LIFETIME_CPU_SECONDS))
    return True


class _CpuLimit(BaseException):
    """The soft CPU limit's SIGXCPU, raised inside the render so the worker answers "CPU limit" itself: its exit
    status alone is not reliable evidence (a status the parent's child watcher failed to collect reads as 255)."""


def _cpu_exceeded(signum: int, frame: object) -> None:
    raise _CpuLimit


def _handle(data: bytes) -> tuple[bytes, bytes, bool]:
    from webhook_operator.formats import template_sandbox as sandbox  # imported under the limits

    try:
        request: dict[str, Any] = json.loads(data)
        source = request["source"]
        if request.get("op") == "check":
            sandbox.compiled(source)
            return b"C", b"", False
        body, content_type = sandbox.body_of(sandbox.render(source, request.get("variables") or {}))
        return (b"J" if content_type == "application/json" else b"T"), body, False
    except _CpuLimit:
        return b"X", b"", True
    except sandbox.TemplateFailure as exc:
        return b"F", str(exc).encode("utf-8", "replace"), False
    except MemoryError as exc:
        return b"M", sandbox.location(exc).encode(), True
    except Exception as exc:  # a bug here must still answer, never leave the parent waiting
        return b"F", f"{sandbox.TEMPLATE_NAME}: {type(exc).__name__}: {exc}".encode("utf-8", "replace"), False


def serve(stdin: BinaryIO, stdout: BinaryIO, cpu_seconds: int) -> int:
    from webhook_operator.formats import template_sandbox  # noqa: F401  (loaded before "ready")

    stdout.write(b"\x01")
    stdout.flush()
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return 0  # the pool closed the pipe (or the operator is gone)
        data = stdin.read(int.from_bytes(header, "big"))
        keep = _arm_cpu(cpu_seconds)
        status, payload, retire = _handle(data)
        del data
        stdout.write(status + (b"\x01" if retire or not keep else b"\x00") + len(payload).to_bytes(4, "big"))
        stdout.write(payload)
        stdout.flush()
        if retire or not keep:
            return 0


def main(argv: list[str]) -> int:
    memory_bytes, cpu_seconds = int(argv[0]), int(argv[1])
    _limit_self(memory_bytes, cpu_seconds)
    signal.signal(signal.SIGXCPU, _cpu_exceeded)
    return serve(sys.stdin.buffer, sys.stdout.buffer, cpu_seconds)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
