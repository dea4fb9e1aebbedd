"""Issue #8 end to end: the audit log trains the next model, which goes through shadow, the
promotion gate, a canary and a rollback; the production model then scores offline as served.

One test walks the loop in order through what people use: analysts call the API with a
token, the administrator runs ``manage.py retrain``/``train_model`` and the model-version
actions in Django admin, an auditor reads the shadow comparison page.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.cache import cache
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory, token_for
from floodsite.exceptions import ApplicationError
from mlcore.engine import synthetic
from mlcore.models import ModelVersion, Stage, StageChange
from mlcore.selectors import canary_bucket
from mlcore.services import model_version_promote, prediction_ids_read
from predictions.models import Outcome, Prediction

NAME = django_settings.FLOODSITE_MODEL_NAME
PREDICT = "/api/v1/predictions/"
CHANGELIST = "/admin/mlcore/modelversion/"
EDGE_CLIENT = Path(django_settings.BASE_DIR) / "docs" / "edge_client.py"


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """The loop sends a few hundred outcomes in well under a minute; start from zero."""
    cache.clear()
    yield
    cache.clear()


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def sites(n: int, *, seed: int) -> tuple[list[dict[str, float]], list[bool]]:
    """n site-days from the documented generator: the inputs, and whether each flooded."""
    frame = synthetic.generate(n, seed=seed)
    inputs = [
        {name: float(value) for name, value in record.items()}
        for record in frame[synthetic.FEATURE_NAMES].to_dict("records")
    ]
    return inputs, [bool(value) for value in frame[synthetic.TARGET]]


def predict(api: APIClient, rows: list[dict[str, float]]) -> list[dict]:
    """POST the rows (one alone, or as instances); the answers, which never mention a shadow."""
    body = {"inputs": rows[0]} if len(rows) == 1 else {"instances": rows}
    response = api.post(PREDICT, body, format="json")
    assert response.status_code == 201, response.content
    assert b"shadow" not in response.content
    data = response.json()
    return [data] if len(rows) == 1 else data["predictions"]


def answered_by(api: APIClient, row: dict[str, float]) -> int:
    """The version number that answered one prediction."""
    return predict(api, [row])[0]["model"]["version"]


def record_outcomes(api: APIClient, answers: list[dict], flooded: list[bool]) -> None:
    for answer, happened in zip(answers, flooded, strict=True):
        response = api.post(
            f"{PREDICT}{answer['id']}/outcome/", {"flooded": happened}, format="json"
        )
        assert response.status_code == 201, response.content


def admin_action(client, action: str, mv: ModelVersion, **fields: str) -> str:
    """Select one version in admin, pick an action, give the reason page its fields, apply."""
    form = {"action": action, ACTION_CHECKBOX_NAME: [mv.pk], "apply": "1", **fields}
    page = client.post(CHANGELIST, form, follow=True)
    assert page.status_code == 200
    return page.content.decode()


def version(number: int) -> ModelVersion:
    return ModelVersion.objects.get(name=NAME, version=number)


def stages() -> dict[int, str]:
    return dict(ModelVersion.objects.filter(name=NAME).values_list("version", "stage"))


def score_offline(bundle: Path, rows: list[dict[str, float]], sha256: str, folder: Path):
    """Run the README's edge client on the rows (columns in another order than the model's)."""
    table = folder / "sites.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=sorted(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = subprocess.run(
        [sys.executable, str(EDGE_CLIENT), str(bundle), str(table), sha256],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.mark.slow
def test_the_model_lifecycle_loop_end_to_end(
    production_model, admin_user, client, settings, tmp_path
):
    settings.GATE_MIN_OUTCOMES = 20  # of each class; keeps the number of outcome calls small
    # The small fixture models are calibrated, which leaves 44-46 % of floods at 0.5 or above
    # (the retrained one 0.438, production 0.461): near the default floor of 0.45, so noise
    # would decide step 5. The floor is a policy setting; the loop tests the comparison.
    settings.GATE_MIN_RECALL_HIGH = 0.4
    analyst = api_for(UserFactory(username="ana"))
    client.force_login(admin_user)
    v1 = production_model

    # 1. Analysts predict through the API and later record what happened at each site.
    first_inputs, first_flooded = sites(220, seed=41)
    first = predict(analyst, first_inputs)
    assert {answer["model"]["version"] for answer in first} == {1}
    record_outcomes(analyst, first, first_flooded)
    assert 20 < sum(first_flooded) < 200  # both classes

    # 2. The administrator retrains from the audit log: a candidate, nothing promoted.
    out = StringIO()
    call_command("retrain", "--with-original", stdout=out)
    assert f"{NAME} v2 registered as a candidate from audit log, 220 outcomes" in out.getvalue()
    retrained = version(2)
    assert stages() == {1: Stage.PRODUCTION, 2: Stage.CANDIDATE}
    fingerprint = retrained.manifest["data_fingerprint"]
    assert len(fingerprint["sha256"]) == 64
    assert (fingerprint["audit_rows"], fingerprint["audit_floods"]) == (220, sum(first_flooded))
    assert fingerprint["original"] == "synthetic(n_rows=6000, seed=7)"
    assert fingerprint["rows"] == 220 + 6_000
    # More than 200 ids: kept in a file next to the artifact, pinned by its SHA-256.
    assert fingerprint["prediction_ids"]["count"] == 220
    assert prediction_ids_read(manifest=retrained.manifest) == {a["id"] for a in first}

    # 3. Shadow: the candidate scores live traffic next to production, stored, never shown.
    done = admin_action(client, "shadow_start", retrained, reason="compare on live traffic")
    assert f"In shadow: {retrained}." in done
    shadow_inputs, shadow_flooded = sites(130, seed=42)
    shadowed = predict(analyst, shadow_inputs[:-1]) + predict(analyst, shadow_inputs[-1:])
    assert {answer["model"]["version"] for answer in shadowed} == {1}
    rows = {str(p.pk): p for p in Prediction.objects.filter(pk__in=[a["id"] for a in shadowed])}
    assert len(rows) == 130
    for answer in shadowed:
        row = rows[answer["id"]]
        assert (row.model_version_id, row.shadow_model_version_id) == (v1.pk, retrained.pk)
        assert row.shadow_error == "" and row.shadow_probability is not None
        assert row.probability == pytest.approx(answer["probability"], abs=1e-12)
    diffs = np.array([abs(r.shadow_probability - r.probability) for r in rows.values()])
    assert diffs.max() > 1e-3  # another model, not a copy of production
    record_outcomes(analyst, shadowed, shadow_flooded)
    floods_seen = sum(shadow_flooded)
    assert 20 <= floods_seen <= 110  # enough of each class for the gate's outcome rows

    page = client.get(f"/models/{NAME}/2/shadow/")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.content.decode())
    assert "<dt>Rows compared</dt><dd>130</dd>" in text
    assert "<dt>Shadow errors</dt><dd>0</dd>" in text
    assert f"<dt>Mean</dt><dd>{diffs.mean():.4f}</dd>" in text
    assert f"<dt>Largest</dt><dd>{diffs.max():.4f}</dd>" in text
    assert "130 of the compared rows have a recorded outcome" in text
    truth = dict(zip((a["id"] for a in shadowed), shadow_flooded, strict=True))
    right = {
        "production": sum((r.probability >= 0.5) == truth[k] for k, r in rows.items()),
        "shadow": sum((r.shadow_probability >= 0.5) == truth[k] for k, r in rows.items()),
    }
    assert f'<span class="num">{right["production"]} (' in text
    assert f'<span class="num">{right["shadow"]} (' in text

    # 4. The gate refuses a deliberately worse candidate; production keeps answering.
    shuffled = synthetic.generate(3_000, seed=43)
    shuffled[synthetic.TARGET] = np.random.default_rng(5).permutation(shuffled[synthetic.TARGET])
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    call_command("train_model", "--data", str(tmp_path / "shuffled.csv"), stdout=StringIO())
    worse = version(3)
    with pytest.raises(ApplicationError) as refused:
        model_version_promote(model_version=worse, user=admin_user, reason="newer")
    assert (refused.value.status_code, refused.value.code) == (409, "gate_failed")
    assert set(refused.value.fields) == {"roc_auc", "recall_high"}
    page = admin_action(client, "promote", worse, reason="newer")
    assert f"Promotion gate: {worse} is refused against {v1}" in page
    assert stages() == {1: Stage.PRODUCTION, 2: Stage.SHADOW, 3: Stage.CANDIDATE}
    assert not StageChange.objects.filter(model_version=worse, to_stage=Stage.PRODUCTION)
    assert answered_by(analyst, shadow_inputs[0]) == 1

    # 5. The retrained candidate is promoted from shadow, through the gate (not forced).
    page = admin_action(client, "promote", retrained, reason="held up in shadow")
    assert f"Now in production: {retrained}." in page
    assert stages() == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION, 3: Stage.CANDIDATE}
    gate = StageChange.objects.get(model_version=retrained, to_stage=Stage.PRODUCTION)
    gate = gate.metrics["gate"]
    assert gate["passed"] is True and gate["forced"] is False, gate["reasons"]
    assert [item["name"] for item in gate["sets"]] == ["synthetic held-out", "recorded outcomes"]
    # Judged on the shadow-phase outcomes only: the 220 it was trained on would flatter it.
    assert (gate["sets"][1]["n"], gate["sets"][1]["floods"]) == (130, floods_seen)
    assert answered_by(analyst, shadow_inputs[0]) == 2

    # 6. Canary: a retrain on every outcome so far answers half of the users, each sticky.
    call_command("retrain", "--with-original", stdout=StringIO())
    canary = version(4)
    assert canary.manifest["data_fingerprint"]["audit_rows"] == 220 + 130
    done = admin_action(client, "canary_start", canary, reason="gradual", percent="50")
    assert f"Canary: {canary} answers 50% of users." in done
    field = [UserFactory(username=f"field{n}") for n in range(20)]
    apis = {user.pk: api_for(user) for user in field}
    expected = {
        user.pk: 4 if canary_bucket(user_id=user.pk, name=NAME) < 50 else 2 for user in field
    }
    assert set(expected.values()) == {2, 4}  # some users on each
    for row in shadow_inputs[:3]:  # the same user gets the same model every time
        assert {pk: answered_by(api, row) for pk, api in apis.items()} == expected
    logged = Prediction.objects.filter(user__in=field).values_list("user_id", "model_version_id")
    version_ids = {2: retrained.pk, 4: canary.pk}
    assert {(uid, mv) for uid, mv in logged} == {
        (uid, version_ids[n]) for uid, n in expected.items()
    }

    # 7. Roll back: the canary in one action, then production to the version before.
    done = admin_action(client, "canary_stop", canary, reason="false alarms in the field")
    assert "Canary rolled back" in done
    assert {answered_by(api, shadow_inputs[0]) for api in apis.values()} == {2}
    done = admin_action(client, "rollback", retrained, reason="keep the known model")
    assert f"Now in production: {v1}." in done
    assert stages() == {
        1: Stage.PRODUCTION,
        2: Stage.ARCHIVED,
        3: Stage.CANDIDATE,
        4: Stage.CANDIDATE,
    }
    assert {answered_by(api, shadow_inputs[0]) for api in apis.values()} == {1}
    assert answered_by(analyst, shadow_inputs[0]) == 1

    # 8. The production model's ONNX zip scores offline exactly as the service does.
    download = analyst.get(f"/api/v1/models/{NAME}/{v1.version}/onnx")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    bundle = tmp_path / f"{NAME}-v1.zip"
    bundle.write_bytes(download.content)
    edge_rows = shadow_inputs[:30]
    served = predict(analyst, edge_rows)
    assert {answer["model"]["version"] for answer in served} == {1}
    scored = score_offline(bundle, edge_rows, download["X-Model-SHA256"], tmp_path)
    assert len(scored) == len(served)
    for answer, line in zip(served, scored, strict=True):
        assert float(line["probability"]) == pytest.approx(answer["probability"], abs=1e-6)
        assert line["risk_band"] == answer["risk_band"]
    assert Outcome.objects.count() == 220 + 130
