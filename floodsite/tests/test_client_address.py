"""Whose address a request comes from: TRUSTED_PROXY_COUNT decides it for the throttles,
django-axes, the audit row's client_ip and /metrics alike.

With no trusted proxy, X-Forwarded-For is the client's own text and counts for nothing; behind
nginx (one proxy) the address nginx appended, the last in the header, is the client's.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from predictions.models import Prediction

TOKENS = "/api/v1/auth/tokens/"
PREDICTIONS = "/api/v1/predictions/"
PASSWORD = "flood-risk-1"
# What nginx appends ($proxy_add_x_forwarded_for) for two different clients.
CLIENT_A = "198.51.100.7"
CLIENT_B = "198.51.100.8"
NGINX = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture(autouse=True)
def _fresh_counts():
    """Throttle counts live in the shared cache; each test starts from none."""
    cache.clear()
    yield
    cache.clear()


def wrong_password(username: str, **headers) -> tuple[int, str]:
    response = APIClient().post(
        TOKENS, {"username": username, "password": "guess", "name": "ci"}, format="json", **headers
    )
    return response.status_code, response.json()["error"]["code"]


def statuses(answers: list[tuple[int, str]]) -> list[int]:
    return [status for status, _ in answers]


# --- no trusted proxy (the default) --------------------------------------------------------


def test_a_forged_forwarded_for_does_not_escape_the_sign_in_throttle(db, throttle_clock):
    # Thirteen wrong passwords sprayed over thirteen usernames (so no account locks): the
    # auth throttle (10/min per address) refuses the last three, whatever each one claims.
    answers = [wrong_password(f"user{i}", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}") for i in range(13)]
    assert statuses(answers) == [401] * 10 + [429] * 3, answers
    assert {code for _, code in answers[10:]} == {"throttled"}


def test_a_forged_forwarded_for_is_not_written_to_the_audit_row(
    api, typical_inputs, production_model
):
    for headers in ({}, {"HTTP_IDEMPOTENCY_KEY": "forged-1"}):  # fast path, then DRF's view
        response = api.post(
            PREDICTIONS,
            {"inputs": typical_inputs},
            format="json",
            HTTP_X_FORWARDED_FOR="203.0.113.50",
            **headers,
        )
        assert response.status_code == 201, response.content
        assert Prediction.objects.get(pk=response.json()["id"]).client_ip == "127.0.0.1"


def test_a_forged_forwarded_for_does_not_lift_a_lockout(db, settings):
    UserFactory(username="owner")
    for i in range(settings.AXES_FAILURE_LIMIT):
        wrong_password("owner", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    right = APIClient().post(
        TOKENS,
        {"username": "owner", "password": PASSWORD, "name": "ci"},
        format="json",
        HTTP_X_FORWARDED_FOR="203.0.113.99",
    )
    assert right.status_code == 429, right.content
    assert right.json()["error"]["code"] == "locked_out"


# --- behind one proxy (nginx) --------------------------------------------------------------


@pytest.fixture
def behind_nginx(settings):
    settings.TRUSTED_PROXY_COUNT = 1


def test_behind_nginx_each_client_has_its_own_throttle_count(db, behind_nginx, throttle_clock):
    # Every request reaches Django from nginx's address; what a client puts in front of the
    # address nginx appends is ignored.
    answers = [
        wrong_password(f"user{i}", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}, {CLIENT_A}", **NGINX)
        for i in range(11)
    ]
    assert statuses(answers) == [401] * 10 + [429], answers
    # Another client behind the same nginx still has its whole allowance.
    assert wrong_password("other", HTTP_X_FORWARDED_FOR=CLIENT_B, **NGINX)[0] == 401


def test_behind_nginx_the_audit_row_holds_the_client_address(
    api, typical_inputs, production_model, behind_nginx
):
    for headers in ({}, {"HTTP_IDEMPOTENCY_KEY": "proxied-1"}):  # fast path, then DRF's view
        response = api.post(
            PREDICTIONS,
            {"inputs": typical_inputs},
            format="json",
            HTTP_X_FORWARDED_FOR=f"203.0.113.50, {CLIENT_A}",
            **NGINX,
            **headers,
        )
        assert response.status_code == 201, response.content
        assert Prediction.objects.get(pk=response.json()["id"]).client_ip == CLIENT_A


def test_behind_nginx_a_lockout_holds_one_client_not_everyone(db, behind_nginx, settings):
    UserFactory(username="owner")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        wrong_password("owner", HTTP_X_FORWARDED_FOR=CLIENT_A, **NGINX)
    locked = wrong_password("owner", HTTP_X_FORWARDED_FOR=f"{CLIENT_B}, {CLIENT_A}", **NGINX)
    assert locked == (429, "locked_out")
    # The owner, from another address, signs in: the attacker locked out only themselves.
    right = APIClient().post(
        TOKENS,
        {"username": "owner", "password": PASSWORD, "name": "ci"},
        format="json",
        HTTP_X_FORWARDED_FOR=CLIENT_B,
        **NGINX,
    )
    assert right.status_code == 201, right.content


def test_behind_nginx_metrics_allows_by_the_client_address(client, db, behind_nginx, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    scrape = "/metrics"
    assert client.get(scrape, HTTP_X_FORWARDED_FOR="10.1.2.3", **NGINX).status_code == 200
    # nginx's own address is not the caller's: a client outside the list is refused ...
    assert client.get(scrape, HTTP_X_FORWARDED_FOR="203.0.113.9", **NGINX).status_code == 403
    # ... even when it claims an allowed address in front of the one nginx appended.
    forged = client.get(scrape, HTTP_X_FORWARDED_FOR="10.1.2.3, 203.0.113.9", **NGINX)
    assert forged.status_code == 403
    # A scraper inside the network that reaches gunicorn directly sends no such header.
    assert client.get(scrape, REMOTE_ADDR="10.9.9.9").status_code == 200
