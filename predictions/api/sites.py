"""API views for the site register: list and search, register, read and change one site."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from accounts.roles import ADD_SITE, CHANGE_SITE, VIEW_SITES
from floodsite.exceptions import ApplicationError
from floodsite.rest import StrictSerializer, TextField, TextRegexField
from predictions.models import SITE_CODE_PATTERN, Site
from predictions.sites import site_create, site_get, site_list, site_update

PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


class SiteOut(serializers.Serializer):
    code = serializers.CharField()
    url = serializers.URLField()
    name = serializers.CharField()
    latitude = serializers.FloatField(allow_null=True)
    longitude = serializers.FloatField(allow_null=True)
    notes = serializers.CharField(allow_blank=True)
    features = serializers.DictField(
        child=serializers.FloatField(), help_text="Place-feature values by feature name."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def site_to_dict(site: Site, request: Request) -> dict[str, Any]:
    return {
        "code": site.code,
        "url": reverse("api-site-detail", kwargs={"code": site.code}, request=request),
        "name": site.name,
        "latitude": site.latitude,
        "longitude": site.longitude,
        "notes": site.notes,
        "features": site.features,
        "created_at": site.created_at.isoformat(),
        "updated_at": site.updated_at.isoformat(),
    }


_FEATURES_HELP = (
    "Values of the production model's place features (x-scope: place) by name; each within "
    "the feature's hard limits."
)


class SiteCreateInput(StrictSerializer):
    code = TextRegexField(SITE_CODE_PATTERN, help_text="Unique code of the site.")
    name = TextField(max_length=200)
    latitude = serializers.FloatField(required=False, allow_null=True, min_value=-90, max_value=90)
    longitude = serializers.FloatField(
        required=False, allow_null=True, min_value=-180, max_value=180
    )
    notes = TextField(required=False, allow_blank=True, max_length=2000)
    features = serializers.DictField(required=False, help_text=_FEATURES_HELP)


class SiteUpdateInput(StrictSerializer):
    name = TextField(required=False, max_length=200)
    latitude = serializers.FloatField(required=False, allow_null=True, min_value=-90, max_value=90)
    longitude = serializers.FloatField(
        required=False, allow_null=True, min_value=-180, max_value=180
    )
    notes = TextField(required=False, allow_blank=True, max_length=2000)
    features = serializers.DictField(
        required=False, help_text=_FEATURES_HELP + " Replaces the site's whole set."
    )


class SiteCollectionApi(APIView):
    """GET the register (search by code or name, in code order); POST a new site."""

    required_permissions = {"GET": (VIEW_SITES,), "POST": (VIEW_SITES, ADD_SITE)}

    @property
    def throttle_scope(self) -> str:
        return "predict" if self.request.method == "POST" else "read"

    @extend_schema(
        operation_id="sites_list",
        parameters=[
            OpenApiParameter(
                "search", str, description="Codes starting with it, or names containing it."
            ),
            OpenApiParameter(
                "after", str, description="The page after this code (the `next` link has it)."
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                description=f"Sites per page (default {PAGE_SIZE}).",
            ),
        ],
        responses={
            200: inline_serializer(
                "SitePage",
                {
                    "results": SiteOut(many=True),
                    "next": serializers.URLField(
                        allow_null=True, help_text="The next page, or null after the last."
                    ),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("limit", str(PAGE_SIZE))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
            raise ApplicationError(
                f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}.",
                fields={"limit": f"a whole number from 1 to {MAX_PAGE_SIZE}"},
            )
        limit = int(raw)
        search = request.query_params.get("search", "")
        sites = list(
            site_list(search=search, after=request.query_params.get("after", ""))[: limit + 1]
        )
        following = None
        if len(sites) > limit:
            sites = sites[:limit]
            query = request.query_params.copy()
            query["after"] = sites[-1].code
            following = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response(
            {"results": [site_to_dict(site, request) for site in sites], "next": following}
        )

    @extend_schema(operation_id="sites_create", request=SiteCreateInput, responses={201: SiteOut})
    def post(self, request: Request) -> Response:
        serializer = SiteCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = site_create(user=request.user, **serializer.validated_data)
        body = site_to_dict(site, request)
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


class SiteDetailApi(APIView):
    """GET one site by its code; PATCH its name, coordinates, notes or place values."""

    required_permissions = {"GET": (VIEW_SITES,), "PATCH": (VIEW_SITES, CHANGE_SITE)}
    http_method_names = ["get", "patch", "head", "options"]

    @property
    def throttle_scope(self) -> str:
        return "read" if self.request.method == "GET" else "predict"

    @extend_schema(operation_id="sites_retrieve", responses={200: SiteOut})
    def get(self, request: Request, code: str) -> Response:
        return Response(site_to_dict(site_get(code=code), request))

    @extend_schema(
        operation_id="sites_partial_update", request=SiteUpdateInput, responses={200: SiteOut}
    )
    def patch(self, request: Request, code: str) -> Response:
        site = site_get(code=code)
        serializer = SiteUpdateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = site_update(site=site, changes=serializer.validated_data)
        return Response(site_to_dict(site, request))
