"""Bench-only settings: the product's settings plus the naive reference endpoint's URL.

Only `make bench` uses this module (DJANGO_SETTINGS_MODULE=bench.settings), so the product's
URLs stay exactly as shipped.
"""

from floodsite.settings import *  # noqa: F403 (the product's settings, unchanged)

ROOT_URLCONF = "bench.urls"
