"""AddressPolicy decisions, and the GuardedConnector hook it relies on inside aiohttp."""

from __future__ import annotations

import inspect
import ipaddress
import socket
from collections.abc import AsyncIterator, Mapping, Sequence

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult

from webhook_operator.delivery.ssrf import AddressPolicy, AddressRefused, GuardedConnector

from .receivers import ConnectionLog, StaticResolver, serve

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("169.254.169.254", "169.254.169.254 is link-local / cloud metadata"),
        ("169.254.1.1", "is link-local"),
        ("fe80::1", "is link-local"),
        ("fe80::1%eth0", "is link-local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved / broadcast"),
        ("240.0.0.1", "reserved / broadcast"),
        ("127.0.0.1", "127.0.0.1 is loopback"),
        ("127.8.9.10", "is loopback"),
        ("::1", "::1 is loopback"),
        ("192.0.2.1", "special-purpose"),
        ("198.18.0.1", "special-purpose"),
        ("2001:db8::1", "special-purpose"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "special-purpose"),  # Teredo
        ("::7f00:1", "special-purpose"),  # deprecated IPv4-compatible ::127.0.0.1
        ("64:ff9b:1::a9fe:a9fe", "special-purpose"),  # local-use NAT64
        ("::ffff:169.254.169.254", "::ffff:a9fe:a9fe (IPv4-mapped 169.254.169.254) is link-local / cloud metadata"),
        ("::ffff:127.0.0.1", "(IPv4-mapped 127.0.0.1) is loopback"),
        ("2002:a9fe:a9fe::1", "(6to4 169.254.169.254) is link-local / cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "(NAT64 169.254.169.254) is link-local / cloud metadata"),
        ("64:ff9b::7f00:1", "(NAT64 127.0.0.1) is loopback"),
        ("example.com", "'example.com' is not a canonical IP address"),
        ("127.1", "is not a canonical IP address"),
    ],
)
def test_default_policy_refuses(ip: str, reason: str) -> None:
    refusal = DEFAULT.check(ip)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize(
    "ip", ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34", "2002:5db8:d822::1", "64:ff9b::5db8:d822"]
)
def test_default_policy_allows_public(ip: str) -> None:
    assert DEFAULT.check(ip) is None


PRIVATE = ["10.0.0.7", "10.96.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1", "100.64.0.1", "fd12:3456::1",
           "fc00::1", "::ffff:10.96.0.1", "::ffff:192.168.1.1", "2002:a60:1::1", "64:ff9b::a60:1"]  # fmt: skip


@pytest.mark.parametrize("ip", PRIVATE)
def test_default_policy_refuses_private_in_every_spelling(ip: str) -> None:
    assert "is private (private ranges are not allowed)" in (DEFAULT.check(ip) or "")
    assert "is private" in (AddressPolicy.from_config().check(ip) or "")


@pytest.mark.parametrize("ip", PRIVATE)
def test_allow_private_reopens_private_ranges(ip: str) -> None:
    assert AddressPolicy.from_config(allow_private=True).check(ip) is None


@pytest.mark.parametrize("ip", ["::10.96.0.1", "::192.168.1.1"])
def test_ipv4_compatible_private_stays_special_purpose(ip: str) -> None:
    """The deprecated ``::a.b.c.d`` spelling is not a private address to re-open: refused with or without the flag."""
    assert "special-purpose" in (DEFAULT.check(ip) or "")
    assert "special-purpose" in (AddressPolicy.from_config(allow_private=True, allow=["10.0.0.0/8"]).check(ip) or "")


METADATA = ["169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23", "fd00:ec2::253",
            "fd00:ec2::123", "fd00:ec2::1:2", "fd00:ec2:0:0:ffff:ffff:ffff:ffff", "fd20:ce::254", "100.100.100.200",
            "168.63.129.16", "192.0.0.192", "::ffff:100.100.100.200", "::ffff:169.254.170.2", "::100.100.100.200",
            "::169.254.169.254", "2002:6464:64c8::1", "64:ff9b::6464:64c8", "fd00:ec2::23%eth0"]  # fmt: skip


