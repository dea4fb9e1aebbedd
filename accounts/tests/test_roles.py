"""Roles: the groups the migration creates, user_set_role, the role shown in admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from accounts.models import User
from accounts.roles import ADMIN_APPS, Role
from accounts.services import role_sync, user_create_first_admin, user_set_role
from accounts.tests.factories import UserFactory
from floodsite.exceptions import ApplicationError

pytestmark = pytest.mark.django_db


def perms_of(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


def fresh(user: User) -> User:
    """A new instance: Django caches permissions on the object."""
    return User.objects.get(pk=user.pk)


def test_migration_creates_the_three_roles_with_their_permissions():
    reader = {
        "predictions.add_prediction",
        "predictions.view_prediction",
        "predictions.add_outcome",
        "predictions.view_outcome",
        "predictions.view_site",
        "mlcore.view_modelversion",
    }
    # Analysts keep the shared site register; auditors only read it.
    assert perms_of("analyst") == reader | {"predictions.add_site", "predictions.change_site"}
    assert perms_of("auditor") == reader | {
        "predictions.view_all_predictions",
        "modelops.view_monitoringreport",
        "modelops.view_alert",
        "modelops.change_alert",
    }
    every = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Permission.objects.filter(content_type__app_label__in=ADMIN_APPS)
    }
    assert perms_of("admin") == every
    assert {"mlcore.change_modelversion", "auth.change_group", "accounts.add_user"} <= every


def test_only_admins_record_outcomes_on_other_users_predictions_or_run_checks():
    admin_only = {
        "predictions.add_outcome_any",
        "predictions.change_batchjob",
        "modelops.add_monitoringreport",
    }
    assert admin_only <= perms_of("admin")
    assert not admin_only & perms_of("auditor")
    assert not admin_only & perms_of("analyst")
    permission = Permission.objects.get(codename="add_outcome_any")
    assert permission.name == "Can record outcomes on any user's prediction"


def test_analyst_can_predict_but_not_see_everyone():
    user = user_set_role(user=UserFactory(), role=Role.ANALYST)
    user = fresh(user)
    assert user.has_perm("predictions.add_prediction")
    assert user.has_perm("predictions.add_outcome")
    assert not user.has_perm("predictions.view_all_predictions")
    assert not user.is_staff
    assert user.role == Role.ANALYST


def test_auditor_sees_every_prediction():
    user = fresh(user_set_role(user=UserFactory(), role=Role.AUDITOR))
    assert user.has_perm("predictions.view_all_predictions")
    assert user.has_perm("predictions.view_outcome")
    assert not user.has_perm("mlcore.change_modelversion")
    assert user.role == Role.AUDITOR


def test_admin_is_staff_with_every_app_permission_and_loses_it_when_demoted():
    user = fresh(user_set_role(user=UserFactory(), role=Role.ADMIN))
    assert user.is_staff
    assert user.has_perm("mlcore.change_modelversion")
    assert user.has_perm("accounts.change_user")

    user = fresh(user_set_role(user=user, role=Role.ANALYST))
    assert not user.is_staff
    assert not user.has_perm("mlcore.change_modelversion")
    assert list(user.groups.values_list("name", flat=True)) == ["analyst"]


def test_set_role_keeps_other_groups_and_a_superuser_stays_staff():
    other = Group.objects.create(name="flood-team-north")
    user = UserFactory()
    user.groups.add(other)
    user_set_role(user=user, role=Role.AUDITOR)
    assert set(user.groups.values_list("name", flat=True)) == {"auditor", "flood-team-north"}

    root = User.objects.create_superuser(username="root", password="x-flood-risk-9")
    user_set_role(user=root, role=Role.ANALYST)
    assert fresh(root).is_staff
    assert fresh(root).role == Role.ADMIN  # a superuser is an admin whatever its groups


def test_unknown_role_is_refused():
    with pytest.raises(ApplicationError) as info:
        user_set_role(user=UserFactory(), role="owner")
    assert "role" in info.value.fields


def test_user_without_a_role_has_none():
    assert UserFactory(role=False).role is None


def test_role_sync_restores_the_definitions():
    analyst = Group.objects.get(name="analyst")
    analyst.permissions.clear()
    Group.objects.filter(name="auditor").delete()
    Group.objects.get(name="admin").permissions.clear()
    role_sync()
    assert "predictions.add_prediction" in perms_of("analyst")
    assert "predictions.view_all_predictions" in perms_of("auditor")
    assert "predictions.add_outcome_any" in perms_of("admin")


def test_first_admin_gets_the_admin_role():
    user, _ = user_create_first_admin(username="admin")
    user = fresh(user)
    assert user.is_superuser and user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["admin"]


def test_user_admin_lists_the_role(client, admin_user):
    user_set_role(user=UserFactory(username="aud"), role=Role.AUDITOR)
    user_set_role(user=UserFactory(username="ana"), role=Role.ANALYST)
    client.force_login(admin_user)
    response = client.get("/admin/accounts/user/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "Auditor" in text and "Analyst" in text
    assert '<th scope="col" class="column-role">' in text


def test_user_admin_action_sets_a_role(client, admin_user):
    user = UserFactory()
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/user/",
        {"action": "make_auditor", "_selected_action": [user.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert fresh(user).role == Role.AUDITOR
