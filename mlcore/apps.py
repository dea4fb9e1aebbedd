"""App config for mlcore: adds the served model to the readiness probe when Django starts."""

from django.apps import AppConfig


class MlcoreConfig(AppConfig):
    name = "mlcore"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # Imported here: the selectors need the app registry, which is ready only now.
        from floodsite.health import readiness_check_register
        from mlcore.selectors import predictor_readiness

        readiness_check_register("model", predictor_readiness)
