"""Pages of the site register: the list with search, register a site, edit one, and the
options the prediction form's site search shows."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.permissions import permissions_required
from accounts.roles import ADD_SITE, CHANGE_SITE, PREDICT, VIEW_SITES
from floodsite.exceptions import ApplicationError
from mlcore.engine import schema
from mlcore.engine.schema import FeatureSpec, Manifest
from mlcore.selectors import model_version_get_production
from predictions.forms import PLACE_PREFIX, SiteForm
from predictions.sites import SEARCH_LIMIT, site_create, site_get, site_list, site_update

PAGE_SIZE = 50


def _place_specs() -> list[FeatureSpec]:
    try:
        version = model_version_get_production(name=settings.FLOODSITE_MODEL_NAME)
    except ApplicationError:
        return []  # no model yet: sites can still be registered, without place values
    return schema.place_features(Manifest.from_dict(version.manifest))


@login_required
@permissions_required(VIEW_SITES)
def site_index(request: HttpRequest) -> HttpResponse:
    """The register in code order, searched by code or name, a page at a time (keyset)."""
    search = request.GET.get("q", "").strip()[:200]
    after = request.GET.get("after", "")[:64]
    sites = list(site_list(search=search, after=after)[: PAGE_SIZE + 1])
    following = sites[PAGE_SIZE - 1].code if len(sites) > PAGE_SIZE else ""
    context: dict[str, Any] = {
        "sites": sites[:PAGE_SIZE],
        "search": search,
        "after": after,
        "following": following,
        "place_count": len(_place_specs()),
        "may_add": request.user.has_perm(ADD_SITE),
        "may_change": request.user.has_perm(CHANGE_SITE),
        "may_predict": request.user.has_perm(PREDICT),
    }
    return render(request, "predictions/sites.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@permissions_required(VIEW_SITES, ADD_SITE)
def site_new(request: HttpRequest) -> HttpResponse:
    form = SiteForm(request.POST or None, place_specs=_place_specs())
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                site_create(user=request.user, code=form.cleaned_data["code"], **form.values())
            except ApplicationError as exc:
                form.add_service_errors(exc.fields, exc.message)
            else:
                return redirect(f"{_index_url()}?q={form.cleaned_data['code']}")
    return render(
        request, "predictions/site_form.html", {"form": form, "site": None}, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
@permissions_required(VIEW_SITES, CHANGE_SITE)
def site_edit(request: HttpRequest, code: str) -> HttpResponse:
    site = site_get(code=code)
    specs = _place_specs()
    initial: dict[str, Any] = {
        "name": site.name,
        "latitude": site.latitude,
        "longitude": site.longitude,
        "notes": site.notes,
    }
    for spec in specs:
        value = (site.features or {}).get(spec.name)
        initial[PLACE_PREFIX + spec.name] = "" if value is None else f"{value:g}"
    form = SiteForm(request.POST or None, place_specs=specs, editing=True, initial=initial)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            values = form.values()
            # The form shows the production model's place features; a field left blank
            # clears that value.
            values["features"] = {k: v for k, v in values["features"].items() if v}
            try:
                site_update(site=site, changes=values)
            except ApplicationError as exc:
                form.add_service_errors(exc.fields, exc.message)
            else:
                return redirect(f"{_index_url()}?q={site.code}")
    return render(
        request, "predictions/site_form.html", {"form": form, "site": site}, status=status
    )


@login_required
@permissions_required(VIEW_SITES)
def site_options(request: HttpRequest) -> HttpResponse:
    """htmx: the datalist options for what was typed in a site field (code or name)."""
    typed = (request.GET.get("site") or request.GET.get("q") or "").strip()[:200]
    sites = list(site_list(search=typed)[:SEARCH_LIMIT]) if typed else []
    options = [
        # The page's script fills the place fields from these (escaped as an attribute).
        {"code": site.code, "name": site.name, "features": json.dumps(site.features or {})}
        for site in sites
    ]
    return render(request, "predictions/_site_options.html", {"options": options})


def _index_url() -> str:
    return reverse("sites")
