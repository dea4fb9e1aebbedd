"""The site register: create and edit sites, find them, and their place values for a prediction.

Writes (``site_create``, ``site_update``) check every value first and raise one
ApplicationError naming each field to fix: a code taken or malformed, coordinates out of
range, a place value that is not a place feature of the production model or is past its hard
limits. Reads (``site_list``, ``site_get``, ``site_for_code``) return what anyone allowed to
see the register may see: sites are shared, not owned.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from floodsite.exceptions import ApplicationError
from mlcore.engine import schema
from mlcore.engine.schema import FeatureSpec, Manifest
from mlcore.selectors import model_version_get_production
from predictions.models import SITE_CODE_PATTERN, SITE_CODE_RULE, Site

_CODE = re.compile(SITE_CODE_PATTERN)
NAME_MAX = Site._meta.get_field("name").max_length or 200
NOTES_MAX = 2000
SEARCH_LIMIT = 20
# The register's own pages live beside the sites' (/sites/new/, /sites/options/).
RESERVED_CODES = frozenset({"new", "options"})
# The fields a write may set, besides the code (set once, at creation).
EDITABLE = ("name", "latitude", "longitude", "notes", "features")


def _production_place_specs() -> list[FeatureSpec] | None:
    """The production model's place features, or None when no model is in production."""
    try:
        version = model_version_get_production(name=settings.FLOODSITE_MODEL_NAME)
    except ApplicationError:
        return None
    return schema.place_features(Manifest.from_dict(version.manifest))


