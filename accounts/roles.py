"""The three roles (auth groups) and the permissions each one grants."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    """A role is an auth group of the same name; a user holds at most one of them."""

    ANALYST = "analyst", "Analyst"
    AUDITOR = "auditor", "Auditor"
    ADMIN = "admin", "Administrator"


# Strongest first: a user who somehow holds two role groups is shown as the stronger one.
ROLE_ORDER = [Role.ADMIN, Role.AUDITOR, Role.ANALYST]

# What each page and endpoint asks for ("app_label.codename"); accounts.permissions checks them.
PREDICT = "predictions.add_prediction"  # score: form, API, batches, what-if
VIEW_PREDICTIONS = "predictions.view_prediction"  # read your own history, jobs and results
VIEW_ALL_PREDICTIONS = "predictions.view_all_predictions"  # ... and everyone else's
RECORD_OUTCOME = "predictions.add_outcome"  # on your own predictions
RECORD_OUTCOME_ANY = "predictions.add_outcome_any"  # on anyone's: outcomes feed the gate
CANCEL_ANY_BATCH = "predictions.change_batchjob"  # stop someone else's batch job
VIEW_SITES = "predictions.view_site"  # the site register: list, search, its values
ADD_SITE = "predictions.add_site"  # register a site (pages, API, a batch's unknown codes)
CHANGE_SITE = "predictions.change_site"  # edit a site's name, position, notes, place values
VIEW_MODELS = "mlcore.view_modelversion"  # the model pages and the edge download
VIEW_MONITORING = "modelops.view_monitoringreport"  # dashboard, charts, alert banner
HANDLE_ALERTS = "modelops.change_alert"  # acknowledge or resolve an alert
RUN_CHECKS = "modelops.add_monitoringreport"  # run a monitoring check from the page

_ANALYST = [
    PREDICT,
    VIEW_PREDICTIONS,
    RECORD_OUTCOME,
    "predictions.view_outcome",
    VIEW_SITES,
    VIEW_MODELS,
]

# "app_label.codename" permissions per role; admin holds every permission of these apps,
# which alone includes RECORD_OUTCOME_ANY, CANCEL_ANY_BATCH and RUN_CHECKS.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Analysts keep the shared site register; auditors read it.
    Role.ANALYST: [*_ANALYST, ADD_SITE, CHANGE_SITE],
    Role.AUDITOR: [
        *_ANALYST,
        VIEW_ALL_PREDICTIONS,
        VIEW_MONITORING,
        "modelops.view_alert",
        HANDLE_ALERTS,
    ],
}
ADMIN_APPS = ["accounts", "predictions", "mlcore", "modelops", "auth"]
