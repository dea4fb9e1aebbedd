"""Fixtures for the accounts tests."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The token form's double-submit guard and axes' caches live in the cache.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def eager_tasks(monkeypatch):
    """Run queued tasks in this process, as the worker would, so the mail they send is read."""
    from floodsite.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)