@pytest.mark.parametrize("ip", METADATA)
def test_metadata_is_refused_even_with_allow_private_and_allow_everything(ip: str) -> None:
    everything = AddressPolicy.from_config(
        allow=["0.0.0.0/0", "::/0", "fd00:ec2::/64", "100.100.100.200/32", "169.254.0.0/16", "::/8"],
        allow_loopback=True,
        allow_private=True,
    )
    for policy in (DEFAULT, AddressPolicy(allow_private=True), everything):
        assert "link-local / cloud metadata" in (policy.check(ip) or ""), (policy, ip)


def test_outside_fd00_ec2_slash_64_is_an_ordinary_private_address() -> None:
    assert AddressPolicy(allow_private=True).check("fd00:ec2:0:1::23") is None
    assert "is private" in (DEFAULT.check("fd00:ec2:0:1::23") or "")


def test_allow_cidr_reopens_a_service_cidr_without_allow_private() -> None:
    services = AddressPolicy.from_config(allow=["10.96.0.0/12"])
    assert services.check("10.96.0.1") is None
    assert services.check("::ffff:10.96.0.1") is None
    assert services.check("10.111.255.254") is None
    assert "is private" in (services.check("10.112.0.1") or "")
    assert "is private" in (services.check("192.168.0.1") or "")
    assert "cloud metadata" in (AddressPolicy.from_config(allow=["100.64.0.0/10"]).check("100.100.100.200") or "")


def test_deny_matches_the_ipv4_compatible_embedding() -> None:
    policy = AddressPolicy.from_config(allow=["::/8"], deny=["10.0.0.0/8"], allow_private=True)
    assert "denied by 10.0.0.0/8" in (policy.check("::10.96.0.1") or "")


@pytest.mark.parametrize("ip", ["169.254.169.254", "fd00:ec2::254", "fe80::1", "0.0.0.0", "224.0.0.1", "::"])  # noqa: S104
def test_allow_cannot_reopen_always_refused(ip: str) -> None:
    everything = AddressPolicy.from_config(allow=["0.0.0.0/0", "::/0"], allow_loopback=True)
    assert everything.check(ip) is not None


def test_loopback_reopened_by_flag_or_allow_cidr() -> None:
    assert AddressPolicy(allow_loopback=True).check("127.0.0.1") is None
    assert AddressPolicy(allow_loopback=True).check("::1") is None
    assert AddressPolicy(allow_loopback=True).check("::ffff:127.0.0.1") is None
    only_one = AddressPolicy.from_config(allow=["127.0.0.2/32"])
    assert only_one.check("127.0.0.2") is None
    assert only_one.check("127.0.0.1") is not None


def test_private_can_be_refused_and_selectively_reopened() -> None:
    policy = AddressPolicy.from_config(allow=["10.1.0.0/16"], allow_private=False)
    assert policy.check("10.1.2.3") is None
    assert "is private" in (policy.check("10.2.0.1") or "")
    assert "is private" in (policy.check("fd00::1") or "")
    assert policy.check("93.184.216.34") is None


def test_special_purpose_reopened_by_allow() -> None:
    assert AddressPolicy.from_config(allow=["192.0.2.0/24"]).check("192.0.2.10") is None


def test_deny_wins_over_everything() -> None:
    policy = AddressPolicy.from_config(
        allow=["10.0.0.0/8"], deny=["10.0.0.0/24", "93.184.216.0/24"], allow_loopback=True
    )
    assert policy.check("10.0.0.7") == "10.0.0.7 is denied by 10.0.0.0/24"
    assert policy.check("10.0.1.7") is None
    assert "denied by 93.184.216.0/24" in (policy.check("::ffff:93.184.216.34") or "")
    assert "denied by 93.184.216.0/24" in (policy.check("64:ff9b::5db8:d822") or "")
    assert "denied by 127.0.0.0/8" in (
        AddressPolicy.from_config(deny=["127.0.0.0/8"], allow_loopback=True).check("127.0.0.1") or ""
    )
    assert "denied by" in (AddressPolicy.from_config(deny=["64:ff9b::/96"]).check("64:ff9b::5db8:d822") or "")


