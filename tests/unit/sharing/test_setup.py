"""Who a replica is and where it answers: the flags, their defaults from the pod's environment, and refusals."""

from __future__ import annotations

import os
import socket

import pytest

from webhook_operator.config import ConfigError, from_sources
from webhook_operator.sharing.setup import advertise_address, replica_id

BASE = {"WEBHOOK_OPERATOR_INTAKE_ALLOW_ANONYMOUS": "true"}


def test_replica_id_is_the_flag_else_the_pod_name_else_host_and_pid() -> None:
    assert replica_id("r7", {"POD_NAME": "webhook-operator-abc"}) == "r7"
    assert replica_id("", {"POD_NAME": "webhook-operator-abc"}) == "webhook-operator-abc"
    assert replica_id("", {}) == f"{socket.gethostname()}-{os.getpid()}"


def test_the_advertised_address_is_the_flag_else_the_pod_ip_with_the_intake_port() -> None:
    assert advertise_address("10.0.0.9:9443", 8080, {"POD_IP": "10.1.1.1"}) == "10.0.0.9:9443"
    assert advertise_address("", 8080, {"POD_IP": "10.1.1.1"}) == "10.1.1.1:8080"
    assert advertise_address("", 8080, {"POD_IP": "fd00::7"}) == "[fd00::7]:8080"
    assert advertise_address("", 8080, {}) is None  # forwarding to this replica answers 503, never a guess


def test_the_three_settings_parse_from_flags_or_environment() -> None:
    config = from_sources(None, {**BASE, "WEBHOOK_OPERATOR_REPLICA_ID": "r1", "WEBHOOK_OPERATOR_LEASE_DURATION": "4s",
                                 "WEBHOOK_OPERATOR_ADVERTISE_ADDRESS": "127.0.0.1:18080"})  # fmt: skip
    assert (config.replica_id, config.lease_duration, config.advertise_address) == ("r1", 4.0, "127.0.0.1:18080")
    default = from_sources(None, BASE)
    assert (default.replica_id, default.lease_duration, default.advertise_address) == ("", 10.0, "")


BAD = [("LEASE_DURATION", "0s"), ("LEASE_DURATION", "soon"), ("ADVERTISE_ADDRESS", "0.0.0.0:8080"),
       ("ADVERTISE_ADDRESS", "host")]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), BAD)
def test_bad_values_stop_the_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.lower().replace("_", "-")):
        from_sources(None, {**BASE, f"WEBHOOK_OPERATOR_{name}": value})
