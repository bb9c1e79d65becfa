"""kubectl-webhook without a server: where it connects, whose token it sends, and how it prints."""

from __future__ import annotations

import argparse
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook_operator.cli.plugin import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    build_parser,
    deliveries_table,
    main,
    proxy_url,
    redeliver_body,
    resolve,
    summarize_test,
)

NOW = 1_800_000_000.0


def kubeconfig(tmp_path: Path, user: dict[str, Any], namespace: str | None = "team-a") -> Path:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.1.2.3:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "main", "context": context}, {"name": "other", "context": {"cluster": "c", "user": "u"}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_proxy_mode_uses_the_kubeconfig_cluster_namespace_and_token(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"token": "user-token"})
    target = resolve(parse("deliveries", "hook", "--kubeconfig", str(path)), {})
    assert (
        target.base_url
        == "https://10.1.2.3:6443/api/v1/namespaces/webhook-operator/services/webhook-operator:http/proxy"
    )
    assert (target.token, target.namespace, target.verify) == ("user-token", "team-a", False)
    other = resolve(parse("test", "hook", "--kubeconfig", str(path), "--context", "other", "--operator-namespace",
                          "ops", "--operator-service", "wo"), {})  # fmt: skip
    assert other.namespace == "default" and other.base_url.endswith("/namespaces/ops/services/wo:http/proxy")


def test_server_and_token_from_flags_or_environment(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"token": "user-token"})
    env = {"WEBHOOK_OPERATOR_API": "http://127.0.0.1:8080/", "KUBECONFIG": str(path)}
    target = resolve(parse("test", "hook", "-n", "x", "--kubeconfig", str(path)), env)
    assert (target.base_url, target.token, target.namespace) == ("http://127.0.0.1:8080", "user-token", "x")
    flagged = resolve(parse("test", "hook", "--server", "http://h:1", "--token", "t", "-n", "y",
                            "--kubeconfig", str(tmp_path / "missing")), {})  # fmt: skip
    assert (flagged.base_url, flagged.token, flagged.namespace) == ("http://h:1", "t", "y")
    env_token = resolve(parse("test", "hook", "--kubeconfig", str(path)), {"WEBHOOK_OPERATOR_TOKEN": "env-t"})
    assert env_token.token == "env-t"


def test_client_certificate_users_are_told_to_pass_a_token(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"username": "basic-only"})
    with pytest.raises(CliError, match="no bearer token") as info:
        resolve(parse("test", "hook", "--kubeconfig", str(path)), {})
    assert info.value.code == EXIT_DENIED
    with pytest.raises(CliError, match="context 'nope' not found"):
        resolve(parse("test", "hook", "--kubeconfig", str(path), "--context", "nope"), {})


def test_proxy_url() -> None:
    assert proxy_url("https://k:6443/", "wo", "svc") == "https://k:6443/api/v1/namespaces/wo/services/svc:http/proxy"


ITEMS = [
    {"id": 1, "time": "2027-01-15T08:00:00.000Z", "outcome": "delivered", "attempt": 1, "deliveryId": "d1",
     "eventIds": ["e1"], "statusCode": 200, "durationMs": 12.4, "error": None, "responseBody": "ok", "note": ""},
    {"id": 2, "time": "2027-01-15T08:00:01.000Z", "outcome": "failed", "attempt": 2, "deliveryId": "d2",
     "eventIds": ["e2", "e3", "e4"], "statusCode": 503, "durationMs": 3.0, "error": "HTTP 503 " + "x" * 100,
     "responseBody": "nope\nmore", "note": ""},
    {"id": 3, "time": "2027-01-15T08:00:02.000Z", "outcome": "skipped", "attempt": 4, "deliveryId": "-",
     "eventIds": [], "statusCode": None, "durationMs": 0, "error": None, "responseBody": "",
     "note": "held batch skipped by alice"},
]  # fmt: skip


def test_deliveries_table_is_aligned_and_cut() -> None:
    lines = deliveries_table(ITEMS).splitlines()
    assert lines[0].split() == ["TIME", "OUTCOME", "ATTEMPT", "HTTP", "DURATION", "EVENTS", "DETAIL"]
    assert lines[1].split()[:7] == ["2027-01-15T08:00:00.000Z", "delivered", "1", "200", "12ms", "e1", "-"]
    assert lines[2].split()[5:7] == ["e2", "(+2)"] and lines[2].endswith("…") and len(lines[2]) < 160
    assert lines[3].split()[1:5] == ["skipped", "4", "-", "0ms"] and lines[3].endswith("held batch skipped by alice")
    assert len({line.index("OUTCOME") if i == 0 else None for i, line in enumerate(lines)} - {None}) == 1
    wide = deliveries_table(ITEMS, wide=True).splitlines()
    assert "DELIVERY ID" in wide[0] and "e2,e3,e4" in wide[2] and "nope more" in wide[2]


