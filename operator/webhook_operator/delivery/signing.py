"""Request signatures: the seed's HMAC header, OpenMetadata's server header, and Standard Webhooks.

Both sign the exact body bytes that go on the wire, so callers must sign the serialized body they send and never
re-serialize after signing.

* ``OpenMetadata``: ``X-OpenMetadata-Signature: sha256=<hex HMAC-SHA256(secret, body)>``, exactly what the seed's
  documented ``verify_signature(payload, signature, secret_key)`` accepts. It has no timestamp (replayable) and room
  for a single signature, so with several secrets (rotation) only the first one signs.
* ``OpenMetadataServer``: ``X-OM-Signature: sha256=<base64 HMAC-SHA256(secret, body)>``, what OpenMetadata's own
  event publisher sends (its ``CommonUtil.calculateHMAC`` encodes the digest with base64, not hex). Receivers written
  for OpenMetadata verify this one, not the seed's. Same single-signature limit as ``OpenMetadata``.
* ``StandardWebhooks`` (standardwebhooks.com, Svix): ``webhook-id``, ``webhook-timestamp`` (unix seconds) and
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, one space-separated entry per
  secret so that a receiver holding either the old or the new secret verifies during a rotation.
  Secrets look like ``whsec_<base64 key>``. A secret without that prefix is used as-is: its UTF-8 bytes are the key,
  and a receiver using a Standard Webhooks library must then be given ``"whsec_" + base64(secret)`` (the libraries
  base64-decode whatever they are given).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

from webhook_operator.api.webhook import SignatureScheme

OPENMETADATA_SIGNATURE_HEADER = "X-OpenMetadata-Signature"
OM_SERVER_SIGNATURE_HEADER = "X-OM-Signature"
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
WHSEC_PREFIX = "whsec_"


def openmetadata_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret as UTF-8, body)>``, the value of ``X-OpenMetadata-Signature``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def openmetadata_server_signature(secret: str, body: bytes) -> str:
    """``sha256=<base64 HMAC-SHA256(secret as UTF-8, body)>``, the value of ``X-OM-Signature``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode("ascii")


@lru_cache(maxsize=1024)
def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key for a Standard Webhooks secret.

    ``whsec_<base64>`` is decoded (padding optional, as the reference libraries accept it); anything else is used as
    its UTF-8 bytes. Raises ValueError for a ``whsec_`` secret that is not valid base64 or decodes to nothing, so a
    typo fails loudly instead of signing with a key no receiver has. The message never contains the secret.
    Cached: it runs for every request and secrets are few.
    """
    if not secret.startswith(WHSEC_PREFIX):
        if not secret:
            raise ValueError("Standard Webhooks secret is empty")
        return secret.encode("utf-8")
    encoded = secret[len(WHSEC_PREFIX) :].strip()
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Standard Webhooks secret has the whsec_ prefix but is not valid base64") from None
    if not key:
        raise ValueError("Standard Webhooks secret decodes to an empty key")
    return key


def standard_webhooks_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` entry: HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def standard_webhooks_headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, with one signature per secret (all of them valid during a rotation)."""
    signatures = " ".join(
        standard_webhooks_signature(standard_webhooks_key(s), msg_id, timestamp, body) for s in secrets
    )
    return {
        WEBHOOK_ID_HEADER: msg_id,
        WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        WEBHOOK_SIGNATURE_HEADER: signatures,
    }


def signature_headers(
    scheme: SignatureScheme, secrets: Sequence[str], delivery_id: str, body: bytes, now: float
) -> dict[str, str]:
    """Headers that sign ``body`` under ``scheme``; ``{}`` when no secret is configured.

    ``delivery_id`` becomes the Standard Webhooks ``webhook-id`` and must stay the same across retries of one delivery
    (receivers deduplicate on it); ``now`` is unix time in seconds (truncated to whole seconds). For the OpenMetadata
    schemes only ``secrets[0]`` signs: their header holds a single signature.
    """
    if not secrets:
        return {}
    if scheme is SignatureScheme.OPENMETADATA:
        return {OPENMETADATA_SIGNATURE_HEADER: openmetadata_signature(secrets[0], body)}
    if scheme is SignatureScheme.OPENMETADATA_SERVER:
        return {OM_SERVER_SIGNATURE_HEADER: openmetadata_server_signature(secrets[0], body)}
    if scheme is SignatureScheme.STANDARD_WEBHOOKS:
        return standard_webhooks_headers(secrets, delivery_id, int(now), body)
    raise ValueError(f"unknown signature scheme {scheme!r}")
