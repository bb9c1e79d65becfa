"""Routing filters against the 40 real-shaped sample events: one positive and one negative case per rule of
docs/filters.md, the seed's six example Webhooks with explicit expected-match tables, and compile-time errors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from support.events import event, event_files, raw
from support.webhooks import example_webhooks
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import EventFilter, WebhookSpec
from webhook_operator.routing import CompiledFilters, EventView, FilterError, matches, split_fqn, view_of

NUMBERS = [int(path.name[:2]) for path in event_files()]
EVENTS = {number: event(number) for number in NUMBERS}
CREATED = {1, 2, 3, 4, 5, 23, 25, 26}
UPDATED = {6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 24, 27, 28, 33, 34, 35, 36, 37, 38, 39}
SOFT_DELETED = {29, 40}
DELETED = {31, 32}
UNKNOWN_TYPES = {17, 18, 30}  # entityFieldsChanged, entityNoChange, entityRestored


def ef(event_type: str, entities: list[str] | None = None, **items: list[str]) -> EventFilter:
    data: dict[str, Any] = {"eventType": event_type, **items}
    if entities is not None:
        data["entities"] = entities
    return EventFilter.model_validate(data)


def hits(*filters: EventFilter) -> set[int]:
    compiled = CompiledFilters.compile(filters)
    return {number for number, sample in EVENTS.items() if compiled.matches(sample)}


def updated(**items: list[str]) -> set[int]:
    """Sample updates (any entity type) that pass these include/exclude items."""
    return hits(ef("entityUpdated", **items))


def variant(number: int, mutate: Callable[[dict[str, Any]], None]) -> ChangeEvent:
    """A sample event edited in place (as parsed JSON) before validation, for shapes the samples lack."""
    data = copy.deepcopy(raw(number))
    mutate(data)
    return ChangeEvent.model_validate(data)


def one(sample: ChangeEvent, event_type: str = "entityUpdated", **items: list[str]) -> bool:
    return CompiledFilters.compile([ef(event_type, **items)]).matches(sample)


def test_sample_set_is_complete() -> None:
    assert list(range(1, 41)) == NUMBERS
    by_type = {n for n, e in EVENTS.items() if e.event_type == "entityUpdated"}
    assert by_type == UPDATED


# -- the seed's example Webhooks ----------------------------------------------------------------------------------

EXPECTED_EXAMPLES = {
    # created tables; updated tables whose tags/owners/description changed (column descriptions are `columns`)
    "slack-table-notifications": {1, 23, 25, 26, 6, 7, 8, 9, 10, 24, 27, 28},
    "quality-test-webhook": {19, 20, 34},
    "custom-app-integration": CREATED | UPDATED | DELETED,
    "msteams-alerts": {21, 31},
    "owner-follower-notifications": {6, 8, 9, 10, 24, 27, 28},
    # created/updated tables and dashboards with Sales among their domains, or Sales added by the change (13)
    "sales-domain-webhook": {2, 23, 26, 13, 14, 15, 16, 24, 27, 28, 35, 36, 38},
}


@pytest.mark.parametrize("webhook", example_webhooks(), ids=lambda w: w["metadata"]["name"])
def test_example_webhooks_match_expected_events(webhook: dict[str, Any]) -> None:
    spec = WebhookSpec.model_validate(webhook["spec"])
    compiled = CompiledFilters.compile(spec.event_filters)
    got = {number for number, sample in EVENTS.items() if compiled.matches(sample)}
    assert got == EXPECTED_EXAMPLES[webhook["metadata"]["name"]]


def test_every_example_is_covered() -> None:
    assert {w["metadata"]["name"] for w in example_webhooks()} == set(EXPECTED_EXAMPLES)


# -- eventType and entities ---------------------------------------------------------------------------------------


def test_any_filter_matching_is_enough() -> None:
    assert hits(ef("entityCreated", ["topic"]), ef("entityDeleted", ["databaseSchema"])) == {4, 32}
    assert hits(ef("entityCreated", ["topic"])) == {4}


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("entityCreated", CREATED),
        ("entityUpdated", UPDATED),
        ("entitySoftDeleted", SOFT_DELETED),
        ("entityDeleted", DELETED),
    ],
)
def test_event_type_must_equal(event_type: str, expected: set[int]) -> None:
    assert hits(ef(event_type)) == expected


def test_unknown_event_types_match_no_filter() -> None:
    everything = [ef(t, ["*"]) for t in ("entityCreated", "entityUpdated", "entitySoftDeleted", "entityDeleted")]
    assert hits(*everything) == set(NUMBERS) - UNKNOWN_TYPES
    assert {EVENTS[n].event_type for n in UNKNOWN_TYPES} == {"entityFieldsChanged", "entityNoChange", "entityRestored"}


def test_entities_list_restricts_entity_type() -> None:
    assert hits(ef("entityCreated", ["dashboard", "pipeline"])) == {2, 3}
    assert hits(ef("entityCreated", ["chart"])) == set()


def test_entities_star_or_omitted_means_all() -> None:
    assert hits(ef("entityCreated", ["*"])) == CREATED
    assert hits(ef("entityCreated", ["table", "*"])) == CREATED
    assert hits(ef("entityCreated")) == CREATED


def test_entity_types_are_case_sensitive() -> None:
    assert hits(ef("entityCreated", ["glossaryTerm"])) == {5}
    assert hits(ef("entityCreated", ["GlossaryTerm", "glossaryterm"])) == set()
    assert updated(entities=["testCase"]) == {19, 20, 34}
    assert updated(entities=["testcase"]) == set()


# -- changed-field names ------------------------------------------------------------------------------------------


def test_field_name_include_needs_a_listed_field_changed() -> None:
    assert updated(include=["description"]) == {6, 24, 27, 33}
    assert 7 not in updated(include=["description"])  # owners change only


def test_changed_fields_are_the_union_of_added_updated_deleted() -> None:
    assert 8 in updated(include=["tags"])  # fieldsAdded
    assert 9 in updated(include=["tags"])  # fieldsDeleted
    assert 6 in updated(include=["description"])  # fieldsUpdated
    assert 27 in updated(include=["description"])  # fieldsAdded (first description)
    assert updated(include=["tags"]) == {8, 9, 10, 28}


def test_nested_field_names_match_on_first_segment() -> None:
    assert updated(include=["columns"]) == {11, 12, 16, 24, 27}
    assert 11 not in updated(include=["description"])  # columns.<c>.description is not `description`


def test_dotted_include_matches_on_segment_boundaries() -> None:
    assert updated(include=["columns.customer_email.description"]) == {11}
    assert updated(include=["columns.customer_email"]) == {11}
    assert updated(include=["columns.customer"]) == set()  # a prefix, but not on a segment boundary
    assert updated(include=["columns.billing_address"]) == {12}
    assert updated(include=["columns.utm.source"]) == {27}  # unquoted dotted column name
    assert updated(include=["rules.FinanceStewardEdit.operations"]) == {21}
    assert updated(include=["testCaseResult"]) == {19, 20, 34}
    assert updated(include=["testCaseResult.testCaseStatus"]) == set()


def test_field_name_globs() -> None:
    assert updated(include=["columns.*.tags"]) == {12}  # three-level name; * spans dots
    assert updated(include=["columns.*.description"]) == {11, 24, 27}
    assert updated(include=["extension.*"]) == {35}
    assert updated(include=["columns.*.displayName"]) == set()


@pytest.mark.parametrize(
    ("seed", "real", "expected"),
    [("owner", "owners", {7, 28, 36}), ("domain", "domains", {13, 39}), ("follower", "followers", {15, 38})],
)
def test_singular_aliases(seed: str, real: str, expected: set[int]) -> None:
    assert updated(include=[seed]) == expected
    assert updated(include=[real]) == expected


def test_alias_applies_to_the_event_side_too() -> None:
    def rename(data: dict[str, Any]) -> None:
        for change in data["changeDescription"]["fieldsAdded"]:
            change["name"] = "owner"

    old_server = variant(28, rename)
    assert one(old_server, include=["owners"])
    assert one(old_server, include=["owner"])
    assert not one(old_server, include=["description"])


def test_tier_field_is_a_tags_change_touching_a_tier_tag() -> None:
    assert updated(include=["tier"]) == {10, 28}  # Tier1 -> Tier2; Tier3 added
    assert 8 not in updated(include=["tier"])  # tags added, none of them a tier
    assert 9 not in updated(include=["tier"])  # PII.Sensitive removed


def test_tier_field_reads_array_values_too() -> None:
    def as_array(data: dict[str, Any]) -> None:
        data["changeDescription"]["fieldsAdded"][0]["newValue"] = [{"tagFQN": "Tier.Tier1", "source": "Classification"}]

    assert one(variant(8, as_array), include=["tier"])
    assert not one(event(8), include=["tier"])


@pytest.mark.parametrize("number", sorted(CREATED))
def test_field_names_do_not_restrict_created(number: int) -> None:
    assert one(EVENTS[number], "entityCreated", include=["description"])
    assert one(EVENTS[number], "entityCreated", exclude=["description"])


def test_field_names_ignore_the_stale_change_of_a_hard_delete() -> None:
    # File 31 carries the previous change (deleted true -> false): it must neither satisfy nor fail field names.
    assert EVENTS[31].changed_fields() == ["deleted"]
    assert hits(ef("entityDeleted", include=["tags"])) == DELETED
    assert hits(ef("entityDeleted", exclude=["deleted"])) == DELETED


def test_field_names_apply_to_soft_deletes() -> None:
    assert hits(ef("entitySoftDeleted", include=["deleted"])) == SOFT_DELETED
    assert hits(ef("entitySoftDeleted", include=["tags"])) == set()


def test_update_without_change_description_fails_field_includes() -> None:
    bare = variant(6, lambda data: data.pop("changeDescription"))
    assert not one(bare, include=["description"])
    assert one(bare)  # and passes a filter without field names


# -- qualifiers ---------------------------------------------------------------------------------------------------


def test_domain_matches_current_domains_by_name_fqn_display_name_case_insensitively() -> None:
    assert hits(ef("entityCreated", include=["domain:Sales"])) == {2, 23, 26}
    assert hits(ef("entityCreated", include=["domain:sales"])) == {2, 23, 26}
    assert hits(ef("entityCreated", include=["domain:Marketing"])) == {4, 25}
    assert hits(ef("entityCreated", include=["domain:Operations"])) == set()


def test_domain_matches_the_seed_single_reference_and_display_name() -> None:
    def single(data: dict[str, Any]) -> None:
        data["entity"].pop("domains")
        data["entity"]["domain"] = {"type": "domain", "name": "sales_eu", "displayName": "Sales Europe"}
        data.pop("domains")

    seed_shape = variant(1, single)
    assert one(seed_shape, "entityCreated", include=["domain:Sales Europe"])
    assert one(seed_shape, "entityCreated", include=["domain:SALES_EU"])
    assert not one(seed_shape, "entityCreated", include=["domain:Finance"])


def test_domain_matches_event_level_uuid() -> None:
    sales = "7c37b98a-ea31-59c0-a524-7e2d8c9e7c02"
    assert hits(ef("entityCreated", include=[f"domain:{sales}"])) == {2, 23, 26}


def test_domain_move_matches_old_and_new_domain() -> None:
    # File 39: Marketing -> Engineering. The entity and event-level UUIDs only show Engineering.
    assert one(EVENTS[39], include=["domain:Marketing"])
    assert one(EVENTS[39], include=["domain:Engineering"])
    assert not one(EVENTS[39], include=["domain:Sales"])
    assert not one(EVENTS[40], "entitySoftDeleted", include=["domain:Marketing"])  # after the move


def test_domain_added_by_the_change_matches() -> None:
    assert 13 in updated(include=["domain:Sales"])
    assert 12 not in updated(include=["domain:Sales"])  # the same table before Sales was added


def test_owner_matches_owners_list_and_removed_owner() -> None:
    assert hits(ef("entityCreated", include=["owner:priya.shah"])) == {2}
    assert hits(ef("entityCreated", include=["owner:Ana Ruiz"])) == {1}  # displayName
    assert hits(ef("entityCreated", include=["owner:financedatateam"])) == {2, 5}
    assert 36 in updated(include=["owner:priya.shah"])  # removed by this change
    assert 33 not in updated(include=["owner:priya.shah"])  # she only edited it (userName)


def test_owner_matches_the_seed_single_reference() -> None:
    def single(data: dict[str, Any]) -> None:
        data["entity"]["owner"] = data["entity"].pop("owners")[0]

    assert one(variant(3, single), "entityCreated", include=["owner:DataPlatform"])
    assert not one(variant(3, single), "entityCreated", include=["owner:ana.ruiz"])


def test_follower_matches_current_and_removed_followers() -> None:
    assert updated(include=["follower:kenji.tanaka"]) == {15, 16, 38}  # 38 unfollows
    assert updated(include=["follower:marco.rossi"]) == {35, 36}
    assert updated(include=["follower:nobody"]) == set()


def test_user_matches_user_name_case_insensitively() -> None:
    assert updated(include=["user:Kenji.Tanaka"]) == {15, 22, 24, 38}
    assert 11 in updated(include=["user:ana.ruiz"])
    assert 11 not in updated(include=["user:metadata-copilot-bot"])  # impersonatedBy is not the user


def test_tag_matches_entity_and_column_tags() -> None:
    assert hits(ef("entityCreated", include=["tag:PII.Sensitive"])) == {1, 23, 25, 26}  # 25, 26: column tags only
    assert hits(ef("entityCreated", include=["tag:Tier.Tier2"])) == {2, 3, 23}
    assert hits(ef("entityCreated", include=["tag:Finance.Confidential"])) == set()


def test_tag_matches_glossary_terms_and_globs() -> None:
    assert 8 in updated(include=["tag:BusinessGlossary.AnnualRecurringRevenue"])
    assert hits(ef("entityCreated", include=["tag:PII.*"])) == {1, 23, 25, 26}
    assert hits(ef("entityCreated", include=["tag:Tier.Tier[12]"])) == {1, 2, 3, 23}


def test_tag_values_are_case_sensitive() -> None:
    assert hits(ef("entityCreated", include=["tag:pii.sensitive"])) == set()


def test_tag_removed_by_the_change_still_matches() -> None:
    # File 10 removes Tier.Tier1; the entity now carries Tier.Tier2 only, so only the change mentions Tier1.
    assert one(EVENTS[10], include=["tag:Tier.Tier1"])
    assert not one(EVENTS[11], include=["tag:Tier.Tier1"])

    def no_entity(data: dict[str, Any]) -> None:
        data.pop("entity")

    bare_removal = variant(9, no_entity)  # PII.Sensitive removed; without the entity only the change tells
    assert one(bare_removal, include=["tag:PII.Sensitive"])
    assert not one(bare_removal, include=["tag:PersonalData.Personal"])


def test_tag_matches_nested_struct_column_tag_added() -> None:
    def drop_columns(data: dict[str, Any]) -> None:
        data["entity"].pop("columns")
        data["entity"]["tags"] = []

    assert one(variant(12, drop_columns), include=["tag:PII.Sensitive"])
    assert not one(variant(12, drop_columns), include=["tag:PersonalData.Personal"])


def test_tier_qualifier() -> None:
    assert hits(ef("entityCreated", include=["tier:Tier1"])) == {1}
    assert hits(ef("entityCreated", include=["tier:Tier.Tier2"])) == {2, 3, 23}
    assert one(EVENTS[10], include=["tier:Tier1"]) and one(EVENTS[10], include=["tier:Tier2"])  # moved
    assert hits(ef("entityCreated", include=["tier:Tier5"])) == set()


def test_tier_qualifier_ignores_column_tags() -> None:
    def column_tier(data: dict[str, Any]) -> None:
        data["entity"]["tags"] = []
        data["entity"]["columns"][0]["tags"] = [{"tagFQN": "Tier.Tier1"}]

    assert not one(variant(1, column_tier), "entityCreated", include=["tier:Tier1"])
    assert one(variant(1, column_tier), "entityCreated", include=["tag:Tier.Tier1"])


def test_status_qualifier_reads_test_case_results() -> None:
    assert updated(include=["status:Failed"]) == {19}
    assert updated(include=["status:success"]) == {20}
    assert updated(include=["status:Aborted"]) == {34}  # entity delivered as a JSON string
    assert updated(include=["status:Queued"]) == set()


def test_status_qualifier_reads_the_change_when_the_entity_is_missing() -> None:
    bare = variant(19, lambda data: data.pop("entity"))
    assert one(bare, include=["status:Failed"])
    assert not one(bare, include=["status:Success"])


def test_service_qualifier() -> None:
    assert hits(ef("entityCreated", include=["service:looker_bi"])) == {2}
    assert updated(include=["service:postgres_crm"]) == {19, 20, 24, 27, 28}  # 19/20: testCase FQN, no service ref
    assert hits(ef("entityCreated", include=["service:kafka_events"])) == {4}
    assert hits(ef("entityCreated", include=["service:BusinessGlossary"])) == set()  # glossary FQN is not a service
    assert hits(ef("entityCreated", include=["service:Looker_BI"])) == set()  # exact


def test_service_fallback_splits_quoted_fqns() -> None:
    def quoted_service(data: dict[str, Any]) -> None:
        data.pop("entity")
        data["entityFullyQualifiedName"] = '"kafka.eu".orders'

    bare = variant(4, quoted_service)
    assert one(bare, "entityCreated", include=["service:kafka.eu"])
    assert not one(bare, "entityCreated", include=["service:kafka"])
    assert not one(bare, "entityCreated", include=['service:"kafka'])


def test_fqn_qualifier_exact_and_glob() -> None:
    fct = "bigquery_analytics.acme_prod.finance_mart.fct_invoices"
    assert hits(ef("entityCreated", include=[f"fqn:{fct}"])) == {1}
    assert hits(ef("entityCreated", include=["fqn:bigquery_analytics.*"])) == {1, 25}
    assert hits(ef("entityCreated", include=['fqn:kafka_events."web.clickstream.v2"'])) == {4}
    assert hits(ef("entityCreated", include=["fqn:kafka_events.web.clickstream.v2"])) == set()
    assert hits(ef("entityCreated", include=["fqn:*.顧客マスタ"])) == {23}
    assert hits(ef("entityCreated", include=[f"fqn:{fct.upper()}"])) == set()


def test_fqn_falls_back_to_the_event_field_without_entity() -> None:
    bare = variant(33, lambda data: data.pop("entity"))
    assert one(bare, include=["fqn:airflow_etl.*"])
    assert one(bare, include=["service:airflow_etl"])  # pipeline: service-rooted FQN
    assert not one(bare, include=["domain:Engineering"])  # no entity, no event-level domains in this shape
    assert not one(bare, include=["owner:DataPlatform"])


def test_same_key_or_different_keys_and() -> None:
    assert hits(ef("entityCreated", include=["domain:Sales", "domain:Marketing"])) == {2, 4, 23, 25, 26}
    assert hits(ef("entityCreated", include=["domain:Sales", "owner:kenji.tanaka"])) == {23}
    assert hits(ef("entityCreated", include=["domain:Sales", "domain:Marketing", "tag:Tier.Tier3"])) == {25}


def test_field_names_or_among_themselves_and_with_qualifiers() -> None:
    assert updated(include=["owners", "tags"]) == {7, 8, 9, 10, 28, 36}
    assert updated(include=["owners", "tags", "domain:Sales"]) == {28, 36}
    assert updated(include=["owners", "tags", "domain:Sales", "user:priya.shah"]) == {28, 36}
    assert updated(include=["owners", "tags", "domain:Sales", "user:admin"]) == set()


def test_doc_example_combining_items() -> None:
    include = ["owners", "tags", "domain:Sales", "domain:Finance", "user:priya.shah"]
    assert updated(include=include) == {10, 28, 36}


def test_domain_glob_matches_sub_domains() -> None:
    def sub_domain(data: dict[str, Any]) -> None:
        data["entity"]["domains"] = [{"type": "domain", "name": "EMEA", "fullyQualifiedName": "Sales.EMEA"}]
        data.pop("domains")

    emea = variant(1, sub_domain)
    assert one(emea, "entityCreated", include=["domain:Sales.*"])
    assert one(emea, "entityCreated", include=["domain:emea"])
    assert not one(emea, "entityCreated", include=["domain:Sales"])


def test_malformed_change_values_are_ignored() -> None:
    def garble(data: dict[str, Any]) -> None:
        owners, tags = data["changeDescription"]["fieldsAdded"]
        owners["newValue"], tags["newValue"] = "[{oops", "not json"

    garbled = variant(28, garble)  # owners and tags changes, both values now unreadable
    assert one(garbled, include=["tags"])  # the field still changed
    assert not one(garbled, include=["tier"])  # but its tags cannot be read
    assert one(garbled, include=["owner:SalesOps"])  # current owners still count


# -- exclude ------------------------------------------------------------------------------------------------------

NOISE = ["followers", "usageSummary", "votes"]


def test_exclude_drops_updates_whose_changes_are_all_excluded() -> None:
    assert updated(exclude=NOISE) == UPDATED - {14, 15, 22, 38}


def test_exclude_keeps_updates_with_a_change_not_excluded() -> None:
    def add_follower(data: dict[str, Any]) -> None:
        data["changeDescription"]["fieldsAdded"] = [{"name": "followers", "newValue": [{"type": "user", "name": "x"}]}]

    mixed = variant(6, add_follower)
    assert mixed.changed_fields() == ["followers", "description"]
    assert one(mixed, exclude=NOISE)
    assert not one(mixed, exclude=[*NOISE, "description"])


def test_exclude_covers_nested_names_and_aliases() -> None:
    assert 11 not in updated(exclude=["columns"])
    assert 24 in updated(exclude=["columns"])  # description changed too
    assert 36 not in updated(exclude=["owner"])


def test_exclude_tier_only_covers_tier_only_tag_changes() -> None:
    assert 10 not in updated(exclude=["tier"])  # Tier1 -> Tier2, nothing else
    assert 28 in updated(exclude=["tier"])  # owners changed too
    assert 8 in updated(exclude=["tier"])  # non-tier tags

    def tier_and_pii(data: dict[str, Any]) -> None:
        data["changeDescription"]["fieldsAdded"][0]["newValue"] = '[{"tagFQN":"Tier.Tier1"},{"tagFQN":"PII.Sensitive"}]'

    assert one(variant(8, tier_and_pii), exclude=["tier"])


def test_exclude_qualifier_drops_the_event() -> None:
    assert updated(exclude=["user:ingestion-bot"]) == UPDATED - {14, 16, 19, 20, 34}
    assert hits(ef("entityCreated", exclude=["tag:PII.*"])) == {2, 3, 4, 5}
    assert hits(ef("entityCreated", ["table"], exclude=["tag:Nope.*"])) == {1, 23, 25, 26}


def test_exclude_qualifiers_of_different_keys_each_drop_on_their_own() -> None:
    """Rule 19: exclude qualifiers are not grouped like include's (different keys AND-ed): one match is enough."""
    by_bot = {14, 16, 19, 20, 34}
    in_sales = {13, 14, 15, 16, 19, 20, 24, 27, 28, 35, 36, 38}
    assert updated(exclude=["user:ingestion-bot", "domain:Nope"]) == UPDATED - by_bot  # only the first key matches
    assert updated(exclude=["domain:Nope", "user:ingestion-bot"]) == UPDATED - by_bot
    assert hits(ef("entityCreated", exclude=["user:nobody", "tag:PII.*"])) == {2, 3, 4, 5}  # only the second
    assert updated(exclude=["user:ingestion-bot", "domain:Sales"]) == UPDATED - by_bot - in_sales  # either drops
    assert not one(EVENTS[16], exclude=["owner:nobody", "user:ingestion-bot", "tag:Nope"])


