"""The floodsite user (ours from migration 0001 so it can grow) and its API tokens."""

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from knox.models import AbstractAuthToken

from accounts.roles import ROLE_ORDER, Role


class User(AbstractUser):  # type: ignore[django-manager-missing]  # knox names the reverse relation
    """A person who signs in to the site or owns API tokens."""

    class Meta(AbstractUser.Meta):
        ordering = ["username"]
        swappable = "AUTH_USER_MODEL"

    def __str__(self) -> str:
        return self.get_full_name() or self.username

    @property
    def role(self) -> Role | None:
        """The strongest role group the user is in (a superuser counts as admin), or None."""
        if self.is_superuser:
            return Role.ADMIN
        # Iterating groups.all() uses a prefetch_related("groups") when the caller made one.
        names = {group.name for group in self.groups.all()}
        return next((role for role in ROLE_ORDER if role.value in names), None)


class ApiToken(AbstractAuthToken):
    """A named, expiring API token; only its SHA-512 digest is stored (django-rest-knox)."""

    name = models.CharField(max_length=100, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["user", "-created"], name="api_token_user_created")]

    @property
    def is_expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()

    def __str__(self) -> str:
        return f"{self.name or 'token'} {self.token_key}… ({self.user})"
