"""Operations end to end: test, delivery log, resume, skip and redeliver through annotations, HTTP and the
``kubectl webhook`` plugin, with the real operator on the real control plane and real receivers on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import TOKEN, OperatorProcess, receiver, wait_status, webhook_status
from support.webhooks import manifest, single_spec, webhook_secret

PLUGIN = Path(sys.executable).parent / "kubectl-webhook"
GROUP = "events.open-metadata.org"


def _path(namespace: str, name: str, action: str) -> str:
    return f"/api/v1/namespaces/{namespace}/webhooks/{name}/{action}"


def api(operator: OperatorProcess, method: str, path: str, *, token: str | None, body: Any = None,
        params: str = "") -> tuple[int, dict[str, Any]]:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(operator.url + path + params, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def sa_token(cluster: Cluster, namespace: str, name: str, verbs: list[str], names: list[str] | None = None) -> str:
    """A ServiceAccount token; with ``verbs``, a Role granting them on (these) Webhooks, bound to it."""
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    if verbs:
        rule: dict[str, Any] = {"apiGroups": [GROUP], "resources": ["webhooks"], "verbs": verbs}
        if names:
            rule["resourceNames"] = names
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": namespace}, "rules": [rule]}  # fmt: skip
        cluster.apply(role)
        cluster.kubectl("create", "rolebinding", name, f"--role={name}", f"--serviceaccount={namespace}:{name}",
                        "-n", namespace)  # fmt: skip
    return cluster.kubectl("create", "token", name, "-n", namespace, "--duration=10m").stdout.strip()


def annotate(cluster: Cluster, namespace: str, name: str, operation: str, value: str) -> None:
    cluster.kubectl("annotate", "--overwrite", f"webhook/{name}", "-n", namespace, f"{GROUP}/{operation}={value}")


def plugin(cluster: Cluster, operator: OperatorProcess, *args: str, token: str | None = None,
           via_kubectl: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``kubectl-webhook ARGS --server <operator>``; ``via_kubectl`` runs it as ``kubectl webhook ARGS`` through
    the real kubectl binary (plugin discovery on PATH)."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PATH": f"{PLUGIN.parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}"}  # fmt: skip
    env.pop("WEBHOOK_OPERATOR_API", None)
    env.pop("WEBHOOK_OPERATOR_TOKEN", None)
    extra = ["--server", operator.url, *(["--token", token] if token else [])]
    command = [str(cluster.kubectl_bin), "webhook", *args, *extra] if via_kubectl else [str(PLUGIN), *args, *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def events_of(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                          "-o", "json").stdout  # fmt: skip
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def wait_event(cluster: Cluster, namespace: str, name: str, reason: str, timeout: float = 30) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = [e for e in events_of(cluster, namespace, name) if e["reason"] == reason]
        return bool(found)

    wait_for(check, timeout, f"a {reason} Event on {name}", interval=0.3)
    return found[-1]


def deliveries(operator: OperatorProcess, namespace: str, name: str, token: str, params: str = "") -> list[Any]:
    items: list[Any] = []
    cursor = ""
    while True:
        sep = "&" if params else ""
        query = f"?{params}{sep}limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = api(operator, "GET", _path(namespace, name, "deliveries"), token=token, params=query)
        assert status == 200, page
        items += page["items"]
        if not page["next"]:
            return items
        cursor = page["next"]


@pytest.fixture
def admin_token(cluster: Cluster, namespace: str) -> str:
    """A ServiceAccount allowed to read and operate the Webhooks of the test namespace."""
    return sa_token(cluster, namespace, "ops-admin", ["get", "patch"])


def test_test_annotation_against_healthy_and_failing_receivers(
    cluster: Cluster, namespace: str, operator: OperatorProcess, admin_token: str
) -> None:
    cluster.apply(webhook_secret("hmac", namespace, key="test-hmac-key"))
    with receiver(status_by_path={"/failing": 503}) as recv:
        cluster.apply(manifest("healthy", single_spec(recv.url("healthy"), secretKeyRef={"name": "hmac", "key": "key"}),
                               namespace))  # fmt: skip
        cluster.apply(manifest("broken", single_spec(recv.url("failing")), namespace))
        for name in ("healthy", "broken"):
            wait_status(cluster, namespace, name, lambda s: s.get("status") == "active")

        annotate(cluster, namespace, "healthy", "test", "1")
        ok = wait_status(cluster, namespace, "healthy", lambda s: "lastTest" in s)["lastTest"]
        assert ok["success"] is True and ok["statusCode"] == 200 and ok["trigger"] == "1", ok
        assert ok["requestedBy"] == "kubectl-annotate (annotation)" and ok["latencyMs"] >= 0
        (request,) = recv.by_path("healthy")
        body = request.json()
        assert body["eventType"] == "webhookTest" and body["entityType"] == "webhookTest" and body["test"] is True
        assert body["id"] == ok["eventId"] and request.headers["X-Webhook-Operator-Test"] == "true"
        digest = hmac.new(b"test-hmac-key", request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-OpenMetadata-Signature"] == f"sha256={digest}"  # the real signature
        tested = wait_event(cluster, namespace, "healthy", "WebhookTested")
        assert tested["type"] == "Normal" and "kubectl-annotate" in tested["message"]

        annotate(cluster, namespace, "broken", "test", "a")
        bad = wait_status(cluster, namespace, "broken", lambda s: "lastTest" in s)["lastTest"]
        assert bad["success"] is False and bad["statusCode"] == 503 and "503" in bad["error"], bad
        failed = wait_event(cluster, namespace, "broken", "WebhookTestFailed")
        assert failed["type"] == "Warning" and "503" in failed["message"]
        # A test never touches the queue or the delivery state.
        broken = webhook_status(cluster, namespace, "broken")
        assert broken["status"] == "active" and broken["counts"] == {"delivered": 0, "failed": 0, "pending": 0}

        # The same value again is not a new request; a new value is. The annotations are left as the user set them.
        annotate(cluster, namespace, "healthy", "test", "1")
        time.sleep(1.5)
        assert len(recv.by_path("healthy")) == 1
        annotate(cluster, namespace, "healthy", "test", "2")
        wait_status(cluster, namespace, "healthy", lambda s: s["lastTest"]["trigger"] == "2")
        assert len(recv.by_path("healthy")) == 2
        annotations = cluster.get_json("webhook", "healthy", "-n", namespace)["metadata"]["annotations"]
        assert annotations[f"{GROUP}/test"] == "2"
        status = webhook_status(cluster, namespace, "healthy")
        assert status["handledAnnotations"] == {"test": "2"}
        # A restarted operator finds the request handled (status.handledAnnotations) and does not repeat it.
        attempts = recv.receiver.attempts
        assert operator.stop() == 0
        operator.start()
        time.sleep(1.5)
        assert recv.receiver.attempts == attempts

        # A Webhook created with the annotation already set is tested once.
        born = manifest("born-tested", single_spec(recv.url("born")), namespace)
        born["metadata"]["annotations"] = {f"{GROUP}/test": "at-creation"}
        cluster.apply(born)
        first = wait_status(cluster, namespace, "born-tested", lambda s: "lastTest" in s)["lastTest"]
        assert first["success"] and first["trigger"] == "at-creation" and len(recv.by_path("born")) == 1

        # HTTP and the CLI: the result, and exit 1 for a failing endpoint.
        code, result = api(operator, "POST", _path(namespace, "healthy", "test"), token=admin_token)
        assert code == 200 and result["success"] is True and result["statusCode"] == 200, result
        assert result["requestedBy"] == f"system:serviceaccount:{namespace}:ops-admin"
        good = plugin(cluster, operator, "test", "healthy", "-n", namespace)
        assert good.returncode == 0 and "OK (HTTP 200" in good.stdout, good.stderr
        broke = plugin(cluster, operator, "test", "broken", "-n", namespace)
        assert broke.returncode == 1 and "FAILED (HTTP 503" in broke.stdout, broke.stdout + broke.stderr
        missing = plugin(cluster, operator, "test", "nope", "-n", namespace)
        assert missing.returncode == 1 and "not found" in missing.stderr
        assert len(recv.by_path("healthy")) == 4
        notes = [e["note"] for e in deliveries(operator, namespace, "healthy", admin_token, "status=test")]
        assert len(notes) == 4 and notes[0] == "test requested by kubectl-annotate (annotation)", notes
        assert notes[2] == f"test requested by system:serviceaccount:{namespace}:ops-admin"


def test_delivery_log_after_a_mixed_run(
    cluster: Cluster, namespace: str, operator: OperatorProcess, admin_token: str
) -> None:
    secret_header = "Bearer very-secret-receiver-token"
    cluster.apply(webhook_secret("creds", namespace, hmac="mixed-hmac-secret", auth=secret_header))
    # Requests 2 and 3 fail (the second event is retried twice), everything else succeeds; every answer echoes
    # the request headers, credentials included.
    with receiver(echo=True, responder=lambda n: (503 if n in (2, 3) else 200, {})) as recv:
        auth = {"name": "Authorization", "secretKeyRef": {"name": "creds", "key": "auth"}}
        cfg = {"secretKeyRef": {"name": "creds", "key": "hmac"}, "headersFrom": [auth]}
        cluster.apply(manifest("mixed", single_spec(recv.url("mixed"), **cfg), namespace))
        wait_status(cluster, namespace, "mixed", lambda s: s.get("status") == "active")
        sent = [numbered(i, "9000") for i in range(4)]
        assert operator.post(sent)[0] == 202
        wait_status(cluster, namespace, "mixed", lambda s: s.get("counts", {}).get("delivered") == 4)
        received = [e["eventId"] for e in recv.events("mixed")]
        assert received == [e["id"] for e in sent]

        log = deliveries(operator, namespace, "mixed", admin_token)  # pages of 2
        assert [(e["outcome"], e["attempt"]) for e in log] == [
            ("delivered", 1), ("failed", 1), ("failed", 2), ("delivered", 3), ("delivered", 1), ("delivered", 1)
        ]  # fmt: skip
        assert [e["eventIds"][0] for e in log] == [sent[i]["id"] for i in (0, 1, 1, 1, 2, 3)]
        assert [e["eventIds"][0] for e in log if e["outcome"] == "delivered"] == received
        assert [e["statusCode"] for e in log] == [200, 503, 503, 200, 200, 200]
        assert all(e["durationMs"] >= 0 and e["time"].endswith("Z") and e["deliveryId"] for e in log)
        assert log[1]["error"] == "HTTP 503 Service Unavailable" and log[1]["deliveryId"] == log[3]["deliveryId"]
        text = json.dumps(log)
        for secret in ("mixed-hmac-secret", "very-secret-receiver-token"):
            assert secret not in text
        assert "***" in log[1]["responseBody"]  # the echoed Authorization header, masked

        failed = deliveries(operator, namespace, "mixed", admin_token, "status=failed")
        assert [e["attempt"] for e in failed] == [1, 2]
        since = deliveries(operator, namespace, "mixed", admin_token, f"since={log[3]['time']}")
        assert [e["id"] for e in since] == [e["id"] for e in log[3:]]
        until = deliveries(operator, namespace, "mixed", admin_token, f"until={log[1]['time']}")
        assert [e["id"] for e in until] == [log[0]["id"]]
        assert api(operator, "GET", _path(namespace, "mixed", "deliveries"), token=admin_token,
                   params="?status=bogus")[0] == 400  # fmt: skip
        assert api(operator, "GET", _path(namespace, "nope", "deliveries"), token=admin_token)[0] == 404

        # The kubectl plugin, through the real kubectl binary, with the kubeconfig's own credentials.
        table = plugin(cluster, operator, "deliveries", "mixed", "-n", namespace, via_kubectl=True)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split()[:4] == ["TIME", "OUTCOME", "ATTEMPT", "HTTP"] and len(lines) == 7
        assert [line.split()[1] for line in lines[1:]] == [e["outcome"] for e in log]
        as_json = plugin(cluster, operator, "deliveries", "mixed", "-n", namespace, "-o", "json", "--status",
                         "failed", via_kubectl=True)  # fmt: skip
        assert as_json.returncode == 0 and json.loads(as_json.stdout)["items"] == failed


def test_resume_skip_and_redeliver_end_to_end(
    cluster: Cluster, namespace: str, operator: OperatorProcess, admin_token: str
) -> None:
    with receiver(status_by_path={"/down": 503}) as recv:
        cluster.apply(manifest("ops", single_spec(recv.url("down")), namespace))
        wait_status(cluster, namespace, "ops", lambda s: s.get("status") == "active")
        t0 = time.time() - 1
        sent = [numbered(100 + i, "9000") for i in range(3)]
        ids = [e["id"] for e in sent]
        assert operator.post(sent)[0] == 202
        wait_status(cluster, namespace, "ops", lambda s: s.get("status") == "retryLimitReached")

        # Skip the held batch (the first event): logged with who asked, then the next one is held in turn.
        annotate(cluster, namespace, "ops", "skip", "1")
        skipped = wait_event(cluster, namespace, "ops", "HeldBatchSkipped")
        assert ids[0] in skipped["message"] and "kubectl-annotate (annotation)" in skipped["message"]
        wait_status(cluster, namespace, "ops", lambda s: s.get("status") == "retryLimitReached"
                    and s["counts"]["pending"] == 2)  # fmt: skip
        (line,) = deliveries(operator, namespace, "ops", admin_token, "status=skipped")
        assert line["eventIds"] == [ids[0]] and "kubectl-annotate (annotation)" in line["note"]

        # Resume once the receiver is back: the held batch first, then the rest, in order.
        recv.receiver.status_by_path.pop("/down")
        annotate(cluster, namespace, "ops", "resume", "after-fix")
        wait_status(cluster, namespace, "ops", lambda s: s.get("status") == "active" and s["counts"]["pending"] == 0)
        assert [e["eventId"] for e in recv.events("down")] == ids[1:]
        resumed = wait_event(cluster, namespace, "ops", "DeliveryResumed")
        assert "kubectl-annotate (annotation)" in resumed["message"]
        assert deliveries(operator, namespace, "ops", admin_token, "status=resumed")
        # Nothing to resume or skip now: refused, with an Event for the annotation and 409 over HTTP.
        assert api(operator, "POST", _path(namespace, "ops", "resume"), token=admin_token)[0] == 409
        cli_skip = plugin(cluster, operator, "skip", "ops", "-n", namespace, token=admin_token)
        assert cli_skip.returncode == 1 and "nothing to skip" in cli_skip.stderr

        # Redeliver by ids over HTTP: acceptance order, whatever order they were asked in.
        code, body = api(operator, "POST", _path(namespace, "ops", "redeliver"), token=admin_token,
                         body={"eventIds": [ids[2], ids[1], "no-such-event"]})  # fmt: skip
        assert code == 202 and body["queued"] == ids[1:] and body["missing"] == ["no-such-event"], body
        wait_for(lambda: len(recv.events("down")) == 4, 30, "the redelivered events")
        assert [e["eventId"] for e in recv.events("down")] == ids[1:] + ids[1:]

        # Redeliver a time range to another Webhook (HTTP): what ops delivered or skipped, in order. The target's
        # filters are applied again (its own, like ops's, admit these events); created only now, it got none live.
        cluster.apply(manifest("other", single_spec(recv.url("other")), namespace))
        wait_status(cluster, namespace, "other", lambda s: s.get("status") == "active")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
        code, body = api(operator, "POST", _path(namespace, "ops", "redeliver"), token=admin_token,
                         body={"since": since, "to": "other"})  # fmt: skip
        assert code == 202 and body["queued"] == ids and body["filtered"] == [], body
        wait_for(lambda: len(recv.events("other")) == 3, 30, "the range redelivered to the other webhook")
        assert [e["eventId"] for e in recv.events("other")] == ids
        admin = f"system:serviceaccount:{namespace}:ops-admin"
        queued = wait_event(cluster, namespace, "other", "RedeliveryQueued")
        assert admin in queued["message"] and f"{namespace}/other" in queued["message"]
        notes = [e["note"] for e in deliveries(operator, namespace, "other", admin_token, "status=redeliveryQueued")]
        assert notes == [f"redelivery of 3 event(s) requested by {admin} from {namespace}/ops"]

        # The annotation redelivers a range to the Webhook itself (naming another one is refused: see
        # test_redeliver_is_scoped_to_what_was_routed_to_the_source_webhook).
        annotate(cluster, namespace, "ops", "redeliver", f"since={since}")
        wait_for(lambda: len(recv.events("down")) == 7, 30, "the range redelivered by annotation")
        assert [e["eventId"] for e in recv.events("down")][4:] == ids

        # And with the CLI, by id, to the other Webhook.
        cli = plugin(cluster, operator, "redeliver", "ops", "-n", namespace, "--ids", ids[0], "--to", "other",
                     token=admin_token)  # fmt: skip
        assert cli.returncode == 0 and "1 event(s) queued for redelivery" in cli.stdout, cli.stderr
        wait_for(lambda: len(recv.events("other")) == 4, 30, "the CLI redelivery")
        assert recv.events("other")[-1]["eventId"] == ids[0]
        by_cli = deliveries(operator, namespace, "ops", admin_token, "status=redeliveryQueued")[-1]
        assert by_cli["note"].endswith(f"requested by {admin}")
        # A bad annotation value is refused with a Warning Event, never silently.
        annotate(cluster, namespace, "ops", "redeliver", "since=yesterday")
        wait_rejected(cluster, namespace, "ops", "invalid value")


def wait_rejected(cluster: Cluster, namespace: str, name: str, text: str) -> dict[str, Any]:
    """The OperationRejected Event of ``name`` whose message holds ``text`` (there may be several)."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = [e for e in events_of(cluster, namespace, name)
                    if e["reason"] == "OperationRejected" and text in e["message"]]  # fmt: skip
        return bool(found)

    wait_for(check, 30, f"an OperationRejected Event on {name} saying {text!r}", interval=0.3)
    return found[-1]


