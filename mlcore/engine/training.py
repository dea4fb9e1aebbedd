"""Training: loading messy CSVs into clean frames, fitting pipelines and measuring them."""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlcore.engine import assessment, drift, encoding, labels, synthetic
from mlcore.engine import calibration as calibrate
from mlcore.engine.artifacts import sha256_file
from mlcore.engine.columns import (
    NA_TOKENS,
    ColumnRole,
    assign_roles,
    format_roles,
    read_column,
)
from mlcore.engine.errors import DataError
from mlcore.engine.feature_schema import features_from_frame
from mlcore.engine.schema import (
    DEFAULT_RISK_BANDS,
    FeatureSpec,
    Manifest,
    RiskBand,
    bands_with_lowers,
)

ALGORITHMS = ("hgb", "logistic", "random_forest")
_MIN_PER_CLASS = 5
# The share of the training rows held out of fitting to calibrate on (when there are enough).
CALIBRATION_SHARE = 0.2

_LIBRARIES = (
    "numpy",
    "pandas",
    "scipy",
    "joblib",
    "skops",
    "skl2onnx",
    "onnx",
    "onnxruntime",
)


@dataclass
class LoadedData:
    """A cleaned training table plus what was done to it and which file it came from."""

    frame: pd.DataFrame
    features: list[str]
    target: str
    report: list[str] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    label_policy: dict[str, Any] = field(default_factory=dict)
    column_roles: list[ColumnRole] = field(default_factory=list)
    # Every column of the file for the kept rows (numbers or stripped text), row-aligned with
    # ``frame``: time and group columns that split the data are not features.
    context: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class TrainedModel:
    """A fitted pipeline, its manifest, and the held-out split it was measured on."""

    pipeline: Pipeline
    manifest: Manifest
    x_test: np.ndarray
    y_test: np.ndarray


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's behaviour, for the manifest."""
    # artifacts.load_artifact compares against sklearn.__version__, so record exactly that.
    versions = {"python": platform.python_version(), "scikit-learn": sklearn.__version__}
    for distribution in _LIBRARIES:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _na_variants() -> list[str]:
    variants = set()
    for token in NA_TOKENS:
        variants |= {token, token.upper(), token.title()}
    return sorted(variants)


