"""Every webhookType has exactly one formatter, and an unknown type fails clearly."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from webhook_operator import formats
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import FormatError
from webhook_operator.formats.registry import REGISTRY, formatter_for

from ._helpers import batch, ctx, everyone


def test_registry_covers_every_webhook_type() -> None:
    assert set(REGISTRY) == set(WebhookType)


@pytest.mark.parametrize("kind", list(WebhookType))
def test_formatter_for_each_type_renders(kind: WebhookType) -> None:
    formatter = formatter_for(kind)
    assert formatter is REGISTRY[kind]
    rendered = formatter.render(batch(3), ctx(kind, batch_size=10))
    assert rendered.body and rendered.content_type.startswith("application/json")


def test_formatter_for_accepts_the_wire_string() -> None:
    assert formatter_for(WebhookType("Slack")) is REGISTRY[WebhookType.SLACK]


@pytest.mark.parametrize("kind", ["Discord", None, 3])
def test_unknown_type_is_a_clear_format_error(kind: object) -> None:
    with pytest.raises(FormatError, match=r"no formatter for webhookType .*known types: Generic, Slack, MSTeams"):
        formatter_for(kind)  # type: ignore[arg-type]


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        REGISTRY[WebhookType.SLACK] = REGISTRY[WebhookType.GENERIC]  # type: ignore[index]


FORMATS_DIR = Path(formats.__file__).parent
FORMAT_MODULES = ["generic", "slack", "msteams", "googlechat", "custom"]
NO_IO = ("aiohttp", "kubernetes", "kopf", "httpx", "requests", "socket", "urllib.request", "subprocess")
NOT_OURS = ("webhook_operator.delivery", "webhook_operator.store", "webhook_operator.cli")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(FORMATS_DIR.glob("*.py")), ids=lambda path: path.name)
def test_formats_are_pure(path: Path) -> None:
    forbidden = [name for name in imports_of(path) if name.startswith(NO_IO + NOT_OURS)]
    assert forbidden == []


@pytest.mark.parametrize("module", FORMAT_MODULES)
def test_formats_share_code_only_through_common(module: str) -> None:
    """Shared code lives in the non-formatter modules (``_common``, ``base`` and ``payload``, the Generic payload
    that Custom sends too); a formatter never imports another formatter."""
    ours = {name for name in imports_of(FORMATS_DIR / f"{module}.py") if name.startswith("webhook_operator.formats")}
    allowed = ("webhook_operator.formats._common", "webhook_operator.formats.base", "webhook_operator.formats.payload",
               "webhook_operator.formats.template_sandbox")  # fmt: skip
    assert {name for name in ours if not name.startswith(allowed)} == set()
    others = {f"webhook_operator.formats.{other}" for other in FORMAT_MODULES if other != module}
    assert {name for name in ours if name.startswith(tuple(others))} == set()


MINIMAL = ChangeEvent.model_validate(
    {"id": "e1", "eventType": "userLogin", "entityType": "user", "entityId": "u1", "timestamp": 0}
)


@pytest.mark.parametrize("kind", list(WebhookType))
def test_a_minimal_event_renders_in_every_format(kind: WebhookType) -> None:
    """Only the required fields: no entity, FQN, user, versions or changeDescription."""
    rendered = formatter_for(kind).render([MINIMAL], everyone(kind, ui_base_url=None))
    if kind in {WebhookType.GENERIC, WebhookType.CUSTOM}:
        body = json.loads(rendered.body)
        assert "entity" not in body
        assert body["recipients"]["admins"] == [{"type": "user", "name": "admin"}, {"type": "user", "name": "dpo"}]
    else:
        assert b"User u1 had event userLogin" in rendered.body
        assert b"Admins: @admin, @dpo" in rendered.body