def test_include_and_exclude_together() -> None:
    assert updated(include=["domain:Sales"], exclude=NOISE) == {13, 16, 19, 20, 24, 27, 28, 35, 36}
    assert updated(include=["testCaseResult"], exclude=["status:Success"]) == {19, 34}


# -- compile errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            [ef("entityCreated"), ef("entityUpdated", include=["tags", "color:red"])],
            "eventFilters[1].include[1]: unknown qualifier key 'color'",
        ),
        (
            [ef("entityUpdated", include=["domain:"])],
            "eventFilters[0].include[0]: qualifier 'domain' has an empty value",
        ),
        ([ef("entityUpdated", exclude=["tag:  "])], "eventFilters[0].exclude[0]: qualifier 'tag' has an empty value"),
        ([ef("entityUpdated", include=["  "])], "eventFilters[0].include[0]: empty item"),
        ([ef("entityUpdated", include=["columns..x"])], "eventFilters[0].include[0]: field name 'columns..x'"),
        ([ef("entityUpdated", [])], "eventFilters[0].entities: empty list matches nothing"),
        ([ef("entityUpdated", ["table", ""])], "eventFilters[0].entities[1]: empty entity type"),
        ([ef("entityCreated", include=["entityType:table"])], "entity types go in 'entities'"),
    ],
)
def test_compile_errors_name_the_bad_item(filters: list[EventFilter], message: str) -> None:
    with pytest.raises(FilterError) as info:
        CompiledFilters.compile(filters)
    assert str(info.value).startswith(message) or message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_key_error_lists_known_keys() -> None:
    with pytest.raises(
        FilterError, match=r"known keys: domain, follower, fqn, owner, service, status, tag, tier, user"
    ):
        CompiledFilters.compile([ef("entityUpdated", include=["Domain:Sales"])])


