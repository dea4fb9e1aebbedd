"""A JSON string with an unpaired UTF-16 surrogate is a 400 naming it, on every JSON endpoint."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import token_for
from predictions.models import Outcome, Prediction

# The JSON text itself is valid (escapes are ASCII), but "\ud800" decodes to half of a
# surrogate pair: no UTF-8 text, database column or response can hold it.
LONE = "\\ud800"
BODIES = {
    "a key": '{"inputs": {"' + LONE + '": 1}}',
    "a value": '{"inputs": {"rainfall_24h_mm": "' + LONE + '"}}',
    "a low half": '{"inputs": {"\\udc00x": 1}}',
}


def _post(client, url: str, body: str, **headers):
    return client.generic("POST", url, body, content_type="application/json", **headers)


def _says_surrogate(response) -> bool:
    body = response.json()
    return response.status_code == 400 and "surrogate" in body["error"]["message"]


@pytest.mark.parametrize("where", list(BODIES))
def test_a_prediction_with_a_lone_surrogate_is_a_400_on_the_fast_path(api, production_model, where):
    response = _post(api, "/api/v1/predictions/", BODIES[where])
    assert _says_surrogate(response), response.content
    assert not Prediction.objects.exists()


def test_a_lone_surrogate_is_a_400_on_the_drf_path_and_every_json_endpoint(
    production_model, analyst
):
    prediction_client = APIClient()
    prediction_client.force_authenticate(analyst)  # session-style: not the fast path
    response = _post(prediction_client, "/api/v1/predictions/", BODIES["a key"])
    assert _says_surrogate(response), response.content
    many = '{"instances": [{"' + LONE + '": 1}]}'
    assert _says_surrogate(_post(prediction_client, "/api/v1/predictions/", many))

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(analyst)}")
    from predictions.services import prediction_create

    prediction = prediction_create(
        user=analyst,
        source="api",
        inputs={f["name"]: f["default"] for f in production_model.manifest["features"]},
    )
    outcome = '{"flooded": true, "note": "' + LONE + '"}'
    url = f"/api/v1/predictions/{prediction.pk}/outcome/"
    assert _says_surrogate(_post(api, url, outcome))
    assert not Outcome.objects.exists()
    token = '{"username": "ana", "password": "x", "name": "' + LONE + '"}'
    assert _says_surrogate(_post(APIClient(), "/api/v1/auth/tokens/", token))
