"""What filters ask about an event, computed lazily and at most once per event.

The dispatcher evaluates every event against every Webhook, so anything that costs more than a dict lookup (parsing
the JSON text inside FieldChange values, walking hundreds of columns for their tags) lives here as a cached property
of an :class:`EventView`. :func:`view_of` reuses the view of the event asked about last, because the dispatcher asks
about one event for all webhooks in a row; a filter that only looks at eventType and entityType never builds a view.

Every fact is a ``frozenset[str]`` of candidate values, already case-folded for the keys compared case-insensitively,
so a qualifier is a set intersection (or a handful of regex matches for globs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any, Final

from webhook_operator.api.events import ChangeEvent, FieldChange

#: Event types whose changeDescription describes this very event. entityCreated has none, and entityDeleted repeats
#: the entity's previous change (sample file 31), so field names and "added/removed in this change" never apply there.
CHANGE_EVENT_TYPES: Final = frozenset({"entityUpdated", "entitySoftDeleted"})

#: The seed's singular spelling -> the field name OpenMetadata 1.x really records.
FIELD_ALIASES: Final = {"owner": "owners", "domain": "domains", "follower": "followers"}

#: A tier is a Classification tag under this prefix; there is no ``tier`` field.
TIER_PREFIX: Final = "Tier."

#: Entity types whose FQN starts with their service's name, so ``service:`` may fall back to the first FQN segment
#: when the entity carries no ``service`` reference (a testCase) or is missing. Others (glossaryTerm, policy, team,
#: domain, ...) have FQNs rooted elsewhere: their first segment is a glossary or a policy name, never a service.
SERVICE_ROOTED_TYPES: Final = frozenset(
    {
        "table",
        "database",
        "databaseSchema",
        "storedProcedure",
        "topic",
        "dashboard",
        "chart",
        "dashboardDataModel",
        "pipeline",
        "mlmodel",
        "container",
        "searchIndex",
        "apiCollection",
        "apiEndpoint",
        "testCase",
    }
)


def split_fqn(fqn: str) -> list[str]:
    """Split an OpenMetadata fully qualified name into its unquoted parts.

    A name containing dots is double-quoted inside an FQN (``kafka_events."web.clickstream.v2"``, sample file 04), so
    a naive ``split('.')`` returns four parts where there are two; dots inside quotes are part of the name.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in fqn:
        if char == '"':
            quoted = not quoted
        elif char == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def canonical_field(name: str) -> str:
    """The changed-field name with its first segment un-aliased (``owner.x`` -> ``owners.x``), so that the seed's
    spelling in a filter and OpenMetadata's spelling in an event compare equal whichever side uses which."""
    head, dot, rest = name.partition(".")
    return FIELD_ALIASES.get(head, head) + dot + rest


def _json_items(value: Any) -> list[Any]:
    """The items a FieldChange value holds: list fields arrive as JSON *text* of an array, but also as arrays or
    objects (followers, testCaseResult); scalars (descriptions, booleans, ``votedUp``) hold no items."""
    if isinstance(value, str):
        text = value.lstrip()
        if not text.startswith(("[", "{")):
            return []
        try:
            value = json.loads(text)
        except ValueError:
            return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


