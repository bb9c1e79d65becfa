"""Helpers shared by every format: what an event is called, where it links to, what changed, who is told.

Formats import nothing from each other, only this module, ``base``, ``payload`` and ``api`` (compact JSON and
``truncate``, which the engine and the status use too), so each format stays one file (Flux's one-file-per-notifier)
and changing one chat layout can never break another. Everything here is pure and deterministic: the same batch
always renders to the same bytes, which the golden tests rely on and which keeps a retried delivery byte-identical
(and so its signature too).

The Generic payload objects are not here but in ``payload``: they are the Generic format's own shape, shared with
Custom only, not a helper every format uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from webhook_operator.api.encoding import compact_json_text
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.text import ELLIPSIS, truncate
from webhook_operator.formats.base import FormatError, RenderContext

ARROW = "→"
#: Longest rendering of one old or new value; chat messages are for reading, the Generic body has the full data.
MAX_VALUE_CHARS = 200
#: Longest FQN / user name shown in a title; FQNs have no length limit in OpenMetadata.
MAX_NAME_CHARS = 300
#: Changes summarised in a chat message: many for one event, few per event in a batch.
MAX_CHANGES_SINGLE = 20
MAX_CHANGES_BATCHED = 5

T = TypeVar("T")

# -- truncation and fitting (``truncate`` and compact JSON are ``api``'s: the status and the engine share them) ------


def one_line(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Whitespace (newlines from markdown descriptions included) collapsed, then truncated."""
    return truncate(" ".join(text.split()), limit)


def more_note(hidden: int, noun: str) -> str:
    """The note every format appends when it had to leave items out: ``… and 7 more events``."""
    return f"{ELLIPSIS} and {hidden} more {noun}{'' if hidden == 1 else 's'}"


def join_within(head: Sequence[str], items: Sequence[str], limit: int, *, max_items: int, noun: str) -> str:
    """``head`` lines, then as many ``items`` lines as fit in ``limit`` characters (at most ``max_items``), then a
    note naming how many were left out. Lines are never cut in the middle (that could break mrkdwn or HTML markup)
    unless the head alone is too long, which only a pathological name can cause."""
    text = truncate("\n".join(head), limit)
    shown = 0
    for index, item in enumerate(items[:max_items]):
        hidden_after = len(items) - index - 1
        reserve = len(more_note(hidden_after, noun)) + 1 if hidden_after else 0
        if len(text) + 1 + len(item) + reserve > limit:
            break
        text += "\n" + item
        shown += 1
    if shown < len(items):
        note = more_note(len(items) - shown, noun)
        if len(text) + 1 + len(note) <= limit:
            text += "\n" + note
    return text


def fit_largest(count: int, build: Callable[[int], T], fits: Callable[[T], bool]) -> T:
    """``build(k)`` renders the first ``k`` of ``count`` items (plus a "… and n more" note for the rest); return
    the rendering with the largest ``k`` that ``fits``. Binary search, so a 100-event batch costs ~7 renders."""
    whole = build(count)
    if fits(whole):
        return whole
    best = build(0)
    if not fits(best):
        raise FormatError("the message does not fit the destination's size limits even without any event")
    low, high = 0, count - 1
    while low < high:
        middle = (low + high + 1) // 2
        candidate = build(middle)
        if fits(candidate):
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


def require_events(events: Sequence[ChangeEvent]) -> None:
    if not events:
        raise FormatError("cannot render an empty batch")


# -- what an event is called and where it links to ------------------------------------------------------------

_ACTIONS = {
    "entityCreated": "was created",
    "entityUpdated": "was updated",
    "entityFieldsChanged": "was updated",
    "entityNoChange": "was re-ingested without changes",
    "entitySoftDeleted": "was soft-deleted",
    "entityDeleted": "was deleted",
    "entityRestored": "was restored",
    "webhookTest": "was tested (a test event from webhook-operator; nothing changed)",
    # A related webhook's delivery-state transitions (spec.triggers, issue 14): "Webhook team-a.pagerduty is failing".
    "webhookDeliveryFailing": "is failing",
    "webhookRetryLimitReached": "reached its retry limit (delivery paused)",
    "webhookDeliveryRecovered": "recovered (delivering again)",
}
#: Events about a webhook's own delivery: their action names the error the webhook's status shows.
_WEBHOOK_STATE_EVENTS = frozenset({"webhookDeliveryFailing", "webhookRetryLimitReached"})
#: Events whose changeDescription is not about this event (created: none; hard delete: the previous change).
_NO_CHANGE_SUMMARY = frozenset({"entityCreated", "entityDeleted"})


