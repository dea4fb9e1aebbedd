"""An analyst's day in a real browser: predict, read the result, what-if, history, export."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from predictions.models import Outcome, Prediction

# Each starts Chromium against a live server: seconds per test.
pytestmark = pytest.mark.slow


def test_predict_read_what_if_history_export_and_outcome(production_model, signed_in, shot):
    page = signed_in
    shot("home")
    page.get_by_role("link", name="Make a prediction").click()
    expect(page.get_by_role("heading", name="Flood risk for a site")).to_be_visible()
    rain = page.get_by_label("Rainfall 24h")
    rain.fill("620")
    expect(page.get_by_text("Outside the typical range (0 to 500 mm)")).to_be_visible()
    rain.fill("350")
    page.get_by_label("Rainfall 72h").fill("700")
    shot("predict")
    page.get_by_role("button", name="Predict flood risk").click()

    expect(page.get_by_role("heading", name=re.compile(r"Flood probability \d+"))).to_be_visible()
    prediction = Prediction.objects.get()
    assert prediction.source == "web"
    assert prediction.inputs["rainfall_24h_mm"] == 350
    expect(page.get_by_text(f"Risk band: {prediction.risk_band.title()}")).to_be_visible()
    expect(page.get_by_text("What moved the probability")).to_be_visible()
    shot("result")

    page.locator("#id_feature_1").select_option("rainfall_24h_mm")
    page.locator("#id_value_1").fill("5")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#what-if-result")).to_contain_text("What if:")
    assert page.url.endswith(f"/predictions/{prediction.pk}/")  # stayed on the page
    # The what-if answer is kept for audit under its own source, never as a prediction.
    assert Prediction.objects.count() == 1
    assert Prediction.all_sources.filter(source="what_if").count() == 1

    page.get_by_label("Yes, it flooded").check()
    page.get_by_label("Note").fill("Water in the high street")
    page.get_by_role("button", name="Record outcome").click()
    expect(page.get_by_text("It flooded.")).to_be_visible()
    assert Outcome.objects.get().prediction_id == prediction.pk

    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    expect(page.get_by_text("1 prediction.")).to_be_visible()  # the what-if is not history
    page.get_by_label("Outcome").select_option("true")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("1 prediction.")).to_be_visible()
    shot("history")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [row["id"] for row in rows] == [str(prediction.pk)]
    assert rows[0]["observed_flooded"] == "yes"


def test_the_form_says_what_to_fix(signed_in, production_model):
    page = signed_in
    page.goto("/predict/")
    page.get_by_label("Soil moisture").fill("")
    page.get_by_role("button", name="Predict flood risk").click()
    expect(page.get_by_text("Some values need fixing")).to_be_visible()
    expect(page.get_by_text("Enter a value.")).to_be_visible()
    assert not Prediction.objects.exists()


def test_no_csp_violations_on_the_main_pages(signed_in, production_model):
    page = signed_in
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    for path in ("/", "/predict/", "/predictions/"):
        page.goto(path)
    assert violations == []