def test_unauthorised_callers_are_refused(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    with receiver() as recv:
        for name in ("a", "b"):
            cluster.apply(manifest(name, single_spec(recv.url(name)), namespace))
            wait_status(cluster, namespace, name, lambda s: s.get("status") == "active")
        viewer = sa_token(cluster, namespace, "viewer", ["get"])
        operator_a = sa_token(cluster, namespace, "operator-a", ["get", "patch"], names=["a"])
        nobody = sa_token(cluster, namespace, "nobody", [])
        deliveries_a, test_a = _path(namespace, "a", "deliveries"), _path(namespace, "a", "test")

        code, body = api(operator, "GET", deliveries_a, token=None)
        assert code == 401 and "bearer token" in body["error"]
        assert api(operator, "GET", deliveries_a, token="not-a-kubernetes-token")[0] == 401
        assert api(operator, "POST", test_a, token=None)[0] == 401
        code, body = api(operator, "GET", deliveries_a, token=nobody)
        assert code == 403 and f"system:serviceaccount:{namespace}:nobody may not get" in body["error"], body
        assert api(operator, "GET", deliveries_a, token=viewer)[0] == 200
        code, body = api(operator, "POST", test_a, token=viewer)
        assert code == 403 and "may not patch" in body["error"]
        assert api(operator, "POST", test_a, token=operator_a)[0] == 200
        assert api(operator, "POST", _path(namespace, "b", "test"), token=operator_a)[0] == 403
        # Redelivering to a Webhook the caller may not patch is refused too.
        code, body = api(operator, "POST", _path(namespace, "a", "redeliver"), token=operator_a,
                         body={"eventIds": ["x"], "to": "b"})  # fmt: skip
        assert code == 403 and "'b'" in body["error"], body
        assert len(recv.by_path("a")) == 1 and not recv.by_path("b")

        denied = plugin(cluster, operator, "deliveries", "a", "-n", namespace, token=nobody)
        assert denied.returncode == 2 and "not allowed" in denied.stderr and "HTTP 403" in denied.stderr
        unknown = plugin(cluster, operator, "test", "a", "-n", namespace, token="garbage")
        assert unknown.returncode == 2 and "not authenticated" in unknown.stderr


def test_tokens_mode_uses_the_intake_tokens(cluster: Cluster, namespace: str, crd: None, tmp_path: Path) -> None:
    process = OperatorProcess(cluster, tmp_path, [namespace], api_auth="tokens").start()
    try:
        with receiver() as recv:
            cluster.apply(manifest("tok", single_spec(recv.url("tok")), namespace))
            wait_status(cluster, namespace, "tok", lambda s: s.get("status") == "active")
            path = _path(namespace, "tok", "test")
            assert api(process, "POST", path, token=None)[0] == 401
            assert api(process, "POST", path, token="wrong")[0] == 401
            code, body = api(process, "POST", path, token=TOKEN)
            assert code == 200 and body["success"] and body["requestedBy"].startswith("token:"), body
    finally:
        assert process.stop() == 0
        assert "Traceback" not in process.tail(200)


def test_redeliver_is_scoped_to_what_was_routed_to_the_source_webhook(
    cluster: Cluster, namespace: str, module_namespace: str, crd: None, tmp_path: Path
) -> None:
    """Issue 13, finding 3 and the annotation part of 11: team-b cannot redeliver (or learn of) an event that was
    routed only to team-a; ``to`` re-applies the target's filters; an annotation cannot name ``to``."""
    team_a, team_b = namespace, module_namespace
    process = OperatorProcess(cluster, tmp_path, [team_a, team_b]).start()
    try:
        with receiver() as recv:
            cluster.apply(manifest("hook", single_spec(recv.url("a-hook")), team_a))
            dash = single_spec(recv.url("a-dash"))
            dash["eventFilters"] = [{"eventType": "entityCreated", "entities": ["dashboard"]}]
            cluster.apply(manifest("dash", dash, team_a))
            for name in ("hook", "dash"):
                wait_status(cluster, team_a, name, lambda s: s.get("status") == "active")
            first, second = numbered(1, "9300"), numbered(2, "9300")
            assert process.post([first])[0] == 202  # routed to team-a/hook only: team-b/mine does not exist yet
            wait_for(lambda: len(recv.events("a-hook")) == 1, 30, "team-a's event")
            cluster.apply(manifest("mine", single_spec(recv.url("b-mine")), team_b))
            cluster.apply(manifest("copy", single_spec(recv.url("a-copy")), team_a))
            for ns, name in ((team_b, "mine"), (team_a, "copy")):
                wait_status(cluster, ns, name, lambda s: s.get("status") == "active")
            assert process.post([second])[0] == 202  # routed to all three table Webhooks
            wait_for(lambda: len(recv.events("b-mine")) == 1 and len(recv.events("a-copy")) == 1, 30, "event two")
            tenant_b = sa_token(cluster, team_b, "tenant-b", ["get", "patch"])
            tenant_a = sa_token(cluster, team_a, "tenant-a", ["get", "patch"])
            redeliver_b = _path(team_b, "mine", "redeliver")

            # By id: team-a's event id gets exactly the answer of an id that never existed, and nothing is sent.
            foreign = api(process, "POST", redeliver_b, token=tenant_b, body={"eventIds": [first["id"]]})
            nonexistent = api(process, "POST", redeliver_b, token=tenant_b,
                              body={"eventIds": ["00000000-0000-4000-9300-999999999999"]})  # fmt: skip
            assert foreign[0] == nonexistent[0] == 409 and foreign[1] == nonexistent[1], (foreign, nonexistent)
            assert first["id"] not in json.dumps(foreign[1])
            code, body = api(process, "POST", redeliver_b, token=tenant_b,
                             body={"eventIds": [first["id"], second["id"], "no-such-event"]})  # fmt: skip
            assert code == 202 and body["queued"] == [second["id"]], body
            assert body["missing"] == [first["id"], "no-such-event"], body  # the same list for both: no oracle
            # A lane sends in order: once its own redelivered event arrived, nothing else was queued before it.
            wait_for(lambda: len(recv.events("b-mine")) == 2, 30, "team-b's own redelivered event")
            assert [e["eventId"] for e in recv.events("b-mine")] == [second["id"], second["id"]]
            # By time range: only what team-b/mine itself delivered.
            code, body = api(process, "POST", redeliver_b, token=tenant_b, body={"since": "1h"})
            assert code == 202 and body["queued"] == [second["id"]], body
            wait_for(lambda: len(recv.events("b-mine")) == 3, 30, "team-b's range redelivery")
            assert first["id"] not in [e["eventId"] for e in recv.events("b-mine")]

            # ``to`` re-applies the target's filters: a table event is not sent to a dashboard-only Webhook.
            redeliver_a = _path(team_a, "hook", "redeliver")
            code, body = api(
                process, "POST", redeliver_a, token=tenant_a, body={"eventIds": [first["id"]], "to": "dash"}
            )
            assert code == 409 and "filters" in body["error"], body
            assert not deliveries(process, team_a, "dash", tenant_a, "status=redeliveryQueued")
            # An annotation cannot name ``to`` (it carries no user to check ``patch`` on the target for) ...
            annotate(cluster, team_a, "hook", "redeliver", f"ids={first['id']},to=copy")
            wait_rejected(cluster, team_a, "hook", "kubectl webhook redeliver hook --to copy")
            # ... the HTTP API can, and checks ``patch`` on the target; then the target's lane sends only this.
            code, body = api(
                process, "POST", redeliver_a, token=tenant_a, body={"eventIds": [first["id"]], "to": "copy"}
            )
            assert code == 202 and body["queued"] == [first["id"]] and body["target"] == f"{team_a}/copy", body
            wait_for(lambda: len(recv.events("a-copy")) == 2, 30, "the redelivery to team-a/copy")
            assert [e["eventId"] for e in recv.events("a-copy")] == [second["id"], first["id"]]
            assert not recv.events("a-dash")
    finally:
        assert process.stop() == 0
        assert "Traceback" not in process.tail(200)
