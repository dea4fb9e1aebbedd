"""Forms of the predictions pages, generated from the production model's feature schema."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from mlcore.engine.schema import FeatureSpec, Manifest
from predictions.models import Source

NO_UNIT = "no unit given"

# Unit words that end many feature names; the unit is shown next to the field instead.
_UNIT_SUFFIXES = {"mm", "m", "pct", "deg", "km2", "km", "per"}


def feature_label(spec: FeatureSpec) -> str:
    """'rainfall_24h_mm' -> 'Rainfall 24h' (the unit, 'mm', is shown beside the input)."""
    words = spec.name.split("_")
    while len(words) > 1 and words[-1].lower() in _UNIT_SUFFIXES:
        words.pop()
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _number(value: float) -> str:
    return f"{value:g}"


def hard_limit_validators(spec: FeatureSpec, *, label: str = "") -> list[Any]:
    """Validators refusing values past the feature's hard limits, with the limit in the message.

    The service refuses them too; checking here names the field in the form's own words.
    """
    reason = spec.hard_limit_reason()
    message = f"{label} {reason}." if label else f"{reason[:1].upper()}{reason[1:]}."
    message = message.replace("%", "%%")  # the validator fills in %(limit_value)s
    validators: list[Any] = []
    if spec.hard_minimum is not None:
        validators.append(MinValueValidator(spec.hard_minimum, message=message))
    if spec.hard_maximum is not None:
        validators.append(MaxValueValidator(spec.hard_maximum, message=message))
    return validators


def _hard_limit_attrs(spec: FeatureSpec) -> dict[str, str]:
    # The browser refuses them before sending, too.
    attrs = {}
    if spec.hard_minimum is not None:
        attrs["min"] = _number(spec.hard_minimum)
    if spec.hard_maximum is not None:
        attrs["max"] = _number(spec.hard_maximum)
    return attrs


class FeatureUnit:
    """A feature's field knows its unit, which the page shows next to the label."""

    unit = ""


class NumberFeatureField(FeatureUnit, forms.FloatField):
    pass


class WholeNumberFeatureField(FeatureUnit, forms.IntegerField):
    pass


class CategoryFeatureField(FeatureUnit, forms.TypedChoiceField):
    pass


def _category_field(spec: FeatureSpec) -> CategoryFeatureField:
    """A select of the category's labels; the value sent on is the code."""
    reason = spec.category_reason()
    return CategoryFeatureField(
        label=feature_label(spec),
        choices=[(_number(code), f"{label} ({code})") for code, label in spec.categories],
        coerce=int,
        help_text=f"{spec.description} One of the listed {spec.name} codes.",
        error_messages={
            "required": "Choose one.",
            "invalid_choice": f"{reason[:1].upper()}{reason[1:]}.",
        },
    )


def site_field(*, options_url: str = "") -> forms.CharField:
    """The site picker: a text input with a datalist that an htmx search fills as one types."""
    attrs = {"list": "site-options", "autocomplete": "off", "spellcheck": "false"}
    if options_url:
        attrs.update(
            {
                "hx-get": options_url,
                "hx-trigger": "input changed delay:250ms",
                "hx-target": "#site-options",
                "hx-swap": "innerHTML",
            }
        )
    return forms.CharField(
        label="Site",
        required=False,
        max_length=64,
        help_text="Type a site's code or name and pick it: its place values are filled in. "
        "Values you change are used for this prediction only; the site keeps its own.",
        widget=forms.TextInput(attrs=attrs),
    )


