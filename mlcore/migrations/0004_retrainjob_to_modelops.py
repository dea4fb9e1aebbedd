"""State only: RetrainJob moves to modelops (modelops 0001), keeping its table and rows."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("mlcore", "0003_retrainjob"),
    ]

    operations = [
        # State only: the table stays where it is and modelops takes the model over
        # (its Meta.db_table names this table), so no row moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name="RetrainJob",
                ),
            ],
            database_operations=[],
        ),
    ]