def _read_table(path: str) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    options: dict[str, Any] = {
        "keep_default_na": False,
        "na_values": _na_variants(),
        "skipinitialspace": True,
        "skip_blank_lines": True,
        "low_memory": False,
    }
    try:
        try:
            frame = pd.read_csv(path, encoding="utf-8-sig", **options)
        except UnicodeDecodeError:
            # Excel on Windows still writes cp1252; Latin-1 reads any byte so nothing is lost.
            frame = pd.read_csv(path, encoding="latin-1", **options)
            notes.append("the file is not UTF-8; read it as Latin-1")
    except pd.errors.EmptyDataError as exc:
        raise DataError("the CSV file is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"the CSV file could not be parsed: {exc}") from exc
    return frame, notes


def _clean_headers(frame: pd.DataFrame, report: list[str]) -> pd.DataFrame:
    names = [str(column).strip() for column in frame.columns]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(
            f"duplicate column names: {', '.join(duplicates)}",
            fields={name: "duplicate column" for name in duplicates},
        )
    frame.columns = names
    # A trailing delimiter on every line gives nameless, empty columns; they carry nothing.
    unnamed = [
        name
        for name in names
        if (name == "" or name.startswith("Unnamed: ")) and read_column(frame[name]).blank.all()
    ]
    if unnamed:
        report.append(f"dropped {len(unnamed)} empty unnamed column(s)")
        frame = frame.drop(columns=unnamed)
    return frame


def load_training_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    features: Sequence[str] | None = None,
    blank_target: str = "drop",
    exclude: Sequence[str] = (),
    max_bytes: int = 1_000_000_000,
) -> LoadedData:
    """Read a training CSV into numeric features and a 0/1 target, explaining every change.

    Problems a person must fix (unknown labels, text in a numeric column, a missing target)
    raise DataError naming the column; harmless quirks (BOM, CRLF, padded cells) are fixed and
    recorded in ``report``. ``blank_target`` says what a blank label means (see
    ``mlcore.engine.labels``); the class counts before and after it, and any warning about
    it, are in ``label_policy``. Every column gets a role (``column_roles``); only features are
    fitted on, and ``exclude`` drops columns whatever their role.
    """
    if blank_target not in labels.BLANK_TARGET_POLICIES:
        raise DataError(
            f"blank_target must be one of {', '.join(labels.BLANK_TARGET_POLICIES)}, "
            f"not {blank_target!r}",
            fields={"blank_target": "invalid choice"},
        )
    location = os.fspath(path)
    try:
        size = os.path.getsize(location)
    except OSError as exc:
        raise DataError(f"cannot read {os.path.basename(location)!r}: {exc.strerror}") from exc
    if size > max_bytes:
        raise DataError(
            f"the file is {size:,} bytes, over the {max_bytes:,}-byte limit",
            fields={"file": "too large"},
        )

    raw, report = _read_table(location)
    frame = _clean_headers(raw, report)
    target = target.strip()
    if target not in frame.columns:
        available = ", ".join(frame.columns) or "none"
        raise DataError(
            f"target column {target!r} not found; available columns: {available}",
            fields={target: "missing column"},
        )
    if len(frame) == 0:
        raise DataError("the CSV file has a header but no data rows")
    requested = [name.strip() for name in features] if features is not None else None
    excluded = [name.strip() for name in exclude if name.strip()]
    _check_named_columns(frame, target, requested, excluded)

    target_labels, keep, policy = labels.apply_label_policy(
        labels.target_text(frame[target]), target, blank_target
    )
    frame = frame[keep]
    report.extend(policy["notes"])
    parsed = {name: read_column(frame[name]) for name in frame.columns if name != target}
    roles, role_warnings = assign_roles(
        {**parsed, target: read_column(frame[target])},
        target=target,
        requested=requested,
        exclude=excluded,
    )
    for role in roles:
        if role.role == "id":
            report.append(f"dropped id-like column {role.name!r} ({role.why})")
        elif role.role in ("time", "group"):
            report.append(f"kept {role.name!r} out of the features ({role.role}: {role.why})")
        elif role.role == "text":
            report.append(f"ignored text column {role.name!r}")
    chosen = [role.name for role in roles if role.role == "feature"]
    if requested is not None:
        chosen = requested  # the user's order
    columns: dict[str, pd.Series] = {}
    unparseable: dict[str, str] = {}
    for name in chosen:
        column = parsed[name]
        if len(column.bad):
            examples = ", ".join(repr(value) for value in column.bad.unique()[:3])
            unparseable[name] = f"{len(column.bad)} value(s) are not numbers, e.g. {examples}"
        elif column.numbers.isna().all():
            unparseable[name] = "every value is blank"
        else:
            columns[name] = column.numbers
    if unparseable:
        detail = "; ".join(f"{name!r}: {reason}" for name, reason in unparseable.items())
        raise DataError(
            f"column(s) cannot be used as numeric features: {detail}", fields=unparseable
        )
    if not columns:
        raise DataError("no numeric feature columns are left to train on")

    clean = pd.DataFrame(columns)
    clean[target] = target_labels
    clean = clean.reset_index(drop=True)
    n_missing = int(clean[list(columns)].isna().sum().sum())
    if n_missing:
        report.append(f"{n_missing} blank feature value(s) will be filled with the training median")

    counts = clean[target].value_counts()
    if len(counts) < 2:
        only = "flood" if counts.index[0] == 1 else "no_flood"
        raise DataError(
            f"training needs both classes (flood and no_flood); every row is {only}",
            fields={target: "single class"},
        )
    context = pd.DataFrame({name: column.values() for name, column in parsed.items()})
    context = context.reset_index(drop=True)
    if policy["blank"]:
        labels.check_policy_separation(policy, context, clean[target].to_numpy())
    return LoadedData(
        frame=clean,
        features=list(columns),
        target=target,
        report=report,
        fingerprint={
            "rows": len(clean),
            "columns": [*columns, target],
            "sha256": sha256_file(location),
            "bytes": size,
        },
        label_policy={key: value for key, value in policy.items() if key != "notes"},
        column_roles=roles,
        context=context,
        warnings=[*role_warnings, *policy["warnings"]],
    )


