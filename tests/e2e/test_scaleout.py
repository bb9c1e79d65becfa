"""Three operator processes on one PostgreSQL database and the real control plane (issue 15): each webhook is
delivered by exactly one replica at a time, a dead replica's webhooks move within the bound, a frozen one is fenced
off, and a database outage refuses events instead of half-accepting them.

Every test runs three real ``webhook-operator run`` processes (``support.replicas``) with 4 s leases, so the
takeover bound is 4 + 4/3 s. Receivers record which process sent each request (by the connection's socket), so a
delivery by the wrong replica is seen at the receiver, not inferred from the operator's own bookkeeping.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.test_operator import EXPECTED, _apply_example
from support.cluster import Cluster, wait_for
from support.events import event_files, numbered, raw
from support.observers import AttributingReceiver, StatusWatch
from support.operator import wait_status, webhook_status
from support.replicas import ReplicaDatabase, ReplicaSet, Stream
from support.webhooks import EXAMPLES, load_documents, manifest, single_spec

#: Polling and scheduling noise on a busy 2-core machine on top of the operator's takeover bound.
SLACK_S = 2.0


@pytest.fixture(scope="module")
def database() -> Iterator[ReplicaDatabase]:
    db = ReplicaDatabase().start()
    yield db
    db.close()


@pytest.fixture
def replicas(cluster: Cluster, crd: None, namespace: str, tmp_path: Path, database: ReplicaDatabase
             ) -> Iterator[ReplicaSet]:  # fmt: skip
    group = ReplicaSet(cluster, tmp_path, [namespace], database.database())
    yield group
    codes = group.stop()
    for i, process in enumerate(group):
        log = process.tail(300)
        assert "Traceback" not in log, f"replica r{i} logged an exception:\n{log}"
        if process.proc is not None and process.proc.returncode != -9:  # the SIGKILLed one has no clean exit
            assert codes[i] == 0, f"replica r{i} exited with {codes[i]}:\n{process.tail()}"


@pytest.fixture
def recv() -> Iterator[AttributingReceiver]:
    receiver = AttributingReceiver()
    yield receiver
    receiver.close()


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _loads(cluster: Cluster, namespace: str, replicas: ReplicaSet, recv: AttributingReceiver, names: list[str],
           batch: int) -> None:  # fmt: skip
    for name in names:
        cluster.apply(manifest(name, {**single_spec(recv.url(name)), "batchSize": batch}, namespace))
    _wait_active(cluster, namespace, replicas, recv, names)


def _wait_active(cluster: Cluster, namespace: str, replicas: ReplicaSet, recv: AttributingReceiver,
                 names: list[str]) -> None:  # fmt: skip
    """Every webhook registered by every replica (each routes events at its intake) and reported active."""
    try:
        wait_for(lambda: all(replicas.readyz(i).get("webhooks") == len(names) for i in range(len(replicas.ids)))
                 and all(webhook_status(cluster, namespace, n).get("status") == "active" for n in names), 60,
                 "every webhook registered everywhere and active")  # fmt: skip
    except AssertionError as exc:
        statuses = {n: webhook_status(cluster, namespace, n).get("status") for n in names}
        raise AssertionError(f"{exc}; status {statuses}\n{_diagnose(replicas, recv, names)}") from None


def _check_order_and_count(recv: AttributingReceiver, names: list[str], acked: list[str]) -> dict[str, int]:
    """Every acknowledged event reached every webhook, in acknowledgement order; duplicates per webhook."""
    duplicates = {}
    for name in names:
        ids = recv.event_ids(name)
        missing = set(acked) - set(ids)
        assert not missing, f"{name}: {len(missing)} acknowledged events never delivered, e.g. {sorted(missing)[:3]}"
        first_seen = [i for i in dict.fromkeys(ids) if i in set(acked)]
        assert first_seen == acked, f"{name}: order not kept"
        duplicates[name] = len(ids) - len(set(ids))
    return duplicates


def test_six_use_cases_posted_round_robin_are_delivered_once_by_one_replica_each(
    cluster: Cluster, namespace: str, replicas: ReplicaSet, recv: AttributingReceiver
) -> None:
    examples = [load_documents(path) for path in EXAMPLES]
    names = [next(d["metadata"]["name"] for d in docs if d["kind"] == "Webhook") for docs in examples]
    replicas.start(spread=[_key(namespace, n) for n in names])
    recv.pids = replicas.pids()
    for name, docs in zip(names, examples, strict=True):
        _apply_example(cluster, namespace, recv.url(name), docs)
    _wait_active(cluster, namespace, replicas, recv, names)
    owners = _spread(replicas, [_key(namespace, n) for n in names])

    samples = {int(p.name[:2]): raw(int(p.name[:2])) for p in event_files()}
    by_intake: Counter[int] = Counter()
    for number in sorted(samples):  # one event per post, as OpenMetadata sends them: r0, r1, r2, r0, ...
        status, body, index = replicas.post([samples[number]])
        assert status == 202 and body["accepted"] == 1, (status, body)
        by_intake[index] += 1
    assert set(by_intake) == {0, 1, 2}
    for name, expected in EXPECTED.items():
        count = len(expected)
        try:
            wait_status(cluster, namespace, name, lambda s, n=count: s.get("counts", {}).get("delivered") == n, 60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_diagnose(replicas, recv, names)}") from None

    # Exactly once per matching webhook, whatever the format: the attempt log's delivered event ids ...
    rows = replicas.query("SELECT webhook, event_ids FROM attempts WHERE outcome = 'delivered' ORDER BY id")
    for name, expected in EXPECTED.items():
        ids = [i for r in rows if r["webhook"] == _key(namespace, name) for i in r["event_ids"]]
        assert sorted(ids) == sorted(samples[n]["id"] for n in expected), f"{name}: delivered {Counter(ids)}"
    # ... and what the receivers got: Generic and Custom payloads carry the ids, in order; chat formats one request
    # per batch (Slack and Teams batchSize 1 in the examples).
    for name in ("quality-test-webhook", "custom-app-integration", "owner-follower-notifications"):
        assert recv.event_ids(name) == [samples[n]["id"] for n in sorted(EXPECTED[name])], name
    assert len(recv.by_path("slack-table-notifications")) == len(EXPECTED["slack-table-notifications"])
    assert len(recv.by_path("msteams-alerts")) == len(EXPECTED["msteams-alerts"])
    # Each webhook's requests all came from the replica holding its lease.
    for name in names:
        senders = {d.replica for d in recv.by_path(name)}
        owner = replicas.index(owners[_key(namespace, name)])
        assert senders == {owner}, f"{name}: sent by {senders}, owner {owners} (ids {replicas.ids})"
    assert replicas.owners() == owners, "no webhook changed hands while nothing failed"
    for i, replica_id in enumerate(replicas.ids):  # each replica's readiness names it and what it delivers
        ready = replicas.readyz(i)
        assert (ready.get("replica"), ready.get("owned")) == (replica_id, list(owners.values()).count(replica_id))
    print(f"\nuse cases: posts per intake {dict(by_intake)}; owners {sorted(owners.items())}")


def _wait_drained(replicas: ReplicaSet, recv: AttributingReceiver, names: list[str], acked: list[str], what: str,
                  timeout: float = 90) -> None:  # fmt: skip
    try:
        wait_for(lambda: all(set(recv.event_ids(n)) >= set(acked) for n in names), timeout, what)
    except AssertionError as exc:
        missing = {n: len(set(acked) - set(recv.event_ids(n))) for n in names}
        raise AssertionError(f"{exc}; missing per webhook {missing}\n{_diagnose(replicas, recv, names)}") from None


def _diagnose(replicas: ReplicaSet, recv: AttributingReceiver, names: list[str]) -> str:
    """What each side saw, for a failure message: requests per path and sender, the attempt log, the queues, the
    leases and every replica's readiness."""
    sent = {n: Counter(d.replica for d in recv.by_path(n)) for n in names}
    log = replicas.query("SELECT webhook, outcome, count(*) AS n FROM attempts GROUP BY webhook, outcome")
    queued = replicas.query("SELECT webhook, count(*) AS n FROM queue GROUP BY webhook")
    ready = [replicas.readyz(i) for i in range(len(replicas.replicas))]
    return (
        f"received (path: sender index -> requests): {sent}\nattempts: {log}\nqueued: {queued}\n"
        f"leases: {replicas.leases()}\nreadyz: {ready}"
    )


