"""AiohttpSender against real HTTP receivers on 127.0.0.1 (no HTTP mocking)."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook_operator.delivery.sender import AiohttpSender, OutcomeKind, Request, parse_retry_after
from webhook_operator.delivery.ssrf import AddressPolicy

from .receivers import ConnectionLog, StaticResolver, closed_port, serve

SECRET = "Bearer sk-live-SECRET-TOKEN-123"
BIG = 1024 * 1024


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    base: str
    port: int
    hits: list[Hit] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def receiver_app(hits: list[Hit]) -> web.Application:
    async def record(request: web.Request) -> None:
        hits.append(Hit(request.path, dict(request.headers), await request.read()))

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="accepted ✓")

    async def status(request: web.Request) -> web.Response:
        await record(request)
        headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        return web.Response(status=int(request.match_info["code"]), text="nope", headers=headers)

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=int(request.match_info["code"]), headers={"Location": request.query["to"]})

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"x" * BIG)

    async def endless(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"y" * 65536
        for _ in range(100_000):  # ~6.5 GB: far more than anyone should read; the client closes first
            await response.write(chunk)
        return response

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/redirect/{code}", redirect)
    app.router.add_post("/slow", slow)
    app.router.add_post("/big", big)
    app.router.add_post("/endless", endless)
    return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hits: list[Hit] = []
    async with serve(receiver_app(hits)) as server:
        assert server.port is not None
        yield Receiver(f"http://127.0.0.1:{server.port}", server.port, hits)


def post(url: str, *, timeout: float = 5.0, body: bytes = b'{"ok":true}', **kwargs: object) -> Request:
    headers = {"Content-Type": "application/json", "Authorization": SECRET}
    return Request(url=url, body=body, headers=headers, timeout=timeout, **kwargs)  # type: ignore[arg-type]


async def test_success_sends_exact_body_and_headers(sender: AiohttpSender, receiver: Receiver) -> None:
    body = '{"entity":"Größe ✓"}'.encode()
    outcome = await sender.send(post(receiver.url("/ok"), body=body))
    assert outcome.kind is OutcomeKind.SUCCESS and outcome.ok
    assert outcome.status_code == 200
    assert outcome.error is None
    assert outcome.response_body == "accepted ✓"
    assert outcome.duration_ms > 0
    [hit] = receiver.hits
    assert hit.body == body
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["Authorization"] == SECRET
    assert hit.headers["User-Agent"] == "wo-test/1"


async def test_one_pooled_connection_for_sequential_requests(
    sender: AiohttpSender, receiver: Receiver, log: ConnectionLog
) -> None:
    for _ in range(20):
        assert (await sender.send(post(receiver.url("/ok")))).ok
    assert len(receiver.hits) == 20
    assert log.addresses == [("127.0.0.1", receiver.port)]


@pytest.mark.parametrize("code", [500, 404, 400, 429, 503])
async def test_non_2xx_is_retryable_with_status(sender: AiohttpSender, receiver: Receiver, code: int) -> None:
    outcome = await sender.send(post(receiver.url(f"/status/{code}")))
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.status_code == code
    assert outcome.error is not None and outcome.error.startswith(f"HTTP {code}")
    assert outcome.response_body == "nope"
    assert outcome.retry_after is None
    assert SECRET not in outcome.error


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_redirect_is_not_followed(sender: AiohttpSender, receiver: Receiver, code: int) -> None:
    target_hits: list[Hit] = []
    async with serve(receiver_app(target_hits)) as target:
        location = f"http://127.0.0.1:{target.port}/ok"
        outcome = await sender.send(post(receiver.url(f"/redirect/{code}?to={location}")))
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.status_code == code
    assert outcome.error == f"HTTP {code}: redirect to {location!r} not followed"
    assert target_hits == []
    assert len(receiver.hits) == 1


async def test_timeout(sender: AiohttpSender, receiver: Receiver) -> None:
    started = time.perf_counter()
    outcome = await sender.send(post(receiver.url("/slow"), timeout=0.3))
    assert time.perf_counter() - started < 2
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.status_code is None
    assert outcome.error == "timeout after 0.3 s"
    assert 250 < outcome.duration_ms < 2000


async def test_connection_refused(sender: AiohttpSender) -> None:
    port = closed_port()
    outcome = await sender.send(post(f"http://127.0.0.1:{port}/services/T0/B0/SECRETPATH"))
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.status_code is None
    assert outcome.error == f"connection refused to 127.0.0.1:{port}"


async def test_unknown_name_is_retryable_dns_failure(log: ConnectionLog) -> None:
    sender = AiohttpSender(AddressPolicy(), resolver=StaticResolver({}), socket_factory=log)
    try:
        outcome = await sender.send(post("http://nowhere.test/hook"))
    finally:
        await sender.close()
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.error is not None and outcome.error.startswith("DNS resolution failed for nowhere.test")
    assert log.addresses == []


@asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that answers every connection with ``reply`` and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"", "server disconnected without a complete response"),
        (b"garbage\r\n\r\n", "invalid HTTP response: "),
    ],
)
async def test_broken_receivers_are_retryable(sender: AiohttpSender, reply: bytes, error: str) -> None:
    async with raw_server(reply) as port:
        outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.status_code is None
    assert outcome.error is not None and outcome.error.startswith(error)
    assert SECRET not in outcome.error


@pytest.mark.parametrize("seconds", [0, -1.0])
async def test_non_positive_timeout_is_permanent(sender: AiohttpSender, log: ConnectionLog, seconds: float) -> None:
    outcome = await sender.send(post("http://127.0.0.1:9/", timeout=seconds))
    assert outcome.kind is OutcomeKind.PERMANENT
    assert log.addresses == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("0", 1.0), ("99999", 3600.0), ("soon", None), ("", None)],
)
async def test_retry_after_seconds(
    sender: AiohttpSender, receiver: Receiver, value: str, expected: float | None
) -> None:
    outcome = await sender.send(post(receiver.url(f"/status/429?retry_after={value}")))
    assert outcome.status_code == 429
    assert outcome.retry_after == expected


async def test_retry_after_http_date_and_bounds(receiver: Receiver) -> None:
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), retry_after_min=2, retry_after_max=600)
    try:
        soon = email.utils.formatdate(time.time() + 120, usegmt=True)
        outcome = await sender.send(post(receiver.url(f"/status/503?retry_after={soon}")))
        assert outcome.retry_after is not None and 117 <= outcome.retry_after <= 121
        past = email.utils.formatdate(time.time() - 3600, usegmt=True)
        assert (await sender.send(post(receiver.url(f"/status/503?retry_after={past}")))).retry_after == 2
        far = email.utils.formatdate(time.time() + 86400, usegmt=True)
        assert (await sender.send(post(receiver.url(f"/status/503?retry_after={far}")))).retry_after == 600
        assert (await sender.send(post(receiver.url("/status/429?retry_after=1")))).retry_after == 2
        # Retry-After only counts on 429 and 503.
        assert (await sender.send(post(receiver.url("/status/500?retry_after=30")))).retry_after is None
    finally:
        await sender.close()


def test_parse_retry_after_edges() -> None:
    now = time.time()
    assert parse_retry_after(None, now, 1, 3600) is None
    assert parse_retry_after("9" * 400, now, 1, 3600) == 3600
    assert parse_retry_after(" 42 ", now, 1, 3600) == 42
    assert parse_retry_after("-5", now, 1, 3600) is None
    assert parse_retry_after("²", now, 1, 3600) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now, 1, 3600) == 1
    with pytest.raises(ValueError):
        AiohttpSender(AddressPolicy(), retry_after_min=10, retry_after_max=5)


async def test_response_body_is_capped(receiver: Receiver) -> None:
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), max_response_body=1000)
    try:
        outcome = await sender.send(post(receiver.url("/big")))
    finally:
        await sender.close()
    assert outcome.ok
    assert outcome.response_body == "x" * 1000


async def test_endless_body_is_not_read_to_the_end(sender: AiohttpSender, receiver: Receiver) -> None:
    started = time.perf_counter()
    outcome = await sender.send(post(receiver.url("/endless"), timeout=10))
    assert time.perf_counter() - started < 5
    assert outcome.ok
    assert outcome.response_body == "y" * 4096


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://127.0.0.1/hook", "unsupported URL scheme (only http and https are allowed)"),
        ("http://", "invalid URL"),
        ("not a url", "invalid URL"),
        ("http://127.1:8080/", "invalid URL (is not a canonical IPv4 address)"),
    ],
)
async def test_bad_urls_are_permanent(sender: AiohttpSender, log: ConnectionLog, url: str, error: str) -> None:
    outcome = await sender.send(post(url))
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error == error
    assert log.addresses == []


async def test_header_injection_is_permanent_and_not_echoed(sender: AiohttpSender, receiver: Receiver) -> None:
    request = Request(receiver.url("/ok"), b"{}", {"X-Token": "abc\r\nX-Leak: SECRET-VALUE"}, 5)
    outcome = await sender.send(request)
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error is not None and "SECRET-VALUE" not in outcome.error
    assert receiver.hits == []


# --- SSRF through the sender: refusals happen before any socket exists ----------------------------------------------


SSRF_NAMES = {"metadata.test": "169.254.169.254", "private.test": "10.0.0.7", "loop.test": "127.0.0.1"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://metadata.test/latest/", "to metadata.test:80: 169.254.169.254 is link-local / cloud metadata"),
        ("http://private.test:8080/hook", "refused to connect to private.test:8080: 10.0.0.7 is denied by 10.0.0.0/8"),
        ("https://loop.test/hook", "to loop.test:443: 127.0.0.1 is loopback (loopback is not allowed)"),
        ("http://[::ffff:169.254.169.254]/", "(IPv4-mapped 169.254.169.254) is link-local / cloud metadata"),
        ("http://169.254.169.254/latest/", "169.254.169.254 is link-local / cloud metadata"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is link-local / cloud metadata"),
    ],
)  # fmt: skip
async def test_ssrf_refusals_are_permanent_without_any_connection(url: str, reason: str) -> None:
    resolver = StaticResolver(SSRF_NAMES)
    log = ConnectionLog()
    policy = AddressPolicy.from_config(allow=[], deny=["10.0.0.0/8"], allow_loopback=False)
    sender = AiohttpSender(policy, resolver=resolver, socket_factory=log)
    try:
        outcome = await sender.send(post(url))
    finally:
        await sender.close()
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.status_code is None
    assert outcome.error is not None and reason in outcome.error
    assert log.addresses == []
    host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    assert resolver.lookups == ([host] if host in SSRF_NAMES else [])


@pytest.mark.parametrize("allow_loopback", [False, True])
async def test_ip_literal_loopback_follows_policy(receiver: Receiver, allow_loopback: bool) -> None:
    log = ConnectionLog()
    sender = AiohttpSender(AddressPolicy(allow_loopback=allow_loopback), socket_factory=log)
    try:
        outcome = await sender.send(post(receiver.url("/ok")))
        mapped = await sender.send(post(f"http://[::ffff:127.0.0.1]:{receiver.port}/ok"))
    finally:
        await sender.close()
    if allow_loopback:
        assert outcome.ok and len(receiver.hits) >= 1
        assert ("127.0.0.1", receiver.port) in log.addresses
    else:
        assert outcome.kind is OutcomeKind.PERMANENT and mapped.kind is OutcomeKind.PERMANENT
        assert (
            outcome.error
            == f"refused to connect to 127.0.0.1:{receiver.port}: 127.0.0.1 is loopback (loopback is not allowed)"
        )
        assert receiver.hits == []
        assert log.addresses == []


async def test_closed_sender_refuses_new_work() -> None:
    sender = AiohttpSender(AddressPolicy())
    await sender.close()
    await sender.close()
    with pytest.raises(RuntimeError, match="closed"):
        await sender.send(post("http://127.0.0.1:9/"))


# --- TLS --------------------------------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: str
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook-operator test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("pki")
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    yield Pki(ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file)


async def test_tls_trust(sender: AiohttpSender, pki: Pki) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.cert_file, pki.key_file)
    hits: list[Hit] = []
    async with serve(receiver_app(hits), ssl_context=server_context) as server:
        url = f"https://127.0.0.1:{server.port}/ok"
        untrusted = await sender.send(post(url))
        assert untrusted.kind is OutcomeKind.RETRYABLE
        assert untrusted.error is not None
        assert untrusted.error.startswith(f"TLS certificate verification failed for 127.0.0.1:{server.port}: ")
        assert hits == []

        trusted = await sender.send(post(url, ca_bundle=pki.ca_pem))
        assert trusted.ok, trusted.error
        assert (await sender.send(post(url, ca_bundle=pki.ca_pem))).ok  # cached context, pooled connection
        assert (await sender.send(post(url, insecure_skip_verify=True))).ok
        assert len(hits) == 3

        broken = await sender.send(
            post(url, ca_bundle="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        )
        assert broken.kind is OutcomeKind.PERMANENT
        assert broken.error is not None and broken.error.startswith("invalid CA bundle")
