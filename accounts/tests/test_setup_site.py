"""setup_site: the first administrator and the default model, and a second run changes nothing."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from mlcore.models import ModelVersion, Stage


@pytest.mark.slow
@pytest.mark.django_db
def test_setup_site_creates_the_admin_once_and_a_production_model():
    out = StringIO()
    call_command("setup_site", skip_migrate=True, rows=4_000, stdout=out)
    text = out.getvalue()
    password = re.search(r"Created administrator 'admin' with password: (\S+)", text).group(1)
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert ModelVersion.objects.get().stage == Stage.PRODUCTION

    again = StringIO()
    call_command("setup_site", skip_migrate=True, stdout=again)
    assert "password" not in again.getvalue()
    assert "Production model: flood-risk v1" in again.getvalue()
    assert User.objects.count() == 1
    assert ModelVersion.objects.count() == 1
    assert User.objects.get(username="admin").check_password(password)


def test_user_model_is_ours(django_user_model):
    assert django_user_model is User
    assert User._meta.db_table == "accounts_user"
