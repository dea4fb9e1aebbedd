"""The model pages in a real browser: the list, one version's page, its ONNX download."""

from __future__ import annotations

import zipfile

import pytest
from playwright.sync_api import expect

from mlcore.models import ModelVersion, Stage

# Each starts Chromium against a live server: seconds per test.
pytestmark = pytest.mark.slow


def test_an_analyst_reads_the_models_and_downloads_the_onnx(
    production_model, register_model, signed_in, shot
):
    page = signed_in
    canary = register_model(notes="retrained with March outcomes")
    ModelVersion.objects.filter(pk=canary.pk).update(stage=Stage.CANARY, canary_percent=20)
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible()
    expect(page.get_by_text(f"{canary} answers 20% of users")).to_be_visible()
    rows = page.locator("table.models tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Canary")
    shot("models")

    page.get_by_role("link", name=str(production_model), exact=True).first.click()
    expect(page.get_by_role("heading", name=str(production_model))).to_be_visible()
    expect(page.get_by_role("heading", name="Stage history")).to_be_visible()
    expect(page.get_by_text("test fixture")).to_be_visible()
    first_feature = production_model.manifest["features"][0]["name"]
    expect(page.get_by_role("cell", name=first_feature, exact=True)).to_be_visible()
    # Monitoring is for auditors and admins: an analyst is not offered the link.
    expect(page.get_by_role("link", name="Accuracy and drift")).to_have_count(0)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download ONNX").click()
    download = download_info.value
    assert download.suggested_filename == f"{production_model.name}-v1-onnx.zip"
    with zipfile.ZipFile(download.path()) as archive:
        assert set(archive.namelist()) == {"model.onnx", "manifest.json", "SHA256SUMS"}
    assert violations == []
