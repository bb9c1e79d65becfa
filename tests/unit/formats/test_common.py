"""Shared helpers: titles, links, change summaries, recipients, truncation and fitting."""

from __future__ import annotations

from typing import Any

import pytest

from support.events import event, raw
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.text import ELLIPSIS, truncate
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats._common import (
    batch_recipients,
    describe_value,
    entity_kind,
    entity_link,
    entity_url,
    fit_largest,
    join_within,
    meta_line,
    more_note,
    one_line,
    resolve_recipients,
    summarize_changes,
    title,
    version_text,
)
from webhook_operator.formats.base import FormatError

from ._helpers import FCT, UI, ctx, everyone

GENERIC = WebhookType.GENERIC


@pytest.mark.parametrize(
    ("entity_type", "kind"),
    [("table", "Table"), ("testCase", "Test case"), ("databaseSchema", "Database schema"), ("mlmodel", "Mlmodel")],
)
def test_entity_kind(entity_type: str, kind: str) -> None:
    assert entity_kind(entity_type) == kind


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (6, f"Table {FCT} was updated by ana.ruiz"),
        (1, f"Table {FCT} was created by ingestion-bot"),
        (
            19,
            "Test case postgres_crm.crm.public.crm_contacts.email.crm_contacts_email_not_null was updated by "
            "ingestion-bot",
        ),
        (29, "Table postgres_crm.crm.public.leads_staging was soft-deleted by admin"),
        (31, "Table postgres_crm.crm.public.leads_staging was deleted by admin"),
        (30, "Table postgres_crm.crm.public.leads_staging was restored by admin"),
        (23, "Table postgres_crm.crm.sales_jp.顧客マスタ was created by ingestion-bot"),
    ],
)
def test_titles(number: int, expected: str) -> None:
    assert title(event(number)) == expected


def test_title_without_user_and_unknown_event_type() -> None:
    data = raw(6) | {"eventType": "threadCreated"}
    data.pop("userName")
    assert title(ChangeEvent.model_validate(data)) == f"Table {FCT} had event threadCreated"


def test_title_falls_back_to_entity_name_then_id() -> None:
    data = raw(6)
    data.pop("entityFullyQualifiedName")
    assert title(ChangeEvent.model_validate(data)).startswith(f"Table {FCT} ")  # entity.fullyQualifiedName
    data["entity"] = {}
    assert title(ChangeEvent.model_validate(data)).startswith(f"Table {data['entityId']} ")


def test_entity_links() -> None:
    assert entity_link(event(6), ctx(GENERIC)) == f"{UI}/table/{FCT}"
    assert entity_link(event(6), ctx(GENERIC, ui_base_url=UI + "/")) == f"{UI}/table/{FCT}"
    assert entity_link(event(6), ctx(GENERIC, ui_base_url=None)) == FCT
    assert entity_url(event(6), ctx(GENERIC, ui_base_url=None)) is None
    # the quoted FQN of a topic whose name has dots, and non-ASCII, are percent-encoded as one path segment
    assert entity_link(event(4), ctx(GENERIC)) == f"{UI}/topic/kafka_events.%22web.clickstream.v2%22"
    assert entity_link(event(23), ctx(GENERIC)) == (
        f"{UI}/table/postgres_crm.crm.sales_jp.%E9%A1%A7%E5%AE%A2%E3%83%9E%E3%82%B9%E3%82%BF"
    )
    assert entity_link(event(19), ctx(GENERIC)).startswith(f"{UI}/testCase/postgres_crm.")


def test_slashes_in_fqn_stay_inside_one_segment_and_bad_base_urls_give_no_link() -> None:
    data = raw(6) | {"entityFullyQualifiedName": "svc.a/b c?d#e"}
    assert entity_link(ChangeEvent.model_validate(data), ctx(GENERIC)) == f"{UI}/table/svc.a%2Fb%20c%3Fd%23e"
    assert entity_url(event(6), ctx(GENERIC, ui_base_url="javascript:alert(1)")) is None


def test_versions_and_meta() -> None:
    assert version_text(event(10)) == "v0.5 → v0.6"
    assert version_text(event(14)) == "v0.9"  # noise: version unchanged
    assert version_text(event(33)) == "v0.1 → v0.2"  # previousVersion only inside changeDescription
    assert version_text(event(19)) == "v0.1"  # no previousVersion at all
    assert meta_line(event(10)) == "entityUpdated · v0.5 → v0.6 · 2026-03-04 18:38:03 UTC"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('[{"tagFQN":"Tier.Tier2","name":"Tier2"}]', "Tier.Tier2"),  # JSON text inside a string
        ('[{"id":"1","type":"team","name":"FinanceDataTeam"},{"type":"user","name":"ana"}]', "FinanceDataTeam, ana"),
        ('"CC-2040"', "CC-2040"),  # extension.<property>: JSON text with its quotes
        ('[{"costCenter":"CC-1"}]', "costCenter: CC-1"),
        (True, "true"),
        (["EditAll", "ViewAll"], "EditAll, ViewAll"),
        ({"testCaseStatus": "Aborted"}, "Aborted"),
        ({"a": 1, "b": [2]}, '{"a":1,"b":[2]}'),
        ({"a": 1}, "a: 1"),
        ("[not json](link)", "[not json](link)"),  # markdown, not JSON: kept as written
        ("42", "42"),  # a raw scalar is not decoded
        ("line one\n\n  line two", "line one line two"),
        ("", "(empty)"),
        ("[]", "(none)"),
    ],
)
def test_describe_value(value: Any, expected: str) -> None:
    assert describe_value(value) == expected


