"""Compile a Webhook's eventFilters once, then decide per event whether the Webhook receives it.

Semantics are documented, with one example per rule, in ``docs/filters.md``. In short: a Webhook receives an event
when ANY filter matches; a filter matches when its eventType equals the event's, its ``entities`` admit the entity
type, and its ``include``/``exclude`` items pass. Items are changed-field names (``tags``, ``columns.x.description``,
``tier``) or ``key:value`` qualifiers (``domain:Sales``). Included field names are OR-ed, qualifiers of one key are
OR-ed, and these groups are AND-ed; any matching exclude qualifier drops the event, and so does an update whose
changed fields are all excluded.

Everything that can be decided from the filter alone is decided in :meth:`CompiledFilters.compile`: filters are
bucketed by eventType, values are case-folded and globs turned into regexes, and field names are dropped from
filters on event types without a meaningful changeDescription. Bad items fail there, with the item's location, so
the operator reports them in the Webhook's status instead of silently matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Final

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import EventFilter
from webhook_operator.routing.qualifiers import (
    CHANGE_EVENT_TYPES,
    QUALIFIER_KEYS,
    TIER_PREFIX,
    Change,
    EventView,
    QualifierKey,
    canonical_field,
    view_of,
)

_GLOB_CHARS: Final = frozenset("*?[")
_ALL_ENTITIES: Final = "*"


class FilterError(ValueError):
    """An eventFilters item cannot be compiled; the message starts with its location (``eventFilters[1].include[0]``)
    and is safe to show in the Webhook's status."""


def _is_glob(text: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(text)


@dataclass(frozen=True, slots=True)
class _FieldName:
    """A changed-field name: matches a change of that field or of anything under it on a segment boundary
    (``columns`` matches ``columns.amount_usd.description``, ``columns.customer`` does not match
    ``columns.customer_email.description``). With glob characters, the pattern must match the whole name or a
    segment prefix of it (``columns.*.tags`` matches ``columns.billing_address.postal_code.tags``)."""

    name: str
    pattern: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str) -> _FieldName:
        name = canonical_field(text)
        pattern = re.compile(f"{translate(name)}|{translate(name + '.*')}") if _is_glob(name) else None
        return cls(name, pattern)

    def selects(self, change: Change) -> bool:
        if self.pattern is not None:
            return self.pattern.match(change.name) is not None
        changed = change.name
        return changed == self.name or (changed.startswith(self.name) and changed[len(self.name)] == ".")

    def covers(self, change: Change) -> bool:
        return self.selects(change)


class _Tier:
    """The pseudo-field ``tier``: a ``tags`` change that added or removed a ``Tier.*`` tag. As an include it selects a
    change touching any tier tag; as an exclude it covers only a change touching nothing but tier tags, so excluding
    ``tier`` never hides a PII tag added in the same change."""

    __slots__ = ()

    def selects(self, change: Change) -> bool:
        return change.name == "tags" and any(tag.startswith(TIER_PREFIX) for tag in change.tag_fqns)

    def covers(self, change: Change) -> bool:
        tags = change.tag_fqns if change.name == "tags" else frozenset()
        return bool(tags) and all(tag.startswith(TIER_PREFIX) for tag in tags)


_FieldMatcher = _FieldName | _Tier


@dataclass(frozen=True, slots=True)
class _Qualifier:
    """All values given for one key in one list: any of them matching is a match (same key = OR)."""

    key: QualifierKey
    exact: frozenset[str]
    globs: tuple[re.Pattern[str], ...]

    def matches(self, view: EventView) -> bool:
        values = self.key.values(view)
        if not self.exact.isdisjoint(values):
            return True
        return any(glob.match(value) for glob in self.globs for value in values)


@dataclass(frozen=True, slots=True)
class _Filter:
    entities: frozenset[str] | None
    include_fields: tuple[_FieldMatcher, ...]
    include_qualifiers: tuple[_Qualifier, ...]
    exclude_fields: tuple[_FieldMatcher, ...]
    exclude_qualifiers: tuple[_Qualifier, ...]
    #: False when eventType and entities decide alone, so the event's view is never built.
    needs_view: bool

    def admits(self, entity_type: str) -> bool:
        return self.entities is None or entity_type in self.entities

    def passes(self, view: EventView) -> bool:
        """include/exclude verdict; eventType and entityType were checked by the caller."""
        changes = view.changes
        if self.include_fields and not any(m.selects(c) for c in changes for m in self.include_fields):
            return False
        if not all(qualifier.matches(view) for qualifier in self.include_qualifiers):
            return False
        if any(qualifier.matches(view) for qualifier in self.exclude_qualifiers):
            return False
        return not (
            self.exclude_fields and changes and all(any(m.covers(c) for m in self.exclude_fields) for c in changes)
        )


