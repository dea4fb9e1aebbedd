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

_ANALYST = [
    "predictions.add_prediction",
    "predictions.view_prediction",
    "predictions.add_outcome",
    "predictions.view_outcome",
]

# "app_label.codename" permissions per role; admin holds every permission of these apps.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    Role.ANALYST: _ANALYST,
    Role.AUDITOR: [*_ANALYST, "predictions.view_all_predictions"],
}
ADMIN_APPS = ["accounts", "predictions", "mlcore", "auth"]