def _coordinate(value: Any, *, name: str, limit: int) -> tuple[float | None, str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, ""
    if isinstance(value, bool):
        return None, "must be a number"
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None, "must be a number"
    if not math.isfinite(number) or not -limit <= number <= limit:
        return None, f"must be between -{limit} and {limit} (decimal degrees)"
    return number, ""


def site_values_check(values: Mapping[str, Any], *, code: str | None) -> dict[str, Any]:
    """The values cleaned, or one ApplicationError naming every field to fix."""
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if code is not None:
        code = code.strip() if isinstance(code, str) else ""
        if not _CODE.fullmatch(code):
            problems["code"] = f"use {SITE_CODE_RULE}"
        elif code in RESERVED_CODES:
            problems["code"] = f"{code!r} names a page of the register; choose another code"
        elif Site.objects.filter(code=code).exists():
            problems["code"] = f"a site with code {code!r} already exists"
        clean["code"] = code
    if "name" in values:
        name = values["name"].strip() if isinstance(values["name"], str) else ""
        if not name:
            problems["name"] = "required"
        elif len(name) > NAME_MAX:
            problems["name"] = f"at most {NAME_MAX} characters"
        clean["name"] = name
    for field, limit in (("latitude", 90), ("longitude", 180)):
        if field in values:
            clean[field], problem = _coordinate(values[field], name=field, limit=limit)
            if problem:
                problems[field] = problem
    if "notes" in values:
        notes = values["notes"] or ""
        if not isinstance(notes, str) or len(notes) > NOTES_MAX:
            problems["notes"] = f"text of at most {NOTES_MAX} characters"
        clean["notes"] = notes if isinstance(notes, str) else ""
    if "features" in values:
        features = values["features"] or {}
        if not isinstance(features, Mapping):
            problems["features"] = "must be an object of place-feature values by name"
        elif features:
            specs = _production_place_specs()
            if specs is None:
                problems["features"] = (
                    "no model is in production to check place values against; leave them "
                    "out for now"
                )
            else:
                clean["features"], wrong = schema.validate_some(specs, features)
                for feature, reason in wrong.items():
                    if reason == schema.UNKNOWN:
                        reason = "not a place feature of the production model"
                    problems[f"features.{feature}"] = reason
        else:
            clean["features"] = {}
    if problems:
        raise ApplicationError(
            "Some site values are invalid: " + ", ".join(sorted(problems)) + ".",
            fields=problems,
        )
    return clean


def site_create(
    *,
    user: Any,
    code: str,
    name: str,
    latitude: float | None = None,
    longitude: float | None = None,
    notes: str = "",
    features: Mapping[str, Any] | None = None,
) -> Site:
    """Register a site; a code already taken is a 400 naming it (also when two race)."""
    clean = site_values_check(
        {
            "name": name,
            "latitude": latitude,
            "longitude": longitude,
            "notes": notes,
            "features": features or {},
        },
        code=code,
    )
    try:
        with transaction.atomic():
            return Site.objects.create(created_by_id=getattr(user, "pk", None), **clean)
    except IntegrityError as exc:
        raise ApplicationError(
            f"A site with code {clean['code']!r} already exists.",
            fields={"code": f"a site with code {clean['code']!r} already exists"},
            code="duplicate_site",
        ) from exc


def site_update(*, site: Site, changes: Mapping[str, Any]) -> Site:
    """Change some of a site's values (its code stays); ``features`` replaces the whole set."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ApplicationError(
            "Only a site's name, coordinates, notes and place values can be changed.",
            fields={name: "cannot be changed" for name in unknown},
        )
    clean = site_values_check(changes, code=None)
    for field, value in clean.items():
        setattr(site, field, value)
    site.save(update_fields=[*clean, "updated_at"])
    return site


def sites_create_missing(*, user: Any, names: Mapping[str, str]) -> dict[str, int]:
    """Register the sites of ``names`` (code -> name) that do not exist yet; code -> id of all.

    For a batch file's unknown codes, inside the chunk's transaction: a code another worker
    registered meanwhile is kept as it is (its name is not overwritten).
    """
    if names:
        Site.objects.bulk_create(
            [Site(code=code, name=name, created_by=user) for code, name in names.items()],
            ignore_conflicts=True,
        )
    return dict(Site.objects.filter(code__in=list(names)).values_list("code", "id"))


def site_list(*, search: str = "", after: str = "") -> QuerySet[Site]:
    """Sites in code order (the unique index), optionally those whose code starts with
    ``search`` or whose name contains it, from the code after ``after`` on (keyset paging)."""
    sites = Site.objects.all()
    search = search.strip()
    if search:
        sites = sites.filter(Q(code__istartswith=search) | Q(name__icontains=search))
    if after:
        sites = sites.filter(code__gt=after)
    return sites.order_by("code")


def site_get(*, code: str) -> Site:
    """The site with this code, or a 404."""
    site = Site.objects.filter(code=code).first()
    if site is None:
        raise ApplicationError(
            f"No site has the code {code!r}.",
            fields={"code": "no such site"},
            code="not_found",
            status_code=404,
        )
    return site


def site_for_code(code: Any) -> Site:
    """The site a prediction names; an unknown or malformed code is a 400 naming it."""
    if not isinstance(code, str) or not code.strip():
        raise ApplicationError(
            "The site must be a site code.",
            fields={"site": "must be a site code (text)"},
            code="unknown_site",
        )
    site = Site.objects.filter(code=code.strip()).first()
    if site is None:
        shown = code.strip()[:64]
        raise ApplicationError(
            f"Unknown site code {shown!r}; register the site first.",
            fields={"site": f"unknown site code {shown!r}"},
            code="unknown_site",
        )
    return site


def site_place_values(site: Site, manifest: Manifest) -> dict[str, float]:
    """The site's values of ``manifest``'s place features (a model may ask for fewer)."""
    stored = site.features or {}
    return {
        spec.name: stored[spec.name]
        for spec in schema.place_features(manifest)
        if stored.get(spec.name) is not None
    }


def site_inputs(site: Site, manifest: Manifest, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` completed with the site's place values: a value given (not blank) wins."""
    merged: dict[str, Any] = site_place_values(site, manifest)
    for name, value in inputs.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            merged.setdefault(name, value)
        else:
            merged[name] = value
    return merged
