"""MonitoringReport and Alert (from predictions) and RetrainJob (from mlcore) move here,
keeping their tables and rows; their content types (so their permissions) move too."""

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.contrib.contenttypes.models import ContentType as CurrentContentType
from django.db import migrations, models

# (app label the model had, model name): the models this app took over with their tables.
MOVED = [("predictions", "monitoringreport"), ("predictions", "alert"), ("mlcore", "retrainjob")]


def _relabel(apps, schema_editor, *, forward: bool) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    types = ContentType.objects.using(schema_editor.connection.alias)
    for old_label, model in MOVED:
        source, target = ("modelops", old_label) if not forward else (old_label, "modelops")
        # A database that already has the target type (made by hand) keeps both untouched.
        if not types.filter(app_label=target, model=model).exists():
            types.filter(app_label=source, model=model).update(app_label=target)
    # The process's content type cache may still name the old labels.
    CurrentContentType.objects.clear_cache()


def content_types_move(apps, schema_editor) -> None:
    _relabel(apps, schema_editor, forward=True)


def content_types_return(apps, schema_editor) -> None:
    _relabel(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("mlcore", "0004_retrainjob_to_modelops"),
        ("predictions", "0010_monitoring_to_modelops"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # State only: the tables exist already (created by predictions and mlcore, whose
        # state drops these models in predictions 0010 and mlcore 0004), so no row moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="MonitoringReport",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "created_at",
                            models.DateTimeField(default=django.utils.timezone.now, editable=False),
                        ),
                        ("window_start", models.DateTimeField()),
                        ("window_end", models.DateTimeField()),
                        ("metrics", models.JSONField(default=dict)),
                        (
                            "model_version",
                            models.ForeignKey(
                                blank=True,
                                help_text="The production version at the time of the check (empty if none).",
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="monitoring_reports",
                                to="mlcore.modelversion",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "predictions_monitoringreport",
                        "ordering": ["-created_at", "-id"],
                    },
                ),
                migrations.CreateModel(
                    name="Alert",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("drift", "Input or output drift"),
                                    ("error_rate", "Batch row error rate"),
                                    ("latency", "Slow predictions"),
                                    ("accuracy_drop", "Accuracy drop"),
                                    ("no_traffic", "No traffic"),
                                ],
                                max_length=20,
                            ),
                        ),
                        (
                            "severity",
                            models.CharField(
                                choices=[("warning", "Warning"), ("critical", "Critical")],
                                default="warning",
                                max_length=10,
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("open", "Open"),
                                    ("acknowledged", "Acknowledged"),
                                    ("resolved", "Resolved"),
                                ],
                                default="open",
                                max_length=12,
                            ),
                        ),
                        (
                            "subject",
                            models.CharField(
                                blank=True,
                                help_text="What the alert is about, e.g. a feature name.",
                                max_length=200,
                            ),
                        ),
                        ("message", models.TextField()),
                        ("first_seen", models.DateTimeField(default=django.utils.timezone.now)),
                        ("last_seen", models.DateTimeField(default=django.utils.timezone.now)),
                        ("occurrences", models.PositiveIntegerField(default=1)),
                        ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "acknowledged_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "resolved_by",
                            models.ForeignKey(
                                blank=True,
                                help_text="Empty when a later check found the condition gone and resolved it.",
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "report",
                            models.ForeignKey(
                                blank=True,
                                help_text="The latest check that saw the condition.",
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="alerts",
                                to="modelops.monitoringreport",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "predictions_alert",
                        "ordering": ["-last_seen", "-id"],
                    },
                ),
                migrations.CreateModel(
                    name="RetrainJob",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "name",
                            models.SlugField(help_text="Model name to retrain.", max_length=100),
                        ),
                        (
                            "include_original",
                            models.BooleanField(
                                default=False,
                                help_text="Add the production model's original synthetic training data.",
                            ),
                        ),
                        (
                            "min_outcomes",
                            models.PositiveIntegerField(
                                default=0,
                                help_text="Refuse to train on fewer outcomes than this (0: no minimum).",
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("queued", "Queued"),
                                    ("running", "Running"),
                                    ("succeeded", "Succeeded"),
                                    ("failed", "Failed"),
                                ],
                                default="queued",
                                max_length=10,
                            ),
                        ),
                        ("step", models.CharField(blank=True, max_length=300)),
                        (
                            "percent",
                            models.PositiveSmallIntegerField(
                                default=0,
                                validators=[
                                    django.core.validators.MinValueValidator(0),
                                    django.core.validators.MaxValueValidator(100),
                                ],
                            ),
                        ),
                        ("error", models.TextField(blank=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "model_version",
                            models.ForeignKey(
                                blank=True,
                                help_text="The candidate this job registered.",
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="mlcore.modelversion",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "mlcore_retrainjob",
                        "ordering": ["-created_at", "-id"],
                    },
                ),
                migrations.AddIndex(
                    model_name="monitoringreport",
                    index=models.Index(fields=["-created_at"], name="monitoring_report_created"),
                ),
                migrations.AddConstraint(
                    model_name="monitoringreport",
                    constraint=models.CheckConstraint(
                        condition=models.Q(("window_start__lte", models.F("window_end"))),
                        name="monitoring_report_window_ordered",
                    ),
                ),
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(
                        fields=["status", "-last_seen"], name="alert_status_last_seen"
                    ),
                ),
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(fields=["kind", "status"], name="alert_kind_status"),
                ),
                migrations.AddConstraint(
                    model_name="alert",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("status__in", ["open", "acknowledged"])),
                        fields=("kind", "subject"),
                        name="alert_one_active_per_kind_subject",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="retrainjob",
                    constraint=models.CheckConstraint(
                        condition=models.Q(("percent__gte", 0), ("percent__lte", 100)),
                        name="retrain_percent_0_100",
                    ),
                ),
            ],
            database_operations=[],
        ),
        # Permissions (and admin log entries) follow their content type, so the roles and any
        # permission given to a person keep working under the new app label.
        migrations.RunPython(content_types_move, content_types_return, elidable=False),
    ]
