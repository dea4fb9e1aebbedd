"""Permission checks for pages and API views: the role permissions each request needs.

Both read the user of this request, whose permissions Django loads once per request (the
session and the token are looked up afresh each time), so removing a role or a permission
takes effect on the next request. The prediction fast path, which may reuse a token it checked
a moment ago, has its own check in the audit INSERT (accounts.authentication).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import TYPE_CHECKING, Any, cast

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.permissions import IsAuthenticated

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

    from accounts.http import View
    from floodsite.exceptions import ApplicationError

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _permission_name(permission: str) -> str:
    """The permission's own name ("Can add prediction"), or its code when it has none."""
    from django.contrib.auth.models import Permission

    app_label, codename = permission.split(".", 1)
    found = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    name = found.values_list("name", flat=True).first()
    return f"“{name}” ({permission})" if name else permission


def permission_denied(permission: str) -> ApplicationError:
    """The 403 for a user without ``permission``, naming it and who can grant it."""
    # Imported here: DRF imports this module (DEFAULT_PERMISSION_CLASSES) while
    # rest_framework.views, which floodsite.exceptions imports, is still loading.
    from floodsite.exceptions import ApplicationError

    return ApplicationError(
        f"You need the permission {_permission_name(permission)}; ask an administrator for "
        "a role that has it.",
        fields={"permission": permission},
        code="permission_denied",
        status_code=403,
    )


def check_permissions(user: Any, permissions: Iterable[str]) -> None:
    """Raise the 403 for the first of ``permissions`` that ``user`` lacks."""
    for permission in permissions:
        if not user.has_perm(permission):
            raise permission_denied(permission)


def check_owner_or_permission(user: Any, *, owner_id: Any, permission: str) -> None:
    """Acting on your own object needs nothing more; on someone else's, ``permission``."""
    if owner_id != user.pk and not user.has_perm(permission):
        raise permission_denied(permission)


def permissions_required(*permissions: str, unsafe: Iterable[str] = ()) -> Callable[[View], View]:
    """Page decorator: sign-in first, then ``permissions`` for every method and ``unsafe``
    too for a POST (or any method that changes something). A user without one gets the
    403 page naming it."""
    writes = tuple(unsafe)

    def decorator(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            needed = permissions if request.method in SAFE_METHODS else permissions + writes
            check_permissions(request.user, needed)
            return view(request, *args, **kwargs)

        return cast("View", login_required(checked))

    return decorator


class RequiredPermissions(IsAuthenticated):
    """DRF's default permission class: signed in, and the view's ``required_permissions``.

    ``required_permissions`` maps a method to the permissions it needs, e.g.
    ``{"GET": (VIEW_PREDICTIONS,), "POST": (PREDICT,)}``; HEAD needs what GET needs and
    OPTIONS (the description of the endpoint) only a signed-in user. A view without the
    attribute needs only a signed-in user: accounts' own pages (tokens) and the schema.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            return False
        table: dict[str, Iterable[str]] = getattr(view, "required_permissions", {})
        method = "GET" if request.method == "HEAD" else request.method
        # Raised rather than returned: DRF's own 403 could not name the missing permission.
        check_permissions(request.user, table.get(method or "", ()))
        return True
