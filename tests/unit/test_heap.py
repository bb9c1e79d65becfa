"""heap.settle in a fresh interpreter (it changes process-wide collector state, so never in the test process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_settle_freezes_what_lives_and_raises_the_young_threshold() -> None:
    out = run("""
        import gc
        from webhook_operator import heap
        keep = [[i] for i in range(50_000)]  # lists are always tracked by the collector
        before = gc.get_freeze_count()
        frozen = heap.settle()
        print(before, frozen, gc.get_threshold())
    """)
    before, frozen, threshold = out.split(" ", 2)
    assert int(before) == 0
    assert int(frozen) >= 50_000  # the long-lived objects left the generations a collection walks
    assert threshold == f"({heap_young()}, 10, 10)"


def heap_young() -> int:
    from webhook_operator import heap

    return heap.YOUNG_THRESHOLD


def cycle_freed(before: str, after: str) -> str:
    """Run ``before``, drop a two-object reference cycle, run ``after``: whether the cycle was freed."""
    return run(f"""
        import gc, weakref
        from webhook_operator import heap
        class Node:
            pass
        {before}
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        {after}
        print(alive() is None)
    """)


def test_garbage_cycles_made_after_settle_are_still_collected() -> None:
    assert cycle_freed("heap.settle()", "gc.collect()") == "True"


def test_start_up_garbage_is_collected_before_the_freeze() -> None:
    # collector off: only settle's own collection may free the cycle
    assert cycle_freed("gc.disable()", "heap.settle()") == "True"


def webhook_freed_after_delete(settle: bool) -> str:
    """A webhook registered (with a backlog held for a retry) before ``settle``, deleted after it: whether its
    worker, lane, queue and queued events are freed by a later collection."""
    tests = str(Path(__file__).resolve().parents[1])
    return run(f"""
        import asyncio, gc, sys, weakref
        sys.path.insert(0, {tests!r})
        from unit.delivery.fakes import Clock, ScriptedSender
        from unit.delivery.test_lanes import KEY, event, target
        from webhook_operator import heap
        from webhook_operator.delivery.sender import Outcome, OutcomeKind
        from webhook_operator.graph import NullStatus, build_graph
        from webhook_operator.store.memory import MemoryStore

        async def main():
            clock = Clock()
            sender = ScriptedSender()
            sender.default = Outcome(OutcomeKind.RETRYABLE, 503, 1.0, "HTTP 503")
            graph = build_graph(store=MemoryStore(clock=clock), sender=sender, status=NullStatus(), clock=clock)
            await graph.open()
            d = graph.dispatcher
            await d.register(target(batch=1))
            await asyncio.gather(*(d.submit([event(i)]) for i in range(20)))
            await d.settled(within=5)
            if {settle!r}:
                heap.settle()
            worker = d._workers[KEY]
            refs = [weakref.ref(o) for o in (worker, worker.lane, worker.lane.queue)]
            del worker
            await d.unregister(KEY)
            for _ in range(3):
                await asyncio.sleep(0)
            gc.collect()
            print(",".join(str(r() is None) for r in refs))
            await graph.close()

        asyncio.run(main())
    """)


def test_a_webhook_registered_before_settle_is_freed_when_deleted_later() -> None:
    assert webhook_freed_after_delete(settle=True) == webhook_freed_after_delete(settle=False) == "True,True,True"
