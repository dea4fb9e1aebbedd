"""What-if answers are exploration, never predictions: kept for the audit trail, counted nowhere."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from modelops import checks, selectors
from modelops.outcomes import labelled_set_get
from predictions.models import Prediction, Source
from predictions.tests.factories import OutcomeFactory

_ROW_LINK = re.compile(r'href="/predictions/[0-9a-f-]{36}/"')


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


def _predict(client, production_model, **changes) -> Prediction:
    data = {f["name"]: str(f["default"]) for f in production_model.manifest["features"]}
    data.update({name: str(value) for name, value in changes.items()})
    data["submission"] = str(uuid.uuid4())
    response = client.post("/predict/", data)
    assert response.status_code == 302, response.content
    return Prediction.objects.get(pk=response["Location"].strip("/").split("/")[-1])


def _what_if(client, original: Prediction, rainfall: float):
    return client.post(
        f"/predictions/{original.pk}/what-if/",
        {"feature_1": "rainfall_24h_mm", "value_1": str(rainfall)},
        headers={"HX-Request": "true"},
    )


def _predictions_counted() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "floodsite_predictions"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _everything_that_counts(client, api, production_model) -> dict[str, Any]:
    """What each reader of the audit log sees: history, export, API, monitoring, retraining."""
    now = timezone.now()
    features = [f["name"] for f in production_model.manifest["features"]]
    check = checks.monitoring_evaluate(window_minutes=60, now=now + timedelta(seconds=1))
    drift = selectors.model_drift_get(
        model_version=production_model, since=now - timedelta(hours=1), until=now
    )
    accuracy = selectors.model_accuracy_get(model_version=production_model)
    labelled = labelled_set_get(feature_names=features)
    return {
        "history": len(_ROW_LINK.findall(client.get("/predictions/").content.decode())),
        "export": client.get("/predictions/export.csv").getvalue().decode().count("\n"),
        "api": len(api.get("/api/v1/predictions/").json()["results"]),
        "traffic": check.metrics["traffic"],
        "latency": check.metrics["latency_ms"]["by_source"],
        "drift_rows": drift["n"],
        "accuracy": (accuracy["predictions"], accuracy["n"]),
        "accuracy_list": [r["model_version"] for r in selectors.model_accuracy_list()],
        "gate_and_retraining_rows": None if labelled is None else len(labelled.y),
        "metrics": _predictions_counted(),
    }


def test_three_what_ifs_count_nowhere_but_stay_in_the_audit_trail(
    analyst_client, api, production_model, analyst
):
    flooded = _predict(analyst_client, production_model, rainfall_24h_mm=400)
    dry = _predict(analyst_client, production_model, rainfall_24h_mm=1)
    for prediction, observed in ((flooded, "yes"), (dry, "no")):
        url = f"/predictions/{prediction.pk}/outcome/"
        assert analyst_client.post(url, {"flooded": observed}).status_code == 302
    before = _everything_that_counts(analyst_client, api, production_model)

    answers = [_what_if(analyst_client, flooded, rain) for rain in (50, 150, 450)]

    assert all(r.status_code == 200 and "What if:" in r.content.decode() for r in answers)
    explored = list(Prediction.all_sources.filter(source=Source.WHAT_IF))
    assert len(explored) == 3, "each what-if is kept in the audit trail under its own source"
    assert sorted(p.inputs["rainfall_24h_mm"] for p in explored) == [50, 150, 450]
    # Neither page nor API records ground truth on an answer nobody acted on.
    what_if = explored[0]
    page = analyst_client.post(f"/predictions/{what_if.pk}/outcome/", {"flooded": "yes"})
    assert page.status_code == 400 and "not a prediction" in page.content.decode()
    refused = api.post(f"/api/v1/predictions/{what_if.pk}/outcome/", {"flooded": True})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_a_prediction"
    # Even an outcome put there by hand (the admin, a shell) reaches no reader.
    OutcomeFactory(prediction=explored[1], flooded=True)

    assert _everything_that_counts(analyst_client, api, production_model) == before


def test_history_shows_what_ifs_only_when_asked(
    analyst_client, api, production_model, admin_client
):
    original = _predict(analyst_client, production_model)
    _what_if(analyst_client, original, 450)
    what_if = Prediction.all_sources.get(source=Source.WHAT_IF)

    default = api.get("/api/v1/predictions/").json()["results"]
    asked = api.get("/api/v1/predictions/", {"source": "what_if"}).json()["results"]
    assert [row["id"] for row in default] == [str(original.pk)]
    assert [row["id"] for row in asked] == [str(what_if.pk)]
    page = analyst_client.get("/predictions/", {"source": "what_if"}).content.decode()
    assert f"/predictions/{what_if.pk}/" in page
    detail = analyst_client.get(f"/predictions/{what_if.pk}/").content.decode()
    assert "What if" in detail and 'action="/predictions/' + str(what_if.pk) + '/outcome/"' not in (
        detail
    )
    admin_list = admin_client.get("/admin/predictions/prediction/", {"source": "what_if"})
    assert str(what_if.pk) in admin_list.content.decode()
