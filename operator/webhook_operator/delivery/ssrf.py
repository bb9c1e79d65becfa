"""Refusing to connect to addresses a webhook must never reach (SSRF guard).

A Webhook's endpoint is written by whoever may create Webhook resources, and the operator runs inside the cluster with
its network position, so an endpoint like ``http://169.254.169.254/`` or a DNS name resolving to it would let a
namespace tenant read cloud credentials through us. The guard therefore judges the *resolved* address, exactly the
one that will be connected, at the one place in aiohttp that sees every address before a socket exists:
``TCPConnector._resolve_host`` (see ``GuardedConnector``).

Policy (``AddressPolicy.check``), in order:

1. ``deny`` CIDRs refuse, whatever else says (explicit deny wins over allow).
2. Always refused, neither ``allow_private`` nor any allow entry can re-open them: cloud metadata and credential
   endpoints (169.254.169.254 — AWS, GCP, Azure, OCI, OpenStack IMDS; 169.254.170.2 — ECS task metadata and
   credentials; 169.254.170.23 and the whole AWS link-local service range fd00:ec2::/64 — IMDS ``::254``, DNS
   ``::253``, NTP ``::123``, EKS Pod Identity agent ``::23``; fd20:ce::254 — GCE metadata over IPv6;
   100.100.100.200 — Alibaba Cloud; 168.63.129.16 — Azure WireServer; 192.0.0.192 — Oracle Cloud legacy), link-local
   (169.254.0.0/16, fe80::/10), unspecified / "this network" (0.0.0.0/8, ::), multicast, 240.0.0.0/4 (reserved) and
   broadcast.
3. Loopback (127.0.0.0/8, ::1) is refused unless ``allow_loopback`` or an ``allow`` CIDR covers the address
   (the operator-level allow list may re-open loopback: its author owns the pod).
4. Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10 shared/CGNAT, fc00::/7) are refused by default: they are
   the cluster's Services, pods and nodes, and a tenant who may write a Webhook must not be able to reach them with
   its own port, headers and body. ``allow_private=True`` (``--ssrf-allow-private``) re-opens all of them; an
   ``allow`` CIDR (``--ssrf-allow-cidr``, e.g. the Service CIDR of in-cluster receivers) re-opens just that range.
5. Every other special-purpose address (documentation, benchmarking, Teredo, local NAT64, deprecated
   IPv4-compatible ``::a.b.c.d``, ...; anything Python does not consider global) is refused unless an ``allow`` CIDR
   covers it.
6. Anything else (the public internet) is allowed. ``allow`` is a list of exceptions, not an exclusive allow-list.

IPv4 embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) is unwrapped
first: the packet ends up at the embedded IPv4 address, so that is the address judged. ``deny`` is matched against
both the literal and the embedded address, ``allow`` only against the embedded (effective) one. The deprecated
IPv4-compatible spelling ``::a.b.c.d`` is judged as the IPv6 address it is (special-purpose, rule 5), and its
embedded IPv4 address is checked against ``deny`` and the always-refused rules too, so no allow entry for ``::/8``
can make it a way to a metadata address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.tracing import Trace

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, OpenStack, DigitalOcean instance metadata
        "169.254.170.2",  # Amazon ECS task metadata / task-role credentials
        "169.254.170.23",  # Amazon EKS Pod Identity agent (IPv4)
        "fd00:ec2::254",  # AWS instance metadata over IPv6 (inside fd00:ec2::/64 below, named for the message)
        "fd00:ec2::23",  # Amazon EKS Pod Identity agent (IPv6)
        "fd20:ce::254",  # Google Compute Engine metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud instance metadata
        "168.63.129.16",  # Azure WireServer / host agent
        "192.0.0.192",  # Oracle Cloud legacy instance metadata
    )
)
# AWS's link-local services over IPv6 (IMDS ::254, Route 53 Resolver ::253, Time Sync ::123, Pod Identity ::23, ...)
# all live in this /64 of fc00::/7; none of it is ever a webhook receiver.
_METADATA_NETS = _nets("fd00:ec2::/64")
_LINK_LOCAL = _nets("169.254.0.0/16", "fe80::/10")
_UNSPECIFIED = _nets("0.0.0.0/8", "::/128")
_MULTICAST = _nets("224.0.0.0/4", "ff00::/8")
_RESERVED = _nets("240.0.0.0/4")  # includes 255.255.255.255 (broadcast)
_LOOPBACK = _nets("127.0.0.0/8", "::1/128")
_PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
_SPECIAL = _nets(
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "::/8",  # reserved, includes deprecated IPv4-compatible ::a.b.c.d
    "64:ff9b:1::/48",  # local-use NAT64: embedding layout is network-specific, so it cannot be unwrapped
    "100::/64",  # discard-only
    "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32 (obfuscated embedded address)
    "2001:db8::/32",  # documentation
    "fec0::/10",  # deprecated site-local
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _within(ip: IPAddress, nets: Iterable[IPNetwork]) -> IPNetwork | None:
    for net in nets:
        if ip.version == net.version and ip in net:
            return net
    return None


def _unwrap(ip: IPAddress) -> tuple[IPAddress, str | None]:
    """The address packets to ``ip`` are really delivered to, and how it was embedded (None if not embedded)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped, "IPv4-mapped"
        if ip.sixtofour is not None:
            return ip.sixtofour, "6to4"
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    return ip, None


_COMPATIBLE = ipaddress.ip_network("::/96")


def _ipv4_compatible(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address in a deprecated IPv4-compatible ``::a.b.c.d`` (not ``::`` or ``::1``), else None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip in _COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _parse_networks(values: Sequence[str], field: str) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip()))
        except ValueError as exc:
            raise ValueError(f"invalid CIDR {value!r} in {field}: {exc}") from None
    return tuple(nets)


