"""kubectl-webhook against an operator that serves HTTPS (issue 13, finding 11: tokens no longer cross the network
in clear): ``--certificate-authority`` / ``WEBHOOK_OPERATOR_API_CA`` to trust the operator's certificate with
``--server``, and ``--operator-scheme https`` for the API server's service proxy."""

from __future__ import annotations

import io
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support.tls import self_signed
from webhook_operator.cli.plugin import (
    EXIT_FAILED,
    EXIT_OK,
    Target,
    build_parser,
    main,
    proxy_url,
    resolve,
    tls_context,
)


class _Answer(BaseHTTPRequestHandler):
    tokens: list[str] = []

    def do_POST(self) -> None:
        self.tokens.append(self.headers.get("Authorization", ""))
        body = b'{"message": "resumed"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    _Answer.tokens = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    httpd.shutdown()
    httpd.server_close()


def test_https_server_with_the_operators_ca(https_server: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, cert = https_server
    args = ["resume", "h", "--server", url, "--token", "tok", "-n", "ns"]
    out = io.StringIO()
    assert main([*args, "--certificate-authority", str(cert)], out=out, environ={}) == EXIT_OK
    assert "resumed" in out.getvalue() and _Answer.tokens == ["Bearer tok"]
    assert main(args, out=io.StringIO(), environ={"WEBHOOK_OPERATOR_API_CA": str(cert)}) == EXIT_OK
    # Without the CA the certificate is not trusted, and the token is never sent.
    assert main(args, out=io.StringIO(), environ={}) == EXIT_FAILED
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err and len(_Answer.tokens) == 2


def test_service_proxy_to_an_https_operator() -> None:
    assert proxy_url("https://k:6443", "wo", "svc", scheme="https") == (
        "https://k:6443/api/v1/namespaces/wo/services/https:svc:http/proxy"
    )
    assert proxy_url("https://k:6443", "wo", "svc") == "https://k:6443/api/v1/namespaces/wo/services/svc:http/proxy"
    args = build_parser().parse_args(["test", "h", "--server", "https://h:1", "--token", "t", "-n", "x",
                                      "--certificate-authority", "/ca.pem"])  # fmt: skip
    assert resolve(args, {}).verify == "/ca.pem"
    assert build_parser().parse_args(["test", "h", "--operator-scheme", "https"]).operator_scheme == "https"


def test_tls_context_keeps_the_kubeconfig_client_certificate_and_skip_verify(tmp_path: Path) -> None:
    """The proxy path's TLS settings (CA file, client certificate, insecure-skip-tls-verify) as an SSLContext, the
    form httpx takes without deprecation warnings."""
    cert, key = self_signed(tmp_path)
    strict = tls_context(Target("https://k", "t", "ns", verify=str(cert), cert=(str(cert), str(key))))
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    assert any(c.get("serialNumber") for c in strict.get_ca_certs())  # the CA file, not only the system store
    insecure = tls_context(Target("https://k", "t", "ns", verify=False))
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
