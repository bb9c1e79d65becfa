"""Custom: Generic without a template; with one, sandboxed Jinja2 whose every failure is a FormatError naming the
template line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.events import event
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats import template_sandbox
from webhook_operator.formats.base import FormatError, Rendered
from webhook_operator.formats.custom import CustomFormatter, compile_template
from webhook_operator.formats.generic import GenericFormatter

from ._helpers import FCT, batch, ctx, everyone

CUSTOM = WebhookType.CUSTOM
LIMIT = "exceeded the output size limit"


def render(template: str | None, events: list[ChangeEvent] | None = None, **overrides: Any) -> Rendered:
    return CustomFormatter().render(events or [event(10)], ctx(CUSTOM, payload_template=template, **overrides))


@pytest.mark.parametrize("size", [1, 3, 100])
def test_without_template_the_body_is_generic(size: int) -> None:
    events = batch(size)
    batch_size = 1 if size == 1 else 100
    rendered = CustomFormatter().render(events, everyone(CUSTOM, batch_size=batch_size))
    assert rendered == GenericFormatter().render(events, everyone(WebhookType.GENERIC, batch_size=batch_size))


def test_json_template_golden() -> None:
    template = '{"text": {{ event.entityFullyQualifiedName | tojson }}, "by": {{ event.userName | tojson }}}'
    rendered = render(template)
    assert rendered.content_type == "application/json"
    assert rendered.body == f'{{"text": "{FCT}", "by": "priya.shah"}}'.encode()


def test_tojson_is_compact_and_keeps_unicode_and_markup_raw() -> None:
    rendered = render("{{ {'fqn': event.entityFullyQualifiedName, 'v': [1, '<&>']} | tojson }}", [event(23)])
    assert rendered.body == '{"fqn":"postgres_crm.crm.sales_jp.顧客マスタ","v":[1,"<&>"]}'.encode()
    assert rendered.content_type == "application/json"


def test_entity_sent_as_json_text_is_an_object_in_templates() -> None:
    rendered = render("{{ event.entity.name }} {{ event.entity.tasks | length }}", [event(33)])
    assert rendered.body.startswith(b"daily_invoice_load ")


def test_text_output_is_text_plain() -> None:
    rendered = render("{{ webhook_name }}: {{ events | length }} events")
    assert rendered == Rendered(body=b"finance-alerts: 1 events", content_type="text/plain; charset=utf-8")
    assert render("NaN").content_type == "text/plain; charset=utf-8"  # Python's json accepts NaN; JSON does not
    assert render("").content_type == "text/plain; charset=utf-8"


def test_batch_variables_and_recipients() -> None:
    template = (
        '{"webhook": {{ webhook_name | tojson }}, "ids": [{% for e in events %}{{ e.eventId | tojson }}'
        '{% if not loop.last %},{% endif %}{% endfor %}], "owners": {{ recipients.owners | map(attribute="name")'
        ' | list | tojson }}, "first": {{ event.recipients.admins | tojson }}}'
    )
    events = [event(6), event(7), event(35)]
    rendered = CustomFormatter().render(events, everyone(CUSTOM, batch_size=10, payload_template=template))
    assert json.loads(rendered.body) == {
        "webhook": "finance-alerts",
        "ids": [e.id for e in events],
        "owners": ["ana.ruiz", "FinanceDataTeam", "priya.shah"],
        "first": [{"type": "user", "name": "admin"}, {"type": "user", "name": "dpo"}],
    }


def test_recipients_variable_has_all_keys_even_without_flags() -> None:
    assert render("{{ recipients | tojson }}").body == b'{"owners":[],"followers":[],"admins":[]}'


def test_large_batch_renders_in_full() -> None:
    rendered = render(
        "[{% for e in events %}{{ e.eventId | tojson }}{{ ',' if not loop.last }}{% endfor %}]", batch(100)
    )
    assert len(json.loads(rendered.body)) == 100


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{\n  "a": 1,\n  "b": {{ event.eventId } }}\n}', "payloadTemplate line 3: unexpected '}'"),
        ("{% for e in events %}\n{{ e.eventId }}", "payloadTemplate line 2: Unexpected end of template."),
        ("{{ event | nosuchfilter }}", "payloadTemplate line 1: No filter named 'nosuchfilter'."),
    ],
)
def test_syntax_errors_name_the_line(template: str, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        compile_template(template)
    assert str(caught.value).startswith(message)
    with pytest.raises(FormatError, match=r"^payloadTemplate line"):
        render(template)


@pytest.mark.parametrize(
    ("template", "pattern"),
    [
        ("ok\n{{ nope }}", r"^payloadTemplate line 2: 'nope' is undefined$"),
        ("{{ event.noSuchField }}", r"^payloadTemplate line 1: .*noSuchField"),
        ("{{ ''.__class__ }}", r"^payloadTemplate line 1: access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", r"^payloadTemplate line 1: access to attribute '__class__'"),
        ("{{ event.__init__.__globals__ }}", r"^payloadTemplate line 1: access to attribute '__init__'"),
        ("a\nb\n{{ 1 / 0 }}", r"^payloadTemplate line 3: ZeroDivisionError: division by zero$"),
        ("{{ range(10 ** 7) | list }}", r"^payloadTemplate line 1: OverflowError: Range too big"),
        (
            "{{ 'x' * 100000000 }}",
            rf"^payloadTemplate line 1: {LIMIT}: repeating a sequence to more than 1000000 items",
        ),
        ("{{ [1] * 100000000 }}", rf"^payloadTemplate line 1: {LIMIT}: repeating a sequence"),
        ("{{ 10 ** 100000 }}", r"^payloadTemplate line 1: exponent 100000 is larger than 1000"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", r"^payloadTemplate line 1: RecursionError"),
        ("{{ '\\ud800' }}", r"^payloadTemplate: output is not valid Unicode text"),
        ("{% include 'other.json' %}", r"^payloadTemplate line 1: .*loader"),
        (
            "{{ range(3) | tojson }}",
            r"^payloadTemplate line 1: TypeError: Object of type range is not JSON serializable",
        ),
    ],
)
def test_render_errors_and_sandbox_violations_are_format_errors(template: str, pattern: str) -> None:
    compile_template(template)  # these compile; they fail when rendered
    with pytest.raises(FormatError, match=pattern):
        render(template)


def test_small_multiplications_and_powers_still_work() -> None:
    assert render("{{ '-' * 3 }}{{ 2 ** 10 }}{{ 3 * 4 }}{{ [0] * 2 }}").body == b"---102412[0, 0]"


def test_output_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_sandbox, "MAX_OUTPUT_CHARS", 1000)
    with pytest.raises(FormatError, match="exceeded the output size limit: output is larger than 1000 characters"):
        render("{% for i in range(100) %}{{ 'x' * 50 }}{% endfor %}")


def test_compiled_templates_are_cached() -> None:
    template = "{{ event.eventId }} cached"
    compile_template(template)
    before = template_sandbox.compiled.cache_info()
    render(template)
    render(template)
    after = template_sandbox.compiled.cache_info()
    assert after.hits == before.hits + 2 and after.misses == before.misses
    assert after.maxsize == template_sandbox.CACHE_SIZE


def test_the_documented_example_template() -> None:
    template = (
        '{"text": {{ ("%s changed %s" % (event.userName, event.entityFullyQualifiedName)) | tojson }},\n'
        ' "ids": {{ events | map(attribute="eventId") | list | tojson }}}\n'
    )
    rendered = render(template, [event(10), event(19)], batch_size=10)
    assert rendered.content_type == "application/json"
    assert json.loads(rendered.body) == {"text": f"priya.shah changed {FCT}", "ids": [event(10).id, event(19).id]}