def test_from_config_parses_and_names_bad_cidrs() -> None:
    policy = AddressPolicy.from_config(allow=["10.0.0.0/8", " fd00::/8 ", "192.168.1.5"], deny=[])
    assert policy.allow == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.168.1.5/32"),
    )
    with pytest.raises(ValueError, match=r"invalid CIDR '10\.0\.0\.0/33' in deny"):
        AddressPolicy.from_config(allow=[], deny=["10.0.0.0/33"])
    with pytest.raises(ValueError, match=r"'10\.0\.0\.5/8' in allow.*host bits"):
        AddressPolicy.from_config(allow=["10.0.0.5/8"], deny=[])
    with pytest.raises(ValueError, match="'intranet' in allow"):
        AddressPolicy.from_config(allow=["intranet"], deny=[])


# --- the aiohttp hook -------------------------------------------------------------------------------------------------


def test_aiohttp_resolve_host_hook_is_what_guarded_connector_assumes() -> None:
    """Breaks when aiohttp changes the private hook GuardedConnector overrides: re-check the SSRF guard then."""
    version = tuple(int(p) for p in aiohttp.__version__.split(".")[:2])
    assert (3, 12) <= version < (4, 0), f"GuardedConnector is verified for aiohttp 3.12-3.x, not {aiohttp.__version__}"
    expected = ["self", "host", "port", "traces"]
    assert list(inspect.signature(aiohttp.TCPConnector._resolve_host).parameters) == expected
    assert list(inspect.signature(GuardedConnector._resolve_host).parameters) == expected
    source = inspect.getsource(aiohttp.TCPConnector._create_direct_connection)
    assert "await self._resolve_host(host, port, traces=traces)" in source
    assert "self._convert_hosts_to_addr_infos(hosts)" in source


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[str]]]:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve(app) as server:
        yield f"127.0.0.1:{server.port}", hits


async def test_guarded_connector_checks_literals_names_and_cache(receiver: tuple[str, list[str]]) -> None:
    hostport, hits = receiver
    port = int(hostport.rsplit(":", 1)[1])
    resolver = StaticResolver({"loop.test": "127.0.0.1", "metadata.test": "169.254.169.254"})
    log = ConnectionLog()
    connector = GuardedConnector(policy=AddressPolicy(), resolver=resolver, socket_factory=log)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(AddressRefused, match=r"refused to connect to 127\.0\.0\.1:\d+: 127\.0\.0\.1 is loopback"):
            await session.get(f"http://{hostport}/literal")
        assert resolver.lookups == []  # literals never reach the resolver, yet were checked

        for _ in range(2):  # the second attempt is answered from aiohttp's DNS cache and must be refused too
            with pytest.raises(AddressRefused, match=r"loop\.test"):
                await session.get(f"http://loop.test:{port}/by-name")
        assert resolver.lookups == ["loop.test"]

        with pytest.raises(AddressRefused, match=r"169\.254\.169\.254 is link-local / cloud metadata"):
            await session.get("http://metadata.test/latest/meta-data/")
    assert log.addresses == []
    assert hits == []


async def test_guarded_connector_connects_what_policy_allows(receiver: tuple[str, list[str]]) -> None:
    hostport, hits = receiver
    port = int(hostport.rsplit(":", 1)[1])
    resolver = StaticResolver({"loop.test": "127.0.0.1"})
    log = ConnectionLog()
    connector = GuardedConnector(policy=AddressPolicy(allow_loopback=True), resolver=resolver, socket_factory=log)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://loop.test:{port}/named") as response,
    ):
        assert response.status == 200
    assert hits == ["/named"]
    assert log.addresses == [("127.0.0.1", port)]