def test_describe_value_survives_absurd_nesting() -> None:
    assert describe_value("[" * 100_000 + "]" * 100_000) == one_line("[" * 100_000 + "]" * 100_000)
    nested: Any = "x"
    for _ in range(5000):
        nested = [nested]
    assert describe_value(nested) == "(too deeply nested)"


def test_describe_value_truncates() -> None:
    described = describe_value("x" * 1000, limit=50)
    assert len(described) == 50 and described.endswith(ELLIPSIS)


@pytest.mark.parametrize(
    ("number", "lines"),
    [
        (7, ["owners: ana.ruiz → FinanceDataTeam"]),  # delete + add of a list field merged
        (10, ["tags: Tier.Tier1 → Tier.Tier2"]),  # a tier change is a tags change
        (8, ["tags: added PersonalData.Personal, BusinessGlossary.AnnualRecurringRevenue"]),
        (9, ["tags: removed PII.Sensitive"]),
        (19, ["testCaseResult: Failed: Found nullCount=37 null values in column email (0.42% of 8,812 rows)."]),
        (22, ["votes: votedUp"]),
        (29, ["deleted: false → true"]),
        (39, ["domains: Marketing → Engineering"]),
        (35, ["extension.costCenter: CC-1001 → CC-2040", "extension: added reviewCadence: Quarterly"]),
        (
            33,
            [
                "description: Loads invoices exported from the billing system into BigQuery. → Loads invoices exported "
                "from the billing system into BigQuery. Runs after the 02:30 UTC export lands.",
                "scheduleInterval: 0 3 * * * → 30 3 * * *",
            ],
        ),
        (1, []),  # created: no changeDescription
        (31, []),  # hard delete: its changeDescription is the previous change's, not this event's
    ],
)
def test_change_summaries(number: int, lines: list[str]) -> None:
    assert [summary.line for summary in summarize_changes(event(number))] == lines


def test_recipients_resolution() -> None:
    recipients = resolve_recipients(event(35), everyone(GENERIC))
    assert recipients.as_json() == {
        "owners": [
            {"type": "user", "name": "priya.shah", "id": "c34aaad1-79c0-50ff-950e-5ca3ab9cb011"},
            {"type": "team", "name": "FinanceDataTeam", "id": "f39d4810-b287-5edf-a69a-30a33533efc6"},
        ],
        "followers": [{"type": "user", "name": "marco.rossi", "id": "8895a6e6-b604-553a-8ed6-bc9b1cccccc0"}],
        "admins": [{"type": "user", "name": "admin"}, {"type": "user", "name": "dpo"}],
    }
    assert recipients.mention_line() == (
        "Owners: @priya.shah, team FinanceDataTeam · Followers: @marco.rossi · Admins: @admin, @dpo"
    )


def test_recipients_only_for_flags_set() -> None:
    only_owners = resolve_recipients(event(35), ctx(GENERIC, send_to_owners=True, admins=("admin",)))
    assert only_owners.as_json()["followers"] == [] and only_owners.as_json()["admins"] == []
    assert resolve_recipients(event(35), ctx(GENERIC, admins=("admin",))).mention_line() == ""


def test_recipients_from_legacy_owner_id_followers_and_deleted_refs() -> None:
    data = raw(6)
    data["entity"] = {
        "owner": {"type": "user", "name": "john.doe", "id": "u1"},
        "owners": [{"type": "team", "name": "Gone", "id": "t1", "deleted": True}, {"type": "user", "id": "u1"}],
        "followers": ["f-1", "f-2", "f-1", 7, None],
    }
    recipients = resolve_recipients(ChangeEvent.model_validate(data), everyone(GENERIC))
    assert [ref.as_json() for ref in recipients.owners] == [{"type": "user", "id": "u1"}]  # same id: deduplicated
    assert [ref.as_json() for ref in recipients.followers] == [
        {"type": "user", "id": "f-1"},
        {"type": "user", "id": "f-2"},
    ]
    assert recipients.mention_line().startswith("Owners: @u1 · Followers: @f-1, @f-2")


def test_batch_recipients_union_in_first_seen_order() -> None:
    recipients = batch_recipients([event(6), event(7), event(35)], everyone(GENERIC))
    assert [ref.mention() for ref in recipients.owners] == ["@ana.ruiz", "team FinanceDataTeam", "@priya.shah"]
    assert [ref.mention() for ref in recipients.admins] == ["@admin", "@dpo"]


def test_truncation_helpers() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab" + ELLIPSIS
    with pytest.raises(ValueError, match="positive"):
        truncate("abc", 0)
    assert more_note(1, "event") == "… and 1 more event"
    assert more_note(7, "event") == "… and 7 more events"


def test_join_within_keeps_whole_lines_and_counts_the_rest() -> None:
    items = [f"item {i} " + "x" * 20 for i in range(10)]
    text = join_within(["head"], items, 100, max_items=10, noun="change")
    assert len(text) <= 100
    assert text.splitlines()[0] == "head"
    shown = [line for line in text.splitlines() if line.startswith("item")]
    assert all(line in items for line in shown)
    assert text.endswith(more_note(10 - len(shown), "change"))
    assert join_within(["h"], items, 10_000, max_items=3, noun="change").endswith("… and 7 more changes")
    assert join_within(["h"], ["a"], 100, max_items=5, noun="change") == "h\na"


def test_fit_largest_finds_the_largest_prefix_that_fits() -> None:
    def build(shown: int) -> list[int]:
        return list(range(shown))

    assert fit_largest(100, build, lambda items: len(items) <= 37) == list(range(37))
    assert fit_largest(5, build, lambda items: True) == list(range(5))
    with pytest.raises(FormatError, match="even without any event"):
        fit_largest(5, build, lambda items: False)