def _check_named_columns(
    frame: pd.DataFrame, target: str, requested: list[str] | None, excluded: list[str]
) -> None:
    named = {"features": requested or [], "exclude": excluded}
    for option, names in named.items():
        missing = [name for name in names if name not in frame.columns]
        if missing:
            kind = "feature" if option == "features" else "excluded"
            raise DataError(
                f"{kind} column(s) not found: {', '.join(missing)}; available columns: "
                f"{', '.join(frame.columns)}",
                fields={name: "missing column" for name in missing},
            )
    if requested is not None and target in requested:
        raise DataError(
            f"the target {target!r} cannot also be a feature", fields={target: "is target"}
        )
    clash = sorted(set(requested or []) & set(excluded))
    if clash:
        raise DataError(
            f"column(s) both chosen and excluded: {', '.join(clash)}",
            fields={name: "in --features and --exclude" for name in clash},
        )


def build_pipeline(
    algorithm: str, *, seed: int = 0, features: Sequence[FeatureSpec] = ()
) -> Pipeline:
    """An unfitted pipeline for one of ALGORITHMS; median imputation keeps blanks usable.

    When ``features`` has category or cyclic features, an ``encode`` step after the
    imputation turns them into the columns the model sees (see engine.encoding).
    """
    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if encoding.needs_encoding(features):
        steps.append(("encode", encoding.encoder_for(features)))
    if algorithm == "hgb":
        model = HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=300, max_leaf_nodes=31, random_state=seed
        )
        return Pipeline([*steps, ("model", model)])
    if algorithm == "logistic":
        return Pipeline(
            [*steps, ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000))]
        )
    if algorithm == "random_forest":
        # Single-threaded so training never starves the web workers sharing the machine.
        model = RandomForestClassifier(
            n_estimators=100, min_samples_leaf=10, n_jobs=1, random_state=seed
        )
        return Pipeline([*steps, ("model", model)])
    raise DataError(
        f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}",
        fields={"algorithm": "unknown algorithm"},
    )


