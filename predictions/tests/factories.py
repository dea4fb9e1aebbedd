"""factory-boy factories for the audit log (predictions and outcomes) and batch jobs.

Rows written this way skip scoring: for tests of what reads the log (monitoring, shadow
comparison, pages). Tests of how predictions are made go through the services.
"""

from __future__ import annotations

import factory
from django.utils import timezone

from accounts.tests.factories import UserFactory
from mlcore.tests.factories import ModelVersionFactory
from predictions.models import BatchJob, Outcome, Prediction, Source


class PredictionFactory(factory.django.DjangoModelFactory[Prediction]):
    """An API prediction of the model version's default inputs."""

    class Meta:
        model = Prediction

    user = factory.SubFactory(UserFactory)
    source = Source.API
    model_version = factory.SubFactory(ModelVersionFactory)
    inputs = factory.LazyAttribute(
        lambda p: {f["name"]: f["default"] for f in p.model_version.manifest["features"]}
    )
    probability = 0.2
    label = factory.LazyAttribute(lambda p: "flood" if p.probability >= 0.5 else "no_flood")
    risk_band = "low"
    latency_ms = 1.0


class OutcomeFactory(factory.django.DjangoModelFactory[Outcome]):
    """What happened at a prediction's site, reported by the prediction's user just now."""

    class Meta:
        model = Outcome

    prediction = factory.SubFactory(PredictionFactory)
    flooded = False
    observed_at = factory.LazyFunction(timezone.now)
    reported_by = factory.SelfAttribute("prediction.user")


class BatchJobFactory(factory.django.DjangoModelFactory[BatchJob]):
    """A batch job's row (no file behind it): set the counts and status a test reads."""

    class Meta:
        model = BatchJob

    owner = factory.SubFactory(UserFactory)
    source = Source.BATCH
    input_file = "batches/x/input.csv"
    original_name = "input.csv"
    model_version = factory.SubFactory(ModelVersionFactory)
