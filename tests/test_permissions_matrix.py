"""Who may do what: every URL pattern, role, and own or other object, by status.

The matrix below is the access policy in one table (accounts/roles.py grants it, the views
check it). Every URL pattern of the site must have a row, so a new page or endpoint fails
this test until someone decides who may use it. Columns are the roles in ROLES order:
anonymous, signed in without a role, analyst, auditor, admin (the admin role, not a
superuser). "own" is the signed-in user's object; "other" belongs to another analyst, so
another user's object is a 404 for those who may not read it and a 403 for those who may
read but not change it.

Web pages send anonymous visitors to sign in (302); the API answers them 401. A user without
the permission gets 403 in the one error format, the page or JSON naming the permission.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.roles import Role
from accounts.services import api_token_create, user_set_role
from mlcore.engine import synthetic
from modelops import services
from modelops.models import Alert, AlertKind
from predictions.models import BatchJob, BatchStatus, Outcome, Prediction, Site, Source
from predictions.services import prediction_create

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

ROLES = ("anonymous", "none", "analyst", "auditor", "admin")
PASSWORD = "flood-risk-matrix-1"


@dataclass
class World:
    """The users, their objects and the model every case runs against."""

    users: dict[str, User]
    owner: User  # the "other" user: an analyst whose objects the others try to reach
    model: Any
    inputs: dict[str, Any]
    tokens: dict[int, str] = field(default_factory=dict)

    def prediction(self, user: User) -> str:
        return str(
            prediction_create(user=user, source=Source.API, inputs=self.inputs, request_id="m").pk
        )

    def job(self, user: User, *, finished: bool = True) -> str:
        job = BatchJob(
            owner=user,
            source=Source.WEB,
            original_name="sites.csv",
            model_version=self.model,
            status=BatchStatus.SUCCEEDED if finished else BatchStatus.QUEUED,
            total_rows=1,
            processed_rows=1 if finished else 0,
            finished_at=timezone.now() if finished else None,
        )
        job.input_file.save("input.csv", ContentFile(b"a\n1\n"), save=False)
        if finished:
            results = ContentFile(b"row,probability\n1,0.1\n")
            job.result_file.save("results.csv", results, save=False)
            job.error_file.save("errors.csv", ContentFile(b"row,column,reason\n"), save=False)
        job.save()
        return str(job.pk)

    def token(self, user: User) -> str:
        if user.pk not in self.tokens:
            _, self.tokens[user.pk] = api_token_create(user=user, name="matrix", expires_in_days=1)
        return self.tokens[user.pk]

    def csv_upload(self) -> SimpleUploadedFile:
        data = synthetic.generate(3, seed=5).drop(columns="flooded").to_csv(index=False)
        return SimpleUploadedFile("sites.csv", data.encode(), content_type="text/csv")


Kwargs = Callable[[World, User], dict[str, Any]]
Data = Callable[[World], Any]


def _none(world: World, user: User) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Case:
    """One request and the status each role gets, for its own object and for another's."""

    name: str  # URL name
    method: str
    own: str  # statuses in ROLES order; for URLs without an object, the only row
    other: str | None = None  # the same request on the other user's object
    kwargs: Kwargs = _none
    data: Data | None = None
    api: bool = False
    multipart: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    # Pages that do not depend on the role at all (sign-in, password reset, health): every
    # signed-in role must get the same answer, and never a 403.
    neutral: bool = False

    def expected(self, whose: str) -> dict[str, int]:
        row = self.own if whose == "own" else self.other
        assert row is not None
        codes = [int(code) for code in row.split()]
        assert len(codes) == len(ROLES), self
        return dict(zip(ROLES, codes, strict=True))


def prediction_kw(world: World, user: User) -> dict[str, Any]:
    return {"prediction_id": world.prediction(user)}


def job_kw(world: World, user: User) -> dict[str, Any]:
    return {"job_id": world.job(user)}


def running_job_kw(world: World, user: User) -> dict[str, Any]:
    return {"job_id": world.job(user, finished=False)}


def model_kw(world: World, user: User) -> dict[str, Any]:
    return {"name": world.model.name, "version": world.model.version}


