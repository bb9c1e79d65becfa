"""The Webhook's version history in status (issue 14, item 5): version from generation, the change description
between two specs with secrets hidden, the field manager of the last spec write, idempotent re-runs."""

from __future__ import annotations

from typing import Any

import pytest

from webhook_operator.api.history import (
    HIDDEN,
    MAX_CHANGES,
    MAX_VALUE_CHARS,
    change_description,
    last_spec_write,
    spec_history,
    version_of,
)

SPEC: dict[str, Any] = {
    "webhookType": "Generic",
    "batchSize": 10,
    "eventFilters": [{"eventType": "entityCreated"}],
    "webhookConfig": {"endpoint": "https://a.example.com/", "secretKey": "old-secret", "headers": {"X-Token": "t1"}},
}
NOW = 1_767_225_600.0


def managed(*entries: tuple[str, str, bool]) -> list[dict[str, Any]]:
    return [
        {"manager": m, "operation": "Update", "time": t, "fieldsV1": {"f:spec": {}} if spec else {"f:metadata": {}}}
        for m, t, spec in entries
    ]


@pytest.mark.parametrize(("generation", "version"), [(None, 0.1), (1, 0.1), (2, 0.2), (9, 0.9), (10, 1.0), (13, 1.3)])
def test_version_follows_generation_in_openmetadata_notation(generation: int | None, version: float) -> None:
    assert version_of(generation) == version


def test_change_description_lists_added_updated_deleted_by_path() -> None:
    new = {**SPEC, "batchSize": 1, "description": "now documented",
           "webhookConfig": {"endpoint": "https://b.example.com/", "secretKey": "old-secret"}}  # fmt: skip
    description = change_description(SPEC, new, 0.1)
    assert description == {
        "fieldsAdded": [{"name": "description", "newValue": '"now documented"'}],
        "fieldsUpdated": [
            {"name": "batchSize", "oldValue": "10", "newValue": "1"},
            {
                "name": "webhookConfig.endpoint",
                "oldValue": '"https://a.example.com/"',
                "newValue": '"https://b.example.com/"',
            },
        ],
        "fieldsDeleted": [{"name": "webhookConfig.headers.X-Token", "oldValue": HIDDEN}],
        "previousVersion": 0.1,
    }


def test_secret_values_are_never_shown() -> None:
    new = {**SPEC, "webhookConfig": {**SPEC["webhookConfig"], "secretKey": "new-secret", "headers": {"X-Token": "t2"}}}
    description = change_description(SPEC, new, 0.2)
    assert description is not None
    text = repr(description)
    for secret in ("old-secret", "new-secret", "t1", "t2"):
        assert secret not in text
    names = [change["name"] for change in description["fieldsUpdated"]]
    assert names == ["webhookConfig.headers.X-Token", "webhookConfig.secretKey"]  # the change is still visible


def test_lists_compare_whole_and_long_values_are_cut() -> None:
    new = {**SPEC, "eventFilters": [{"eventType": "entityDeleted"}], "description": "x" * 10_000}
    description = change_description(SPEC, new, None)
    assert description is not None
    assert description["fieldsUpdated"] == [{"name": "eventFilters", "oldValue": '[{"eventType":"entityCreated"}]',
                                             "newValue": '[{"eventType":"entityDeleted"}]'}]  # fmt: skip
    assert len(description["fieldsAdded"][0]["newValue"]) == MAX_VALUE_CHARS
    assert "previousVersion" not in description


def test_many_changes_are_counted_not_all_listed() -> None:
    new = {**SPEC, **{f"k{i:03}": i for i in range(MAX_CHANGES + 5)}}
    description = change_description(SPEC, new, 0.1)
    assert description is not None
    assert len(description["fieldsAdded"]) == MAX_CHANGES and description["omittedChanges"] == 5


def test_no_previous_spec_or_no_change_has_no_description() -> None:
    assert change_description(None, SPEC, None) is None
    assert change_description(SPEC, dict(SPEC), 0.1) is None


def test_updated_by_is_the_latest_spec_manager_not_status_or_metadata_writers() -> None:
    fields = managed(
        ("kubectl-client-side-apply", "2026-11-30T08:00:00Z", True),
        ("argocd-controller", "2026-11-30T09:00:00Z", True),
        ("kubectl-annotate", "2026-11-30T10:00:00Z", False),
    )
    fields.append({"manager": "webhook-operator", "operation": "Update", "subresource": "status",
                   "time": "2026-11-30T11:00:00Z", "fieldsV1": {"f:spec": {}}})  # fmt: skip
    assert last_spec_write(fields) == ("argocd-controller", "2026-11-30T09:00:00Z")
    assert last_spec_write(None) == (None, None)


