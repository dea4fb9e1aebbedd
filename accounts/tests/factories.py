"""factory-boy factories for accounts tests: users (with a known password) and API tokens."""

from __future__ import annotations

import factory

from accounts.models import User

PASSWORD = "flood-risk-1"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"person{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)