def test_field_names_on_created_filters_still_validate_qualifiers() -> None:
    with pytest.raises(FilterError, match=r"eventFilters\[0\]\.include\[1\]: unknown qualifier key 'colour'"):
        CompiledFilters.compile([ef("entityCreated", include=["tags", "colour:red"])])


def test_whitespace_around_qualifier_parts_is_ignored() -> None:
    assert hits(ef("entityCreated", include=[" domain : Sales "])) == {2, 23, 26}


# -- API details --------------------------------------------------------------------------------------------------


def test_convenience_matches_agrees_with_compiled() -> None:
    filters = [ef("entityUpdated", ["table"], include=["tags", "domain:Sales"])]
    compiled = CompiledFilters.compile(filters)
    assert [matches(e, filters) for e in EVENTS.values()] == [compiled.matches(e) for e in EVENTS.values()]
    assert matches(EVENTS[28], filters) and not matches(EVENTS[8], filters)


def test_no_filters_match_nothing() -> None:
    assert not CompiledFilters.compile([]).matches(EVENTS[1])


def test_event_view_is_accepted_and_reused() -> None:
    compiled = CompiledFilters.compile([ef("entityUpdated", include=["tag:PII.Sensitive"])])
    view = EventView(EVENTS[9])
    assert compiled.matches(view)
    assert view_of(EVENTS[9]) is view_of(EVENTS[9])
    assert view_of(EVENTS[9]) is not view_of(EVENTS[10])


def test_entity_as_json_string_is_routed_like_an_object() -> None:
    assert isinstance(raw(40)["entity"], str)
    assert hits(ef("entitySoftDeleted", ["topic"], include=["domain:Engineering", "owner:MarketingAnalytics"])) == {40}


@pytest.mark.parametrize(
    ("fqn", "parts"),
    [
        ('kafka_events."web.clickstream.v2"', ["kafka_events", "web.clickstream.v2"]),
        (
            "bigquery_analytics.acme_prod.finance_mart.fct_invoices",
            ["bigquery_analytics", "acme_prod", "finance_mart", "fct_invoices"],
        ),
        (
            'postgres_crm.crm.public.leads_staging."utm.source"',
            ["postgres_crm", "crm", "public", "leads_staging", "utm.source"],
        ),
        ("postgres_crm.crm.sales_jp.顧客マスタ", ["postgres_crm", "crm", "sales_jp", "顧客マスタ"]),
        ("FinanceDataStewardPolicy", ["FinanceDataStewardPolicy"]),
    ],
)
def test_split_fqn_honours_quotes(fqn: str, parts: list[str]) -> None:
    assert split_fqn(fqn) == parts