class PredictionForm(forms.Form):
    """One field per feature of the manifest, grouped as the manifest groups them.

    Values outside a feature's typical range are allowed (the model scores them and the result
    flags them); the page warns as the analyst types, it does not refuse. Values outside its
    hard limits (physically impossible) are refused next to the field.

    A site may be named: place features left blank are then filled from the site's values
    (by the service), so they are not required here; ``place`` gives a site's values as the
    form's initial ones.
    """

    submission = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        manifest: Manifest,
        place: dict[str, float] | None = None,
        options_url: str = "",
        **kwargs: Any,
    ) -> None:
        initial = kwargs.setdefault("initial", {})
        for name, value in (place or {}).items():
            initial.setdefault(name, _number(value))
        for spec in manifest.features:
            initial.setdefault(spec.name, _number(spec.default))  # a category's code, too
        initial.setdefault("submission", uuid.uuid4())
        super().__init__(*args, **kwargs)
        self.manifest = manifest
        self.fields["site"] = site_field(options_url=options_url)
        for spec in manifest.features:
            if spec.kind == "category":
                self.fields[spec.name] = _category_field(spec)
                self.fields[spec.name].required = spec.scope != "place"
                continue
            field_class: type[NumberFeatureField | WholeNumberFeatureField] = (
                WholeNumberFeatureField if spec.dtype == "int" else NumberFeatureField
            )
            # A model trained from a CSV without a schema file knows no units; say so rather
            # than leave the analyst guessing whether a blank means "none".
            unit = f" ({spec.unit})" if spec.unit else f" ({NO_UNIT})"
            limits = f" Possible values: {spec.hard_limit_text()}." if spec.has_hard_limits else ""
            cycle = (
                f" A cycle of {_number(spec.period)}: the last value is next to the first."
                if spec.kind == "cyclic" and spec.period is not None
                else ""
            )
            field = self.fields[spec.name] = field_class(
                label=feature_label(spec),
                help_text=(
                    f"{spec.description} Typical range {_number(spec.minimum)} to "
                    f"{_number(spec.maximum)}{unit}.{limits}{cycle}"
                ),
                validators=hard_limit_validators(spec),
                error_messages={
                    "required": "Enter a value.",
                    "invalid": ("Enter a whole number" if spec.dtype == "int" else "Enter a number")
                    + f", e.g. {_number(spec.default)}.",
                },
                required=spec.scope != "place",
                widget=forms.NumberInput(
                    attrs={
                        "step": "1" if spec.dtype == "int" else "any",
                        **({"data-place": spec.name} if spec.scope == "place" else {}),
                        "inputmode": "numeric" if spec.dtype == "int" else "decimal",
                        **_hard_limit_attrs(spec),
                        "data-typical-min": _number(spec.minimum),
                        "data-typical-max": _number(spec.maximum),
                        "data-unit": spec.unit,
                    }
                ),
            )
            field.unit = spec.unit or NO_UNIT

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        """Bound fields by the manifest's feature groups, in schema order."""
        grouped: OrderedDict[str, list[forms.BoundField]] = OrderedDict()
        for spec in self.manifest.features:
            grouped.setdefault(spec.group or "Inputs", []).append(self[spec.name])
        return list(grouped.items())

    def inputs(self) -> dict[str, float | None]:
        """The values entered; a blank place feature is None (the site's value fills it)."""
        return {spec.name: self.cleaned_data.get(spec.name) for spec in self.manifest.features}

    def site_code(self) -> str | None:
        return (self.cleaned_data.get("site") or "").strip() or None

    def add_service_errors(self, fields: dict[str, str]) -> None:
        """Attach the service's `inputs.<feature>` errors to the matching fields."""
        for key, reason in fields.items():
            name = key.removeprefix("inputs.")
            if name in self.fields and name in self.errors:
                continue  # the form's own message already says it
            self.add_error(name if name in self.fields else None, str(reason))


class WhatIfForm(forms.Form):
    """Change one or two inputs of a prediction and compare."""

    feature_1 = forms.ChoiceField(label="Change")
    value_1 = forms.FloatField(label="to")
    feature_2 = forms.ChoiceField(label="and change", required=False)
    value_2 = forms.FloatField(label="to", required=False)

    def __init__(self, *args: Any, manifest: Manifest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._specs = {spec.name: spec for spec in manifest.features}
        choices = [(spec.name, feature_label(spec)) for spec in manifest.features]
        cast(forms.ChoiceField, self.fields["feature_1"]).choices = choices
        cast(forms.ChoiceField, self.fields["feature_2"]).choices = [
            ("", "(nothing else)"),
            *choices,
        ]
        for name in ("value_1", "value_2"):
            self.fields[name].widget.attrs.update({"step": "any", "inputmode": "decimal"})

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("feature_2") and data.get("value_2") is None:
            self.add_error("value_2", "Enter the new value, or choose nothing else.")
        if data.get("feature_2") and data.get("feature_2") == data.get("feature_1"):
            self.add_error("feature_2", "Choose a different input.")
        for feature, value in (("feature_1", "value_1"), ("feature_2", "value_2")):
            spec = self._specs.get(data.get(feature) or "")
            if spec is None or data.get(value) is None:
                continue
            for validator in hard_limit_validators(spec, label=feature_label(spec)):
                try:
                    validator(data[value])
                except forms.ValidationError as exc:
                    self.add_error(value, exc)
                    break
        return data

    def changes(self) -> dict[str, float]:
        changed = {self.cleaned_data["feature_1"]: self.cleaned_data["value_1"]}
        if self.cleaned_data.get("feature_2"):
            changed[self.cleaned_data["feature_2"]] = self.cleaned_data["value_2"]
        return changed


class OutcomeForm(forms.Form):
    flooded = forms.TypedChoiceField(
        label="Did it flood?",
        choices=[("yes", "Yes, it flooded"), ("no", "No, it did not flood")],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
    )
    observed_at = forms.DateTimeField(
        label="Observed at",
        required=False,
        help_text="Leave empty for now.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    note = forms.CharField(
        label="Note", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3})
    )


