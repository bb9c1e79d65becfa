"""Which requests the lean HTTP/1.1 client takes, and their bytes on the wire.

The lean client (``http1.py``) takes only the plain case: ``http://`` with a host of letters, digits, ``.``,
``-``, ``_`` (or an IP literal; no zone id, no trailing dot, none of the control characters yarl lets through), no
userinfo, no two header names differing in case only, and no request header whose semantics it would have
to implement (framing, connection management, content codings, ``Expect``). Everything else goes through aiohttp
unchanged, so unusual input keeps aiohttp's behaviour and error texts instead of a second interpretation.

Headers are sent as aiohttp sends them (``test_headers_match_aiohttp``): ``Host`` (the caller's, if given, replaces
the automatic one), the caller's headers with their case, the sender's ``User-Agent``, ``Accept: */*`` and
``Content-Type: application/octet-stream`` unless the caller set them, and a ``Content-Length``. A header name that
is not an RFC 9110 token, or a value with a control character (aiohttp's own set: NUL to BS, LF to US, DEL) refuses
the whole request before anything is sent (``ValueError``, which the sender turns into a permanent "invalid
request" without echoing the value); aiohttp would send a non-token name, this client refuses it. No
``Accept-Encoding`` is sent: the body is only kept for the delivery log, and an identity body needs no decoder; a
caller that sets ``Accept-Encoding`` gets aiohttp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from yarl import URL

from webhook_operator.delivery.http1 import Target

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # aiohttp's http_writer._FORBIDDEN_HEADER_CHARS_RE
_AIOHTTP_ONLY = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)
_VISIBLE = re.compile(r"[!-~]+")
_PLAIN_HOST = re.compile(r"[0-9A-Za-z._:-]+")  # names, IPv4 and (bracket-less) IPv6 literals
_CACHE_SIZE = 1024


def parse_target(url: str) -> Target | None:
    """The lean client's view of ``url``, or None when aiohttp should handle it."""
    if not url.isascii() or url[:7].lower() != "http://":
        return None
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    host = parsed.raw_host
    if parsed.scheme != "http" or not parsed.absolute or not host or host.endswith("."):
        return None
    if _PLAIN_HOST.fullmatch(host) is None:  # zone ids, and what yarl lets through: control characters, spaces
        return None
    if parsed.raw_user is not None or parsed.raw_password is not None:
        return None
    port, host_header, path = parsed.port, parsed.host_port_subcomponent, parsed.raw_path_qs or "/"
    if port is None or host_header is None or _VISIBLE.fullmatch(path) is None:
        return None
    return Target(host, port, f"POST {path} HTTP/1.1\r\n", host_header)


class TargetCache:
    """``parse_target`` per URL string, bounded (oldest entry dropped first): endpoints repeat, parsing does not."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._targets: dict[str, Target | None] = {}

    def get(self, url: str) -> Target | None:
        try:
            return self._targets[url]
        except KeyError:
            pass
        target = parse_target(url)
        if len(self._targets) >= self._size:
            del self._targets[next(iter(self._targets))]
        self._targets[url] = target
        return target


def build_message(target: Target, headers: Mapping[str, str], user_agent: str, body: bytes) -> bytes | None:
    """Request head and body as one buffer; None if a header needs aiohttp. Raises ValueError on a bad header."""
    lines = [target.request_line, "", ""]  # [1] = Host, filled below
    host: str | None = None
    has_agent = has_accept = has_type = False
    seen: set[str] = set()
    for name, value in headers.items():
        if _TOKEN.fullmatch(name) is None or _FORBIDDEN.search(value) is not None:
            raise ValueError("invalid header name or value")  # never quote the value: it may be a credential
        lowered = name.lower()
        if lowered in seen:  # names differing in case only: aiohttp merges them (last wins); leave it to aiohttp
            return None
        seen.add(lowered)
        if lowered == "host":
            host = f"{name}: {value}\r\n"
            continue
        if lowered in _AIOHTTP_ONLY:
            return None
        if lowered == "user-agent":
            has_agent = True
        elif lowered == "accept":
            has_accept = True
        elif lowered == "content-type":
            has_type = True
        lines.append(f"{name}: {value}\r\n")
    lines[1] = host or f"Host: {target.host_header}\r\n"
    if not has_agent:
        lines[2] = f"User-Agent: {user_agent}\r\n"
    if not has_accept:
        lines.append("Accept: */*\r\n")
    if not has_type:
        lines.append("Content-Type: application/octet-stream\r\n")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(lines).encode("utf-8") + body
