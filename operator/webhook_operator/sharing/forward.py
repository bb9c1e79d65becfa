"""Operations on a webhook another replica delivers go to that replica.

Every replica serves the operations API, but test, resume, skip and redeliver act on a lane (and write its status
and Events), which only the webhook's owner has. Reads (the delivery log) come from the shared store and are
answered anywhere. An operation for a webhook this replica does not own is sent on, once, to the replica that
should own it by the last heartbeat's live set (rendezvous), at the address it advertised
(``--advertise-address``), with the caller's own credentials (``Authorization`` and the plugin's proxy header):
the owner authenticates and authorizes the caller again, exactly as if it had been asked directly. Its answer goes
back unchanged. When no owner is known, it advertised no address, it does not answer, or the request was already
forwarded once (ownership is moving: never a forwarding loop), the answer is 503 with ``Retry-After``: the webhook
is being handed over, retry.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

from webhook_operator.api.operations import PROXY_TOKEN_HEADER, OperationError

log = logging.getLogger(__name__)

#: Set on a forwarded request (the sending replica's id): a replica that does not own the webhook either answers
#: 503 instead of forwarding again.
FORWARDED_HEADER = "X-Webhook-Operator-Forwarded-By"
#: Set on every answer that came from another replica (its id), so a caller can tell who acted.
ANSWERED_BY_HEADER = "X-Webhook-Operator-Replica"
TIMEOUT = 60.0  # a test delivery waits for the receiver (its own timeout is at most 30 s)
_PASSED = ("Authorization", PROXY_TOKEN_HEADER, "Content-Type", "Accept")


class Owners(Protocol):
    @property
    def replica(self) -> str: ...

    def acts_on(self, webhook: str) -> bool | None: ...

    def owner_address(self, webhook: str) -> tuple[str | None, str | None]: ...


def handing_over(key: str, detail: str) -> OperationError:
    return OperationError(503, f"webhook {key} is being handed over between operator replicas ({detail}); retry")


def peer_tls(cert_file: Path | None) -> ssl.SSLContext | None:
    """The TLS client context for reaching another replica's listener, or None when the listener is plain HTTP.
    Every replica serves the same certificate (one Secret), and a pod IP is not among its names: the peer must
    present exactly that certificate (pinned as the only trust anchor), its host name is not checked."""
    if cert_file is None:
        return None
    context = ssl.create_default_context(cafile=str(cert_file))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf certificate may be the anchor itself
    return context


class Forwarder:
    """``await forward(request, key, body)``: None when this replica acts on ``key`` (it owns it and has read its
    lane), else the owner's answer; raises ``OperationError`` 503 when it cannot be forwarded."""

    def __init__(self, owners: Owners, *, tls: ssl.SSLContext | None = None, timeout: float = TIMEOUT) -> None:
        self._owners, self._tls = owners, tls
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, request: web.Request, key: str, body: bytes | None) -> web.StreamResponse | None:
        owners = self._owners
        acting = owners.acts_on(key)
        if acting:
            return None
        if acting is None:  # this replica is taking it over: its lane is not read from the store yet
            raise handing_over(key, f"{owners.replica} is still reading its queue")
        if request.headers.get(FORWARDED_HEADER):
            raise handing_over(key, f"{owners.replica} does not deliver it either")
        replica, address = owners.owner_address(key)
        if replica is None or replica == owners.replica:
            raise handing_over(key, "no replica holds its lease yet")
        if not address:
            raise handing_over(key, f"its owner {replica} advertised no address")
        scheme = "https" if self._tls is not None else "http"
        url = f"{scheme}://{address}{request.rel_url}"
        headers = {name: value for name in _PASSED if (value := request.headers.get(name)) is not None}
        headers[FORWARDED_HEADER] = owners.replica
        try:
            async with self._client().request(request.method, url, data=body, headers=headers,
                                              allow_redirects=False, ssl=self._tls or True) as answer:  # fmt: skip
                payload = await answer.read()
                content_type = answer.headers.get("Content-Type", "application/json")
                headers = {"Content-Type": content_type, ANSWERED_BY_HEADER: replica}
                for name in ("Retry-After", "WWW-Authenticate"):
                    if (value := answer.headers.get(name)) is not None:
                        headers[name] = value
                return web.Response(status=answer.status, body=payload, headers=headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("forwarding %s %s to %s at %s failed: %s", request.method, key, replica, address, exc)
            raise handing_over(key, f"its owner {replica} did not answer") from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