class MultiAnswerResolver(StaticResolver):
    """A ``StaticResolver`` whose names have several answers, returned in the order given: what a DNS round-robin
    returns, and what an attacker returns to slip a forbidden address in behind an allowed one."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        super().__init__({})
        self.answers = {name: list(ips) for name, ips in names.items()}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return [{"hostname": host, "host": ip, "port": port, "proto": 0, "flags": socket.AI_NUMERICHOST,
                 "family": socket.AF_INET6 if ":" in ip else socket.AF_INET} for ip in self.answers[host]]  # fmt: skip


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["127.0.0.1", "169.254.169.254"], "169.254.169.254 is link-local / cloud metadata"),
        (["127.0.0.1", "10.0.0.1"], "10.0.0.1 is denied by 10.0.0.0/8"),
        (["127.0.0.1", "127.0.0.2", "::ffff:169.254.169.254"], "(IPv4-mapped 169.254.169.254) is link-local"),
        (["::1", "fe80::1"], "fe80::1 is link-local"),
    ],
)
async def test_guarded_connector_refuses_a_name_if_any_answer_is_refused(
    receiver: tuple[str, list[str]], answers: list[str], reason: str
) -> None:
    """The first answer is allowed (and a receiver listens there), a later one is not: the whole name is refused
    before any socket exists. Checking only the first answer would deliver to the receiver, or, were the first
    address down, go on to connect to the forbidden one (which the connection log and the tripwire refuse)."""
    hostport, hits = receiver
    port = int(hostport.rsplit(":", 1)[1])
    resolver = MultiAnswerResolver({"mixed.test": answers})
    log = ConnectionLog()
    policy = AddressPolicy.from_config(deny=["10.0.0.0/8"], allow_loopback=True)
    connector = GuardedConnector(policy=policy, resolver=resolver, socket_factory=log)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(2):  # the second attempt is answered from aiohttp's DNS cache: refused all the same
            with pytest.raises(AddressRefused, match=r"refused to connect to mixed\.test:\d+: ") as refused:
                await session.get(f"http://mixed.test:{port}/mixed")
            assert reason in refused.value.reason
    assert resolver.lookups == ["mixed.test"]
    assert log.addresses == []
    assert hits == []


# --- issue 13, finding 6: SSRF inside the cluster by default -------------------------------------------------------
#
# A tenant's endpoint resolving to a Service IP, its IPv4-mapped spelling, or an AWS link-local service (EKS Pod
# Identity agent at fd00:ec2::23) used to pass the default policy. The resolver maps test names to those addresses;
# nothing is ever sent to them (the policy refuses before any socket exists, and ConnectionLog plus the session
# tripwire fail the test on any non-loopback connect).

IN_CLUSTER = {"kube-api.test": "10.96.0.1", "mapped.test": "::ffff:10.96.0.1", "pod-identity.test": "fd00:ec2::23"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("kube-api.test", "10.96.0.1 is private (private ranges are not allowed)"),
        ("mapped.test", "::ffff:a60:1 (IPv4-mapped 10.96.0.1) is private (private ranges are not allowed)"),
        ("pod-identity.test", "fd00:ec2::23 is link-local / cloud metadata"),
    ],
)
async def test_default_policy_refuses_in_cluster_and_metadata_names(name: str, reason: str) -> None:
    resolver = StaticResolver(IN_CLUSTER)
    log = ConnectionLog()
    connector = GuardedConnector(policy=AddressPolicy.from_config(), resolver=resolver, socket_factory=log)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(AddressRefused) as refused:
            await session.post(f"http://{name}:6443/api", data=b"{}")
    assert reason in refused.value.reason
    assert resolver.lookups == [name]
    assert log.addresses == []
