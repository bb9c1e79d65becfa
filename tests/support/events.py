"""The real-shaped OpenMetadata ChangeEvents the repository carries in ``examples/events/`` (see its README)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from webhook_operator.api.events import ChangeEvent

ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = ROOT / "examples" / "events"


def event_files() -> list[Path]:
    files = sorted(EVENTS_DIR.glob("[0-9][0-9]-*.json"))
    if not files:
        raise FileNotFoundError(f"sample events not found in {EVENTS_DIR} (examples/events/ in the repository)")
    return files


def raw(number: int) -> dict[str, Any]:
    """The sample whose file name starts with this two-digit number, as parsed JSON."""
    (path,) = [p for p in event_files() if p.name.startswith(f"{number:02d}-")]
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def event(number: int) -> ChangeEvent:
    return ChangeEvent.model_validate(raw(number))


def all_events() -> list[ChangeEvent]:
    return [ChangeEvent.model_validate_json(p.read_text()) for p in event_files()]


def numbered(n: int, series: str = "8000") -> dict[str, Any]:
    """Sample 01 (a table created) under a fresh, deterministic id: many distinct events of a known shape."""
    data = copy.deepcopy(raw(1))
    data["id"] = f"00000000-0000-4000-{series}-{n:012d}"
    return data
