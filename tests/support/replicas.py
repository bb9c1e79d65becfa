"""Several real operator processes sharing one PostgreSQL database and one control plane (issue 15's scale-out
tests), and the tools those tests need around them: round-robin posting to every intake, the leases table read
straight from the database, signals to one replica (SIGKILL, SIGSTOP, SIGCONT), the database stopped and started
again on the same port, and a stream of events in the background. (What the tests observe from outside the
processes — which replica sent a request, every status version — is in ``support.observers``.)

The PostgreSQL here is one server per test module (``ReplicaDatabase``), not the session's shared one
(``support.postgres``): the outage test stops it, and a failing test must not leave the session's server down for
the tests after it. Each test gets its own database on it (``CREATE DATABASE``, about a second), which the
replicas migrate on their first start, as a fresh install would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from controlplane.postgres import PostgresServer
from support.cluster import Cluster, wait_for
from support.operator import OperatorProcess

#: Seconds a lease lives in the tests: a dead replica's webhooks move within 4 + 4/3 s (the operator's bound is
#: lease_duration + lease_duration / 3), which keeps a takeover test short.
LEASE_SECONDS = 4


class ReplicaDatabase:
    """A PostgreSQL server of the test module's own; ``database()`` makes a new empty database on it."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="wo-test-replicas-pg-"))
        self.server = PostgresServer(self.workdir)
        self._names = itertools.count(1)

    def start(self) -> ReplicaDatabase:
        try:
            self.server.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.server.stop(immediate=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def database(self) -> str:
        """A new, empty database (no schema: the first replica to start migrates it); returns its DSN."""
        name = f"scale_{next(self._names)}"
        run(_execute(self.server.dsn("postgres"), f"CREATE DATABASE {name} TEMPLATE template0"))
        return self.server.dsn(name)

    def stop(self) -> None:
        """The database goes away: a fast shutdown (sessions ended, new connections refused)."""
        self.server.stop()

    def start_again(self) -> None:
        """The same server back on the same port with the same data."""
        self.server.launch()


def run(coro: Any) -> Any:
    """Run ``coro`` on a loop of its own (the tests are synchronous; receivers run their loops in threads)."""
    return asyncio.run(coro)


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetch(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


@dataclass(frozen=True)
class LeaseRow:
    webhook: str
    owner: str
    token: int
    expires_in: float  # seconds from now by the database's clock; negative: expired

    @property
    def live(self) -> bool:
        return self.expires_in > 0


class ReplicaSet:
    """``count`` operator processes on one database: replica ids ``r0``… (or chosen by ``start(spread=…)``), each
    with its own ports and log."""

    def __init__(self, cluster: Cluster, workdir: Path, namespaces: list[str], dsn: str, count: int = 3,
                 lease_duration: int = LEASE_SECONDS, **settings: str) -> None:  # fmt: skip
        self.dsn = dsn
        self.lease_duration = lease_duration
        dsn_file = workdir / "postgres-dsn"
        dsn_file.write_text(dsn + "\n")
        dsn_file.chmod(0o600)
        self.replicas: list[OperatorProcess] = []
        self.ids = [f"r{i}" for i in range(count)]
        for i in range(count):
            home = workdir / f"r{i}"
            home.mkdir()
            process = OperatorProcess(cluster, home, namespaces, store="postgres", postgres_dsn_file=str(dsn_file),
                                      replica_id=f"r{i}", lease_duration=f"{lease_duration}s", **settings)  # fmt: skip
            process.settings["advertise_address"] = f"127.0.0.1:{process.intake_port}"
            self.replicas.append(process)
        self._next = itertools.count()

    def __getitem__(self, index: int) -> OperatorProcess:
        return self.replicas[index]

    def __iter__(self) -> Iterator[OperatorProcess]:
        return iter(self.replicas)

    def index(self, replica_id: str) -> int:
        return self.ids.index(replica_id)

    @property
    def takeover_bound(self) -> float:
        """The operator's promise: a dead replica's webhooks are owned again within this many seconds."""
        return self.lease_duration + self.lease_duration / 3

    def start(self, *indexes: int, spread: list[str] | None = None) -> ReplicaSet:
        """Start the given replicas (default: all) at once, and wait until each is ready. ``spread``: webhook keys
        that must land on every replica (replica ids are chosen for it before the first start, see
        ``spread_ids``)."""
        if spread is not None:
            self.ids = spread_ids(spread, len(self.replicas))
            for process, replica_id in zip(self.replicas, self.ids, strict=True):
                process.settings["replica_id"] = replica_id
        chosen = [self.replicas[i] for i in (indexes or range(len(self.replicas)))]
        with ThreadPoolExecutor(len(chosen)) as pool:
            list(pool.map(lambda p: p.start(timeout=90), chosen))
        return self

    def stop(self) -> list[int]:
        """SIGTERM every replica still running (a frozen one is continued first); their exit codes."""
        for process in self.replicas:
            if process.proc is not None and process.proc.poll() is None:
                process.proc.send_signal(signal.SIGCONT)
        with ThreadPoolExecutor(len(self.replicas)) as pool:
            return list(pool.map(lambda p: p.stop(), self.replicas))

    def kill(self, index: int) -> None:
        self.replicas[index].kill()

    def freeze(self, index: int) -> None:
        proc = self.replicas[index].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)

    def thaw(self, index: int) -> None:
        proc = self.replicas[index].proc
        assert proc is not None
        proc.send_signal(signal.SIGCONT)

    def pids(self) -> dict[int, int]:
        return {i: p.proc.pid for i, p in enumerate(self.replicas) if p.proc is not None and p.proc.poll() is None}

    # -- the intakes ------------------------------------------------------------------------------------------

    def post(self, events: list[dict[str, Any]], *, to: Iterable[int] | None = None,
             timeout: float = 30) -> tuple[int, dict[str, Any], int]:  # fmt: skip
        """POST ``events`` to the next intake in round-robin order (over ``to``, default all); (status, body,
        replica index). A refused connection or a timeout counts as status 0: nothing was acknowledged."""
        pool = list(to) if to is not None else list(range(len(self.replicas)))
        index = pool[next(self._next) % len(pool)]
        process = self.replicas[index]
        request = urllib.request.Request(f"{process.url}/api/v1/events", data=json.dumps(events).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {_token()}"}, method="POST")  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}"), index
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"{}"), index
            except ValueError:
                return exc.code, {"raw": body.decode(errors="replace")}, index
        except (urllib.error.URLError, OSError):
            return 0, {}, index

    def readyz(self, index: int) -> dict[str, Any]:
        """The replica's /readyz body (whatever its status code); {} when it does not answer."""
        url = f"http://127.0.0.1:{self.replicas[index].health_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except urllib.error.HTTPError as exc:
            try:
                data = json.loads(exc.read())
                return data
            except ValueError:
                return {}
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    # -- the database -----------------------------------------------------------------------------------------

    def leases(self) -> list[LeaseRow]:
        rows = run(_fetch(self.dsn, "SELECT webhook, owner, token, expires_at - extract(epoch FROM clock_timestamp())"
                                    " AS expires_in FROM leases ORDER BY webhook"))  # fmt: skip
        return [LeaseRow(r["webhook"], r["owner"], int(r["token"]), float(r["expires_in"])) for r in rows]

    def owners(self) -> dict[str, str]:
        """webhook → replica id, for the leases that are live now."""
        return {row.webhook: row.owner for row in self.leases() if row.live}

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return list(run(_fetch(self.dsn, sql, *args)))

    def attempts(self) -> dict[str, int]:
        """Rows of the attempt log per webhook."""
        return {r["webhook"]: int(r["n"]) for r in self.query("SELECT webhook, count(*) AS n FROM attempts"
                                                              " GROUP BY webhook")}  # fmt: skip

    def wait_owned(self, webhooks: Iterable[str], timeout: float = 60, *,
                   by: Iterable[str] | None = None) -> dict[str, str]:  # fmt: skip
        """Wait until every one of ``webhooks`` has a live lease (held by one of ``by``, when given)."""
        wanted, allowed = set(webhooks), set(by) if by is not None else None
        last: dict[str, str] = {}

        def owned() -> bool:
            nonlocal last
            last = self.owners()
            return all(w in last and (allowed is None or last[w] in allowed) for w in wanted)

        try:
            wait_for(owned, timeout, f"leases of {sorted(wanted)}", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; live leases: {last}") from None
        return {w: last[w] for w in wanted}


def spread_ids(keys: list[str], count: int) -> list[str]:
    """Replica ids (``r0-<salt>``, …) under which every one of ``count`` replicas wins at least one of ``keys``.

    The operator spreads webhooks by rendezvous hashing of (replica id, webhook key): evenly on average, but six
    webhooks leave one of three replicas without any about one time in four, and the namespace (part of the key)
    is random per test. Choosing the ids makes "each replica owns at least one" a property of the operator, not
    of luck."""
    from webhook_operator.sharing.rendezvous import assign

    for salt in itertools.count():
        ids = [f"r{i}-{salt}" for i in range(count)]
        if len(set(assign(keys, ids).values())) == count:
            return ids
    raise AssertionError("unreachable")


def _token() -> str:
    from support.operator import TOKEN

    return TOKEN


@dataclass
class Stream:
    """Events posted in the background, round-robin over some intakes, until stopped: what "under load" means in
    these tests. Records what each post got back, by event id."""

    replicas: ReplicaSet
    make: Any  # (n) -> list of events for the n-th post
    to: list[int] | None = None
    pause: float = 0.02
    acked: list[str] = field(default_factory=list)  # ids in 202 answers, in posting order
    refused: list[str] = field(default_factory=list)  # ids of posts answered otherwise (503, no answer)
    statuses: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, status) per post

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="event-stream")
        self.thread.start()

    def _run(self) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            events = self.make(n)
            status, _body, _ = self.replicas.post(events, to=self.to, timeout=10)
            self.statuses.append((time.monotonic(), status))
            (self.acked if status == 202 else self.refused).extend(e["id"] for e in events)
            time.sleep(self.pause)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(60)
