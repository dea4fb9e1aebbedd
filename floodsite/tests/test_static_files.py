"""Production serves hashed static files: setup_site collects them, /readyz checks the manifest."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

PRODUCTION_STATIC = "whitenoise.storage.CompressedManifestStaticFilesStorage"


@pytest.fixture
def production_static(settings, tmp_path):
    """The production storage over an empty STATIC_ROOT, as after a non-Docker install."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": PRODUCTION_STATIC}}
    return settings.STATIC_ROOT


def test_readyz_names_static_files_when_the_manifest_is_missing(
    client, production_model, production_static
):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503, body
    assert body["failing"] == ["static"]
    detail = body["components"]["static"]["detail"]
    assert "staticfiles manifest" in detail and "collectstatic" in detail


@pytest.mark.slow
def test_setup_site_collects_static_files_so_pages_render(
    client, production_model, production_static, user
):
    out = StringIO()
    call_command("setup_site", skip_migrate=True, stdout=out)
    assert "Static files collected" in out.getvalue()
    assert (production_static / "staticfiles.json").is_file()
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["components"]["static"]["ok"] is True
    client.force_login(user)
    page = client.get("/")
    assert page.status_code == 200
    assert "/static/" in page.content.decode()


def test_setup_site_leaves_static_files_alone_when_asked(
    production_model, production_static, settings
):
    out = StringIO()
    call_command("setup_site", skip_migrate=True, skip_collectstatic=True, stdout=out)
    assert not production_static.exists()