def alert_kw(world: World, user: User) -> dict[str, Any]:
    alert = Alert.objects.create(kind=AlertKind.LATENCY, subject=uuid.uuid4().hex, message="slow")
    return {"alert_id": alert.pk}


def token_kw(world: World, user: User) -> dict[str, Any]:
    token, _ = api_token_create(user=user, name="to revoke", expires_in_days=1)
    return {"token_key": token.token_key}


def site_kw(world: World, user: User) -> dict[str, Any]:
    site = Site.objects.create(code=f"M-{uuid.uuid4().hex[:8]}", name="Matrix site")
    return {"code": site.code}


def predict_form(world: World) -> dict[str, Any]:
    return {**world.inputs, "submission": str(uuid.uuid4())}


def what_if_form(world: World) -> dict[str, Any]:
    return {"feature_1": "rainfall_24h_mm", "value_1": 120}


API_READ = "401 403 200 200 200"
API_READ_OTHER = "401 403 404 200 200"
PAGE_READ = "302 403 200 200 200"
PAGE_READ_OTHER = "302 403 404 200 200"
MONITOR = "302 403 403 200 200"

MATRIX: list[Case] = [
    # --- the prediction API -----------------------------------------------------------------
    # A plain token call is answered by the fast path, one with an Idempotency-Key by DRF.
    Case("api-predictions", "POST", "401 403 201 201 201", api=True,
         data=lambda w: {"inputs": w.inputs}),
    Case("api-predictions", "POST", "401 403 201 201 201", api=True,
         data=lambda w: {"inputs": w.inputs}, headers={"HTTP_IDEMPOTENCY_KEY": "matrix-1"}),
    Case("api-predictions", "GET", API_READ, api=True),
    Case("api-prediction-detail", "GET", API_READ, API_READ_OTHER, prediction_kw, api=True),
    # Outcomes feed the promotion gate and retraining: on someone else's prediction only
    # admins may record one; an auditor reads it but is refused.
    Case("api-prediction-outcome", "POST", "401 403 201 201 201", "401 403 404 403 201",
         prediction_kw, data=lambda w: {"flooded": True}, api=True),
    Case("api-batches", "GET", API_READ, api=True),
    Case("api-batches", "POST", "401 403 202 202 202", api=True, multipart=True,
         data=lambda w: {"file": w.csv_upload()}),
    Case("api-batch-detail", "GET", API_READ, API_READ_OTHER, job_kw, api=True),
    Case("api-batch-cancel", "POST", "401 403 200 200 200", "401 403 404 403 200",
         running_job_kw, api=True),
    Case("api-batch-results", "GET", API_READ, API_READ_OTHER, job_kw, api=True),
    Case("api-batch-errors", "GET", API_READ, API_READ_OTHER, job_kw, api=True),
    # --- the site register: analysts and admins keep it, auditors read it (shared, no owner) --
    Case("api-sites", "GET", API_READ, api=True),
    Case("api-sites", "POST", "401 403 201 403 201", api=True,
         data=lambda w: {"code": "M-NEW", "name": "New site"}),
    Case("api-site-detail", "GET", API_READ, kwargs=site_kw, api=True),
    Case("api-site-detail", "PATCH", "401 403 200 403 200", kwargs=site_kw, api=True,
         data=lambda w: {"notes": "checked"}),
    # --- the model registry API -------------------------------------------------------------
    Case("api-models", "GET", API_READ, api=True),
    Case("api-model-active", "GET", API_READ, api=True),
    Case("api-model-detail", "GET", API_READ, kwargs=model_kw, api=True),
    Case("api-model-onnx", "GET", API_READ, kwargs=model_kw, api=True),
    # --- API tokens and the API's description: any signed-in user -----------------------------
    Case("api-tokens", "GET", "401 200 200 200 200", api=True),
    Case("api-token", "DELETE", "401 204 204 204 204", "401 404 404 404 404", token_kw,
         api=True),
    Case("api-schema", "GET", "200 200 200 200 200", api=True),
    Case("api-docs", "GET", "200 200 200 200 200", api=True),
    # --- prediction pages ---------------------------------------------------------------------
    Case("home", "GET", "302 200 200 200 200"),
    Case("predict", "GET", PAGE_READ),
    Case("predict", "POST", "302 403 302 302 302", data=predict_form),
    Case("history", "GET", PAGE_READ),
    Case("history_export", "GET", PAGE_READ),
    Case("prediction_detail", "GET", PAGE_READ, PAGE_READ_OTHER, prediction_kw),
    Case("prediction_what_if", "POST", PAGE_READ, PAGE_READ_OTHER, prediction_kw,
         data=what_if_form),
    Case("prediction_outcome", "POST", "302 403 302 302 302", "302 403 404 403 302",
         prediction_kw, data=lambda w: {"flooded": "yes"}),
    # --- batch pages --------------------------------------------------------------------------
    Case("batches", "GET", PAGE_READ),
    Case("batches", "POST", "302 403 302 302 302", data=lambda w: {"file": w.csv_upload()},
         multipart=True),
    Case("batch_template", "GET", PAGE_READ),
    Case("batch_detail", "GET", PAGE_READ, PAGE_READ_OTHER, job_kw),
    Case("batch_progress", "GET", PAGE_READ, PAGE_READ_OTHER, job_kw),
    Case("batch_cancel", "POST", "302 403 302 302 302", "302 403 404 403 302", running_job_kw),
    Case("batch_download", "GET", PAGE_READ, PAGE_READ_OTHER,
         lambda w, u: {**job_kw(w, u), "kind": "results"}),
    # --- site pages -----------------------------------------------------------------------------
    Case("sites", "GET", PAGE_READ),
    Case("site_options", "GET", PAGE_READ),
    Case("site_new", "GET", "302 403 200 403 200"),
    Case("site_new", "POST", "302 403 302 403 302",
         data=lambda w: {"code": "M-PAGE", "name": "Page site"}),
    Case("site_edit", "GET", "302 403 200 403 200", kwargs=site_kw),
    Case("site_edit", "POST", "302 403 302 403 302", kwargs=site_kw,
         data=lambda w: {"name": "Renamed"}),
    # A site's risk (timeline, map, top-risk table) is the team's: whoever reads the register.
    Case("site_detail", "GET", PAGE_READ, kwargs=site_kw),
    Case("site_map", "GET", PAGE_READ),
    Case("site_map_data", "GET", PAGE_READ),
    # --- model pages --------------------------------------------------------------------------
    Case("model_list", "GET", PAGE_READ),
    Case("model_detail", "GET", PAGE_READ, kwargs=model_kw),
    Case("model_onnx", "GET", PAGE_READ, kwargs=model_kw),
    # The shadow comparison reads every user's predictions.
    Case("model_shadow", "GET", MONITOR, kwargs=model_kw),
    # --- monitoring: auditors and admins; running a check is for admins ----------------------
    Case("monitoring", "GET", MONITOR),
    Case("monitoring_check", "POST", "302 403 403 403 302"),
    Case("alert_acknowledge", "POST", "302 403 403 302 302", kwargs=alert_kw),
    Case("alert_resolve", "POST", "302 403 403 302 302", kwargs=alert_kw),
    Case("chart_bands", "GET", MONITOR),
    Case("chart_latency", "GET", MONITOR),
    Case("chart_errors", "GET", MONITOR),
    Case("chart_accuracy", "GET", MONITOR),
    Case("chart_calibration", "GET", MONITOR, kwargs=lambda w, u: {"version_id": w.model.pk}),
    Case("chart_psi", "GET", MONITOR, kwargs=lambda w, u: {"subject": "rainfall_24h_mm"}),
    # --- accounts: a user's own account, whatever the role ------------------------------------
    Case("profile", "GET", "302 200 200 200 200"),
    Case("tokens", "GET", "302 200 200 200 200"),
    Case("token_revoke", "POST", "302 302 302 302 302", "302 404 404 404 404", token_kw),
    Case("token_created", "GET", "302 302 302 302 302", neutral=True),
    Case("password_change", "GET", "302 200 200 200 200", neutral=True),
    Case("password_change_done", "GET", "302 200 200 200 200", neutral=True),
    Case("logout", "POST", "302 302 302 302 302", neutral=True),
    Case("login", "GET", "200 302 302 302 302", neutral=True),
    Case("signup", "GET", "404 404 404 404 404", neutral=True),
    Case("password_reset", "GET", "200 200 200 200 200", neutral=True),
    Case("password_reset_done", "GET", "200 200 200 200 200", neutral=True),
    Case("password_reset_complete", "GET", "200 200 200 200 200", neutral=True),
    Case("password_reset_confirm", "GET", "200 200 200 200 200", neutral=True,
         kwargs=lambda w, u: {"uidb64": "MQ", "token": "set-password"}),
    Case("api-tokens", "POST", "401 401 401 401 401", api=True, neutral=True,
         data=lambda w: {"username": "nobody", "password": "wrong", "name": "x"}),
    # --- probes and the scrape: no user involved ---------------------------------------------
    Case("healthz", "GET", "200 200 200 200 200", neutral=True),
    Case("readyz", "GET", "200 200 200 200 200", neutral=True),
    Case("metrics", "GET", "200 200 200 200 200", neutral=True),
]  # fmt: skip


