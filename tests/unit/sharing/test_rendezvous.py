"""Rendezvous hashing: an even spread, stable across processes, and minimal movement when replicas come and go."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from webhook_operator.sharing.rendezvous import assign, mine, owner, weight

KEYS = [f"team-{i % 97}/webhook-{i}" for i in range(10_000)]
THREE = ["operator-0", "operator-1", "operator-2"]


def test_ten_thousand_webhooks_spread_within_five_percent_of_a_third_each() -> None:
    shares = Counter(assign(KEYS, THREE).values())
    assert set(shares) == set(THREE)
    for replica in THREE:
        assert abs(shares[replica] - len(KEYS) / 3) <= 0.05 * len(KEYS) / 3, shares


def test_a_joining_replica_takes_only_its_share_from_the_others() -> None:
    before = assign(KEYS, THREE)
    after = assign(KEYS, [*THREE, "operator-3"])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == "operator-3" for key in moved)  # nobody else's keys moved
    assert abs(len(moved) - len(KEYS) / 4) <= 0.05 * len(KEYS) / 4


def test_a_leaving_replica_hands_only_its_own_keys_to_the_rest() -> None:
    before = assign(KEYS, THREE)
    after = assign(KEYS, ["operator-0", "operator-2"])
    for key in KEYS:
        if before[key] != "operator-1":
            assert after[key] == before[key]
        else:
            assert after[key] in ("operator-0", "operator-2")


def test_the_answer_does_not_depend_on_the_order_of_the_replicas() -> None:
    assert assign(KEYS[:500], THREE) == assign(KEYS[:500], list(reversed(THREE)))


def test_weights_are_the_same_in_another_process() -> None:
    """A salted ``hash()`` would differ between replicas (PYTHONHASHSEED): every replica must agree."""
    code = "from webhook_operator.sharing.rendezvous import weight; print(weight('operator-1', 'ns/hook'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123"})  # fmt: skip
    assert int(out.stdout) == weight("operator-1", "ns/hook")


def test_the_separator_keeps_replica_and_key_apart() -> None:
    assert weight("a", "bc") != weight("ab", "c")


def test_no_replica_owns_nothing() -> None:
    assert owner("ns/hook", []) is None
    assert assign(KEYS[:3], []) == {}
    assert mine(KEYS[:100], THREE, "operator-0") == {
        k for k, r in assign(KEYS[:100], THREE).items() if r == "operator-0"
    }