def test_test_summary() -> None:
    ok = {"success": True, "statusCode": 200, "latencyMs": 4.6, "eventId": "e"}
    assert summarize_test("ns/h", ok) == "test of ns/h: OK (HTTP 200 in 5 ms, event e)\n"
    bad = {"success": False, "statusCode": None, "latencyMs": 0, "eventId": "e", "error": "connection refused"}
    assert summarize_test("ns/h", bad).splitlines() == ["test of ns/h: FAILED (no response in 0 ms, event e)",
                                                        "  error: connection refused"]  # fmt: skip


def test_redeliver_body() -> None:
    args = parse("redeliver", "h", "--ids", "a,b", "--ids", "c", "--to", "other")
    assert redeliver_body(args, NOW) == {"eventIds": ["a", "b", "c"], "to": "other"}
    ranged = redeliver_body(parse("redeliver", "h", "--since", "1h", "--until", "2027-01-15T08:00:00Z"), NOW)
    assert ranged == {"since": "2027-01-15T07:00:00.000Z", "until": "2027-01-15T08:00:00.000Z"}
    for argv in (
        ["redeliver", "h"],
        ["redeliver", "h", "--ids", "a", "--since", "1h"],
        ["redeliver", "h", "--until", "1h"],
    ):
        with pytest.raises(CliError):
            redeliver_body(parse(*argv), NOW)


class _Handler(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, Any]] = {}
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, body = self.answers.get(self.path.split("?")[0], (404, {"error": "not found", "status": 404}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.answers, _Handler.seen = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run(server: str, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([*argv, "--server", server, "--token", "tok", "-n", "ns"], out=out, environ={})
    return code, out.getvalue()


def test_commands_send_the_token_and_map_answers_to_exit_codes(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = "/api/v1/namespaces/ns/webhooks/h"
    _Handler.answers = {
        f"{base}/deliveries": (200, {"items": ITEMS[:1], "next": "1"}),
        f"{base}/test": (200, {"success": False, "statusCode": 503, "latencyMs": 3, "error": "HTTP 503"}),
        f"{base}/resume": (409, {"error": "nothing to resume: no batch is held (status active)", "status": 409}),
        f"{base}/skip": (403, {"error": "alice may not patch", "status": 403}),
        f"{base}/redeliver": (202, {"message": "2 event(s) queued for redelivery to ns/h", "missing": ["x"]}),
    }  # fmt: skip
    code, out = run(server, "deliveries", "h", "--status", "failed", "--since", "1h", "--limit", "1")
    assert code == EXIT_OK and "delivered" in out and "--cursor 1" in capsys.readouterr().err
    method, path, headers, _ = _Handler.seen[-1]
    assert method == "GET" and "status=failed" in path and "limit=1" in path and "since=" in path
    assert headers["Authorization"] == "Bearer tok" and headers["X-Webhook-Operator-Authorization"] == "Bearer tok"
    code, out = run(server, "deliveries", "h", "-o", "json")
    assert code == EXIT_OK and json.loads(out)["items"] == ITEMS[:1]
    code, out = run(server, "test", "h")
    assert code == EXIT_FAILED and "FAILED (HTTP 503" in out
    code, _ = run(server, "resume", "h")
    assert code == EXIT_FAILED and "nothing to resume" in capsys.readouterr().err
    code, _ = run(server, "skip", "h")
    assert code == EXIT_DENIED and "not allowed" in capsys.readouterr().err
    code, out = run(server, "redeliver", "h", "--ids", "a,b")
    assert code == EXIT_OK and "2 event(s) queued" in out
    assert "not found for this webhook (never routed to it, pruned, or unknown): x" in out
    assert json.loads(_Handler.seen[-1][3]) == {"eventIds": ["a", "b"]}
    code, _ = run(server, "test", "missing")
    assert code == EXIT_FAILED


def test_unreachable_operator_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", "h", "--server", "http://127.0.0.1:9", "--token", "t", "-n", "n"], environ={})
    assert code == EXIT_FAILED and "cannot reach the operator" in capsys.readouterr().err
