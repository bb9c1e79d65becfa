"""Each backend is split the way the protocol is: every role of ``store.base`` implemented by one class of its own.

mypy proves each role class implements its role; this proves the other direction, that no role's methods are
spread over several classes or share a class with another role's, so the parts stay small and read on their own."""

from __future__ import annotations

import inspect

import pytest

from webhook_operator.store.base import IntakeStore, LaneStore, LogStore, MaintenanceStore
from webhook_operator.store.memory import MemoryStore
from webhook_operator.store.sqlite import SqliteStore

ROLES = (IntakeStore, LaneStore, LogStore, MaintenanceStore)


def _methods(role: type) -> set[str]:
    return {name for name, value in vars(role).items() if inspect.iscoroutinefunction(value)}


@pytest.mark.parametrize("backend", [MemoryStore, SqliteStore])
def test_each_role_has_a_class_of_its_own(backend: type) -> None:
    owners = {
        role.__name__: {getattr(backend, name).__qualname__.split(".")[0] for name in _methods(role)} for role in ROLES
    }
    assert all(len(classes) == 1 for classes in owners.values()), owners
    assert len(set().union(*owners.values())) == len(ROLES), owners
    assert backend.__name__ not in set().union(*owners.values())  # the public class only puts the roles together
