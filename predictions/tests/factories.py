"""factory-boy factories for users and API tokens used by the predictions tests."""

from __future__ import annotations

import factory

from accounts.models import User
from accounts.roles import Role
from accounts.services import api_token_create, user_set_role


class UserFactory(factory.django.DjangoModelFactory):
    """A user in the analyst role; ``role=`` another Role, or ``role=False`` for none."""

    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"analyst{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("flood-risk-1")

    @factory.post_generation
    def role(self, create: bool, extracted: Role | bool | None, **kwargs) -> None:
        if create and extracted is not False:
            user_set_role(user=self, role=extracted or Role.ANALYST)


def make_auditor(user: User) -> User:
    user_set_role(user=user, role=Role.AUDITOR)
    return User.objects.get(pk=user.pk)  # fresh instance: permission cache is per object


def token_for(user: User, *, days: int = 30) -> str:
    _, secret = api_token_create(user=user, name="tests", expires_in_days=days)
    return secret