def url_names() -> set[str]:
    """Every named URL pattern of the site except Django admin (which checks its own)."""

    def walk(patterns: list[Any]) -> set[str]:
        names: set[str] = set()
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace != "admin":
                    names |= walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                assert pattern.name, f"unnamed URL pattern {pattern.pattern}"
                names.add(pattern.name)
        return names

    return walk(get_resolver().url_patterns)


def test_every_url_pattern_is_in_the_matrix():
    missing = url_names() - {case.name for case in MATRIX}
    assert not missing, f"decide who may use these and add them to MATRIX: {sorted(missing)}"
    stale = {case.name for case in MATRIX} - url_names()
    assert not stale, f"no such URL any more: {sorted(stale)}"


@pytest.fixture
def world(production_model, typical_inputs) -> World:
    def person(username: str, role: Role | None) -> User:
        user = User.objects.create_user(
            username=username, email=f"{username}@example.org", password=PASSWORD
        )
        return user_set_role(user=user, role=role) if role else user

    users = {
        "none": person("nora", None),
        "analyst": person("ana", Role.ANALYST),
        "auditor": person("audrey", Role.AUDITOR),
        "admin": person("adam", Role.ADMIN),
    }
    world = World(
        users=users,
        owner=person("owen", Role.ANALYST),
        model=production_model,
        inputs=typical_inputs,
    )
    # One check over one prediction, so that every chart has something to draw.
    world.prediction(world.owner)
    services.monitoring_report_create(window_minutes=settings.MONITOR_WINDOW_MINUTES)
    return world


