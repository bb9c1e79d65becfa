"""Issue 13, finding 11 (transport): users' Kubernetes tokens reached the operations API over plain HTTP, and
``/metrics`` (namespace and Webhook names) was open to anyone who could reach port 8081.

Now the intake + operations listener serves HTTPS only when ``--tls-cert-file``/``--tls-key-file`` are set (TLS 1.2
or later), and ``--metrics-token-file`` makes ``/metrics`` require a bearer token (``/healthz`` and ``/readyz`` stay
open for the kubelet). Tested on the real ``OperatorService`` servers on loopback, with a self-signed certificate
generated here.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client as k8s

from support.tls import self_signed
from webhook_operator.config import ConfigError, OperatorConfig, add_arguments, from_sources
from webhook_operator.service import OperatorService

METRICS_TOKEN = "metrics-s3cret"


def _config(tmp_path: Path, **env: str) -> OperatorConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = {
        "WEBHOOK_OPERATOR_INTAKE_ALLOW_ANONYMOUS": "true",
        "WEBHOOK_OPERATOR_STORE_PATH": str(tmp_path / "store.db"),
        "WEBHOOK_OPERATOR_INTAKE_ADDRESS": "127.0.0.1:0",
        "WEBHOOK_OPERATOR_HEALTH_ADDRESS": "127.0.0.1:0",
        "WEBHOOK_OPERATOR_API_AUTH": "tokens",
    }
    return from_sources(parser.parse_args([]), {**base, **{f"WEBHOOK_OPERATOR_{k.upper()}": v for k, v in env.items()}})


class ClosingAuth:
    """An operations-API authenticator that holds a resource: the service must close it when it stops."""

    closed = 0

    async def authenticate(self, request: web.Request) -> None:
        return None

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
async def tls_service(tmp_path: Path) -> AsyncIterator[tuple[OperatorService, Path, ClosingAuth]]:
    cert, key = self_signed(tmp_path)
    (tmp_path / "metrics-token").write_text(METRICS_TOKEN + "\n")
    config = _config(tmp_path, tls_cert_file=str(cert), tls_key_file=str(key),
                     metrics_token_file=str(tmp_path / "metrics-token"))  # fmt: skip
    auth = ClosingAuth()
    service = OperatorService(config, api=k8s.ApiClient(), secrets=None, api_auth=auth)  # type: ignore[arg-type]
    await service.start()
    service.ready = True
    try:
        yield service, cert, auth
    finally:
        await service.stop()


async def test_the_intake_and_operations_listener_speaks_https_only(
    tls_service: tuple[OperatorService, Path, ClosingAuth],
) -> None:
    service, cert, auth = tls_service
    port = service.bound_port(0)
    trusted = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{port}/api/v1/openapi.json", ssl=trusted) as response:
            assert response.status == 200
            assert (await response.json())["openapi"].startswith("3.")
        with pytest.raises(aiohttp.ClientError):  # plain HTTP to the TLS port: no answer, a token never read
            async with session.get(f"http://127.0.0.1:{port}/api/v1/openapi.json") as response:
                pytest.fail(f"plain HTTP was answered with {response.status}")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # an untrusted certificate is an error
            async with session.get(f"https://127.0.0.1:{port}/api/v1/openapi.json") as response:
                pytest.fail(f"unverified TLS was answered with {response.status}")
    assert service.tls is not None and service.tls.context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert auth.closed == 0


async def test_metrics_need_the_token_and_probes_stay_open(
    tls_service: tuple[OperatorService, Path, ClosingAuth],
) -> None:
    service, _, _ = tls_service
    base = f"http://127.0.0.1:{service.bound_port(1)}"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {METRICS_TOKEN}"}):
            async with session.get(base + "/metrics", headers=headers) as response:
                body = await response.json()
                assert response.status == 401 and body["status"] == 401, headers
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "webhook_operator" not in await response.text()
        async with session.get(base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as response:
            assert response.status == 200 and "webhook_operator_" in await response.text()
        for path in ("/healthz", "/readyz"):
            async with session.get(base + path) as response:
                assert response.status == 200, path


async def test_the_service_closes_its_authenticator_and_plain_http_stays_the_default(tmp_path: Path) -> None:
    auth = ClosingAuth()
    service = OperatorService(_config(tmp_path), api=k8s.ApiClient(), secrets=None, api_auth=auth)  # type: ignore[arg-type]
    await service.start()
    try:
        assert service.tls is None
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{service.bound_port(0)}/api/v1/openapi.json") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{service.bound_port(1)}/metrics") as response:
                assert response.status == 200  # no token file: open, as before
    finally:
        await service.stop()
    assert auth.closed == 1


def test_tls_needs_both_files_and_readable_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--tls-cert-file"):
        _config(tmp_path, tls_cert_file=str(tmp_path / "tls.crt"))
    with pytest.raises(ConfigError, match="--tls-key-file"):
        _config(tmp_path, tls_key_file=str(tmp_path / "tls.key"))
    config = _config(tmp_path, tls_cert_file=str(tmp_path / "missing.crt"), tls_key_file=str(tmp_path / "x.key"))
    with pytest.raises(ValueError, match="--tls-cert-file"):
        OperatorService(config, api=k8s.ApiClient(), secrets=None)  # type: ignore[arg-type]


async def test_a_rotated_certificate_is_served_without_a_restart(
    tls_service: tuple[OperatorService, Path, ClosingAuth], tmp_path: Path
) -> None:
    """A Secret volume rotates by swapping a symlink to new files: new connections get the new certificate, and a
    broken pair (half-written, mismatched) is refused with the old certificate kept."""
    service, cert_file, _ = tls_service
    assert service.tls is not None
    url = f"https://127.0.0.1:{service.bound_port(0)}/api/v1/openapi.json"
    old_ca = ssl.create_default_context(cafile=str(cert_file))
    (tmp_path / "rotated").mkdir()
    new_cert, new_key = self_signed(tmp_path / "rotated")
    new_ca = ssl.create_default_context(cafile=str(new_cert))

    async def status(trusted: ssl.SSLContext) -> int:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session, session.get(url, ssl=trusted) as response:
            return response.status

    cert_file.write_bytes(new_cert.read_bytes())  # the new certificate with the old key: a mismatched pair
    assert service.tls.reload_if_changed() is False
    assert await status(old_ca) == 200  # still the old certificate
    service.tls.key_file.write_bytes(new_key.read_bytes())
    assert service.tls.reload_if_changed() is True
    assert service.tls.reload_if_changed() is False  # nothing changed since
    assert await status(new_ca) == 200
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await status(old_ca)
