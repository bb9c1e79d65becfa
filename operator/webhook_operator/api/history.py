"""The Webhook's own version history, as OpenMetadata keeps it for its entities: ``version``, ``updatedAt``,
``updatedBy`` and the ``changeDescription`` of the last spec change (issue 14, item 5).

Pure: the handler passes the previous spec (kopf's diff base: the last spec the operator handled), the current one,
the resource's metadata and the status it had; this module says what the status should now show. Why each rule:

* ``version`` is ``metadata.generation / 10`` in OpenMetadata's notation (0.1 when created, +0.1 per spec change).
  The API server increments ``generation`` exactly once per spec change and never on status or metadata writes, so
  the number is the same whoever computes it and however often (a handler re-run after a crash does not bump it
  twice, and edits made while the operator was down still count).
* ``changeDescription`` lists the leaves that changed between the previous and the current spec, by dotted path
  (``webhookConfig.endpoint``), values as JSON text like OpenMetadata's ``FieldChange``. Lists are compared whole
  (``eventFilters`` changed: old and new lists). ``previousVersion`` is the version the status showed before.
* Values are shown only for fields known to hold no secret (an allowlist: filters, batch size, flags, references
  to Secrets, …); every other value — ``secretKey``, header values, the template, ``extension`` — appears as
  ``"(hidden)"``: the change is visible, the value is not. The endpoint is shown without its user-info and with its
  query hidden (``https://host/path?(hidden)``), because credentials in a URL are common and status outlives the
  spec they were removed from (issue 13 review). Long values are cut so status stays small.
* ``updatedBy`` is the *field manager* of the last spec write (``metadata.managedFields``: ``kubectl-client-side-
  apply``, ``argocd-controller``, ``helm``…), not a person: Kubernetes records which client wrote a field, not who ran
  it. ``updatedAt`` is that write's time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from webhook_operator.api.encoding import compact_json_text
from webhook_operator.api.text import truncate

HIDDEN = "(hidden)"
#: Spec fields (and everything below them) whose values are shown in a change description; all others are hidden.
SHOWN_FIELDS = (
    "displayName", "description", "webhookType", "enabled", "batchSize", "eventFilters", "owner", "tags", "domain",
    "fallback", "triggers", "acceptFrom", "delivery", "webhookConfig.timeout", "webhookConfig.sendToAdmins",
    "webhookConfig.sendToOwners", "webhookConfig.sendToFollowers", "webhookConfig.signatureScheme",
    "webhookConfig.payloadShape", "webhookConfig.secretKeyRef", "webhookConfig.headersFrom",
    "webhookConfig.tls.insecureSkipVerify", "webhookConfig.tls.caBundleSecretRef",
)  # fmt: skip
_ENDPOINT = "webhookConfig.endpoint"
#: Longest value text kept per field change; a 64 KiB template must not be copied into status twice.
MAX_VALUE_CHARS = 256
#: Most field changes listed per kind (added/updated/deleted); the rest are counted, not listed.
MAX_CHANGES = 32


def version_of(generation: int | None) -> float:
    """OpenMetadata's version for a resource generation: 0.1, 0.2, … (generation 1 is the created resource)."""
    return round(max(generation or 1, 1) / 10, 1)


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key in sorted(value):
            yield from _leaves(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix, value


def _shown(path: str, value: Any) -> str:
    if path == _ENDPOINT and isinstance(value, str):
        return truncate(compact_json_text(_without_credentials(value)), MAX_VALUE_CHARS)
    if not any(path == field or path.startswith(field + ".") for field in SHOWN_FIELDS):
        return HIDDEN
    return truncate(compact_json_text(value), MAX_VALUE_CHARS)


def _without_credentials(url: str) -> str:
    """``scheme://host[:port]/path``, plus ``?(hidden)`` when there was a query: no user-info, no query values."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return HIDDEN
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?" + HIDDEN if parts.query else "")


def change_description(previous: Mapping[str, Any] | None, current: Mapping[str, Any],
                       previous_version: float | None) -> dict[str, Any] | None:  # fmt: skip
    """OpenMetadata's ``ChangeDescription`` between two specs, or None when nothing changed (or there is no
    previous spec: a created resource has no change description, as in OpenMetadata)."""
    if previous is None:
        return None
    old, new = dict(_leaves(previous)), dict(_leaves(current))
    added = [{"name": p, "newValue": _shown(p, new[p])} for p in new if p not in old]
    deleted = [{"name": p, "oldValue": _shown(p, old[p])} for p in old if p not in new]
    updated = [
        {"name": p, "oldValue": _shown(p, old[p]), "newValue": _shown(p, new[p])}
        for p in new
        if p in old and old[p] != new[p]
    ]
    if not (added or deleted or updated):
        return None
    description: dict[str, Any] = {
        "fieldsAdded": added[:MAX_CHANGES],
        "fieldsUpdated": updated[:MAX_CHANGES],
        "fieldsDeleted": deleted[:MAX_CHANGES],
    }
    omitted = sum(max(len(changes) - MAX_CHANGES, 0) for changes in (added, updated, deleted))
    if omitted:
        description["omittedChanges"] = omitted
    if previous_version is not None:
        description["previousVersion"] = previous_version
    return description


def last_spec_write(managed_fields: Sequence[Mapping[str, Any]] | None) -> tuple[str | None, str | None]:
    """(manager, time) of the most recent managedFields entry that owns part of ``spec``."""
    best: tuple[str, str | None] | None = None
    for entry in managed_fields or ():
        fields = entry.get("fieldsV1")
        if entry.get("subresource") or not isinstance(fields, Mapping) or "f:spec" not in fields:
            continue
        manager, time = entry.get("manager"), entry.get("time")
        if not isinstance(manager, str):
            continue
        if best is None or (isinstance(time, str) and (best[1] is None or time >= best[1])):
            best = (manager, time if isinstance(time, str) else None)
    return best if best is not None else (None, None)


def spec_history(*, previous_spec: Mapping[str, Any] | None, spec: Mapping[str, Any], meta: Mapping[str, Any],
                 previous_status: Mapping[str, Any] | None, now: float) -> dict[str, Any] | None:  # fmt: skip
    """The status fields for the spec the operator is reconciling now, or None to leave them as they are.

    * The generation did not move (a resume, a re-run): what the status shows is kept (None), so re-running is
      idempotent.
    * It moved but the previous spec is unknown (the start-up listing registers every Webhook before kopf's update
      handler, which knows the last handled spec, runs): None, so the update handler writes the real change
      description instead of racing it with an empty one.
    * The status has no version yet (created, or written by an older operator): the version now, no description."""
    generation = meta.get("generation")
    version = version_of(generation if isinstance(generation, int) else None)
    shown = dict(previous_status or {})
    raw_version = shown.get("version")
    shown_version = float(raw_version) if isinstance(raw_version, int | float) else None
    if shown_version is not None and round(shown_version, 1) == version:
        return None
    if shown_version is not None and previous_spec is None:
        return None
    manager, time = last_spec_write(meta.get("managedFields"))
    updated_at = time or datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    previous_version = shown_version
    if previous_version is None and version > 0.1:
        previous_version = round(version - 0.1, 1)
    history: dict[str, Any] = {"version": version, "updatedAt": updated_at, "updatedBy": manager}
    history["changeDescription"] = change_description(previous_spec, spec, previous_version)
    return history
