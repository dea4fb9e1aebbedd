"""Model pages and the edge download scored offline by the README client."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.utils.html import escape
from rest_framework.test import APIClient

from mlcore.models import ModelVersion, Stage

ROOT = Path(django_settings.BASE_DIR)
CLIENT = ROOT / "docs" / "edge_client.py"


def _onnx_url(mv: ModelVersion) -> str:
    return f"/api/v1/models/{mv.name}/{mv.version}/onnx"


# --- pages ----------------------------------------------------------------------------------


def test_the_model_list_shows_versions_stages_metrics_and_the_canary_share(
    client, analyst, production_model, register_model
):
    canary = register_model(notes="retrained on March outcomes")
    ModelVersion.objects.filter(pk=canary.pk).update(stage=Stage.CANARY, canary_percent=20)
    client.force_login(analyst)
    page = client.get("/models/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f'href="/models/{production_model.name}/{production_model.version}/"' in text
    assert f"{production_model.metrics['roc_auc']:.3f}" in text
    assert "answers 20% of users" in text
    assert "retrained on March outcomes" in text
    assert 'href="/models/"' in text  # the nav link


def test_the_model_page_shows_history_metrics_schema_and_links(client, analyst, production_model):
    client.force_login(analyst)
    page = client.get(f"/models/{production_model.name}/{production_model.version}/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "test fixture" in text  # the reason in the stage history
    assert "Candidate → Production" in text
    assert f"{production_model.metrics['accuracy']:.3f}" in text
    for feature in production_model.manifest["features"]:
        assert feature["name"] in text and escape(feature["description"]) in text
    name, version = production_model.name, production_model.version
    assert f'href="/models/{name}/{version}/onnx.zip"' in text
    # Analysts neither monitor nor read others' predictions: no links to either.
    assert "/monitoring/?model=" not in text
    assert "Shadow comparison" not in text


def test_an_unknown_version_page_is_a_404(client, analyst, production_model):
    client.force_login(analyst)
    assert client.get(f"/models/{production_model.name}/99/").status_code == 404
    assert client.get("/models/no-such-model/1/").status_code == 404
    assert client.get(f"/models/{production_model.name}/99999999999/").status_code == 404


def test_model_pages_need_a_sign_in(client, production_model):
    page = client.get("/models/")
    assert page.status_code == 302 and "/accounts/login/" in page["Location"]


# --- the edge download ----------------------------------------------------------------------


def _zip_files(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_onnx_download_is_a_zip_with_its_sha256(api, production_model):
    response = api.get(_onnx_url(production_model))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    filename = f"{production_model.name}-v{production_model.version}-onnx.zip"
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    files = _zip_files(response.content)
    assert set(files) == {"model.onnx", "manifest.json", "SHA256SUMS"}
    digest = hashlib.sha256(files["model.onnx"]).hexdigest()
    assert digest == response["X-Model-SHA256"] == production_model.onnx_sha256
    assert Path(production_model.onnx_artifact.path).read_bytes() == files["model.onnx"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["onnx_sha256"] == digest and manifest["version"] == production_model.version
    order = [f["name"] for f in production_model.manifest["features"]]
    assert manifest["onnx_input"]["order"] == order
    sums = dict(reversed(line.split()) for line in files["SHA256SUMS"].decode().splitlines())
    assert sums["model.onnx"] == digest
    assert sums["manifest.json"] == hashlib.sha256(files["manifest.json"]).hexdigest()
    # Any version, not only production; also asking for a zip explicitly.
    again = api.get(_onnx_url(production_model), HTTP_ACCEPT="application/zip")
    assert again.status_code == 200 and again.content == response.content


def test_the_onnx_download_refusals_are_clear(api, client, production_model, register_model):
    missing = api.get(f"/api/v1/models/{production_model.name}/99/onnx")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert api.get("/api/v1/models/nope/1/onnx").status_code == 404

    no_onnx = register_model()
    ModelVersion.objects.filter(pk=no_onnx.pk).update(onnx_artifact="", onnx_sha256="")
    refused = api.get(_onnx_url(no_onnx), HTTP_ACCEPT="application/zip")
    assert refused.status_code == 409
    assert refused["Content-Type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "onnx_unavailable" and str(no_onnx) in error["message"]

    tampered = register_model()
    with open(tampered.onnx_artifact.path, "ab") as fh:
        fh.write(b"\0")
    refused = api.get(_onnx_url(tampered))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "integrity"

    assert APIClient().get(_onnx_url(production_model)).status_code == 401


def test_the_model_page_download_is_the_same_zip(client, api, analyst, production_model):
    client.force_login(analyst)
    page = client.get(f"/models/{production_model.name}/{production_model.version}/onnx.zip")
    assert page.status_code == 200
    assert page["X-Model-SHA256"] == production_model.onnx_sha256
    assert page.content == api.get(_onnx_url(production_model)).content


def _sites(manifest: dict, n: int = 25) -> list[dict[str, float]]:
    """Typical rows, edge values and random values across (and a little past) each range."""
    rng = np.random.default_rng(11)
    features = manifest["features"]
    rows = [{f["name"]: f["default"] for f in features}]
    rows.append({f["name"]: f["minimum"] for f in features})
    rows.append({f["name"]: f["maximum"] for f in features})
    for _ in range(n - len(rows)):
        row = {}
        for f in features:
            span = f["maximum"] - f["minimum"]
            value = rng.uniform(f["minimum"] - 0.05 * span, f["maximum"] + 0.05 * span)
            # Past the typical range, never past what is possible (the service refuses that).
            value = np.clip(value, f.get("hard_minimum"), f.get("hard_maximum"))
            row[f["name"]] = round(float(value)) if f["dtype"] == "int" else float(value)
        rows.append(row)
    return rows


def _run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLIENT), *args], capture_output=True, text=True, timeout=120
    )


def test_the_edge_client_scores_offline_like_the_service(api, production_model, tmp_path):
    response = api.get(_onnx_url(production_model))
    bundle = tmp_path / "model.zip"
    bundle.write_bytes(response.content)
    sites = _sites(production_model.manifest)
    with open(tmp_path / "sites.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(reversed(list(sites[0]))))  # any order
        writer.writeheader()
        writer.writerows(sites)

    served = api.post("/api/v1/predictions/", {"instances": sites}, format="json")
    assert served.status_code == 201, served.content
    offline = _run_client(str(bundle), str(tmp_path / "sites.csv"), response["X-Model-SHA256"])
    assert offline.returncode == 0, offline.stderr
    scored = list(csv.DictReader(io.StringIO(offline.stdout)))
    assert len(scored) == len(sites)
    for answer, line in zip(served.json()["predictions"], scored, strict=True):
        assert float(line["probability"]) == pytest.approx(answer["probability"], abs=1e-6)
        assert line["risk_band"] == answer["risk_band"]


def test_the_edge_client_refuses_a_damaged_or_other_model(api, production_model, tmp_path):
    files = _zip_files(api.get(_onnx_url(production_model)).content)
    (tmp_path / "sites.csv").write_text("a\n1\n")
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data + b"\0" if name == "model.onnx" else data)
    result = _run_client(str(damaged), str(tmp_path / "sites.csv"))
    assert result.returncode != 0 and "model.onnx: SHA-256 does not match" in result.stderr

    intact = tmp_path / "intact.zip"
    intact.write_bytes(api.get(_onnx_url(production_model)).content)
    result = _run_client(str(intact), str(tmp_path / "sites.csv"), "0" * 64)
    assert result.returncode != 0 and "not the model the service sent" in result.stderr


def test_the_readme_shows_the_tested_client():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Scoring offline (edge)", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block == CLIENT.read_text()


def test_the_model_page_shows_the_label_policy_roles_split_intervals_and_warnings(
    client, analyst, production_model, tmp_path
):
    from mlcore.engine import synthetic, training

    path = tmp_path / "stations.csv"
    synthetic.write_field_records_csv(path, stations=6, years=10, seed=4)
    data = training.load_training_csv(path, target="Flood?", blank_target="drop")
    trained = training.train_model(data, algorithm="logistic", split="group:station")
    blocks = trained.manifest.to_dict()
    ModelVersion.objects.filter(pk=production_model.pk).update(
        manifest={
            **production_model.manifest,
            **{
                key: blocks[key]
                for key in ("metrics", "label_policy", "column_roles", "evaluation")
            },
        },
    )
    client.force_login(analyst)

    text = client.get(f"/models/{production_model.name}/{production_model.version}/").content
    text = text.decode()

    assert "--blank-target drop: before" in text
    assert "Warning: after --blank-target drop, &#x27;month&#x27; alone separates" in text
    assert "by group on &#x27;station&#x27;" in text
    low, high = blocks["evaluation"]["intervals"]["roc_auc"]
    assert f"95% interval {low:.3f} to {high:.3f}" in text
    assert re.search(r'<td class="mono">record_no</td><td>id</td>', text)
    assert "Leakage check" in text


def test_the_model_page_shows_calibration_the_reliability_diagram_and_the_bands(
    client, analyst, production_model
):
    client.force_login(analyst)
    page = client.get(f"/models/{production_model.name}/{production_model.version}/")
    text = page.content.decode()
    calibration = production_model.manifest["evaluation"]["calibration"]
    assert "<dt>Calibration</dt>" in text and escape(calibration["reason"]) in text
    diagram = re.search(r'<figure class="chart reliability".*?</figure>', text, re.S)
    assert diagram is not None
    dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', diagram.group(0))
    assert len(dots) == len(calibration["reliability"]["bins"]) > 3
    assert "low from 0, moderate from 0.2, high from 0.5, severe from 0.8 (the defaults)" in text
