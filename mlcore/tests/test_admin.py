"""Administrators promote and roll back versions from Django admin, giving a reason."""

from __future__ import annotations

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from mlcore.models import Stage, StageChange

CHANGELIST = "/admin/mlcore/modelversion/"


def test_promote_action_asks_for_a_reason_then_records_it(client, admin_user, register_model):
    old = register_model(promote=True)
    new = register_model()
    client.force_login(admin_user)
    form = {"action": "promote", ACTION_CHECKBOX_NAME: [new.pk]}

    page = client.post(CHANGELIST, form)
    assert page.status_code == 200
    assert b"reason" in page.content and str(new).encode() in page.content
    new.refresh_from_db()
    assert new.stage == Stage.CANDIDATE

    done = client.post(CHANGELIST, {**form, "apply": "1", "reason": "passes the gate"}, follow=True)
    assert f"Now in production: {new}." in done.content.decode()
    new.refresh_from_db()
    old.refresh_from_db()
    assert (new.stage, old.stage) == (Stage.PRODUCTION, Stage.ARCHIVED)
    change = StageChange.objects.filter(model_version=new).first()
    assert (change.changed_by, change.reason) == (admin_user, "passes the gate")


def test_rollback_action_restores_the_previous_version(client, admin_user, register_model):
    first = register_model(promote=True)
    second = register_model(promote=True)
    client.force_login(admin_user)
    form = {"action": "rollback", ACTION_CHECKBOX_NAME: [second.pk], "apply": "1"}
    done = client.post(CHANGELIST, {**form, "reason": "false alarms"}, follow=True)
    assert f"Now in production: {first}." in done.content.decode()
    first.refresh_from_db()
    assert first.stage == Stage.PRODUCTION


def test_promoting_a_tampered_version_shows_the_error_and_changes_nothing(
    client, admin_user, register_model
):
    current = register_model(promote=True)
    tampered = register_model()
    with open(tampered.artifact.path, "ab") as fh:
        fh.write(b"x")
    client.force_login(admin_user)
    form = {"action": "promote", ACTION_CHECKBOX_NAME: [tampered.pk], "apply": "1"}
    done = client.post(CHANGELIST, {**form, "reason": "try"}, follow=True)
    page = done.content.decode()
    assert '<li class="error">' in page
    assert f"{tampered}: artifact SHA-256".lower() in page.lower()
    current.refresh_from_db()
    assert current.stage == Stage.PRODUCTION


def test_versions_cannot_be_added_or_deleted_by_hand(client, admin_user):
    client.force_login(admin_user)
    assert client.get(CHANGELIST + "add/").status_code == 403
