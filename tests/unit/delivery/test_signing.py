"""Signatures checked by the receivers' own verifiers: the seed's documented function and the standardwebhooks
library, so a mismatch between what we sign and what receivers compute cannot hide behind our own code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, tzinfo

import pytest
import standardwebhooks.webhooks
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhook_operator.api.webhook import SignatureScheme
from webhook_operator.delivery.signing import (
    OM_SERVER_SIGNATURE_HEADER,
    OPENMETADATA_SIGNATURE_HEADER,
    openmetadata_server_signature,
    openmetadata_signature,
    signature_headers,
    standard_webhooks_headers,
    standard_webhooks_key,
)


# Copied verbatim from the seed (spec/openmetadata-webhook-entity.md, "HMAC Signature Verification").
def verify_signature(payload, signature, secret_key):  # type: ignore[no-untyped-def]
    expected = hmac.new(secret_key.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


def seed_accepts(payload: str, signature: str, secret_key: str) -> bool:
    return bool(verify_signature(payload, signature, secret_key))  # type: ignore[no-untyped-call]


# OpenMetadata's server, re-implemented from its documented behaviour (CommonUtil.calculateHMAC and
# SubscriptionUtil.prepareWebhookHeaders): Mac("HmacSHA256") keyed with secretKey.getBytes(UTF_8) over the body's
# UTF-8 bytes, Base64.getEncoder() (standard alphabet, padded), sent as "X-OM-Signature: sha256=" + that. A receiver
# written for OpenMetadata verifies by recomputing it and comparing the header text.
def om_server_accepts(body: bytes, header_value: str, secret_key: str) -> bool:
    digest = hmac.new(secret_key.encode("utf-8"), body, hashlib.sha256).digest()
    expected = "sha256=" + base64.b64encode(digest).decode("ascii")
    return hmac.compare_digest(expected.encode(), header_value.encode())


BODIES = [
    b'{"eventType":"entityCreated","entityType":"table","entityId":"8f1e","timestamp":1700000000000}',
    json.dumps(
        {"entityFullyQualifiedName": "mysql.db.Kunden.Größe", "userName": "Zoë 数据"}, ensure_ascii=False
    ).encode(),
    b"",
    json.dumps({"data": [{"id": i} for i in range(200)]}).encode(),
]
WHSEC_1 = "whsec_" + base64.b64encode(b"first-rotation-key-0123456789ab").decode()
WHSEC_2 = "whsec_" + base64.b64encode(b"second-rotation-key-abcdefghijk").decode()

#: The signing time of every Standard Webhooks test (2026-01-01T00:00:00.750Z): the timestamp header and the
#: signatures are then exact values, and a signer that read the machine's clock instead of ``now`` would fail.
NOW = 1_767_225_600.75
TIMESTAMP = "1767225600"  # unix seconds, truncated


class ReceiverClock:
    """The time the standardwebhooks library's verifier believes it is; it rejects timestamps more than 5 minutes
    off, so it has to be pinned to ``NOW`` (or moved on purpose) instead of reading the machine's clock."""

    def __init__(self) -> None:
        self.now = NOW


@pytest.fixture
def receiver_clock(monkeypatch: pytest.MonkeyPatch) -> ReceiverClock:
    clock = ReceiverClock()

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(clock.now, tz)

    # The library reads ``datetime.now`` from its module namespace; a missing name fails here, not silently.
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", Frozen, raising=True)
    return clock


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("secret", ["s3cr3t", "ключ-🔑", "x" * 300])
def test_openmetadata_signature_accepted_by_seed_verifier(body: bytes, secret: str) -> None:
    signature = openmetadata_signature(secret, body)
    assert seed_accepts(body.decode("utf-8"), signature, secret)
    assert not seed_accepts(body.decode("utf-8") + " ", signature, secret)
    assert not seed_accepts(body.decode("utf-8"), signature, secret + "x")


def test_openmetadata_signature_format() -> None:
    signature = openmetadata_signature("key", b"body")
    assert signature == "sha256=" + hmac.new(b"key", b"body", hashlib.sha256).hexdigest()
    assert len(signature) == len("sha256=") + 64


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("secret", ["s3cr3t", "ключ-🔑", "x" * 300])
def test_openmetadata_server_signature_accepted_by_openmetadata_receiver(body: bytes, secret: str) -> None:
    signature = openmetadata_server_signature(secret, body)
    assert om_server_accepts(body, signature, secret)
    assert not om_server_accepts(body + b" ", signature, secret)
    assert not om_server_accepts(body, signature, secret + "x")
    assert not seed_accepts(body.decode("utf-8"), signature, secret)  # a different encoding from the seed's hex


def test_openmetadata_server_signature_is_the_known_value() -> None:
    # HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") is a published test vector
    # (f7bc83f4...d8), here in base64: what OpenMetadata's Base64.getEncoder() prints for it.
    value = openmetadata_server_signature("key", b"The quick brown fox jumps over the lazy dog")
    assert value == "sha256=97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="


def test_openmetadata_server_signature_passes_the_intakes_om_verifier() -> None:
    """The operator's own intake verifies OpenMetadata's server header; what we send must pass it, so one operator
    can feed another (a chained install) with nothing but the shared secret."""
    from webhook_operator.intake.auth import SignatureVerifier

    body = BODIES[1]
    header = signature_headers(SignatureScheme.OPENMETADATA_SERVER, ["chain-secret"], "d1", body, NOW)
    SignatureVerifier(b"chain-secret").verify(header, body)


