"""Intake availability (issue 15): an operator started while the Kubernetes API server is stopped accepts events at
once (202, durably, stored unrouted) and delivers them to the Webhook that already exists, in arrival order and
exactly once, when the API server is back — also when it was SIGKILLed in between. Real control plane (its API
server stopped and started again), real operator processes, a real receiver on loopback.

Before, the intake opened only after the Webhook list was read: a restart during an API-server outage refused every
event (503) until the API server answered (measured: 16 s)."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support import postgres
from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import OperatorProcess, ThreadedReceiver, receiver, wait_status
from support.webhooks import manifest, single_spec

SERIES = "a5a5"


def event_id(i: int) -> str:
    return str(numbered(i, SERIES)["id"])


def post(process: OperatorProcess, *numbers: int) -> dict[str, object]:
    status, body = process.post([numbered(i, SERIES) for i in numbers])
    assert status == 202, (status, body)
    return body


def listening_at(process: OperatorProcess, timeout: float = 60) -> float:
    """When the intake's port first accepted a connection (monotonic clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.proc is not None and process.proc.poll() is None, f"operator exited:\n{process.tail()}"
        try:
            with socket.create_connection(("127.0.0.1", process.intake_port), timeout=0.2):
                return time.monotonic()
        except OSError:
            time.sleep(0.01)
    raise AssertionError(f"the intake never listened:\n{process.tail()}")


def first_accept(process: OperatorProcess, listening: float, *numbers: int) -> float:
    """Post until the first 202 (a 503 is allowed only while the store is being opened); seconds since listening."""
    while True:
        status, body = process.post([numbered(i, SERIES) for i in numbers])
        if status == 202:
            assert body["accepted"] == len(numbers), body
            return time.monotonic() - listening
        assert status == 503, (status, body)
        assert time.monotonic() - listening < 10, f"still 503 after 10 s:\n{process.tail()}"
        time.sleep(0.02)


@contextmanager
def api_server_stopped(cluster: Cluster) -> Iterator[None]:
    """The API server is stopped inside the block and always started again, so later tests find it running."""
    cluster.plane.stop_apiserver()
    try:
        yield
    finally:
        cluster.plane.start_apiserver()


def delivered(recv: ThreadedReceiver) -> list[str]:
    return [str(e["id"]) for e in recv.events("avail")]


def assert_clean_exit(process: OperatorProcess) -> None:
    code = process.stop()
    log = process.tail(300)
    assert "Traceback" not in log, f"the operator logged an exception:\n{log}"
    assert code == 0, f"operator exited with {code}:\n{process.tail()}"


@pytest.fixture
def local(cluster: Cluster, crd: None) -> Cluster:
    if not cluster.local:
        pytest.skip("needs the local control plane: the API server is stopped and started again")
    return cluster


def test_an_operator_started_while_the_api_server_is_stopped_accepts_at_once_and_delivers_when_it_is_back(
    local: Cluster, namespace: str, tmp_path: Path
) -> None:
    process = OperatorProcess(local, tmp_path, [namespace])
    with receiver() as recv:
        local.apply(manifest("avail", single_spec(recv.url("avail")), namespace))  # exists before the operator
        try:
            with api_server_stopped(local):
                process.start(until="nothing")
                since_listening = first_accept(process, listening_at(process), 0)
                print(f"first 202 {since_listening * 1000:.0f} ms after the intake listened")
                assert since_listening < 2.0, f"the intake took {since_listening:.1f} s to accept"
                for i in range(1, 20):
                    assert post(process, i)["accepted"] == 1
                assert post(process, 3) == {"accepted": 0, "duplicates": 1, "queued": 0}  # a duplicate id: once
                readiness = process.readiness()
                assert process.intake_ready() and not process.ready(), readiness
                assert readiness["intake"] == "ready" and readiness["delivery"] == "starting", readiness
                assert readiness["unrouted"] == 20, readiness
                time.sleep(1)
                assert delivered(recv) == [], "nothing can be routed before the Webhook list is read"
            for i in range(20, 30):  # arrive while the list is being read and the unrouted events are routed
                post(process, i)
            wait_for(lambda: len(delivered(recv)) >= 30, 90, "the events to be delivered once the API is back")
            time.sleep(1.5)  # a duplicate delivery would arrive by now
            assert delivered(recv) == [event_id(i) for i in range(30)]  # in arrival order, each exactly once
            wait_for(process.ready, 30, "delivery readiness")
            assert process.readiness()["unrouted"] == 0
            # kopf watches Webhooks although it started during the outage: a new one is registered and delivered to.
            local.apply(manifest("later", single_spec(recv.url("later")), namespace))
            wait_status(local, namespace, "later", lambda s: s.get("status") == "active")
            post(process, 30)
            wait_for(lambda: len(recv.events("later")) == 1, 30, "delivery to a Webhook created after the outage")
            assert "Unresolved resources" not in process.tail(500)
        finally:
            assert_clean_exit(process)


def test_events_accepted_unrouted_survive_a_sigkill_before_the_api_server_is_back(
    local: Cluster, namespace: str, tmp_path: Path
) -> None:
    process = OperatorProcess(local, tmp_path, [namespace])
    with receiver() as recv:
        local.apply(manifest("avail", single_spec(recv.url("avail")), namespace))
        try:
            with api_server_stopped(local):
                process.start(until="intake")
                for i in range(10):
                    post(process, i)
                process.kill()  # acknowledged, stored unrouted, never routed
                process.start(until="intake")
                assert process.readiness()["unrouted"] == 10
                body = post(process, 4, 10, 11, 12)
                assert (body["accepted"], body["duplicates"]) == (3, 1), body  # the 202 before the kill counts
                time.sleep(1)
                assert delivered(recv) == []
            wait_for(lambda: len(delivered(recv)) >= 13, 90, "the events to be delivered once the API is back")
            time.sleep(1.5)
            assert delivered(recv) == [event_id(i) for i in range(13)]
            wait_for(process.ready, 30, "delivery readiness")
        finally:
            assert_clean_exit(process)


def test_a_store_that_cannot_be_opened_at_start_means_503_until_it_can_then_202_without_a_restart(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    """PostgreSQL not there yet when the operator starts (here: its database does not exist yet): the intake answers
    503 and takes nothing, ``/readyz`` says the store is unavailable, and the open is retried until it works."""
    database = f"wo_avail_{secrets.token_hex(4)}"
    dsn_file = tmp_path / "postgres-dsn"
    dsn_file.write_text(postgres.server().dsn(database) + "\n")
    dsn_file.chmod(0o600)
    process = OperatorProcess(cluster, tmp_path, [namespace], store="postgres", postgres_dsn_file=str(dsn_file))
    with receiver() as recv:
        cluster.apply(manifest("avail", single_spec(recv.url("avail")), namespace))
        try:
            process.start(until="nothing")
            listening_at(process)
            time.sleep(1.5)  # several attempts to open the store
            status, body = process.post([numbered(0, SERIES)])
            assert status == 503, (status, body)
            readiness = process.readiness()
            assert readiness["intake"] == "starting" and readiness["store"] == "unavailable", readiness
            assert not process.intake_ready()
            postgres._in_thread(lambda: postgres.admin(f"CREATE DATABASE {database} TEMPLATE template0"))
            wait_for(process.intake_ready, 30, "the intake once the database exists")
            post(process, 1)
            wait_for(lambda: delivered(recv) == [event_id(1)], 30, "the event accepted after the store opened")
            log = process.log.read_text()
            assert "the event store is unavailable" in log and postgres.server().password not in log
        finally:
            assert_clean_exit(process)
