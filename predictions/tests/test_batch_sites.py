"""Batch files with a site column and columns of their own that pass through to the results."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import UserFactory, make_auditor
from floodsite.exceptions import ApplicationError
from mlcore.engine import synthetic
from predictions import batches
from predictions.models import BatchStatus, Prediction, Site
from predictions.sites import site_create
from predictions.tests.test_batches import run_job

pytestmark = pytest.mark.django_db

PLACE = [spec.name for spec in synthetic.FEATURES if spec.scope == "place"]
MOMENT = [spec.name for spec in synthetic.FEATURES if spec.scope != "place"]


def frame(rows: int, seed: int = 3):
    return synthetic.generate(rows, seed=seed).drop(columns="flooded")


def submit(owner, text: str):
    upload = SimpleUploadedFile("sites.csv", text.encode(), content_type="text/csv")
    return batches.batch_create(owner=owner, source="web", upload=upload)


def read_csv(path: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


@pytest.fixture
def weir(production_model, analyst):
    values = frame(1, seed=11).iloc[0]
    return site_create(
        user=analyst,
        code="WEIR-1",
        name="Weir",
        features={name: float(values[name]) for name in PLACE},
    )


def test_site_rows_take_the_sites_values_and_extra_columns_come_back(weir, analyst):
    data = frame(4)[MOMENT].copy()
    data.insert(0, "station_id", ["007", "008", "=cmd()", "010"])
    data.insert(1, "site", "WEIR-1")
    data["year"] = ["2021", "2022", "2023", ""]
    data.loc[1, "rainfall_24h_mm"] = -5  # past its hard limit: a row error
    job = run_job(submit(analyst, data.to_csv(index=False)))
    assert job.status == BatchStatus.PARTIAL

    results = read_csv(job.result_file.path)
    header = list(results[0])
    assert header[:4] == ["row", "station_id", "site", "year"]
    assert header[-3:] == ["probability", "label", "risk_band"]
    assert [r["station_id"] for r in results] == ["007", "'=cmd()", "010"]
    assert [r["year"] for r in results] == ["2021", "2023", ""]
    assert {r["elevation_m"] for r in results} == {repr(weir.features["elevation_m"])}

    errors = read_csv(job.error_file.path)
    assert list(errors[0]) == ["row", "station_id", "site", "year", "column", "reason"]
    assert (errors[0]["row"], errors[0]["station_id"], errors[0]["column"]) == (
        "2", "008", "rainfall_24h_mm",
    )  # fmt: skip

    rows = Prediction.objects.filter(batch=job).order_by("batch_row")
    assert [row.site_id for row in rows] == [weir.pk] * 3
    assert rows[0].context == {"station_id": "007", "year": "2021"}
    assert "station_id" not in rows[0].inputs
    weir.refresh_from_db()
    assert Site.objects.count() == 1


def test_unknown_and_blank_site_codes_are_row_errors_naming_them(weir, analyst):
    data = frame(3)
    data.insert(0, "site_code", ["WEIR-1", "GHOST", ""])
    job = run_job(submit(analyst, data.to_csv(index=False)))
    errors = read_csv(job.error_file.path)
    assert [(e["row"], e["site_code"], e["column"]) for e in errors] == [
        ("2", "GHOST", "site_code"),
        ("3", "", "site_code"),
    ]
    assert errors[0]["reason"] == "unknown site code 'GHOST'"
    assert "blank" in errors[1]["reason"]
    assert Prediction.objects.filter(batch=job).count() == 1
    assert not Site.objects.filter(code="GHOST").exists()


def test_a_site_name_column_registers_new_sites_on_the_fly(weir, analyst):
    data = frame(4)
    data.insert(0, "site", ["NEW-1", "NEW-1", "NEW-2", "bad code"])
    data.insert(1, "site_name", ["New one", "New one", "", "Bad"])
    job = run_job(submit(analyst, data.to_csv(index=False)))
    assert list(Site.objects.values_list("code", "name")) == [
        ("NEW-1", "New one"),
        ("WEIR-1", "Weir"),
    ]
    errors = {e["row"]: e for e in read_csv(job.error_file.path)}
    assert errors["3"]["column"] == "site_name"
    assert "register" in errors["4"]["reason"]
    new = Site.objects.get(code="NEW-1")
    assert Prediction.objects.filter(batch=job, site=new).count() == 2


def test_an_auditor_s_file_cannot_register_sites(weir, production_model):
    auditor = make_auditor(UserFactory(username="aud"))
    data = frame(1)
    data.insert(0, "site", ["NEW-9"])
    data.insert(1, "site_name", ["Nine"])
    job = run_job(submit(auditor, data.to_csv(index=False)))
    assert "may not register sites" in read_csv(job.error_file.path)[0]["reason"]
    assert not Site.objects.filter(code="NEW-9").exists()


def test_headers_past_the_limits_are_refused_before_anything_runs(
    production_model, analyst, settings
):
    settings.CONTEXT_MAX_KEYS = 2
    data = frame(2)
    for name in ("a", "b", "c"):
        data[name] = "x"
    with pytest.raises(ApplicationError) as caught:
        submit(analyst, data.to_csv(index=False))
    assert "CONTEXT_MAX_KEYS" in caught.value.fields["extra_columns"]
    clash = frame(2)
    clash["probability"] = 1
    with pytest.raises(ApplicationError) as caught:
        submit(analyst, clash.to_csv(index=False))
    assert "probability" in caught.value.fields["reserved_columns"]
    no_site = frame(2).drop(columns="elevation_m")
    with pytest.raises(ApplicationError) as caught:
        submit(analyst, no_site.to_csv(index=False))
    assert caught.value.fields["missing_columns"] == "elevation_m"


def test_a_row_whose_extra_columns_are_too_long_is_a_row_error(production_model, analyst, settings):
    settings.CONTEXT_MAX_BYTES = 40
    data = frame(2)
    data["note"] = ["short", "x" * 60]
    job = run_job(submit(analyst, data.to_csv(index=False)))
    errors = read_csv(job.error_file.path)
    assert [e["row"] for e in errors] == ["2"]
    assert "CONTEXT_MAX_BYTES" in errors[0]["reason"]
    assert Prediction.objects.get(batch=job).context == {"note": "short"}


def test_the_batch_page_offers_a_template_for_the_production_model(user, production_model):
    client = Client()
    client.force_login(user)
    page = client.get(reverse("batches")).content.decode()
    assert reverse("batch_template") in page
    response = client.get(reverse("batch_template"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    names = [f["name"] for f in production_model.manifest["features"]]
    assert lines[0] == names and len(lines) == 2
    job = run_job(submit(user, response.content.decode()))
    assert job.status == BatchStatus.SUCCEEDED


def test_the_edge_client_passes_extra_columns_through(api, production_model, tmp_path):
    import subprocess
    import sys

    from django.conf import settings as django_settings

    bundle = api.get(f"/api/v1/models/{production_model.name}/{production_model.version}/onnx")
    (tmp_path / "model.zip").write_bytes(bundle.content)
    data = frame(3)
    data.insert(0, "station", ["S1", "S2", "S3"])
    data["year"] = ["2020", "2021", "2022"]
    data.loc[1, "slope_deg"] = 500  # refused, and still carries its columns
    data.to_csv(tmp_path / "sites.csv", index=False)
    client = Path(django_settings.BASE_DIR) / "docs" / "edge_client.py"
    result = subprocess.run(
        [sys.executable, str(client), str(tmp_path / "model.zip"), str(tmp_path / "sites.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(lines[0]) == ["row", "station", "year", "probability", "risk_band", "error"]
    assert [(r["station"], r["year"]) for r in lines] == [
        ("S1", "2020"),
        ("S2", "2021"),
        ("S3", "2022"),
    ]
    assert lines[1]["error"].startswith("slope_deg") and lines[0]["probability"]
