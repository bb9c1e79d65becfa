"""A tripwire that fails any test whose process tries to connect outside loopback.

Tests and benchmarks may only send traffic to 127.0.0.0/8 or ::1. asyncio and aiohttp connect through
``socket.socket.connect``/``connect_ex``, so guarding those two methods catches every TCP/UDP connection this process
makes, before a packet leaves.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class OffLoopbackConnection(AssertionError):
    pass


def is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@contextmanager
def loopback_only() -> Iterator[list[Any]]:
    """Refuse (and record) every INET connection attempt to a non-loopback address inside the block."""
    attempts: list[Any] = []
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
            attempts.append(address)
            raise OffLoopbackConnection(f"test tried to connect outside loopback: {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