def _as_list(value: Any) -> list[Any]:
    """A reference field in either shape: the seed's single object (``owner``) or 1.x's list (``owners``)."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


def _ref_names(refs: Iterable[Any]) -> Iterator[str]:
    """Every name an EntityReference answers to: name, FQN, display name and id (``domain:<uuid>`` also works)."""
    for ref in refs:
        if isinstance(ref, dict):
            for key in ("name", "fullyQualifiedName", "displayName", "id"):
                text = ref.get(key)
                if isinstance(text, str) and text:
                    yield text


def _tag_fqns(labels: Iterable[Any]) -> Iterator[str]:
    for label in labels:
        if isinstance(label, dict):
            fqn = label.get("tagFQN")
            if isinstance(fqn, str) and fqn:
                yield fqn


def _column_tags(columns: Any) -> Iterator[str]:
    """Tags of every column, struct children included (sample file 12 tags ``billing_address.postal_code``)."""
    stack = list(_as_list(columns))
    while stack:
        column = stack.pop()
        if isinstance(column, dict):
            yield from _tag_fqns(_as_list(column.get("tags")))
            stack.extend(_as_list(column.get("children")))


def _folded(values: Iterable[str]) -> frozenset[str]:
    return frozenset(value.casefold() for value in values)


class Change:
    """One FieldChange of the event: its name spelt canonically, its values parsed only when a rule needs them."""

    def __init__(self, field: FieldChange) -> None:
        self.name = canonical_field(field.name)
        self._field = field

    @cached_property
    def old_items(self) -> list[Any]:
        return _json_items(self._field.old_value)

    @cached_property
    def new_items(self) -> list[Any]:
        return _json_items(self._field.new_value)

    @cached_property
    def tag_fqns(self) -> frozenset[str]:
        """Tags added (new value) or removed (old value) by this change."""
        return frozenset(_tag_fqns(chain(self.old_items, self.new_items)))

    @cached_property
    def ref_names(self) -> frozenset[str]:
        """Names of the references added or removed by this change (owners, domains, followers)."""
        return frozenset(_ref_names(chain(self.old_items, self.new_items)))

    def is_tags(self) -> bool:
        """Entity tags (``tags``) or nested tags (``columns.<c>.tags``)."""
        return self.name == "tags" or self.name.endswith(".tags")


class EventView:
    """Lazily computed facts about one event. Treat the event as immutable while a view of it exists."""

    def __init__(self, event: ChangeEvent) -> None:
        self.event = event
        self.entity: dict[str, Any] = event.entity or {}

    @cached_property
    def changes(self) -> tuple[Change, ...]:
        """The changes this event made; empty for event types whose changeDescription is absent or stale."""
        description = self.event.change_description
        if description is None or self.event.event_type not in CHANGE_EVENT_TYPES:
            return ()
        return tuple(Change(field) for field in description.all_changes())

    def _changed_refs(self, name: str) -> Iterator[str]:
        return (ref for change in self.changes if change.name == name for ref in change.ref_names)

    def _current_refs(self, *fields: str) -> Iterator[str]:
        return _ref_names(chain.from_iterable(_as_list(self.entity.get(field)) for field in fields))

    @cached_property
    def domains(self) -> frozenset[str]:
        """Current domains (``domain`` or ``domains``), domains added/removed by this change, event-level UUIDs."""
        event_ids = self.event.domains or ()
        return _folded(chain(self._current_refs("domain", "domains"), self._changed_refs("domains"), event_ids))

    @cached_property
    def owners(self) -> frozenset[str]:
        return _folded(chain(self._current_refs("owner", "owners"), self._changed_refs("owners")))

    @cached_property
    def followers(self) -> frozenset[str]:
        return _folded(chain(self._current_refs("followers"), self._changed_refs("followers")))

    @cached_property
    def users(self) -> frozenset[str]:
        return _folded([self.event.user_name] if self.event.user_name else [])

    @cached_property
    def tags(self) -> frozenset[str]:
        """Entity tags, column tags, and tags added or removed by this change (so a removal still matches)."""
        current = chain(_tag_fqns(_as_list(self.entity.get("tags"))), _column_tags(self.entity.get("columns")))
        changed = (tag for change in self.changes if change.is_tags() for tag in change.tag_fqns)
        return frozenset(chain(current, changed))

    @cached_property
    def tiers(self) -> frozenset[str]:
        """Tier tags of the entity itself (not its columns), current or added/removed by this change."""
        current = _tag_fqns(_as_list(self.entity.get("tags")))
        changed = (tag for change in self.changes if change.name == "tags" for tag in change.tag_fqns)
        return frozenset(tag for tag in chain(current, changed) if tag.startswith(TIER_PREFIX))

    @cached_property
    def statuses(self) -> frozenset[str]:
        """Test-case status: the new testCaseResult of this change, else the entity's current result."""
        results = [item for change in self.changes if change.name == "testCaseResult" for item in change.new_items]
        results += _as_list(self.entity.get("testCaseResult"))
        statuses = [result.get("testCaseStatus") for result in results if isinstance(result, dict)]
        statuses.append(self.entity.get("testCaseStatus"))
        return _folded(status for status in statuses if isinstance(status, str))

    @cached_property
    def fqns(self) -> frozenset[str]:
        candidates = (self.entity.get("fullyQualifiedName"), self.event.entity_fully_qualified_name)
        return frozenset(fqn for fqn in candidates if isinstance(fqn, str) and fqn)

    @cached_property
    def services(self) -> frozenset[str]:
        """The service reference's name/FQN; else the FQN's first segment for service-rooted entity types."""
        service = self.entity.get("service")
        names = [service.get(key) for key in ("name", "fullyQualifiedName")] if isinstance(service, dict) else []
        entity_type = self.event.entity_type
        if entity_type in SERVICE_ROOTED_TYPES or entity_type.endswith("Service"):
            names += [split_fqn(fqn)[0] for fqn in self.fqns]
        return frozenset(name for name in names if isinstance(name, str) and name)


_last_view: EventView | None = None


def view_of(event: ChangeEvent) -> EventView:
    """The view of ``event``, reused when the same event object is asked about again (one webhook after another).

    One slot is enough for the dispatcher's access pattern and bounds memory to one event; the slot holds the event
    strongly, so an identity check cannot be fooled by a recycled ``id``. Races between threads only cost a rebuild.
    """
    global _last_view
    last = _last_view
    if last is not None and last.event is event:
        return last
    view = EventView(event)
    _last_view = view
    return view


@dataclass(frozen=True, slots=True)
class QualifierKey:
    """A ``key:value`` qualifier: where its candidate values come from and how a value is compared."""

    name: str
    #: Compared case-insensitively (names people type: domains, owners, users, statuses), else exactly (FQNs, tags).
    folded: bool
    values: Callable[[EventView], frozenset[str]]
    #: Prepended to a value that lacks it, so ``tier:Tier1`` means the tag ``Tier.Tier1``.
    prefix: str = ""


QUALIFIER_KEYS: Final[dict[str, QualifierKey]] = {
    key.name: key
    for key in (
        QualifierKey("domain", True, lambda view: view.domains),
        QualifierKey("owner", True, lambda view: view.owners),
        QualifierKey("follower", True, lambda view: view.followers),
        QualifierKey("user", True, lambda view: view.users),
        QualifierKey("status", True, lambda view: view.statuses),
        QualifierKey("tag", False, lambda view: view.tags),
        QualifierKey("tier", False, lambda view: view.tiers, prefix=TIER_PREFIX),
        QualifierKey("fqn", False, lambda view: view.fqns),
        QualifierKey("service", False, lambda view: view.services),
    )
}
