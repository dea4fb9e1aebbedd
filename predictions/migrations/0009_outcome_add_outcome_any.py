"""The permission to record an outcome on another user's prediction (add_outcome_any).

Only the admin role holds it: the post_migrate role sync (accounts.apps) gives the admin group
every permission of the app, and the analyst and auditor groups only those accounts.roles
lists.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("predictions", "0008_batch_chunk_lease"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="outcome",
            options={
                "ordering": ["-observed_at", "-id"],
                "permissions": [
                    ("add_outcome_any", "Can record outcomes on any user's prediction")
                ],
            },
        ),
    ]
