"""The prediction fast path refuses what the rest of the site refuses: bad hosts, banned agents.

The fast path is a view behind CommonMiddleware, which is where Django checks the Host header
against ALLOWED_HOSTS and the User-Agent against DISALLOWED_USER_AGENTS. These tests send the
same request to the fast path and to the DRF view (an Idempotency-Key sends a request to DRF)
and expect the same refusal, with nothing written.
"""

from __future__ import annotations

import re

import pytest

from predictions.models import Prediction

URL = "/api/v1/predictions/"


def both_paths(api, body, **extra):
    """The same POST answered by the fast path and by the full middleware chain."""
    fast = api.post(URL, body, format="json", **extra)
    full = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="full-path-1", **extra)
    return fast, full


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "bad host"])
def test_a_host_outside_allowed_hosts_is_a_400_with_no_audit_row(api, typical_inputs, host):
    fast, full = both_paths(api, {"inputs": typical_inputs}, HTTP_HOST=host)
    assert full.status_code == 400
    assert fast.status_code == 400, fast.content[:200]
    assert fast.content == full.content
    assert not Prediction.objects.exists()


def test_an_allowed_host_is_answered(api, typical_inputs, settings):
    settings.ALLOWED_HOSTS = ["floodsite.example.org"]
    response = api.post(
        URL, {"inputs": typical_inputs}, format="json", HTTP_HOST="floodsite.example.org"
    )
    assert response.status_code == 201
    assert Prediction.objects.count() == 1


def test_a_disallowed_user_agent_is_a_403_with_no_audit_row(api, typical_inputs, settings):
    settings.DISALLOWED_USER_AGENTS = [re.compile(r"^FloodScraper/")]
    fast, full = both_paths(api, {"inputs": typical_inputs}, HTTP_USER_AGENT="FloodScraper/2.1")
    assert full.status_code == 403
    assert fast.status_code == 403, fast.content[:200]
    assert fast.json()["error"] == full.json()["error"]  # each with its own request id
    assert not Prediction.objects.exists()
    # Another agent is answered as before.
    ok = api.post(URL, {"inputs": typical_inputs}, format="json", HTTP_USER_AGENT="edge/1.0")
    assert ok.status_code == 201


def test_with_prepend_www_a_bare_host_is_redirected_and_scores_nothing(
    api, typical_inputs, settings
):
    settings.PREPEND_WWW = True
    settings.ALLOWED_HOSTS = ["floodsite.example.org", "www.floodsite.example.org"]
    fast, full = both_paths(api, {"inputs": typical_inputs}, HTTP_HOST="floodsite.example.org")
    assert fast.status_code == full.status_code == 301
    assert fast["Location"] == full["Location"]
    assert not Prediction.objects.exists()