def _compile_items(
    items: Sequence[str] | None, where: str, field_names_apply: bool
) -> tuple[tuple[_FieldMatcher, ...], tuple[_Qualifier, ...]]:
    fields: list[_FieldMatcher] = []
    exact: dict[str, set[str]] = {}
    globs: dict[str, list[re.Pattern[str]]] = {}
    for index, raw in enumerate(items or ()):
        location = f"{where}[{index}]"
        item = raw.strip()
        if not item:
            raise FilterError(f"{location}: empty item")
        if ":" not in item:
            if item.startswith(".") or item.endswith(".") or ".." in item:
                raise FilterError(f"{location}: field name {item!r} has an empty segment")
            if field_names_apply:
                fields.append(_Tier() if item == "tier" else _FieldName.compile(item))
            continue
        name, _, value = (part.strip() for part in item.partition(":"))
        key = QUALIFIER_KEYS.get(name)
        if key is None:
            hint = "entity types go in 'entities'" if name.lower() in {"entitytype", "entity"} else None
            known = ", ".join(sorted(QUALIFIER_KEYS))
            raise FilterError(f"{location}: unknown qualifier key {name!r} ({hint or 'known keys: ' + known})")
        if not value:
            raise FilterError(f"{location}: qualifier {name!r} has an empty value")
        if key.prefix and not value.startswith(key.prefix):
            value = key.prefix + value
        if key.folded:
            value = value.casefold()
        if _is_glob(value):
            globs.setdefault(name, []).append(re.compile(translate(value)))
        else:
            exact.setdefault(name, set()).add(value)
    qualifiers = tuple(
        _Qualifier(QUALIFIER_KEYS[name], frozenset(exact.get(name, ())), tuple(globs.get(name, ())))
        for name in sorted(exact.keys() | globs.keys())
    )
    return tuple(fields), qualifiers


def _compile_filter(event_filter: EventFilter, where: str) -> _Filter:
    entities: frozenset[str] | None = None
    if event_filter.entities is not None:
        if not event_filter.entities:
            raise FilterError(f"{where}.entities: empty list matches nothing; omit it or use ['*'] for all")
        for index, entity_type in enumerate(event_filter.entities):
            if not entity_type.strip():
                raise FilterError(f"{where}.entities[{index}]: empty entity type")
        if _ALL_ENTITIES not in event_filter.entities:
            entities = frozenset(event_filter.entities)
    field_names_apply = event_filter.event_type.value in CHANGE_EVENT_TYPES
    include_fields, include_qualifiers = _compile_items(event_filter.include, f"{where}.include", field_names_apply)
    exclude_fields, exclude_qualifiers = _compile_items(event_filter.exclude, f"{where}.exclude", field_names_apply)
    needs_view = bool(include_fields or include_qualifiers or exclude_fields or exclude_qualifiers)
    return _Filter(entities, include_fields, include_qualifiers, exclude_fields, exclude_qualifiers, needs_view)


class CompiledFilters:
    """A Webhook's eventFilters, ready for the hot path: compile once per spec generation, match every event."""

    __slots__ = ("_by_type",)

    def __init__(self, by_type: dict[str, tuple[_Filter, ...]]) -> None:
        self._by_type = by_type

    @classmethod
    def compile(cls, filters: Sequence[EventFilter]) -> CompiledFilters:
        """Raises :class:`FilterError` naming the first bad item (``eventFilters[1].include[0]: ...``)."""
        by_type: dict[str, list[_Filter]] = {}
        for index, event_filter in enumerate(filters):
            compiled = _compile_filter(event_filter, f"eventFilters[{index}]")
            by_type.setdefault(event_filter.event_type.value, []).append(compiled)
        return cls({event_type: tuple(group) for event_type, group in by_type.items()})

    def matches(self, event: ChangeEvent | EventView) -> bool:
        """Whether any filter matches. Pass an :class:`EventView` to share per-event work across webhooks explicitly;
        a plain event reuses the view of the event asked about last."""
        view: EventView | None
        if isinstance(event, EventView):
            view, plain = event, event.event
        else:
            view, plain = None, event
        # Unknown event types (entityRestored, entityNoChange, ...) have no bucket and match nothing.
        for event_filter in self._by_type.get(plain.event_type, ()):
            if not event_filter.admits(plain.entity_type):
                continue
            if not event_filter.needs_view:
                return True
            if view is None:
                view = view_of(plain)
            if event_filter.passes(view):
                return True
        return False


def matches(event: ChangeEvent, filters: Sequence[EventFilter]) -> bool:
    """Convenience for one-off checks and tests; compiles on every call, so the dispatcher uses CompiledFilters."""
    return CompiledFilters.compile(filters).matches(event)
