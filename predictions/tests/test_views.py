"""The analysts' pages: predict, result, what-if, outcome, history and export."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from accounts.tests.factories import UserFactory, make_auditor
from predictions.models import Outcome, Prediction


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


def form_data(production_model, **changes):
    data = {f["name"]: str(f["default"]) for f in production_model.manifest["features"]}
    data["submission"] = str(uuid.uuid4())
    data.update({k: str(v) for k, v in changes.items()})
    return data


def test_the_form_is_generated_from_the_manifest(analyst_client, production_model):
    page = analyst_client.get("/predict/").content.decode()
    for feature in production_model.manifest["features"]:
        assert f'name="{feature["name"]}"' in page
        assert feature["group"] in page
    assert "Rainfall 24h" in page and "(mm)" in page
    assert "Typical range 0 to 500 (mm)" in page


def test_a_valid_form_logs_a_web_prediction_and_shows_the_result(
    analyst_client, production_model, analyst
):
    response = analyst_client.post("/predict/", form_data(production_model, rainfall_24h_mm=300))
    assert response.status_code == 302
    prediction = Prediction.objects.get()
    assert (prediction.source, prediction.user) == ("web", analyst)
    assert response["Location"] == f"/predictions/{prediction.pk}/"
    page = analyst_client.get(response["Location"]).content.decode()
    assert f"{round(100 * prediction.probability, 1)}%" in page
    assert f"band-{prediction.risk_band}" in page
    assert "What moved the probability" in page
    assert str(production_model) in page


def test_a_double_submit_logs_one_prediction(analyst_client, production_model):
    data = form_data(production_model)
    first = analyst_client.post("/predict/", data)
    second = analyst_client.post("/predict/", data)
    assert first["Location"] == second["Location"]
    assert Prediction.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rainfall_24h_mm": ""}, "Enter a value."),
        ({"rainfall_24h_mm": "lots"}, "Enter a number, e.g. 3."),
        ({"historical_flood_count": "2.5"}, "Enter a whole number, e.g. 2."),
    ],
)
def test_bad_values_are_shown_next_to_the_field(analyst_client, production_model, changes, message):
    response = analyst_client.post("/predict/", form_data(production_model, **changes))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Prediction.objects.exists()


def test_out_of_range_values_are_scored_and_flagged(analyst_client, production_model):
    response = analyst_client.post("/predict/", form_data(production_model, slope_deg=75))
    page = analyst_client.get(response["Location"]).content.decode()
    assert "Outside the range the model was trained on" in page
    assert Prediction.objects.get().out_of_range == ["slope_deg"]


def test_no_production_model_is_a_clear_page(analyst_client, db):
    response = analyst_client.get("/predict/")
    assert response.status_code == 503
    assert "Predictions are unavailable right now" in response.content.decode()


def test_what_if_compares_with_changed_inputs(analyst_client, production_model):
    analyst_client.post("/predict/", form_data(production_model))
    original = Prediction.objects.get()
    response = analyst_client.post(
        f"/predictions/{original.pk}/what-if/",
        {
            "feature_1": "rainfall_24h_mm",
            "value_1": "450",
            "feature_2": "rainfall_72h_mm",
            "value_2": "900",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    changed = Prediction.all_sources.get(source="what_if")
    assert changed.inputs["rainfall_24h_mm"] == 450
    assert changed.inputs["slope_deg"] == original.inputs["slope_deg"]
    body = response.content.decode()
    assert "Risk rises by" in body and f"/predictions/{changed.pk}/" in body


def test_what_if_with_the_same_input_twice_says_so(analyst_client, production_model):
    analyst_client.post("/predict/", form_data(production_model))
    original = Prediction.objects.get()
    response = analyst_client.post(
        f"/predictions/{original.pk}/what-if/",
        {"feature_1": "slope_deg", "value_1": "1", "feature_2": "slope_deg", "value_2": "2"},
        headers={"HX-Request": "true"},
    )
    assert "Choose a different input." in response.content.decode()
    assert Prediction.objects.count() == 1


def test_recording_an_outcome_from_the_result_page(analyst_client, production_model, analyst):
    analyst_client.post("/predict/", form_data(production_model))
    prediction = Prediction.objects.get()
    url = f"/predictions/{prediction.pk}/outcome/"
    assert analyst_client.post(url, {"flooded": "maybe"}).status_code == 400
    response = analyst_client.post(url, {"flooded": "yes", "note": "cellar under water"})
    assert response.status_code == 302
    outcome = Outcome.objects.get()
    assert outcome.flooded is True and outcome.reported_by == analyst
    page = analyst_client.get(f"/predictions/{prediction.pk}/").content.decode()
    assert "It flooded." in page and "cellar under water" in page
    again = analyst_client.post(url, {"flooded": "no"})
    assert again.status_code == 400
    assert "An outcome is already recorded for this prediction." in again.content.decode()


def test_another_users_prediction_is_a_404_page(client, production_model):
    owner = UserFactory(username="owner")
    client.force_login(owner)
    client.post("/predict/", form_data(production_model))
    prediction = Prediction.objects.get()
    client.force_login(UserFactory(username="nosy"))
    response = client.get(f"/predictions/{prediction.pk}/")
    assert response.status_code == 404
    assert "No such prediction." in response.content.decode()
    assert client.get("/predictions/not-a-uuid/").status_code == 404


def test_history_filters_sorts_and_pages(analyst_client, production_model):
    for rain in (0, 100, 480):
        analyst_client.post(
            "/predict/", form_data(production_model, rainfall_24h_mm=rain, rainfall_72h_mm=2 * rain)
        )
    page = analyst_client.get("/predictions/").content.decode()
    assert "3 predictions." in page
    highest = Prediction.objects.order_by("-probability").first()
    band_page = analyst_client.get("/predictions/", {"risk_band": highest.risk_band})
    assert str(highest.pk) in band_page.content.decode()
    sorted_page = analyst_client.get("/predictions/", {"sort": "-probability"}).content.decode()
    links = [str(p.pk) for p in Prediction.objects.order_by("-probability", "-id")]
    positions = [sorted_page.index(pk) for pk in links]
    assert positions == sorted(positions)
    bad = analyst_client.get("/predictions/", {"created_after": "31/31/2020"})
    assert bad.status_code == 400
    assert "Enter a valid date." in bad.content.decode()


def test_export_is_the_filtered_set_with_neutralised_cells(client, production_model):
    user = UserFactory(username="=cmd|calc")
    client.force_login(user)
    client.post("/predict/", form_data(production_model))
    client.post("/predict/", form_data(production_model, rainfall_24h_mm=480, rainfall_72h_mm=900))
    response = client.get("/predictions/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2
    assert rows[0]["user"] == "'=cmd|calc"
    assert float(rows[0]["rainfall_24h_mm"]) in (3.0, 480.0)
    band = rows[0]["risk_band"]
    filtered = client.get("/predictions/export.csv", {"risk_band": band})
    lines = b"".join(filtered.streaming_content).decode().strip().splitlines()
    assert len(lines) == 1 + sum(1 for r in rows if r["risk_band"] == band)


def test_auditors_see_everyone_in_history(client, production_model, analyst):
    client.force_login(analyst)
    client.post("/predict/", form_data(production_model))
    auditor = make_auditor(UserFactory(username="audrey"))
    client.force_login(auditor)
    page = client.get("/predictions/").content.decode()
    assert "All predictions" in page and analyst.username in page
    assert client.get("/predictions/", {"user": analyst.username}).status_code == 200


def test_home_dashboard_counts_this_weeks_bands(analyst_client, production_model):
    analyst_client.post("/predict/", form_data(production_model))
    page = analyst_client.get("/").content.decode()
    assert "This week: 1 prediction" in page
    assert str(production_model) in page
    assert "Latest predictions" in page


def test_batch_upload_page_refuses_a_bad_header_next_to_the_field(analyst_client, production_model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = SimpleUploadedFile("sites.csv", b"station,rain\nA,3\n", content_type="text/csv")
    response = analyst_client.post("/batches/", {"file": bad})
    assert response.status_code == 400
    page = response.content.decode()
    assert "missing columns" in page and "rainfall_24h_mm" in page
    # "station" and "rain" are not inputs: they would pass through, so only the missing inputs
    # are named.
    assert "unknown columns" not in page


def test_batch_pages_show_progress_downloads_and_notices(
    analyst_client, production_model, settings
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mlcore.engine import synthetic
    from predictions import batches
    from predictions.models import BatchJob

    text = synthetic.generate(30, seed=5).drop(columns="flooded").to_csv(index=False)
    upload = SimpleUploadedFile("north.csv", text.encode(), content_type="text/csv")
    response = analyst_client.post("/batches/", {"file": upload})
    job = BatchJob.objects.get()
    assert response["Location"] == f"/batches/{job.pk}/"
    running = analyst_client.get(f"/batches/{job.pk}/").content.decode()
    assert "Queued" in running and 'hx-trigger="every 1s"' in running
    assert analyst_client.get(f"/batches/{job.pk}/results.csv").status_code == 409

    for index in batches.batch_split(job_id=str(job.pk)):
        batches.batch_chunk_process(job_id=str(job.pk), index=index)
    batches.batch_finalize(job_id=str(job.pk))

    home = analyst_client.get("/").content.decode()
    assert "Batch" in home and "north.csv" in home and "finished: succeeded" in home
    done = analyst_client.get(f"/batches/{job.pk}/progress/").content.decode()
    assert "100.0%" in done and "hx-trigger" not in done
    assert "Download results" in done
    analyst_client.get(f"/batches/{job.pk}/")  # seen: the notice goes away
    assert "finished: succeeded" not in analyst_client.get("/").content.decode()
    download = analyst_client.get(f"/batches/{job.pk}/results.csv")
    assert download["Content-Disposition"].startswith('attachment; filename="north-results.csv"')
    assert len(b"".join(download.streaming_content).decode().splitlines()) == 31
    assert analyst_client.get(f"/batches/{job.pk}/secrets.csv").status_code == 404

    analyst_client.force_login(UserFactory(username="nosy"))
    assert analyst_client.get(f"/batches/{job.pk}/").status_code == 404
