"""OpenMetadata ChangeEvent, as the server really sends it.

Shapes follow what OpenMetadata 1.x/2.x puts on the wire (see the sample events in examples/events/): ``entity`` is an
object or a JSON *string*, FieldChange values are strings, JSON text inside strings, objects, arrays or booleans,
``eventType`` has many values beyond the four a Webhook can subscribe to. So the model is strict only about what
routing needs (id, eventType, entityType, entityId, timestamp) and keeps every other field, known or not, so that
the Generic format can pass the event on without losing anything.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from webhook_operator.api.limits import deeper_than, depth_message

#: Event types a Webhook can subscribe to (the seed's enum); other values are accepted and match no filter.
LIFECYCLE_EVENT_TYPES = ("entityCreated", "entityUpdated", "entitySoftDeleted", "entityDeleted")
_ENTITY = {"entity"}
#: The last millisecond of year 9999: later timestamps are not times (and the OpenAPI document says so).
MAX_TIMESTAMP_MS = 253_402_300_799_999


def _integral_number(value: Any) -> Any:
    # JSON has one number type: to JSON Schema (and the OpenAPI document, which says integer) 1.0 and 1e3 are
    # integers, so they are to the model too; 1.5, true and "1" still are not (StrictInt).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _holds_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class FieldChange(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    old_value: Any = Field(default=None, alias="oldValue")
    new_value: Any = Field(default=None, alias="newValue")


class ChangeDescription(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    fields_added: list[FieldChange] = Field(default_factory=list, alias="fieldsAdded")
    fields_updated: list[FieldChange] = Field(default_factory=list, alias="fieldsUpdated")
    fields_deleted: list[FieldChange] = Field(default_factory=list, alias="fieldsDeleted")
    previous_version: float | None = Field(default=None, alias="previousVersion")

    @field_validator("fields_added", "fields_updated", "fields_deleted", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    def all_changes(self) -> list[FieldChange]:
        return [*self.fields_added, *self.fields_updated, *self.fields_deleted]


class ChangeEvent(BaseModel):
    """One metadata change. Required fields are the ones OpenMetadata's own schema requires."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(min_length=1, max_length=256)
    event_type: str = Field(alias="eventType", min_length=1, max_length=128)
    entity_type: str = Field(alias="entityType", min_length=1, max_length=256)
    entity_id: str = Field(alias="entityId", min_length=1, max_length=256)
    timestamp: Annotated[StrictInt, BeforeValidator(_integral_number)] = Field(
        ge=0, le=MAX_TIMESTAMP_MS, description="Epoch milliseconds"
    )
    entity_fully_qualified_name: str | None = Field(default=None, alias="entityFullyQualifiedName")
    user_name: str | None = Field(default=None, alias="userName")
    impersonated_by: str | None = Field(default=None, alias="impersonatedBy")
    previous_version: float | None = Field(default=None, alias="previousVersion")
    current_version: float | None = Field(default=None, alias="currentVersion")
    change_description: ChangeDescription | None = Field(default=None, alias="changeDescription")
    entity: dict[str, Any] | None = None
    domains: list[str] | None = None

    @field_validator("entity", mode="before")
    @classmethod
    def _entity_may_be_json_text(cls, value: Any) -> Any:
        # Recent servers re-read events from the change_event table and POST the entity as a JSON string.
        if isinstance(value, str):
            try:
                parsed = json.loads(value, parse_constant=_reject_constant)
            except RecursionError:
                raise PydanticCustomError("json_depth", depth_message()) from None
            except ValueError as exc:
                raise ValueError(f"entity is a string but not valid JSON: {exc}") from exc
            if deeper_than(value):  # the same limit as the post around it (api.limits)
                raise PydanticCustomError("json_depth", depth_message())
            if _SURROGATE_ESCAPE.search(value) and _holds_lone_surrogate(parsed):
                # Valid JSON syntax, but not text: the event could never be encoded for delivery (found by fuzzing).
                raise ValueError("entity is a string holding an unpaired UTF-16 surrogate escape")
            value = parsed
        return value

    def changed_fields(self) -> list[str]:
        """Names of every changed field: an owners/tags/domains change is a delete plus an add, never an update."""
        if self.change_description is None:
            return []
        return [change.name for change in self.change_description.all_changes()]

    def wire(self) -> dict[str, Any]:
        """The event as JSON-ready data, entity as an object, unknown fields kept."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def wire_for_encoding(self) -> dict[str, Any]:
        """``wire()`` for a caller that only encodes the result (the Generic payload), at a fraction of the cost:
        ``entity`` is the model's own dict, not a serialised copy (walking a large entity was the largest cost of
        a render, issue 12). The same data for every event that came from JSON — the intake, the store — since
        ``entity`` then holds only JSON values (``exclude_none`` never reaches into it: its nulls are kept either
        way). ``entity`` comes last rather than in field order. Never mutate the result."""
        wire = self.model_dump(by_alias=True, exclude_none=True, mode="json", exclude=_ENTITY)
        if self.entity is not None:
            wire["entity"] = self.entity
        return wire
