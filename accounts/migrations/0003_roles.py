"""Create the analyst, auditor and admin groups with their permissions.

The definitions are frozen here as they were when the roles were introduced; the post_migrate
sync in accounts.apps keeps the groups in line with accounts.roles afterwards.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ANALYST = [
    "predictions.add_prediction",
    "predictions.view_prediction",
    "predictions.add_outcome",
    "predictions.view_outcome",
]
ROLES = {
    "analyst": ANALYST,
    "auditor": [*ANALYST, "predictions.view_all_predictions"],
}
ADMIN_APPS = ["accounts", "predictions", "mlcore", "auth"]


def create_roles(apps, schema_editor):
    # Permissions are normally created after the whole migrate run (post_migrate); on a fresh
    # database they do not exist yet at this point, so create them for the apps we need.
    for label in {"accounts", "predictions", "mlcore", "auth", "contenttypes"}:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for perm in perms:
            app_label, codename = perm.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.add(*Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["analyst", "auditor", "admin"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_apitoken"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("mlcore", "0001_initial"),
        ("predictions", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
