"""factory-boy factories for users, with the helpers tests use to give them a role or a token."""

from __future__ import annotations

from typing import Any, Literal

import factory

from accounts.models import User
from accounts.roles import Role
from accounts.services import api_token_create, user_set_role

PASSWORD = "flood-risk-1"


class UserFactory(factory.django.DjangoModelFactory[User]):
    """A user who signs in with PASSWORD, in the analyst role (what the site's own sign-up
    gives); ``role=`` another Role, or ``role=False`` for a user in no role."""

    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"person{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def role(
        self: User, create: bool, extracted: Role | Literal[False] | None, **kwargs: Any
    ) -> None:
        if create and extracted is not False:
            user_set_role(user=self, role=extracted or Role.ANALYST)


def make_auditor(user: User) -> User:
    user_set_role(user=user, role=Role.AUDITOR)
    return User.objects.get(pk=user.pk)  # fresh instance: permission cache is per object


def token_for(user: User, *, days: int = 30) -> str:
    _, secret = api_token_create(user=user, name="tests", expires_in_days=days)
    return secret
