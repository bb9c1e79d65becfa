"""Rendezvous (highest-random-weight) hashing: which live replica should deliver a webhook.

Every replica computes the same answer from the same inputs (the webhook key and the ids of the live replicas)
without talking to the others: the winner is the replica whose ``weight(replica, key)`` is highest. Weights are a
stable hash (BLAKE2b, never Python's per-process salted ``hash()``), so keys spread evenly, and a replica joining
or leaving moves only the keys it wins or won: every other key keeps its winner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b


def weight(replica: str, key: str) -> int:
    """The replica's 64-bit weight for ``key``; ``\\0`` separates the two so ``("a", "bc")`` ≠ ``("ab", "c")``."""
    digest = blake2b(replica.encode() + b"\0" + key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, replicas: Sequence[str]) -> str | None:
    """The replica that should deliver ``key`` (ties, practically impossible, go to the larger id); None without
    replicas."""
    if not replicas:
        return None
    return max(replicas, key=lambda replica: (weight(replica, key), replica))


def assign(keys: Iterable[str], replicas: Sequence[str]) -> dict[str, str]:
    """``key → owner`` for every key (empty when no replica is live)."""
    if not replicas:
        return {}
    return {key: owner_ for key in keys if (owner_ := owner(key, replicas)) is not None}


def mine(keys: Iterable[str], replicas: Sequence[str], replica: str) -> set[str]:
    """The keys ``replica`` should deliver."""
    return {key for key in keys if owner(key, replicas) == replica}