def entity_kind(entity_type: str) -> str:
    """``testCase`` -> ``Test case``, ``databaseSchema`` -> ``Database schema``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", entity_type).split() or [entity_type]
    return " ".join([words[0][:1].upper() + words[0][1:], *(word.lower() for word in words[1:])])


def subject(event: ChangeEvent) -> str:
    """The entity's FQN, falling back to its name and then its id (every event has an id)."""
    entity = event.entity or {}
    for candidate in (event.entity_fully_qualified_name, entity.get("fullyQualifiedName"), entity.get("name")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return event.entity_id


#: Markup characters in a receiver's error text, replaced by look-alikes that no chat client parses: ``<`` ``>``
#: make Slack and Google Chat mentions and links (``<!channel>``, ``<users/all>``, ``<url|text>``) and Teams
#: ``<at>`` tags; ``[`` ``]`` make markdown links (Teams). The format's own escaping still applies on top.
_INERT = str.maketrans({"<": "\u2039", ">": "\u203a", "[": "(", "]": ")"})


def inert(text: str) -> str:
    """Text written by someone outside the cluster (a receiver's reason phrase or body), made unable to mention,
    ping or link in any chat format: a receiver must not be able to speak through another webhook's channel."""
    return text.translate(_INERT)


#: ``inert`` plus ``*`` (Teams ``**bold**``, Chat ``*bold*``), for markups with no escape both Teams and Google Chat
#: are known to honour: a backslash escape that a client ignores would show in every ``fct\_invoices``.
_LITERAL = str.maketrans({"<": "\u2039", ">": "\u203a", "[": "(", "]": ")", "*": "\u2217"})


def literal(text: str) -> str:
    """Event-derived text (FQNs, user, tag and owner names, changed values: anyone who can edit metadata in
    OpenMetadata writes them) for a markdown-like chat field: mention (``<users/all>``, ``<at>``), link
    (``<url|text>``, ``[text](url)``, ``<url>``) and bold syntax become look-alikes that render as the same text but
    parse as nothing. ``_`` is left alone: FQNs are full of it and CommonMark ignores it inside words."""
    return text.translate(_LITERAL)


def action(event: ChangeEvent) -> str:
    phrase = _ACTIONS.get(event.event_type, f"had event {event.event_type}")
    error = (event.entity or {}).get("error") if event.event_type in _WEBHOOK_STATE_EVENTS else None
    return f"{phrase}: {inert(one_line(error))}" if isinstance(error, str) and error else phrase


def title(event: ChangeEvent) -> str:
    """E.g. ``Table bigquery_analytics.acme_prod.finance_mart.fct_invoices was updated by admin``."""
    text = f"{entity_kind(event.entity_type)} {one_line(subject(event), MAX_NAME_CHARS)} {action(event)}"
    return f"{text} by {one_line(event.user_name, MAX_NAME_CHARS)}" if event.user_name else text


def entity_url(event: ChangeEvent, ctx: RenderContext) -> str | None:
    """``ui_base_url/<entityType>/<FQN>``, each part percent-encoded as one path segment (FQNs hold quotes, dots,
    slashes and non-ASCII). None without a usable http(s) base URL, so no format ever emits a broken link."""
    base = (ctx.ui_base_url or "").rstrip("/")
    if urlsplit(base).scheme.lower() not in {"http", "https"}:
        return None
    return f"{base}/{quote(event.entity_type, safe='')}/{quote(subject(event), safe='')}"


def entity_link(event: ChangeEvent, ctx: RenderContext) -> str:
    """The entity's UI URL, or just its FQN when the operator has no UI base URL."""
    return entity_url(event, ctx) or subject(event)


def event_time(event: ChangeEvent) -> str:
    try:
        moment = datetime.fromtimestamp(event.timestamp / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{event.timestamp} ms"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def version_text(event: ChangeEvent) -> str:
    previous = event.previous_version
    if previous is None and event.change_description is not None:
        previous = event.change_description.previous_version
    current = event.current_version
    if current is None:
        return ""
    return f"v{previous} {ARROW} v{current}" if previous is not None and previous != current else f"v{current}"


def meta_line(event: ChangeEvent) -> str:
    """E.g. ``entityUpdated · v0.5 → v0.6 · 2026-03-04 18:38:03 UTC``."""
    return " · ".join(part for part in (event.event_type, version_text(event), event_time(event)) if part)


# -- what changed ------------------------------------------------------------------------------------------------


def decode_value(value: Any) -> Any:
    """FieldChange values are often JSON text inside a string (lists, ``extension.*``); decode those, leave raw
    strings (descriptions, enum values) alone. Only text that looks like a JSON array, object or string is tried,
    so a description of ``42`` or ``true`` stays the text it is."""
    if isinstance(value, str) and value.strip()[:1] in {"[", "{", '"'}:
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _describe_item(item: Any) -> str:
    if isinstance(item, dict):
        if isinstance(item.get("testCaseStatus"), str):
            result = item.get("result")
            status = str(item["testCaseStatus"])
            return f"{status}: {result}" if isinstance(result, str) and result else status
        for key in ("tagFQN", "name", "fullyQualifiedName", "displayName"):
            if isinstance(item.get(key), str) and item[key]:
                return str(item[key])
        if len(item) == 1:  # custom properties: [{"costCenter": "CC-2040"}]
            ((key, value),) = item.items()
            return f"{key}: {_describe_item(value)}"
        return compact_json_text(item)
    if isinstance(item, bool):
        return "true" if item else "false"
    if item is None:
        return "(none)"
    if isinstance(item, list):
        return ", ".join(_describe_item(element) for element in item) or "(none)"
    return str(item) if item != "" else "(empty)"


def describe_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """One readable line for a FieldChange value: tags by tagFQN, owners/domains/columns by name, test results by
    status, booleans as JSON, anything else as compact JSON; truncated to ``limit``."""
    try:
        return one_line(_describe_item(decode_value(value)), limit)
    except RecursionError:  # absurdly nested JSON text must not crash a delivery
        return "(too deeply nested)"


@dataclass(frozen=True)
class FieldSummary:
    name: str
    change: str

    @property
    def line(self) -> str:
        return f"{self.name}: {self.change}"


def summarize_changes(event: ChangeEvent, limit: int = MAX_VALUE_CHARS) -> list[FieldSummary]:
    """One summary per changed field, old -> new. A list change arrives as fieldsDeleted + fieldsAdded with the same
    name (owner replaced, tier changed, domain moved); it is merged into one ``old → new`` line. Added-only items
    read ``added new``, deleted-only ``removed old``. Created and hard-deleted events get none: their
    changeDescription is absent or stale (a hard delete repeats the previous change)."""
    description = event.change_description
    if description is None or event.event_type in _NO_CHANGE_SUMMARY:
        return []
    olds: dict[str, list[str]] = {}
    news: dict[str, list[str]] = {}
    updated: set[str] = set()
    for change in description.fields_updated:
        updated.add(change.name)
        olds.setdefault(change.name, [])
        news.setdefault(change.name, [])
        if change.old_value is not None:
            olds[change.name].append(describe_value(change.old_value, limit))
        if change.new_value is not None:
            news[change.name].append(describe_value(change.new_value, limit))
    for change in description.fields_added:
        olds.setdefault(change.name, [])
        news.setdefault(change.name, []).append(describe_value(change.new_value, limit))
    for change in description.fields_deleted:
        news.setdefault(change.name, [])
        olds.setdefault(change.name, []).append(describe_value(change.old_value, limit))
    summaries = []
    for name in dict.fromkeys([*news, *olds]):
        old = truncate(", ".join(olds.get(name, [])), limit)
        new = truncate(", ".join(news.get(name, [])), limit)
        if old and new:
            change_text = f"{old} {ARROW} {new}"
        elif new:
            change_text = new if name in updated else f"added {new}"
        elif old:
            change_text = f"{old} {ARROW} (none)" if name in updated else f"removed {old}"
        else:
            change_text = "changed"
        summaries.append(FieldSummary(one_line(name, MAX_VALUE_CHARS), change_text))
    return summaries


# -- who is told -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A user or team to notify. OpenMetadata references carry id, type and name; admins (operator configuration)
    and id-only followers carry less, so every part but the type is optional."""

    type: str
    name: str | None = None
    id: str | None = None

    def as_json(self) -> dict[str, str]:
        return {key: value for key, value in (("type", self.type), ("name", self.name), ("id", self.id)) if value}

    def mention(self) -> str:
        label = self.name or self.id or "?"
        return f"@{label}" if self.type == "user" else f"{self.type} {label}"

    def key(self) -> tuple[str, str]:
        return (self.type, f"id:{self.id}" if self.id else f"name:{self.name}")


def _ref(value: Any) -> Ref | None:
    if isinstance(value, str) and value:  # followers may be a bare list of user ids
        return Ref("user", id=value)
    if not isinstance(value, dict) or value.get("deleted") is True:
        return None  # a deleted user or team cannot be notified
    ref_type = value.get("type") if isinstance(value.get("type"), str) and value.get("type") else "user"
    names = (value[key] for key in ("name", "fullyQualifiedName", "displayName") if isinstance(value.get(key), str))
    name = next(names, None)
    ref_id = value.get("id") if isinstance(value.get("id"), str) else None
    return Ref(str(ref_type), name or None, ref_id or None) if (name or ref_id) else None


def _unique(refs: Iterable[Ref | None]) -> tuple[Ref, ...]:
    """Deduplicated by type and id (or name), in order of first appearance."""
    unique: dict[tuple[str, str], Ref] = {}
    for ref in refs:
        if ref is not None:
            unique.setdefault(ref.key(), ref)
    return tuple(unique.values())


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


@dataclass(frozen=True)
class Recipients:
    owners: tuple[Ref, ...] = ()
    followers: tuple[Ref, ...] = ()
    admins: tuple[Ref, ...] = ()

    def as_json(self) -> dict[str, list[dict[str, str]]]:
        """Always all three keys, so receivers and templates never meet a missing one."""
        return {
            "owners": [ref.as_json() for ref in self.owners],
            "followers": [ref.as_json() for ref in self.followers],
            "admins": [ref.as_json() for ref in self.admins],
        }

    def mention_line(self) -> str:
        """For chat formats: ``Owners: @john.doe, team DataEngineering · Admins: @admin``; empty for nobody."""
        groups = (("Owners", self.owners), ("Followers", self.followers), ("Admins", self.admins))
        return " · ".join(f"{label}: {', '.join(r.mention() for r in refs)}" for label, refs in groups if refs)


def wants_recipients(ctx: RenderContext) -> bool:
    return ctx.send_to_admins or ctx.send_to_owners or ctx.send_to_followers


def resolve_recipients(event: ChangeEvent, ctx: RenderContext) -> Recipients:
    """Owners from ``entity.owners`` (or the legacy single ``entity.owner``), followers from ``entity.followers``
    (references or ids), admins from the operator's configuration; only the groups the webhook asks for."""
    entity = event.entity or {}
    owner_values = [*_as_list(entity.get("owners")), *_as_list(entity.get("owner"))]
    owners = _unique(map(_ref, owner_values)) if ctx.send_to_owners else ()
    followers = _unique(map(_ref, _as_list(entity.get("followers")))) if ctx.send_to_followers else ()
    admins = _unique(Ref("user", name=admin) for admin in ctx.admins if admin) if ctx.send_to_admins else ()
    return Recipients(owners, followers, admins)


def batch_recipients(events: Sequence[ChangeEvent], ctx: RenderContext) -> Recipients:
    """Everyone to tell about a batch (one chat message), deduplicated, in order of first appearance."""
    per_event = [resolve_recipients(event, ctx) for event in events]
    return Recipients(
        _unique(ref for recipients in per_event for ref in recipients.owners),
        _unique(ref for recipients in per_event for ref in recipients.followers),
        _unique(ref for recipients in per_event for ref in recipients.admins),
    )
