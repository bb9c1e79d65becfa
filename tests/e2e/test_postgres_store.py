"""The real operator on a real PostgreSQL (issue 15, item 1): ``--store postgres`` with the DSN from a Secret-style
file delivers in order, refuses duplicates, keeps what it accepted across a restart, and never logs the password.
(Several replicas sharing the database, and leases between them, are later work.)"""

from __future__ import annotations

from pathlib import Path

from support import postgres
from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import OperatorProcess, receiver, wait_status
from support.webhooks import manifest, single_spec


def test_the_operator_runs_on_postgres_and_keeps_what_it_accepted_across_a_restart(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    dsn_file = tmp_path / "postgres-dsn"
    dsn_file.write_text(postgres.fresh_database() + "\n")
    dsn_file.chmod(0o600)
    process = OperatorProcess(cluster, tmp_path, [namespace], store="postgres", postgres_dsn_file=str(dsn_file))
    process.start()
    try:
        with receiver(status_by_path={"/down": 503}) as recv:
            cluster.apply(manifest("pg", single_spec(recv.url("hook")), namespace))
            wait_status(cluster, namespace, "pg", lambda s: s.get("status") == "active")
            events = [numbered(i, "8600") for i in range(5)]
            status, body = process.post(events)
            assert status == 202 and body["accepted"] == 5, (status, body)
            wait_for(lambda: len(recv.events("hook")) == 5, 30, "five deliveries")
            assert [e["eventId"] for e in recv.events("hook")] == [e["id"] for e in events], "in order"
            status, body = process.post(events[:3])
            assert status == 202 and (body["accepted"], body["duplicates"]) == (0, 3), body

            # A webhook whose receiver is down holds its events; a restart finds them in the database.
            cluster.apply(manifest("held", single_spec(recv.url("down")), namespace))
            wait_status(cluster, namespace, "held", lambda s: s.get("status") == "active")
            later = [numbered(i, "8601") for i in range(3)]
            assert process.post(later)[0] == 202
            wait_status(cluster, namespace, "held", lambda s: s.get("counts", {}).get("pending") == 3)
            assert process.stop() == 0
            process.start()
            cluster.apply(manifest("held", single_spec(recv.url("up")), namespace))
            wait_for(lambda: len(recv.events("up")) == 3, 30, "the held events after the restart")
            assert [e["eventId"] for e in recv.events("up")] == [e["id"] for e in later]
            assert len(recv.events("hook")) == 5 + 3, "the first webhook got the later events once, no repeats"
    finally:
        code = process.stop()
        log = process.tail(400)
        assert code == 0 and "Traceback" not in log, log
        assert postgres.server().password not in log and postgres.server().password not in process.log.read_text()
