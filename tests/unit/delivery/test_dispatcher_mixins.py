"""The dispatcher is built from mixins (``RelatedLanes``, ``SharedLanes``): every method a
mixin declares as a stub resolves to the real one on ``Dispatcher``, the move kept the names others import, and the
one log record it moved keeps the dispatcher's logger name."""

from __future__ import annotations

import inspect
import logging

from webhook_operator.delivery import dispatcher, related_lanes, shared_lanes
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.related import FallbackPort


def _owner(name: str) -> type:
    return next(c for c in Dispatcher.__mro__ if name in c.__dict__)


def test_the_mro_is_dispatcher_related_shared_port() -> None:
    mro = Dispatcher.__mro__
    order = [mro.index(c) for c in (Dispatcher, related_lanes.RelatedLanes, shared_lanes.SharedLanes, FallbackPort)]
    assert order == sorted(order)


def test_no_stub_is_what_a_dispatcher_calls() -> None:
    assert _owner("_notify") is Dispatcher
    assert _owner("_enqueue_and_route") is Dispatcher
    for name in ("_kick_sources", "fallback_for", "handed_over", "_destination", "_transitioned", "_emit",
                 "_related_warnings", "_end_refused_fallbacks", "_fallback_ended"):  # fmt: skip
        assert _owner(name) is related_lanes.RelatedLanes, name
    # Nothing Dispatcher resolves raises NotImplementedError (the stubs are all shadowed).
    for name, member in inspect.getmembers(Dispatcher, inspect.isfunction):
        source = inspect.getsource(member)
        assert "raise NotImplementedError" not in source, name


def test_names_others_import_are_still_there() -> None:
    assert dispatcher.encode_event is related_lanes.encode_event
    assert related_lanes.log.name == dispatcher.log.name == "webhook_operator.delivery.dispatcher"
    assert logging.getLogger("webhook_operator.delivery.dispatcher") is related_lanes.log