def send(world: World, case: Case, role: str, whose: str) -> int:
    user = world.users.get(role)
    owner = world.owner if whose == "other" or user is None else user
    url = reverse(case.name, kwargs=case.kwargs(world, owner))
    if case.api:
        client: Any = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {world.token(user)}")
    else:
        client = Client()
        if user is not None:
            client.force_login(user)
    data = case.data(world) if case.data else None
    call = getattr(client, case.method.lower())
    if data is None:
        response = call(url, **case.headers)
    elif case.api:
        response = call(url, data, format="multipart" if case.multipart else "json", **case.headers)
    else:
        response = call(url, data, **case.headers)
    return response.status_code


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_status_the_matrix_gives(world, role, settings):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    wrong = []
    for case in MATRIX:
        for whose in ("own", "other") if case.other else ("own",):
            status = send(world, case, role, whose)
            expected = case.expected(whose)[role]
            if status != expected:
                wrong.append(f"{case.method} {case.name} ({whose}): {status}, expected {expected}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def test_role_neutral_pages_answer_every_role_alike(world, settings):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    for case in (case for case in MATRIX if case.neutral):
        statuses = {role: send(world, case, role, "own") for role in ROLES if role != "anonymous"}
        assert len(set(statuses.values())) == 1, (case.name, statuses)
        assert 403 not in statuses.values(), (case.name, statuses)


def test_permission_errors_name_the_permission_in_the_error_format(world):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {world.token(world.users['none'])}")
    response = api.post("/api/v1/predictions/", {"inputs": world.inputs}, format="json")
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "permission_denied"
    assert body["error"]["fields"] == {"permission": "predictions.add_prediction"}
    assert "Can add prediction" in body["error"]["message"]
    assert body["request_id"] == response["X-Request-ID"]

    page = Client()
    page.force_login(world.users["analyst"])
    response = page.get(reverse("monitoring"))
    assert response.status_code == 403
    assert "modelops.view_monitoringreport" in response.content.decode()
    assert not Prediction.objects.filter(user=world.users["none"]).exists()


# --- revocation: the next request, cached tokens included -------------------------------------


def fast_post(client: APIClient, world: World):
    return client.post("/api/v1/predictions/", {"inputs": world.inputs}, format="json")


def test_removing_the_analyst_role_refuses_the_next_call_with_the_same_cached_token(world):
    analyst = world.users["analyst"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.token(analyst)}")
    assert fast_post(client, world).status_code == 201  # the fast path now reuses the token
    assert fast_post(client, world).status_code == 201
    page = Client()
    page.force_login(analyst)
    assert page.get(reverse("predict")).status_code == 200

    analyst.groups.remove(Group.objects.get(name=Role.ANALYST))

    refused = fast_post(client, world)
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"]["fields"] == {"permission": "predictions.add_prediction"}
    assert Prediction.objects.filter(user=analyst).count() == 2
    assert client.get("/api/v1/predictions/").status_code == 403
    assert page.get(reverse("predict")).status_code == 403
    assert page.get(reverse("history")).status_code == 403
    # And given back, it works at once again.
    user_set_role(user=analyst, role=Role.ANALYST)
    assert fast_post(client, world).status_code == 201


def test_a_permission_taken_from_the_role_itself_applies_to_cached_tokens(world):
    analyst, auditor = world.users["analyst"], world.users["auditor"]
    clients = {}
    for user in (analyst, auditor):
        clients[user.pk] = APIClient()
        clients[user.pk].credentials(HTTP_AUTHORIZATION=f"Token {world.token(user)}")
        assert fast_post(clients[user.pk], world).status_code == 201

    group = Group.objects.get(name=Role.ANALYST)
    group.permissions.remove(group.permissions.get(codename="add_prediction"))

    assert fast_post(clients[analyst.pk], world).status_code == 403
    assert fast_post(clients[auditor.pk], world).status_code == 201  # the auditor group keeps it


def test_a_permission_held_directly_by_the_user_is_checked_like_a_role(world):
    from django.contrib.auth.models import Permission

    person = world.users["none"]
    predict = Permission.objects.get(codename="add_prediction")
    person.user_permissions.add(predict)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.token(person)}")
    assert fast_post(client, world).status_code == 201
    assert fast_post(client, world).status_code == 201
    person.user_permissions.remove(predict)
    assert fast_post(client, world).status_code == 403
    assert ApiToken.objects.filter(user=person).exists()  # the token itself still works
    assert client.get("/api/v1/auth/tokens/").status_code == 200


# --- outcomes on someone else's prediction ----------------------------------------------------


def test_an_auditor_cannot_record_an_outcome_for_someone_else_but_an_admin_can(world):
    theirs = world.prediction(world.owner)
    url = f"/api/v1/predictions/{theirs}/outcome/"
    auditor = APIClient()
    auditor.credentials(HTTP_AUTHORIZATION=f"Token {world.token(world.users['auditor'])}")
    refused = auditor.post(url, {"flooded": True}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["fields"] == {"permission": "predictions.add_outcome_any"}
    assert not Outcome.objects.filter(prediction_id=theirs).exists()
    # The auditor still reads it, and the owner can still record the outcome.
    assert auditor.get(f"/api/v1/predictions/{theirs}/").status_code == 200
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Token {world.token(world.owner)}")
    assert owner.post(url, {"flooded": False}, format="json").status_code == 201

    other = world.prediction(world.owner)
    admin = APIClient()
    admin.credentials(HTTP_AUTHORIZATION=f"Token {world.token(world.users['admin'])}")
    response = admin.post(f"/api/v1/predictions/{other}/outcome/", {"flooded": True}, format="json")
    assert response.status_code == 201
    assert Outcome.objects.get(prediction_id=other).reported_by == world.users["admin"]
