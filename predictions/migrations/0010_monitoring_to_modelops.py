"""State only: MonitoringReport and Alert move to modelops (modelops 0001), keeping their
tables and rows."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("predictions", "0009_outcome_add_outcome_any"),
    ]

    operations = [
        # State only: the table stays where it is and modelops takes the model over
        # (its Meta.db_table names this table), so no row moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="monitoringreport",
                    name="model_version",
                ),
                migrations.DeleteModel(
                    name="Alert",
                ),
                migrations.DeleteModel(
                    name="MonitoringReport",
                ),
            ],
            database_operations=[],
        ),
    ]
