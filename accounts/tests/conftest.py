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