def test_history_for_a_created_resource() -> None:
    meta = {"generation": 1, "managedFields": managed(("kubectl-client-side-apply", "2026-11-30T08:00:00Z", True))}
    history = spec_history(previous_spec=None, spec=SPEC, meta=meta, previous_status=None, now=NOW)
    assert history is not None
    assert history == {"version": 0.1, "updatedAt": "2026-11-30T08:00:00Z",
                       "updatedBy": "kubectl-client-side-apply", "changeDescription": None}  # fmt: skip


def test_history_after_an_edit_and_idempotent_rerun() -> None:
    new = {**SPEC, "batchSize": 5}
    meta = {"generation": 2, "managedFields": managed(("kubectl-client-side-apply", "2026-11-30T09:00:00Z", True))}
    first = spec_history(previous_spec=SPEC, spec=new, meta=meta, previous_status={"version": 0.1}, now=NOW)
    assert first is not None
    assert first["version"] == 0.2
    assert first["changeDescription"]["previousVersion"] == 0.1
    assert first["changeDescription"]["fieldsUpdated"] == [{"name": "batchSize", "oldValue": "10", "newValue": "5"}]
    # A re-run of the same generation (kopf retried, or resumed after a restart with no diff base) keeps it.
    assert spec_history(previous_spec=SPEC, spec=new, meta=meta, previous_status=first, now=NOW + 60) is None
    assert spec_history(previous_spec=None, spec=new, meta=meta, previous_status=first, now=NOW + 60) is None


def test_a_moved_generation_without_the_previous_spec_waits_for_the_update_handler() -> None:
    """At start-up every Webhook is registered from a listing (no previous spec) before kopf's update handler runs
    with the last handled spec; the listing must not overwrite status with an empty change description."""
    meta = {"generation": 4}
    assert spec_history(previous_spec=None, spec=SPEC, meta=meta, previous_status={"version": 0.2}, now=NOW) is None
    later = spec_history(previous_spec={**SPEC, "batchSize": 3}, spec=SPEC, meta=meta,
                         previous_status={"version": 0.2}, now=NOW)  # fmt: skip
    assert later is not None and later["version"] == 0.4
    assert later["changeDescription"]["previousVersion"] == 0.2


def test_history_without_managed_fields_uses_now() -> None:
    history = spec_history(previous_spec=None, spec=SPEC, meta={"generation": 3}, previous_status=None, now=NOW)
    assert history is not None
    assert history["updatedAt"] == "2026-01-01T00:00:00Z" and history["updatedBy"] is None
    assert history["version"] == 0.3


def test_credentials_removed_from_the_endpoint_do_not_live_on_in_status() -> None:
    """Issue 13 review: moving a password out of the endpoint URL left it in changeDescription.oldValue."""
    old = {
        **SPEC,
        "webhookConfig": {"endpoint": "https://alice:S3cr3tPassw0rd@hooks.example.com:8443/in?token=tok_LIVE"},
    }
    new = {**SPEC, "webhookConfig": {"endpoint": "https://hooks.example.com/in"}}
    description = change_description(old, new, 0.1)
    assert description is not None
    text = repr(description)
    assert "S3cr3tPassw0rd" not in text and "alice" not in text and "tok_LIVE" not in text
    assert description["fieldsUpdated"][0] == {
        "name": "webhookConfig.endpoint",
        "oldValue": '"https://hooks.example.com:8443/in?(hidden)"',
        "newValue": '"https://hooks.example.com/in"',
    }


def test_only_allowlisted_fields_show_values() -> None:
    template = "Authorization: Bearer tpl-secret"
    old = {**SPEC, "extension": {"apiKey": "ext-secret"}, "webhookType": "Custom",
           "webhookConfig": {**SPEC["webhookConfig"], "payloadTemplate": template}}  # fmt: skip
    new = {**SPEC, "extension": {}, "webhookType": "Generic",
           "webhookConfig": {**SPEC["webhookConfig"], "secretKeyRef": {"name": "hmac", "key": "k"}}}  # fmt: skip
    description = change_description(old, new, 0.1)
    assert description is not None
    text = repr(description)
    for secret in ("ext-secret", "tpl-secret", "old-secret", "t1"):
        assert secret not in text
    assert {"name": "webhookType", "oldValue": '"Custom"', "newValue": '"Generic"'} in description["fieldsUpdated"]
    assert {"name": "webhookConfig.secretKeyRef.name", "newValue": '"hmac"'} in description["fieldsAdded"]
    assert {"name": "extension.apiKey", "oldValue": HIDDEN} in description["fieldsDeleted"]
    assert {"name": "webhookConfig.payloadTemplate", "oldValue": HIDDEN} in description["fieldsDeleted"]
