"""The floodsite project package as a Django app: its system checks."""

from django.apps import AppConfig


class FloodsiteConfig(AppConfig):
    name = "floodsite"

    def ready(self) -> None:
        from floodsite import checks  # noqa: F401 (registers the checks)