def _spread(replicas: ReplicaSet, webhooks: list[str], timeout: float = 30) -> dict[str, str]:
    """Wait until the webhooks are owned and spread over every replica (each owns at least one), and the
    assignment has held still for a second; the assignment."""
    stable: list[dict[str, str]] = []

    def spread() -> bool:
        owners = replicas.owners()
        ok = set(webhooks) <= set(owners) and {owners[w] for w in webhooks} == set(replicas.ids)
        stable.append({w: owners.get(w, "") for w in webhooks} if ok else {})
        return len(stable) >= 6 and all(m and m == stable[-1] for m in stable[-6:])

    try:
        wait_for(spread, timeout, "the webhooks spread over the three replicas", interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; live leases: {replicas.owners()}") from None
    return stable[-1]


@pytest.mark.timeout(240)
def test_a_killed_replicas_webhooks_move_within_the_bound_and_nothing_acknowledged_is_lost(
    cluster: Cluster, namespace: str, replicas: ReplicaSet, recv: AttributingReceiver
) -> None:
    recv.delay = 0.002
    names = [f"load{i}" for i in range(6)]
    replicas.start(spread=[_key(namespace, n) for n in names])
    recv.pids = replicas.pids()
    _loads(cluster, namespace, replicas, recv, names, batch=5)
    owners = _spread(replicas, [_key(namespace, n) for n in names])
    victim = max(range(3), key=lambda i: sum(o == replicas.ids[i] for o in owners.values()))
    lost = sorted(w for w, o in owners.items() if o == replicas.ids[victim])
    assert lost, owners

    stream = Stream(replicas, lambda n: [numbered(n * 10 + k, "8700") for k in range(10)])
    wait_for(lambda: len(stream.acked) >= 200, 60, "a stream under way")
    killed_at = time.monotonic()
    replicas.kill(victim)
    survivors = {replicas.ids[i] for i in range(3) if i != victim}
    replicas.wait_owned(lost, timeout=30, by=survivors)
    takeover = time.monotonic() - killed_at
    wait_for(lambda: len(stream.acked) >= 600, 60, "the stream going on after the takeover")
    stream.stop()

    _wait_drained(replicas, recv, names, stream.acked, "every acknowledged event delivered to every webhook")
    duplicates = _check_order_and_count(recv, names, stream.acked)
    print(f"\nSIGKILL of r{victim} (owned {len(lost)} of 6): takeover {takeover:.2f} s (bound "
          f"{replicas.takeover_bound:.2f} s); {len(stream.acked)} acknowledged events x 6 webhooks; duplicates per "
          f"webhook {duplicates}")  # fmt: skip
    assert takeover <= replicas.takeover_bound + SLACK_S, f"takeover took {takeover:.2f} s"
    for name, count in duplicates.items():
        # In flight: per lane the request under way plus one delivered batch whose completion was committing.
        limit = 10 if _key(namespace, name) in lost else 0
        assert count <= limit, f"{name}: {count} duplicates (owner {owners[_key(namespace, name)]})"


@pytest.mark.timeout(240)
def test_a_frozen_replica_past_its_lease_delivers_nothing_writes_no_status_and_gives_its_webhooks_up(
    cluster: Cluster, namespace: str, replicas: ReplicaSet, recv: AttributingReceiver, request: pytest.FixtureRequest
) -> None:
    recv.delay = 0.005
    names = [f"frz{i}" for i in range(6)]
    replicas.start(spread=[_key(namespace, n) for n in names])
    recv.pids = replicas.pids()
    _loads(cluster, namespace, replicas, recv, names, batch=5)
    watch = StatusWatch(cluster, namespace)
    request.addfinalizer(watch.close)
    owners = _spread(replicas, [_key(namespace, n) for n in names])
    frozen = max(range(3), key=lambda i: sum(o == replicas.ids[i] for o in owners.values()))
    rid = replicas.ids[frozen]
    lost = sorted(w for w, o in owners.items() if o == rid)
    old_tokens = {row.webhook: row.token for row in replicas.leases() if row.webhook in lost}
    others = [i for i in range(3) if i != frozen]

    stream = Stream(replicas, lambda n: [numbered(n * 10 + k, "8800") for k in range(10)])
    wait_for(lambda: len(stream.acked) >= 200, 60, "a stream under way")
    stream.to = others  # a frozen intake would hold its posts until it is continued: stop posting there first
    posted = len(stream.statuses)
    wait_for(lambda: len(stream.statuses) >= posted + 2, 30, "the post under way to finish")
    frozen_at = time.monotonic()
    replicas.freeze(frozen)
    replicas.wait_owned(lost, timeout=30, by={replicas.ids[i] for i in others})
    takeover = time.monotonic() - frozen_at
    wait_for(lambda: len(stream.acked) >= 500, 60, "the stream going on after the takeover")
    stream.stop()
    _wait_drained(replicas, recv, names, stream.acked, "every acknowledged event delivered while the replica is frozen")
    time.sleep(1.5)  # the successors' last status patches (status interval 300 ms) land before the snapshot

    # The snapshot the continued replica must not change: requests, attempt log, counters, status and Events.
    before_requests = len(recv.received)
    before_ids = {n: set(recv.event_ids(n)) for n in names}
    before_attempts = replicas.attempts()
    before_counters = replicas.query("SELECT webhook, delivered, failed FROM webhooks ORDER BY webhook")
    before_counts = {w: webhook_status(cluster, namespace, w.split("/", 1)[1]).get("counts") for w in lost}
    before_events = _events_of(cluster, namespace, lost)
    thawed_at = time.monotonic()
    replicas.thaw(frozen)
    time.sleep(replicas.lease_duration + 2)  # its timers fire: renewals refused, lanes told, writes fenced

    after_thaw = recv.received[before_requests:]
    late = [d for d in after_thaw if d.replica == frozen]
    print(f"\nSIGSTOP of {rid} (owned {len(lost)} of 6): takeover {takeover:.2f} s; {len(stream.acked)} events acked; "
          f"requests after SIGCONT: {len(after_thaw)}, from it {len(late)}: "
          f"{[(d.path, round(d.begun - thawed_at, 3)) for d in late]}; duplicates per webhook "
          f"{[len(recv.event_ids(n)) - len(set(recv.event_ids(n))) for n in names]}")  # fmt: skip
    assert takeover <= replicas.takeover_bound + SLACK_S, f"takeover took {takeover:.2f} s"
    # Nothing was left to deliver: no other replica sends anything. The continued one may finish the one request
    # per lane that was already under way when it was frozen (a send cannot be recalled): a repeat of events its
    # successor had delivered, never a new batch, and never recorded (the attempt log below).
    assert not [d for d in after_thaw if d.replica != frozen], [(d.path, d.replica) for d in after_thaw]
    lost_paths = {"/" + w.split("/", 1)[1] for w in lost}
    assert all(n <= 1 for n in Counter(d.path for d in late).values()), f"more than the send under way: {late}"
    for d in late:
        assert d.path in lost_paths, f"{d.path}: not one of the webhooks it lost"
        ids = {str(e.get("eventId")) for e in d.events()}
        assert ids <= before_ids[d.path.lstrip("/")], f"{d.path}: a batch nobody had delivered before SIGCONT"
    assert replicas.attempts() == before_attempts, "an attempt was recorded after SIGCONT"
    assert replicas.query("SELECT webhook, delivered, failed FROM webhooks ORDER BY webhook") == before_counters
    writes: dict[str, int] = {}
    for webhook in lost:
        row = next(r for r in replicas.leases() if r.webhook == webhook)
        assert not (row.owner == rid and row.token == old_tokens[webhook]), f"{webhook}: the old lease came back"
        # Rendezvous hands the continued replica its webhooks back once it heartbeats again (new tokens), and the
        # new holder may write status then; what it writes is current. The frozen replica's own snapshot from
        # before SIGSTOP (fewer deliveries, events pending) would show as a version with other counts.
        assert watch.since(frozen_at, webhook.split("/", 1)[1]), "the watch saw the successors' writes (a control)"
        versions = watch.since(thawed_at, webhook.split("/", 1)[1])
        writes[webhook] = len(versions)
        expected = before_counts[webhook] or {}
        counts = (expected.get("delivered"), expected.get("pending"))
        stale = [v for v in versions if (v.delivered, v.pending) != counts]
        assert not stale, f"{webhook}: status written after SIGCONT with other counts than {expected}: {stale}"
    # Nothing happened to these webhooks after SIGCONT (no failure, nothing to deliver): nothing to report either.
    new_events = sorted(set(_events_of(cluster, namespace, lost)) - set(before_events))
    assert not new_events, f"Events posted after SIGCONT (webhook, reason, count): {new_events}"
    print(f"status versions after SIGCONT per lost webhook (all current): {writes}; owners now {replicas.owners()}")
    _check_order_and_count(recv, names, stream.acked)

    # It gave them up cleanly and works on: its intake accepts, every event is delivered once more per webhook.
    ready = replicas.readyz(frozen)
    assert ready.get("replica") == rid, ready
    fresh = [numbered(9000 + k, "8801") for k in range(9)]
    for k in range(3):
        status, _, _ = replicas.post(fresh[k * 3 : k * 3 + 3], to=[frozen, *others][k : k + 1])
        assert status == 202
    wait_for(lambda: all(set(recv.event_ids(n)) >= {e["id"] for e in fresh} for n in names), 60, "fresh events")
    for name in names:
        tail = [i for i in recv.event_ids(name) if i in {e["id"] for e in fresh}]
        assert tail == [e["id"] for e in fresh], f"{name}: {tail}"


def _events_of(cluster: Cluster, namespace: str, webhooks: list[str]) -> list[tuple[str, str, int]]:
    names = {w.split("/", 1)[1] for w in webhooks}
    items = cluster.get_json("events", "-n", namespace)["items"]
    return sorted((e["involvedObject"]["name"], e["reason"], int(e.get("count") or 1)) for e in items
                  if e["involvedObject"].get("name") in names)  # fmt: skip


@pytest.mark.timeout(240)
def test_postgres_stopped_for_20_s_under_load_refuses_events_and_everything_drains_in_order_after(
    cluster: Cluster, namespace: str, replicas: ReplicaSet, recv: AttributingReceiver, database: ReplicaDatabase
) -> None:
    replicas.start()
    recv.pids = replicas.pids()
    names = [f"pg{i}" for i in range(3)]
    _loads(cluster, namespace, replicas, recv, names, batch=5)
    replicas.wait_owned([_key(namespace, n) for n in names])

    def make(n: int) -> list[dict[str, Any]]:
        return [numbered(n * 5 + k, "8900") for k in range(5)]

    stream = Stream(replicas, make, pause=0.05)
    wait_for(lambda: len(stream.acked) >= 100, 60, "a stream under way")
    database.stop()
    stopped_at = time.monotonic()
    time.sleep(20)
    restart_at = time.monotonic()
    database.start_again()
    wait_for(lambda: any(s == 202 and t > restart_at for t, s in stream.statuses), 60, "202 again")
    time.sleep(3)
    stream.stop()

    during = [s for t, s in stream.statuses if stopped_at + 1 < t < restart_at]
    assert during and set(during) == {503}, f"while the database was down: {Counter(during)}"
    assert all(s in (202, 503) for _, s in stream.statuses), Counter(s for _, s in stream.statuses)
    _wait_drained(replicas, recv, names, stream.acked, "every acknowledged event delivered after the outage")
    duplicates = _check_order_and_count(recv, names, stream.acked)
    for name in names:
        half = set(recv.event_ids(name)) & set(stream.refused)
        assert not half, f"{name}: {len(half)} events answered 503 were delivered"
    print(f"\nPostgreSQL down 20 s: {len(stream.acked)} events acked, {len(stream.refused)} refused with 503 "
          f"({len(during)} posts while down); duplicates per webhook {duplicates}")  # fmt: skip
    for name, count in duplicates.items():
        assert count <= 10, f"{name}: {count} duplicates (at most the two batches of 5 in flight)"
