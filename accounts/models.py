"""The floodsite user: Django's AbstractUser, ours from migration 0001 so it can grow."""

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A person who signs in to the site or owns API tokens."""

    class Meta(AbstractUser.Meta):
        ordering = ["username"]
        swappable = "AUTH_USER_MODEL"

    def __str__(self) -> str:
        return self.get_full_name() or self.username
