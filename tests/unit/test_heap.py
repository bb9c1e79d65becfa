"""heap.settle in a fresh interpreter (it changes process-wide collector state, so never in the test process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