def evaluate(
    y_true: np.ndarray, probability: np.ndarray, risk_bands: Sequence[RiskBand]
) -> dict[str, Any]:
    """Held-out metrics, including how many real floods each risk band threshold catches."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probability = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    positives = y_true == 1
    recall = {
        band.name: float(np.mean(probability[positives] >= band.lower))
        for band in sorted(risk_bands, key=lambda band: band.lower)
        if band.lower > 0 and positives.any()
    }
    both = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, probability)) if both else None,
        "accuracy": float(accuracy_score(y_true, probability >= 0.5)),
        "brier": float(brier_score_loss(y_true, probability, labels=[0, 1])),
        "log_loss": float(log_loss(y_true, probability, labels=[0, 1])),
        "recall_at_band": recall,
        "positive_rate": float(positives.mean()) if len(y_true) else None,
        "predicted_positive_rate": float(np.mean(probability >= 0.5)) if len(y_true) else None,
        "n_test": len(y_true),
    }


def train_model(
    data: LoadedData,
    *,
    name: str = "flood-risk",
    algorithm: str = "hgb",
    seed: int = 0,
    test_size: float = 0.2,
    feature_specs: Sequence[FeatureSpec] | None = None,
    risk_bands: Sequence[RiskBand] = DEFAULT_RISK_BANDS,
    progress: Callable[[str], None] | None = None,
    split: str = "random",
    calibration: str = "auto",
    band_recall: Sequence[tuple[str, float]] = (),
) -> TrainedModel:
    """Fit, measure on a held-out split, and describe the model in a manifest.

    ``split`` is ``random`` (stratified), ``time:COLUMN`` or ``group:COLUMN`` (see
    ``assessment``); the column may be any column of the file, feature or not. The manifest's
    ``evaluation`` holds the split, intervals, test-size and leakage checks and every warning.

    When the training rows allow it, a calibration slice of them (CALIBRATION_SHARE, split the
    same way as the test rows) is kept out of fitting: ``calibration`` (``auto``, ``sigmoid``,
    ``isotonic`` or ``none``) is fitted on it, and ``band_recall`` (band name, recall) pairs
    choose each band's lower bound as the highest that catches that share of its floods.
    Otherwise ``risk_bands`` are used as given. The test metrics are the served (calibrated)
    probabilities'; the reliability table shows both.
    """
    bands_given = tuple(risk_bands) != tuple(DEFAULT_RISK_BANDS)
    say = progress or (lambda message: None)
    if not 0.0 < test_size < 1.0:
        raise DataError("test_size must be between 0 and 1", fields={"test_size": "invalid"})

    specs = _specs_for(data, feature_specs)
    pipeline = build_pipeline(algorithm, seed=seed, features=specs)
    X = data.frame[data.features].to_numpy(dtype=np.float64)
    y = data.frame[data.target].to_numpy(dtype=np.int64)
    counts = np.bincount(y, minlength=2)
    if counts.min() < _MIN_PER_CLASS:
        raise DataError(
            f"need at least {_MIN_PER_CLASS} rows of each class to train and test; "
            f"found {counts[1]} flood and {counts[0]} no_flood",
            fields={data.target: "too few rows of one class"},
        )

    kind, column = assessment.parse_split(split)
    say(f"Splitting {len(y):,} rows ({test_size:.0%} held out, {_split_text(kind, column)})")
    held_out = assessment.split_rows(
        y,
        kind=kind,
        values=_split_values(data, column),
        column=column,
        test_size=test_size,
        seed=seed,
    )
    x_train, x_test = X[held_out.train], X[held_out.test]
    y_train, y_test = y[held_out.train], y[held_out.test]
    warnings = [*data.warnings, *assessment.check_test_size(y_test, held_out)]

    if calibration not in calibrate.CHOICES:
        raise DataError(
            f"calibration must be one of {', '.join(calibrate.CHOICES)}, not {calibration!r}",
            fields={"calibration": "invalid choice"},
        )
    if calibration == "none" and not band_recall:
        fit_rows, slice_rows = np.arange(len(y_train)), None
        slice_note = "not calibrated: --calibration none"
    else:
        fit_rows, slice_rows, slice_note = _calibration_slice(
            y_train, kind, _split_values(data, column), held_out.train, column, seed
        )
        if slice_rows is None:
            warnings.append(slice_note)
    say(f"Fitting {algorithm} on {len(fit_rows):,} rows and {X.shape[1]} features")
    pipeline.fit(x_train[fit_rows], y_train[fit_rows])

    calibration_map: calibrate.Calibration | None = None
    calibration_report: dict[str, Any] = {"method": "none", "reason": slice_note}
    bands = list(risk_bands)
    band_report: dict[str, Any] = {"source": "given" if bands_given else "default"}
    if slice_rows is not None:
        say(f"Calibrating on {len(slice_rows):,} held-out training rows")
        raw_slice = pipeline.predict_proba(x_train[slice_rows])[:, 1]
        calibration_map, calibration_report = calibrate.choose(
            raw_slice, y_train[slice_rows], seed=seed, method=calibration
        )
        served_slice = raw_slice if calibration_map is None else calibration_map.apply(raw_slice)
        if band_recall:
            lowers = calibrate.thresholds_for_recall(served_slice, y_train[slice_rows], band_recall)
            bands = bands_with_lowers(lowers)
            band_report = {"source": "recall", "targets": dict(band_recall), "lowers": lowers}
        if calibration_map is None and not band_recall:
            # Nothing was fitted on the slice's scores, so the model may learn from it too.
            say(f"Refitting {algorithm} on all {len(y_train):,} training rows (not calibrated)")
            fit_rows = np.arange(len(y_train))
            pipeline.fit(x_train, y_train)
    elif band_recall:
        raise DataError(
            f"--band-recall chooses thresholds on held-out training rows, and {slice_note}",
            fields={"band_recall": "too few rows"},
        )

    say(f"Evaluating on {len(y_test):,} held-out rows")
    raw = pipeline.predict_proba(x_test)[:, 1]
    probability = raw if calibration_map is None else calibration_map.apply(raw)
    metrics = evaluate(y_test, probability, bands)
    metrics["n_train"] = len(fit_rows)
    if calibration_map is not None:
        metrics["uncalibrated_brier"] = float(brier_score_loss(y_test, raw, labels=[0, 1]))
    calibration_report["reliability"] = calibrate.reliability(y_test, probability)
    calibration_report["reliability_uncalibrated"] = calibrate.reliability(y_test, raw)
    say("Bootstrapping intervals and checking for leakage")
    intervals = assessment.bootstrap_intervals(
        y_test, probability, bands, groups=held_out.test_groups, seed=seed
    )
    # The model's own outputs, not the calibration map's steps, tell a handful of values apart.
    leakage = assessment.leakage_checks(pd.DataFrame(x_train, columns=data.features), y_train, raw)
    warnings += leakage["warnings"]
    evaluation = {
        "split": held_out.description,
        "test_counts": {
            "rows": len(y_test),
            "flood": int(y_test.sum()),
            "no_flood": int(len(y_test) - y_test.sum()),
        },
        "intervals": intervals,
        "leakage": leakage,
        "calibration": calibration_report,
        "bands": band_report,
        "warnings": warnings,
    }

    say("Recording reference statistics for drift monitoring")
    reference = drift.reference_stats(x_train, data.features)
    reference[drift.PROBABILITY_KEY] = drift.probability_stats(probability)

    manifest = Manifest(
        name=name,
        features=specs,
        target=data.target,
        class_labels=list(synthetic.CLASS_LABELS),
        risk_bands=bands,
        metrics=metrics,
        reference=reference,
        library_versions=library_versions(),
        data_fingerprint=dict(data.fingerprint),
        algorithm=algorithm,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        label_policy=dict(data.label_policy),
        column_roles=[role.to_dict() for role in data.column_roles],
        evaluation=evaluation,
        calibration=None if calibration_map is None else calibration_map.to_dict(),
    )
    auc = metrics["roc_auc"]
    say(f"Done: ROC-AUC {auc:.3f}" if auc is not None else "Done")
    return TrainedModel(pipeline=pipeline, manifest=manifest, x_test=x_test, y_test=y_test)


def _calibration_slice(
    y_train: np.ndarray,
    kind: str,
    values: pd.Series | None,
    train_positions: np.ndarray,
    column: str | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Training positions to fit on and to calibrate on (None: too few rows), and why.

    The slice is held out the same way as the test rows (the latest rows, whole groups or a
    stratified draw), so calibration sees the same kind of novelty the test does.
    """
    everything = np.arange(len(y_train))
    counts = np.bincount(y_train, minlength=2)
    expected = CALIBRATION_SHARE * counts
    if expected.sum() < calibrate.MIN_ROWS or expected.min() < calibrate.MIN_PER_CLASS:
        return (
            everything,
            None,
            (
                f"not calibrated: {len(y_train):,} training rows ({counts[1]:,} flood) leave too "
                f"few for a calibration slice of {CALIBRATION_SHARE:.0%} with "
                f"{calibrate.MIN_ROWS} rows and {calibrate.MIN_PER_CLASS} of each class"
            ),
        )
    sliced = assessment.split_rows(
        y_train,
        kind=kind,
        values=None if values is None else values.iloc[train_positions],
        column=column,
        test_size=CALIBRATION_SHARE,
        seed=seed,
    )
    slice_counts = np.bincount(y_train[sliced.test], minlength=2)
    if (
        slice_counts.min() < calibrate.MIN_PER_CLASS
        or np.bincount(y_train[sliced.train], minlength=2).min() < _MIN_PER_CLASS
    ):
        return (
            everything,
            None,
            (
                f"not calibrated: the calibration slice held {slice_counts[1]:,} flood and "
                f"{slice_counts[0]:,} no_flood rows; {calibrate.MIN_PER_CLASS} of each are needed"
            ),
        )
    return sliced.train, sliced.test, ""


