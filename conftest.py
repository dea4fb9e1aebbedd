"""Fixtures shared by every app's tests: isolated media, a trained model, signed-in users."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    """Each test writes model artifacts and uploads under its own folder, and starts with no
    model or token check cached by an earlier test."""
    from accounts import authentication
    from mlcore import selectors

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FLOODSITE_MODEL_DIR = settings.MEDIA_ROOT / "models"
    selectors._cache.clear()
    authentication._checked_tokens.clear()
    yield
    selectors._cache.clear()
    authentication._checked_tokens.clear()


@pytest.fixture(scope="session")
def trained_default():
    """One small model trained on the synthetic generator, shared by the session."""
    from mlcore.tests.factories import default_trained

    return default_trained()


@pytest.fixture
def register_model(db):
    """Register the session's model as a new version (production when asked). The training,
    ONNX conversion and parity check are done once a session; each call stores the result."""
    from mlcore.tests.factories import ModelVersionFactory

    def register(*, promote: bool = False, fmt: str = "joblib", notes: str = ""):
        return ModelVersionFactory(promote=promote, fmt=fmt, notes=notes)

    return register


@pytest.fixture
def production_model(register_model):
    return register_model(promote=True)


@pytest.fixture
def user(db, django_user_model):
    """A signed-up user in the analyst role."""
    from accounts.roles import Role
    from accounts.services import user_set_role

    user = django_user_model.objects.create_user(username="analyst", password="flood-risk-1")
    return user_set_role(user=user, role=Role.ANALYST)


@pytest.fixture
def admin_user(db, django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", password="flood-risk-admin-1", email="root@example.org"
    )


@pytest.fixture
def analyst(db):
    from accounts.tests.factories import UserFactory

    return UserFactory(username="ana")


@pytest.fixture
def api(analyst):
    """An API client with a real knox token of ``analyst``."""
    from rest_framework.test import APIClient

    from accounts.tests.factories import token_for

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(analyst)}")
    return client


@pytest.fixture
def typical_inputs(production_model):
    """The production model's default value for every feature."""
    return {f["name"]: f["default"] for f in production_model.manifest["features"]}


class ThrottleClock:
    """The throttle's clock, pinned mid-minute; ``advance`` moves it on."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def throttle_clock(monkeypatch):
    """Throttles count in fixed one-minute windows, so a client may send up to twice the rate
    across a boundary. A test that counts requests against a rate pins the throttle's clock in
    the middle of a window, or its requests could straddle one and all be let through."""
    import time

    from floodsite.rest import ScopedThrottle

    now = time.time()
    clock = ThrottleClock(now - now % 60 + 30)
    monkeypatch.setattr(ScopedThrottle, "timer", staticmethod(clock))
    return clock