def test_standard_webhooks_headers_are_exact_for_a_fixed_time() -> None:
    headers = standard_webhooks_headers([WHSEC_1], "msg_2b9f", int(NOW), BODIES[0])
    assert headers == {
        "webhook-id": "msg_2b9f",
        "webhook-timestamp": TIMESTAMP,
        "webhook-signature": "v1,oRIR3CaNYGu4aJ2kgc60e7yI03rmDKMbTPr9m19i8Fw=",
    }
    # The same value as the reference library's own signer computes for that instant.
    moment = datetime.fromtimestamp(int(NOW), UTC)
    assert headers["webhook-signature"] == Webhook(WHSEC_1).sign("msg_2b9f", moment, BODIES[0].decode())


@pytest.mark.parametrize("body", BODIES)
def test_standard_webhooks_verified_by_library(body: bytes, receiver_clock: ReceiverClock) -> None:
    headers = standard_webhooks_headers([WHSEC_1], "msg_2b9f", int(NOW), body)
    assert headers["webhook-id"] == "msg_2b9f"
    assert headers["webhook-timestamp"] == TIMESTAMP
    assert headers["webhook-signature"].startswith("v1,")
    Webhook(WHSEC_1).verify(body, headers, json_parse=False)  # raises on mismatch
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC_2).verify(body, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC_1).verify(body + b" ", headers, json_parse=False)


def test_standard_webhooks_timestamp_is_what_receivers_judge_freshness_by(receiver_clock: ReceiverClock) -> None:
    """Signed at ``NOW``: a receiver whose clock reads 4 minutes later accepts it, 6 minutes later (or earlier) it
    refuses it as a replay, whatever the clock of the machine running this test says."""
    headers = standard_webhooks_headers([WHSEC_1], "msg_old", int(NOW), BODIES[0])
    receiver_clock.now = NOW + 240
    Webhook(WHSEC_1).verify(BODIES[0], headers, json_parse=False)
    receiver_clock.now = NOW + 360
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(WHSEC_1).verify(BODIES[0], headers, json_parse=False)
    receiver_clock.now = NOW - 360
    with pytest.raises(WebhookVerificationError, match="too new"):
        Webhook(WHSEC_1).verify(BODIES[0], headers, json_parse=False)


def test_standard_webhooks_rotation_each_secret_verifies(receiver_clock: ReceiverClock) -> None:
    body = BODIES[1]
    headers = standard_webhooks_headers([WHSEC_1, WHSEC_2], "msg_rot", int(NOW), body)
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    Webhook(WHSEC_1).verify(body, headers, json_parse=False)
    Webhook(WHSEC_2).verify(body, headers, json_parse=False)
    third = "whsec_" + base64.b64encode(b"some-other-key-entirely-000000").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(third).verify(body, headers, json_parse=False)


def test_standard_webhooks_plain_secret_uses_utf8_bytes(receiver_clock: ReceiverClock) -> None:
    """A secret without whsec_ signs with its UTF-8 bytes; the receiver passes whsec_ + base64(secret)."""
    secret = "plain-shared-secret-ß"
    body = BODIES[0]
    headers = standard_webhooks_headers([secret], "msg_plain", int(NOW), body)
    Webhook("whsec_" + base64.b64encode(secret.encode()).decode()).verify(body, headers, json_parse=False)
    assert standard_webhooks_key(secret) == secret.encode()


def test_standard_webhooks_key_accepts_unpadded_and_rejects_garbage() -> None:
    key = b"sixteen byte key!"  # 17 bytes: base64 needs padding
    padded = base64.b64encode(key).decode()
    assert padded.endswith("=")
    assert standard_webhooks_key("whsec_" + padded.rstrip("=")) == key
    assert standard_webhooks_key("whsec_" + padded) == key
    with pytest.raises(ValueError, match="not valid base64") as excinfo:
        standard_webhooks_key("whsec_not*base64!")
    assert "not*base64" not in str(excinfo.value)  # never echo the secret
    with pytest.raises(ValueError, match="empty"):
        standard_webhooks_key("whsec_")


def test_signature_headers_dispatch(receiver_clock: ReceiverClock) -> None:
    body = BODIES[0]
    assert signature_headers(SignatureScheme.OPENMETADATA, [], "d1", body, NOW) == {}
    assert signature_headers(SignatureScheme.STANDARD_WEBHOOKS, (), "d1", body, NOW) == {}

    om = signature_headers(SignatureScheme.OPENMETADATA, ["first", "second"], "d1", body, NOW)
    assert list(om) == [OPENMETADATA_SIGNATURE_HEADER]
    assert seed_accepts(body.decode(), om[OPENMETADATA_SIGNATURE_HEADER], "first")  # only the first secret signs

    server = signature_headers(SignatureScheme.OPENMETADATA_SERVER, ["first", "second"], "d1", body, NOW)
    assert list(server) == [OM_SERVER_SIGNATURE_HEADER]
    assert om_server_accepts(body, server[OM_SERVER_SIGNATURE_HEADER], "first")

    sw = signature_headers(SignatureScheme.STANDARD_WEBHOOKS, [WHSEC_1, WHSEC_2], "d1", body, NOW)
    assert sw == {  # ``now`` truncated to whole seconds; one signature per secret, in order
        "webhook-id": "d1",
        "webhook-timestamp": TIMESTAMP,
        "webhook-signature": "v1,AqavrIgV3EtR8zCy+TiRh1XdankFhsd1yj5nSWsyMss= "
        "v1,trQbOnbQJjeb0Qg2CvirtBxgnyS7czsfSlo8yJJAXX0=",
    }
    Webhook(WHSEC_2).verify(body, sw, json_parse=False)
