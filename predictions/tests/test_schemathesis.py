"""The API keeps the promises of its own OpenAPI document under generated input (schemathesis):
no 5xx, and every response, error or not, matches the documented status, headers and body.

schemathesis' pytest integration (``schemathesis.pytest.from_fixture``) does not run under
pytest 9 (it rewrites ``Function._nodeid``, which pytest 9 removed), so each operation's
strategy is driven by hypothesis here; the checks are schemathesis' defaults.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from accounts.models import ApiToken
from accounts.tests.factories import UserFactory, token_for
from floodsite.wsgi import application
from predictions.models import Source
from predictions.services import prediction_create

EXAMPLES_PER_OPERATION = 25
CONFIG = SchemathesisConfig.from_dict(
    {
        # DRF refuses a NUL character in any string field (a 400 naming the field), which the
        # document does not repeat field by field; NULs are sent by the tests of bad input.
        "generation": {"allow-x00": False},
        "checks": {
            # Generated Idempotency-Keys repeat across examples with other bodies: the documented
            # 422 is then the right answer to schema-valid data, not a rejection of it.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
            }
        },
    }
)
# With valid input (and the fuzzer's own ids) these must succeed at least once, so a run that
# only ever met 401s or 404s cannot pass as "no failures".
MUST_SUCCEED = {
    "GET /api/v1/auth/tokens/",
    "DELETE /api/v1/auth/tokens/{token_key}/",
    "GET /api/v1/models/",
    "GET /api/v1/models/active/",
    "GET /api/v1/predictions/",
    "POST /api/v1/predictions/",
    "GET /api/v1/predictions/{prediction_id}/",
    "POST /api/v1/predictions/{prediction_id}/outcome/",
}


@pytest.fixture
def api_schema(production_model, monkeypatch, settings):
    """The document as served, with the production model's features plugged in.

    Throttle rates are raised so that generated calls reach the views instead of stopping at
    429 (which the document allows, but which would test nothing).
    """
    from rest_framework.throttling import ScopedRateThrottle

    rates = {scope: "100000/min" for scope in ScopedRateThrottle.THROTTLE_RATES}
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)
    # Every generated sign-in checks a password; the production hasher would cost seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The WSGI app closes "old" connections around each request; inside the test's transaction
    # that would close the test's own connection. Django's test client unhooks it the same way.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    cache.clear()
    yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=CONFIG)
    cache.clear()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzzer(api_schema, typical_inputs):
    """One user for the whole run: the token it sends, and ids of its own to aim at.

    The run's own token is never revoked: DELETE /auth/tokens/{token_key}/ gets either random
    text (which cannot name a token of fs_ + 12 random hex characters) or the key of a second,
    throwaway token, so the 204 answer is checked too.
    """
    user = UserFactory(username="fuzzer")
    secret = token_for(user)
    token_for(user)
    throwaway = ApiToken.objects.filter(user=user).exclude(token_key=secret[:15]).get()
    # Through the service, not the test client: the client would hook close_old_connections
    # back up after its request (see api_schema).
    prediction = prediction_create(user=user, source=Source.API, inputs=typical_inputs)
    return {
        "headers": {"Authorization": f"Token {secret}"},
        "path_parameters": {"prediction_id": str(prediction.id), "token_key": throwaway.token_key},
    }


# Checks not asked of an operation, and why (every other check still is):
# - the history list lets some invalid filter values through: an empty value (`?source=`)
#   means "no filter", django-filter's convention and the web history page's;
# - an outcome's observed_at must not be in the future: a rule about the clock, which a schema
#   cannot state, so a schema-valid date can rightly be refused;
# - a batch upload must be a CSV file with the model's columns: the document can only say
#   "a file", so a schema-valid upload can rightly be refused;
# - a prediction's `site` must name a registered site, and a new site's code must be free:
#   rules about the data, so a schema-valid code can rightly be refused (400 naming it).
WAIVED_CHECKS = {
    "GET /api/v1/predictions/": [negative_data_rejection],
    "POST /api/v1/predictions/": [positive_data_acceptance],
    "POST /api/v1/sites/": [positive_data_acceptance],
    "POST /api/v1/predictions/{prediction_id}/outcome/": [positive_data_acceptance],
    "POST /api/v1/batches/": [positive_data_acceptance],
}


def _has_inputs(operation) -> bool:
    """Anything but the credentials, which the run always sends itself."""
    headers = [header for header in operation.headers if header.name != "Authorization"]
    return any((operation.path_parameters, operation.query, headers, operation.body))


def _strategy(operation, mode: GenerationMode, known: dict[str, str]):
    generated = operation.as_strategy(generation_mode=mode)
    names = {parameter.name for parameter in operation.path_parameters}
    ours = {name: value for name, value in known.items() if name in names}
    if mode.is_negative or not ours:
        return generated
    aimed = operation.as_strategy(generation_mode=mode, path_parameters=ours)
    return st.one_of(generated, aimed)


def _conformance_test(strategy, *, headers: dict[str, str], waived: list, succeeded: set[str]):
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case):
        response = case.call_and_validate(headers=headers, excluded_checks=waived)
        if response.status_code < 300:
            succeeded.add(case.operation.label)

    return conforms


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_documented_contract(api_schema, fuzzer, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.label for operation in operations} >= MUST_SUCCEED
    succeeded: set[str] = set()
    for operation in operations:
        if mode.is_negative and not _has_inputs(operation):
            continue  # nothing to make invalid
        conforms = _conformance_test(
            _strategy(operation, mode, fuzzer["path_parameters"]),
            headers=fuzzer["headers"],
            waived=WAIVED_CHECKS.get(operation.label, []),
            succeeded=succeeded,
        )
        try:
            conforms()
        except Unsatisfiable:
            # Only unconstrained strings (a path id): there is no invalid value to send.
            assert mode.is_negative
        except Exception as exc:
            exc.add_note(f"operation: {operation.label} ({mode} data)")
            raise
    if mode.is_positive:
        assert succeeded >= MUST_SUCCEED
