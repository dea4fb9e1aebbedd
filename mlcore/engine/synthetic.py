"""Deterministic synthetic flood data: the feature catalogue and a seeded, vectorised generator.

Each row is one site (a river reach or an urban catchment) on one day. The drivers are drawn
from simple, loosely physical distributions so that the columns relate to each other the way
an analyst would expect:

* 72-hour rainfall contains the 24-hour total plus the two days before it, so the two are
  strongly correlated; soil moisture rises with 72-hour rain.
* River level responds to upstream catchment size and rain; its 24-hour change follows the
  latest day's rain.
* High ground is steeper, drier underground, further from rivers, gets more snowmelt and is
  out of reach of storm surge; low coastal sites are the ones exposed to surge.
* Impervious (sealed) surface and vegetation cover trade off against each other.

Whether the site flooded comes from a latent logistic score::

    z = -2.2
        + 0.021 * rainfall_24h_mm + 0.006 * rainfall_72h_mm
        + 0.030 * rainfall_24h_mm * soil_moisture_pct / 100      (saturated soil cannot absorb)
        + 0.55 * (river_level_m - 3)
        + 1.1 * max(river_level_m - 3, 0) * exp(-distance_to_river_m / 600)  (high river nearby)
        + 0.9 * river_level_change_24h_m
        - 0.55 * ln(1 + elevation_m / 20) - 0.05 * slope_deg
        - 0.35 * ln(1 + distance_to_river_m / 300)
        - 0.35 * (drainage_density_km_per_km2 - 2)
        + 0.022 * impervious_surface_pct - 0.008 * vegetation_cover_pct
        + 0.25 * log10(upstream_catchment_km2) + 0.13 * historical_flood_count
        - 0.05 * groundwater_depth_m + 0.012 * snowmelt_mm + 1.1 * storm_surge_m
        + Normal(0, 0.5)                                          (unobserved local factors)

    flooded ~ Bernoulli(sigmoid(z))

which gives a flood rate of roughly 20 %. Rows are produced in fixed blocks of
``BLOCK_ROWS``, each block seeded from ``(seed, block number)``, so ``generate(n, seed=s)`` is
always a prefix of ``generate(m, seed=s)`` for n < m and the streamed CSV written by
``write_csv`` holds exactly the rows ``generate`` returns, whatever the chunk size.

Field records mode (``generate_field_records`` / ``write_field_records_csv``) imitates a public
archive of monthly weather per gauging station, with the traps such files set for a trainer:

* one row per station and month; ``record_no`` is a serial number that skips now and then,
  ``station`` a code repeated on every row of a station, ``station_no`` its number, then
  (optionally) the station's projected ``easting``/``northing`` in metres; ``year``, ``month``
  and ``period`` (``YYYYMM``) say when;
* a strong season: rain, soil moisture and river level peak in the winter months, and floods
  happen almost only then (``wet = (1 + cos(2 pi (month - 1) / 12)) / 2``)::

      z = -5.6 + 3.2 * wet + 0.011 * rain_mm + 0.9 * (river_level_m - 2.5)
          + station vulnerability (Normal(0, 0.5)) + Normal(0, 0.5)

  giving a flood in about 15 % of station-months;
* the label column `` Flood?`` holds ``YES`` for a flood and is left **blank** otherwise (blank
  means no); a dry-season inspection writes an explicit ``NO`` in some summer months, so
  dropping the blank rows leaves a problem the month alone separates;
* ``label="threshold"`` makes the label a threshold on one column instead (``YES`` exactly
  when ``river_level_m`` is at or above ``FIELD_THRESHOLD_M``), a leak a trainer must notice;
* the CSV has a UTF-8 BOM, CRLF line ends, padded cells and ``?`` for a missing rainfall.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd

from mlcore.engine.schema import FeatureSpec

TARGET = "flooded"
CLASS_LABELS = ["no_flood", "flood"]
BLOCK_ROWS = 10_000

# Weather, river and soil state describe the moment; terrain, land use and history, the place.
FEATURES: list[FeatureSpec] = [
    FeatureSpec(
        "rainfall_24h_mm",
        "float",
        "mm",
        0.0,
        500.0,
        "Rain that fell over the site's catchment in the last 24 hours.",
        3.0,
        "Rainfall",
        # Hard limits: the world record is 1,825 mm (Foc-Foc, Réunion, 1966).
        hard_minimum=0.0,
        hard_maximum=2000.0,
        kind="number",
        scope="moment",
    ),
    FeatureSpec(
        "rainfall_72h_mm",
        "float",
        "mm",
        0.0,
        1000.0,
        "Rain over the last 72 hours, including the last 24; a proxy for recent wetness.",
        23.0,
        "Rainfall",
        # Hard limits: the world record is 3,930 mm (Cratère Commerson, Réunion, 2007).
        hard_minimum=0.0,
        hard_maximum=4000.0,
        kind="number",
        scope="moment",
    ),
    FeatureSpec(
        "snowmelt_mm",
        "float",
        "mm",
        0.0,
        200.0,
        "Water equivalent of snow that melted in the last 24 hours; mostly zero below 400 m.",
        0.0,
        "Rainfall",
        # Hard limits: several times the fastest melt measured (about 150 mm a day).
        hard_minimum=0.0,
        hard_maximum=1000.0,
        kind="number",
        scope="moment",
    ),
    FeatureSpec(
        "river_level_m",
        "float",
        "m",
        0.0,
        15.0,
        "Stage of the nearest gauged river above its gauge datum.",
        3.2,
        "River",
        # Hard limits: a gauge datum sits near the lowest stage; no river rises 100 m.
        hard_minimum=-10.0,
        hard_maximum=100.0,
        kind="number",
        scope="moment",
    ),
    FeatureSpec(
        "river_level_change_24h_m",
        "float",
        "m",
        -3.0,
        5.0,
        "How much the river stage rose (positive) or fell (negative) in the last 24 hours.",
        0.0,
        "River",
        # Hard limits: more than any outburst flood has raised a river in a day.
        hard_minimum=-50.0,
        hard_maximum=50.0,
        kind="number",
        scope="moment",
    ),
    FeatureSpec(
        "distance_to_river_m",
        "float",
        "m",
        0.0,
        15000.0,
        "Horizontal distance from the site to the nearest river channel.",
        730.0,
        "River",
        # Hard limits: no land is 5,000 km from the nearest channel.
        hard_minimum=0.0,
        hard_maximum=5_000_000.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "upstream_catchment_km2",
        "float",
        "km²",
        1.0,
        50000.0,
        "Area draining to the river at the site; bigger catchments deliver more water.",
        150.0,
        "River",
        # Hard limits: the Amazon, the largest basin, drains about 7 million km².
        hard_minimum=0.0,
        hard_maximum=7_500_000.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "storm_surge_m",
        "float",
        "m",
        0.0,
        6.0,
        "Sea level above the predicted tide at the nearest coast; zero for inland sites.",
        0.0,
        "River",
        # Hard limits: offshore winds lower the sea; the highest surge recorded is about 13 m.
        hard_minimum=-5.0,
        hard_maximum=15.0,
        kind="number",
        scope="moment",
    ),
    FeatureSpec(
        "elevation_m",
        "float",
        "m",
        -10.0,
        3000.0,
        "Ground height above mean sea level.",
        85.0,
        "Terrain",
        # Hard limits: the Dead Sea shore (-430 m) to Everest (8,849 m).
        hard_minimum=-500.0,
        hard_maximum=9000.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "slope_deg",
        "float",
        "°",
        0.0,
        60.0,
        "Mean ground slope around the site; steep ground sheds water quickly.",
        3.5,
        "Terrain",
        # Hard limits: a vertical cliff.
        hard_minimum=0.0,
        hard_maximum=90.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "drainage_density_km_per_km2",
        "float",
        "km/km²",
        0.0,
        8.0,
        "Length of streams and drains per unit area; higher values carry water away faster.",
        2.0,
        "Terrain",
        # Hard limits: badlands, the densest networks measured, reach about 800.
        hard_minimum=0.0,
        hard_maximum=2000.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "groundwater_depth_m",
        "float",
        "m",
        0.0,
        80.0,
        "Depth from the surface to the water table; shallow groundwater leaves no storage.",
        4.2,
        "Terrain",
        # Hard limits: the deepest water tables measured are about 1 km down.
        hard_minimum=0.0,
        hard_maximum=2000.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "soil_moisture_pct",
        "float",
        "%",
        0.0,
        100.0,
        "Volumetric water content of the topsoil as a share of saturation.",
        33.0,
        "Land use",
        # Hard limits: a share of saturation.
        hard_minimum=0.0,
        hard_maximum=100.0,
        kind="number",
        scope="moment",
    ),
    FeatureSpec(
        "impervious_surface_pct",
        "float",
        "%",
        0.0,
        100.0,
        "Share of the local area sealed by roofs, roads and paving.",
        22.0,
        "Land use",
        # Hard limits: a share of the area.
        hard_minimum=0.0,
        hard_maximum=100.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "vegetation_cover_pct",
        "float",
        "%",
        0.0,
        100.0,
        "Share of the local area under trees, shrubs or grass.",
        50.0,
        "Land use",
        # Hard limits: a share of the area.
        hard_minimum=0.0,
        hard_maximum=100.0,
        kind="number",
        scope="place",
    ),
    FeatureSpec(
        "historical_flood_count",
        "int",
        "floods",
        0.0,
        40.0,
        "Recorded floods at the site in the previous 30 years.",
        2.0,
        "History",
        # Hard limits: at most one recorded flood a day over 30 years.
        hard_minimum=0.0,
        hard_maximum=10958.0,
        kind="integer",
        scope="place",
    ),
]

FEATURE_NAMES: list[str] = [spec.name for spec in FEATURES]
_SPECS = {spec.name: spec for spec in FEATURES}


def _block(seed: int, block_number: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, block_number])
    n = BLOCK_ROWS
    normal = rng.standard_normal

    elevation = np.exp(normal(n) * 1.1 + np.log(90.0)) - 5.0
    slope = rng.gamma(1.6, 2.0 + elevation / 150.0, n)
    distance = rng.exponential(900.0, n) * (1.0 + elevation / 800.0)
    catchment = np.exp(normal(n) * 1.6 + np.log(150.0))
    groundwater = np.exp(normal(n) * 0.7 + np.log(3.0)) * (1.0 + elevation / 300.0)
    drainage = 2.0 + 0.7 * normal(n)

    # Many days are dry: about 40 % of site-days get only a trace of rain.
    wet = rng.random(n) < 0.6
    rain_24 = np.where(wet, rng.gamma(0.9, 22.0, n), rng.exponential(0.6, n))
    rain_72 = rain_24 + rng.gamma(1.1, 18.0, n) * (0.5 + wet)
    snowmelt = np.where(
        elevation > 400.0, rng.gamma(0.8, 6.0 + elevation / 100.0, n), rng.exponential(0.2, n)
    ) * (rng.random(n) < 0.35)

    soil = 25.0 + 0.22 * rain_72 + 8.0 * normal(n) + 6.0 * (groundwater < 2.0)
    river = (
        0.9
        + 0.35 * np.log(catchment)
        + 0.012 * rain_72
        + 0.02 * rain_24
        + 0.01 * snowmelt
        + 0.5 * normal(n)
    )
    river_change = 0.012 * rain_24 + 0.004 * snowmelt - 0.08 + 0.25 * normal(n)

    impervious = 100.0 * rng.beta(1.1, 3.2, n)
    vegetation = (100.0 - impervious) * rng.beta(4.0, 2.0, n)
    coastal = (elevation < 25.0) & (rng.random(n) < 0.45)
    surge = np.where(coastal, rng.gamma(1.2, 0.35, n), 0.0)

    hist_rate = 0.7 + 2.0 * np.exp(-elevation / 60.0) + 1.5 * np.exp(-distance / 500.0)
    history = rng.poisson(hist_rate)

    columns = {
        "rainfall_24h_mm": rain_24,
        "rainfall_72h_mm": rain_72,
        "snowmelt_mm": snowmelt,
        "river_level_m": river,
        "river_level_change_24h_m": river_change,
        "distance_to_river_m": distance,
        "upstream_catchment_km2": catchment,
        "storm_surge_m": surge,
        "elevation_m": elevation,
        "slope_deg": slope,
        "drainage_density_km_per_km2": drainage,
        "groundwater_depth_m": groundwater,
        "soil_moisture_pct": soil,
        "impervious_surface_pct": impervious,
        "vegetation_cover_pct": vegetation,
        "historical_flood_count": history,
    }
    # Clip to each feature's documented range and round to instrument-like precision, so the
    # data looks like what a gauge network exports and the CSV stays compact.
    for name, values in columns.items():
        spec = _SPECS[name]
        clipped = np.clip(values, spec.minimum, spec.maximum)
        columns[name] = clipped.astype(np.int64) if spec.dtype == "int" else clipped.round(2)

    c = columns
    over_bank = np.maximum(c["river_level_m"] - 3.0, 0.0)
    z = (
        -2.2
        + 0.021 * c["rainfall_24h_mm"]
        + 0.006 * c["rainfall_72h_mm"]
        + 0.030 * c["rainfall_24h_mm"] * c["soil_moisture_pct"] / 100.0
        + 0.55 * (c["river_level_m"] - 3.0)
        + 1.1 * over_bank * np.exp(-c["distance_to_river_m"] / 600.0)
        + 0.9 * c["river_level_change_24h_m"]
        - 0.55 * np.log1p(np.maximum(c["elevation_m"], 0.0) / 20.0)
        - 0.05 * c["slope_deg"]
        - 0.35 * np.log1p(c["distance_to_river_m"] / 300.0)
        - 0.35 * (c["drainage_density_km_per_km2"] - 2.0)
        + 0.022 * c["impervious_surface_pct"]
        - 0.008 * c["vegetation_cover_pct"]
        + 0.25 * np.log10(c["upstream_catchment_km2"])
        + 0.13 * c["historical_flood_count"]
        - 0.05 * c["groundwater_depth_m"]
        + 0.012 * c["snowmelt_mm"]
        + 1.1 * c["storm_surge_m"]
        + 0.5 * normal(n)
    )
    probability = 1.0 / (1.0 + np.exp(-z))
    columns[TARGET] = (rng.random(n) < probability).astype(np.int64)
    return columns


def iter_frames(n_rows: int, *, seed: int = 0, chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """Yield ``generate(n_rows, seed=seed)`` in frames of chunk_rows rounded up to whole blocks."""
    if n_rows < 0:
        raise ValueError("n_rows must not be negative")
    blocks_per_chunk = max(1, -(-chunk_rows // BLOCK_ROWS))
    n_blocks = -(-n_rows // BLOCK_ROWS)
    order = [*FEATURE_NAMES, TARGET]
    for first in range(0, n_blocks, blocks_per_chunk):
        parts = [
            _block(seed, number) for number in range(first, min(first + blocks_per_chunk, n_blocks))
        ]
        start = first * BLOCK_ROWS
        stop = min(start + len(parts) * BLOCK_ROWS, n_rows)
        frame = pd.DataFrame(
            {name: np.concatenate([part[name] for part in parts]) for name in order}
        )
        frame = frame.iloc[: stop - start]
        frame.index = pd.RangeIndex(start, stop)
        yield frame


def generate(n_rows: int, *, seed: int = 0) -> pd.DataFrame:
    """Return ``n_rows`` synthetic site-days: the FEATURES columns plus ``flooded`` (0/1)."""
    frames = list(iter_frames(n_rows, seed=seed, chunk_rows=max(n_rows, BLOCK_ROWS)))
    if not frames:
        columns = {spec.name: pd.Series(dtype=_pandas_dtype(spec)) for spec in FEATURES}
        columns[TARGET] = pd.Series(dtype="int64")
        return pd.DataFrame(columns)
    return frames[0] if len(frames) == 1 else pd.concat(frames)


def write_csv(
    path: str | os.PathLike[str], n_rows: int, *, seed: int = 0, chunk_rows: int = 100_000
) -> int:
    """Stream ``generate(n_rows, seed=seed)`` to a CSV one chunk at a time; return bytes written.

    Only one chunk is in memory at once, so this scales to benchmark-sized files.
    """
    target = os.fspath(path)
    with open(target, "w", encoding="utf-8", newline="") as handle:
        header = True
        for frame in iter_frames(n_rows, seed=seed, chunk_rows=chunk_rows):
            frame.to_csv(handle, index=False, header=header, lineterminator="\n")
            header = False
        if header:
            handle.write(",".join([*FEATURE_NAMES, TARGET]) + "\n")
    return os.path.getsize(target)


def _pandas_dtype(spec: FeatureSpec) -> str:
    return "int64" if spec.dtype == "int" else "float64"


# --- Field records mode (see the module docstring) ------------------------------------------

FIELD_TARGET = "Flood?"
FIELD_THRESHOLD_M = 3.0
FIELD_SERIAL = "record_no"
FIELD_STATION = "station"


def generate_field_records(
    *,
    stations: int = 12,
    first_year: int = 1981,
    years: int = 30,
    seed: int = 0,
    label: str = "season",
    coordinates: bool = True,
) -> pd.DataFrame:
    """Monthly station records as an archive exports them; the label column is text.

    ``label`` is ``"season"`` (floods driven by season, rain and river level) or
    ``"threshold"`` (the label is ``river_level_m >= FIELD_THRESHOLD_M``).
    """
    if label not in ("season", "threshold"):
        raise ValueError("label must be 'season' or 'threshold'")
    rng = np.random.default_rng([seed, 31_337])
    numbers = np.sort(rng.choice(np.arange(1_000, 10_000), stations, replace=False))
    months = np.tile(np.arange(1, 13), years)
    calendar_years = np.repeat(np.arange(first_year, first_year + years), 12)
    n_per = len(months)
    station_no = np.repeat(numbers, n_per)
    month = np.tile(months, stations)
    year = np.tile(calendar_years, stations)
    n = len(month)
    station_index = np.repeat(np.arange(stations), n_per)

    wet = (1.0 + np.cos(2.0 * np.pi * (month - 1) / 12.0)) / 2.0
    river_base = rng.normal(0.0, 0.4, stations)[station_index]
    vulnerability = rng.normal(0.0, 0.5, stations)[station_index]
    rain = rng.gamma(2.0, 15.0 + 55.0 * wet)
    max_day = rain * rng.beta(2.0, 5.0, n)
    soil = np.clip(30.0 + 40.0 * wet + 0.05 * rain + rng.normal(0.0, 8.0, n), 0.0, 100.0)
    river = 1.2 + 0.008 * rain + 1.0 * wet + river_base + rng.normal(0.0, 0.35, n)
    temperature = 15.0 - 10.0 * wet + rng.normal(0.0, 2.0, n)
    if label == "season":
        z = (
            -5.6
            + 3.2 * wet
            + 0.011 * rain
            + 0.9 * (river - 2.5)
            + vulnerability
            + rng.normal(0.0, 0.5, n)
        )
        flooded = rng.random(n) < 1.0 / (1.0 + np.exp(-z))
    else:
        flooded = river.round(2) >= FIELD_THRESHOLD_M
    # Inspectors wrote an explicit NO only on some dry-season visits; elsewhere no flood is blank.
    inspected = (wet < 0.15) & (rng.random(n) < 0.3) & ~flooded
    labels = np.where(flooded, "YES", np.where(inspected, "NO", ""))

    serial = np.cumsum(1 + (rng.random(n) < 0.04) * rng.integers(1, 5, n)) + 1_000
    columns: dict[str, object] = {
        FIELD_SERIAL: serial,
        FIELD_STATION: [f"RG{number}" for number in station_no],
        "station_no": station_no,
    }
    if coordinates:
        columns["easting"] = rng.uniform(200_000, 650_000, stations).round()[station_index]
        columns["northing"] = rng.uniform(50_000, 900_000, stations).round()[station_index]
    columns |= {
        "year": year,
        "month": month,
        "period": year * 100 + month,
        "rain_mm": rain.round(1),
        "max_day_rain_mm": max_day.round(1),
        "soil_moisture_pct": soil.round(1),
        "river_level_m": river.round(2),
        "temperature_c": temperature.round(1),
        FIELD_TARGET: labels,
    }
    return pd.DataFrame(columns)


def write_field_records_csv(path: str | os.PathLike[str], **options: object) -> pd.DataFrame:
    """Write ``generate_field_records(**options)`` with a real export's quirks; return the frame.

    The file has a UTF-8 BOM, CRLF line ends, a padded label header (`` Flood?``), padded
    label cells and ``?`` for about 1 % of ``rain_mm``; the returned frame is what was meant.
    """
    frame = generate_field_records(**options)  # type: ignore[arg-type]
    rng = np.random.default_rng(len(frame))
    written = frame.astype({"rain_mm": object})
    written.loc[rng.random(len(frame)) < 0.01, "rain_mm"] = "?"
    written[FIELD_TARGET] = written[FIELD_TARGET].map({"YES": " YES", "NO": "NO ", "": ""})
    written = written.rename(columns={FIELD_TARGET: f" {FIELD_TARGET}"})
    with open(os.fspath(path), "w", encoding="utf-8-sig", newline="") as handle:
        written.to_csv(handle, index=False, lineterminator="\r\n")
    return frame