class HistoryFilterForm(forms.Form):
    """The history page's filters; names match predictions.selectors.PredictionFilter."""

    created_after = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_before = forms.DateField(
        label="Until", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    risk_band = forms.ChoiceField(label="Risk band", required=False)
    source = forms.ChoiceField(
        label="Source", required=False, choices=[("", "Any"), *Source.choices]
    )
    model_version = forms.IntegerField(label="Model version", required=False, min_value=1)
    site = forms.CharField(label="Site code", required=False, max_length=64)
    outcome_known = forms.ChoiceField(
        label="Outcome",
        required=False,
        choices=[("", "Any"), ("true", "Recorded"), ("false", "Not recorded")],
    )
    user = forms.CharField(label="User", required=False, max_length=150)
    sort = forms.ChoiceField(
        label="Sort by",
        required=False,
        choices=[
            ("-created_at", "Newest first"),
            ("created_at", "Oldest first"),
            ("-probability", "Highest probability"),
            ("probability", "Lowest probability"),
        ],
    )

    def __init__(self, *args: Any, bands: list[str], can_filter_users: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        risk_band = cast(forms.ChoiceField, self.fields["risk_band"])
        risk_band.choices = [("", "Any"), *[(b, b.title()) for b in bands]]
        if not can_filter_users:
            del self.fields["user"]

    def selector_filters(self) -> dict[str, str]:
        """The cleaned filters as the selector's query parameters (dates as whole days)."""
        filters: dict[str, str] = {}
        data = self.cleaned_data
        if data.get("created_after"):
            filters["created_after"] = f"{data['created_after'].isoformat()}T00:00:00"
        if data.get("created_before"):
            day_after = data["created_before"] + timedelta(days=1)
            filters["created_before"] = f"{day_after.isoformat()}T00:00:00"
        for name in ("risk_band", "source", "outcome_known", "user", "site"):
            if data.get(name):
                filters[name] = data[name]
        if data.get("model_version"):
            filters["model_version"] = str(data["model_version"])
        return filters


class BatchUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="One row per site, one column per model input, a header row first.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )


PLACE_PREFIX = "place_"


class SiteForm(forms.Form):
    """A site of the register: code (set once), name, coordinates, notes and the production
    model's place values. predictions.sites checks them again and names what to fix."""

    code = forms.CharField(
        label="Code",
        max_length=64,
        help_text="Unique; letters, digits, dots, dashes or underscores. Cannot be changed later.",
    )
    name = forms.CharField(label="Name", max_length=200)
    latitude = forms.FloatField(
        label="Latitude",
        required=False,
        min_value=-90,
        max_value=90,
        help_text="Decimal degrees, -90 to 90.",
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    longitude = forms.FloatField(
        label="Longitude",
        required=False,
        min_value=-180,
        max_value=180,
        help_text="Decimal degrees, -180 to 180.",
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    notes = forms.CharField(
        label="Notes",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(
        self, *args: Any, place_specs: list[FeatureSpec], editing: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.place_specs = place_specs
        if editing:
            del self.fields["code"]
        for spec in place_specs:
            unit = f" ({spec.unit})" if spec.unit else ""
            self.fields[PLACE_PREFIX + spec.name] = forms.CharField(
                label=f"{feature_label(spec)}{unit}",
                required=False,
                help_text=f"{spec.description} Leave blank if not known.",
                widget=forms.TextInput(attrs={"inputmode": "decimal"}),
            )

    def place_fields(self) -> list[forms.BoundField]:
        return [self[PLACE_PREFIX + spec.name] for spec in self.place_specs]

    def base_fields_bound(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if not name.startswith(PLACE_PREFIX)]

    def values(self) -> dict[str, Any]:
        """The cleaned values as predictions.sites takes them (place values by feature)."""
        data = {
            name: self.cleaned_data.get(name) for name in ("name", "latitude", "longitude", "notes")
        }
        data["features"] = {
            spec.name: self.cleaned_data.get(PLACE_PREFIX + spec.name) for spec in self.place_specs
        }
        return data

    def add_service_errors(self, fields: dict[str, str], message: str) -> None:
        for key, reason in fields.items():
            name = PLACE_PREFIX + key.removeprefix("features.") if "." in key else key
            self.add_error(name if name in self.fields else None, str(reason))
        if not fields:
            self.add_error(None, message)
