"""factory-boy factories for users and API tokens used by the predictions tests."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Permission

from accounts.models import User
from accounts.services import api_token_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"analyst{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("flood-risk-1")


def make_auditor(user: User) -> User:
    user.user_permissions.add(Permission.objects.get(codename="view_all_predictions"))
    return User.objects.get(pk=user.pk)  # fresh instance: permission cache is per object


def token_for(user: User, *, days: int = 30) -> str:
    _, secret = api_token_create(user=user, name="tests", expires_in_days=days)
    return secret
