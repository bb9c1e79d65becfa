"""Issue 13, findings 1 and 9 (templates), in the sandbox itself: a Custom template cannot build a huge string in a
fraction of a second (``center``, ``ljust``, ``%``, ``format``, ``join``, …), and every failure of compiling or
rendering — a RecursionError from 20,000 nested parentheses included — is a ``FormatError``.

These run in-process (``CustomFormatter.render``), so they prove the checks come *before* the allocation: the
process's peak RSS must not move. The worker pool's hard limits (time, memory, output) are tested in
``tests/unit/delivery/test_template_pool.py``."""

from __future__ import annotations

import resource
import time

import pytest

from support.events import event
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import FormatError, Rendered
from webhook_operator.formats.custom import CustomFormatter, compile_template

from ._helpers import ctx

#: Peak RSS growth allowed while a hostile template is refused (a 1 GB string is what the attack builds).
RSS_SLACK_KIB = 64 * 1024
LIMIT = r"exceeded the output size limit"

HOSTILE = {
    "center filter": '{{ "x"|center(1000000000)|length }}',
    "center method": "{{ 'x'.center(1000000000)|length }}",
    "ljust": "{{ 'x'.ljust(10**9)|length }}",
    "rjust": "{{ 'x'.rjust(1000000000, '-')|length }}",
    "zfill": "{{ '1'.zfill(1000000000)|length }}",
    "expandtabs": "{{ ('\\t' * 1000)|attr('expandtabs')(1000000)|length }}",
    "printf width": "{{ ('%01000000000d' % 1)|length }}",
    "printf precision": "{{ ('%.1000000000f' % 1.5)|length }}",
    "printf star": "{{ ('%*d' % (1000000000, 1))|length }}",
    "printf bytes": "{{ ('%01000000000d'.encode() % 1)|length }}",
    "format filter": "{{ ('%01000000000d'|format(1))|length }}",
    "str.format": "{{ '{:>1000000000}'.format(1)|length }}",
    "str.format nested": "{{ '{:>{w}}'.format(1, w=1000000000)|length }}",
    "str.format_map": "{{ '{a:>1000000000}'.format_map({'a': 1})|length }}",
    "join filter": "{{ (['x' * 1000000] * 1000)|join|length }}",
    "join method": "{{ ''.join(['x' * 1000000] * 1000)|length }}",
    "join separator": "{{ (range(100000)|list)|join('x' * 1000000)|length }}",
    "indent": "{{ ('\\n' * 1000000)|indent(1000000)|length }}",
    "wordwrap": "{{ ('x ' * 500000)|wordwrap(1, wrapstring='y' * 1000000)|length }}",
    "replace filter": "{{ ('x' * 1000000)|replace('x', 'y' * 1000000)|length }}",
    "replace method": "{{ ('x' * 1000000).replace('x', 'y' * 1000000)|length }}",
    "translate": "{{ ('x' * 1000000).translate({120: 'y' * 1000000})|length }}",
    "concatenation": "{{ (('x' * 1000000) + ('x' * 1000000) + ('x' * 1000000) + ('x' * 1000000) + ('x' * 1000000)"
    " + ('x' * 1000000))|length }}",
    "list extend": "{% set l = ['x'] * 1000000 %}{% for i in range(20) %}{{ l.extend(l) or '' }}{% endfor %}",
    "batch fill": "{{ ([1]|batch(1000000000, 0)|list)|length }}",
    "power result": "{{ ((10 ** 1000) ** 1000) ** 1000 }}",
}


def render(template: str) -> Rendered:
    return CustomFormatter().render([event(10)], ctx(WebhookType.CUSTOM, payload_template=template))


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.timeout(60)
@pytest.mark.parametrize("template", HOSTILE.values(), ids=HOSTILE.keys())
def test_huge_string_building_is_refused_before_allocating(template: str) -> None:
    compile_template(template)
    before, started = peak_rss_kib(), time.monotonic()
    with pytest.raises(FormatError, match=rf"^payloadTemplate line 1: {LIMIT}"):
        render(template)
    assert time.monotonic() - started < 5
    assert peak_rss_kib() - before < RSS_SLACK_KIB, "the string was built before it was refused"


@pytest.mark.parametrize(
    ("template", "body"),
    [
        ("{{ 'ab'|center(6) }}|{{ 'x'.ljust(3, '.') }}|{{ 'x'.rjust(3) }}|{{ '7'.zfill(3) }}", "  ab  |x..|  x|007"),
        ("{{ '%05d|%-4s|%.2f|%*d' % (42, 'ab', 1.5, 3, 7) }}", "00042|ab  |1.50|  7"),
        ("{{ '%(a)03d'|format(a=5) }}{{ '%s-%s'|format(1, 2) }}", "0051-2"),
        ("{{ '{:>5}|{:{w}}|{a}'.format(1, 'x', w=3, a='y') }}|{{ '{k:03}'.format_map({'k': 9}) }}", "    1|x  |y|009"),
        ("{{ ['a', 'b']|join(', ') }}|{{ '-'.join(['a', 'b']) }}|{{ range(3)|join }}", "a, b|a-b|012"),
        ("{{ 'a\nb'|indent(2, true) }}|{{ 'aa bb'|wordwrap(2) }}", "  a\n  b|aa\nbb"),
        (
            "{{ 'a.b.c'|replace('.', '::') }}|{{ 'abc'.replace('b', 'B') }}|{{ 'ab'.translate({97: 'A'}) }}",
            "a::b::c|aBc|Ab",
        ),
        (
            "{{ 'a\tb'.expandtabs(4) }}|{{ 'ab' + 'cd' }}|{{ [1] + [2] }}|{{ [1, 2, 3]|batch(2, 0)|list }}",
            "a   b|abcd|[1, 2]|[[1, 2], [3, 0]]",
        ),
        ("{% set l = [1] %}{{ l.extend([2]) or l }}|{{ 2 ** 10 }}|{{ (2 ** 64) ** 3 > 0 }}", "[1, 2]|1024|True"),
    ],
)
def test_ordinary_string_building_still_works(template: str, body: str) -> None:
    assert render(template).body.decode() == body


@pytest.mark.parametrize(
    "template",
    [
        "{{ " + "(" * 20_000 + "1" + ")" * 20_000 + " }}",
        "{{" * 30_000,
        "{{ a" + "[0]" * 20_000 + " }}",
        "{{ 1" + " + 1" * 15_000 + " }}",
        "{% if 1 %}" * 5_000 + "{% endif %}" * 5_000,
    ],
    ids=["parentheses", "open-expressions", "subscripts", "additions", "nested-ifs"],
)
def test_deep_nesting_is_a_format_error_at_compile_and_render(template: str) -> None:
    with pytest.raises(FormatError, match=r"^payloadTemplate: the template is nested too deeply"):
        compile_template(template)
    with pytest.raises(FormatError, match=r"^payloadTemplate: the template is nested too deeply"):
        render(template)
