"""App config for accounts: role groups kept in line with accounts.roles after migrate; a saved
user's reusable token checks dropped."""

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


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


def _forget_user_tokens(sender, instance, **kwargs) -> None:
    from accounts.authentication import forget_checked_user

    # A renamed or deactivated user is answered as they now are by this process's next request.
    forget_checked_user(instance.pk)


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Also runs after the database flush between transactional tests, which empties the
        # groups that the roles migration created.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="accounts.sync_roles")
        user = self.get_model("User")
        for signal in (post_save, post_delete):
            signal.connect(_forget_user_tokens, sender=user, dispatch_uid="accounts.forget_tokens")