def _split_text(kind: str, column: str | None) -> str:
    if kind == "random":
        return "random, stratified"
    if kind == "time":
        return f"the latest rows by {column!r}"
    return f"whole groups of {column!r}"


def _split_values(data: LoadedData, column: str | None) -> pd.Series | None:
    """The split column for the training rows, from the features or the file's other columns."""
    if column is None:
        return None
    if column in data.frame.columns and column != data.target:
        return data.frame[column]
    if data.context is not None and column in data.context.columns:
        return data.context[column]
    available = list(data.context.columns) if data.context is not None else data.features
    raise DataError(
        f"split column {column!r} not found; available columns: {', '.join(available)}",
        fields={"split": "missing column"},
    )


def _specs_for(data: LoadedData, given: Sequence[FeatureSpec] | None) -> list[FeatureSpec]:
    if given is None:
        return features_from_frame(
            data.frame, data.features, known=synthetic.FEATURES, report=data.report
        )
    by_name = {spec.name: spec for spec in given}
    missing = [name for name in data.features if name not in by_name]
    if missing:
        raise DataError(
            f"no feature spec for: {', '.join(missing)}",
            fields={name: "no feature spec" for name in missing},
        )
    return [by_name[name] for name in data.features]


def frame_to_loaded(
    frame: pd.DataFrame, *, target: str = synthetic.TARGET, features: Sequence[str] | None = None
) -> LoadedData:
    """Wrap an in-memory frame (e.g. synthetic data) as LoadedData without a CSV round trip."""
    names = list(features) if features is not None else [c for c in frame.columns if c != target]
    clean = frame[[*names, target]].reset_index(drop=True)
    digest = pd.util.hash_pandas_object(clean, index=False).to_numpy().tobytes()
    return LoadedData(
        frame=clean,
        features=names,
        target=target,
        report=[],
        fingerprint={
            "rows": len(clean),
            "columns": [*names, target],
            "sha256": hashlib.sha256(digest).hexdigest(),
        },
    )


def synthetic_training_data(n_rows: int = 60_000, *, seed: int = 0) -> LoadedData:
    """Training data from the synthetic generator, ready for train_model."""
    data = frame_to_loaded(synthetic.generate(n_rows, seed=seed))
    data.report.append(f"generated {n_rows:,} synthetic rows with seed {seed}")
    data.fingerprint["source"] = f"synthetic(n_rows={n_rows}, seed={seed})"
    return data


def describe_data(data: LoadedData) -> list[str]:
    """What the trainer will fit on, for the CLI: the label policy and the column roles."""
    lines = []
    policy = data.label_policy
    if policy:
        before, after = policy["before"], policy["after"]
        lines.append(
            f"label policy --blank-target {policy['blank_target']}: before {before['flood']:,} "
            f"flood, {before['no_flood']:,} no_flood, {before['blank']:,} blank; after "
            f"{after['flood']:,} flood, {after['no_flood']:,} no_flood"
        )
    if data.column_roles:
        lines.append("column roles:")
        lines += [f"  {line}" for line in format_roles(data.column_roles)]
    lines += [f"WARNING: {warning}" for warning in data.warnings]
    return lines
