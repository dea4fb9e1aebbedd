"""App config for accounts: keeps the role groups in line with accounts.roles after migrate."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, using: str = "default", **kwargs) -> None:
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    from accounts.roles import ADMIN_APPS
    from accounts.services import role_sync

    # post_migrate reaches accounts before predictions and mlcore, whose permissions would
    # otherwise be created only after this handler has run.
    for label in ADMIN_APPS:
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using)
    role_sync(using=using)


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Also runs after the database flush between transactional tests, which empties the
        # groups that the roles migration created.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="accounts.sync_roles")
