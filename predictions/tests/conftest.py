"""API clients authenticated with real knox tokens."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from predictions.tests.factories import UserFactory, token_for


@pytest.fixture
def analyst(db):
    return UserFactory(username="ana")


@pytest.fixture
def api(analyst):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(analyst)}")
    return client


@pytest.fixture
def typical_inputs(production_model):
    return {f["name"]: f["default"] for f in production_model.manifest["features"]}
