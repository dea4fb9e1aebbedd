"""App config for model operations: plugs its readers into the layers below when Django starts."""

from django.apps import AppConfig


class ModelopsConfig(AppConfig):
    name = "modelops"
    verbose_name = "Model operations"

    def ready(self) -> None:
        # Imported here: app modules need the app registry, which is ready only now.
        from floodsite.metrics import database_reader_register
        from mlcore.outcomes import outcome_reader_register
        from modelops.metrics import database_families
        from modelops.outcomes import outcomes_for_gate

        # The promotion gate (mlcore) scores candidates on recorded outcomes read here.
        outcome_reader_register(outcomes_for_gate)
        # /metrics (floodsite) asks for alerts, live versions and drift at scrape time.
        database_reader_register(database_families)