@dataclass(frozen=True)
class AddressPolicy:
    """Which resolved addresses the sender may connect to; see the module docstring for the rules and their order.

    The default policy allows public addresses only: loopback, private, link-local, metadata and special-purpose
    addresses are refused.
    """

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False

    @classmethod
    def from_config(
        cls,
        allow: Sequence[str] = (),
        deny: Sequence[str] = (),
        allow_loopback: bool = False,
        allow_private: bool = False,
    ) -> AddressPolicy:
        """Build a policy from CIDR strings (a bare address means a single host).

        Raises ValueError naming the first bad entry, including networks written with host bits set (``10.0.0.5/8``),
        which are almost always a typo for something narrower or wider.
        """
        return cls(
            allow=_parse_networks(allow, "allow"),
            deny=_parse_networks(deny, "deny"),
            allow_loopback=allow_loopback,
            allow_private=allow_private,
        )

    def check(self, ip: str) -> str | None:
        """Return why connecting to ``ip`` is refused, or None if it is allowed."""
        try:
            literal: IPAddress = ipaddress.ip_address(ip)
        except ValueError:
            return f"{ip!r} is not a canonical IP address"
        if isinstance(literal, ipaddress.IPv6Address) and literal.scope_id is not None:
            literal = ipaddress.IPv6Address(str(literal).split("%", 1)[0])
        effective, embedding = _unwrap(literal)
        name = str(literal) if embedding is None else f"{literal} ({embedding} {effective})"
        compatible = _ipv4_compatible(literal)
        judged: list[tuple[IPAddress, str]] = [(effective, name)]
        if compatible is not None:
            judged.append((compatible, f"{literal} (IPv4-compatible {compatible})"))

        for candidate in (literal, *(address for address, _ in judged)):
            denied = _within(candidate, self.deny)
            if denied is not None:
                return f"{name} is denied by {denied}"

        for address, label in judged:
            if address in _METADATA or _within(address, _METADATA_NETS):
                return f"{label} is link-local / cloud metadata"
            if _within(address, _LINK_LOCAL):
                return f"{label} is link-local"
            if _within(address, _UNSPECIFIED):
                return f"{label} is unspecified"
            if _within(address, _MULTICAST):
                return f"{label} is multicast"
            if _within(address, _RESERVED):
                return f"{label} is reserved / broadcast"

        allowed = _within(effective, self.allow) is not None
        if _within(effective, _LOOPBACK):
            return None if self.allow_loopback or allowed else f"{name} is loopback (loopback is not allowed)"
        if _within(effective, _PRIVATE):
            return None if self.allow_private or allowed else f"{name} is private (private ranges are not allowed)"
        if _within(effective, _SPECIAL) or not effective.is_global:
            return None if allowed else f"{name} is a special-purpose address"
        return None


class AddressRefused(aiohttp.ClientConnectionError):
    """The endpoint resolved to an address the policy refuses. Raised before any socket exists; no retry helps."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(host, port, reason)
        self.host = host
        self.port = port
        self.reason = reason

    def __str__(self) -> str:
        return f"refused to connect to {self.host}:{self.port}: {self.reason}"


class _AbortingResponseHandler(ResponseHandler):
    """aiohttp's connection protocol, except that closing with request bytes still unsent aborts the socket.

    A graceful close waits until the peer has read what is left — forever if it never reads — so a receiver that
    accepts and never reads (a tenant's, by design) kept one socket and the unsent body per timed-out attempt,
    outside the connector's limit. The request is over either way (timed out, cancelled or answered early), so
    dropping the rest loses nothing (``test_a_receiver_that_never_reads_gets_its_socket_closed_at_the_timeout``)."""

    def close(self) -> None:
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            self.abort()
        else:
            super().close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that checks every address it is about to connect to against an ``AddressPolicy``.

    ``_resolve_host`` is aiohttp's own SSRF hook (the ``SSRFConnector`` recipe in its client middleware cookbook since
    3.12): every direct connection resolves through it, IP literals included (returned without the resolver), as do
    DNS answers and DNS-cache hits, and ``_create_direct_connection`` connects exactly the addresses it returns. So
    the checked result *is* the connected one: there is no second resolution and no DNS-rebinding window.

    The method is private. Assumed for aiohttp >= 3.12, < 4 (checked on 3.14.5): signature
    ``_resolve_host(self, host: str, port: int, traces: Sequence[Trace] | None = None) -> list[ResolveResult]``.
    ``tests/unit/delivery/test_ssrf.py`` pins this signature and proves the hook is called for literals and names.
    Proxies would bypass the guard (only the proxy's address is resolved locally); the sender never uses one.
    """

    def __init__(self, *, policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy
        # aiohttp builds each connection's protocol from ``_factory`` (``functools.partial(ResponseHandler,
        # loop=loop)`` in 3.12-3.14): the same call with the subclass below.
        self._factory = cast(
            "functools.partial[ResponseHandler]", functools.partial(_AbortingResponseHandler, loop=self._loop)
        )

    @property
    def policy(self) -> AddressPolicy:
        return self._policy

    async def _resolve_host(self, host: str, port: int, traces: Sequence[Trace] | None = None) -> list[ResolveResult]:
        hosts = await super()._resolve_host(host, port, traces=traces)
        # Refuse the whole name if any answer is refused: a mixed answer is a rebinding/probing trick, not a config.
        for resolved in hosts:
            reason = self._policy.check(resolved["host"])
            if reason is not None:
                raise AddressRefused(host, port, reason)
        return hosts
