"""`make bench`: measure floodsite and write docs/benchmarks.md (a benchmark, not a test).

Each section measures one path and returns a Markdown block; the file records the command,
the machine and the time of the run so numbers can be compared across changes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bench.api import bench_api  # noqa: E402
from bench.batch import bench_batch  # noqa: E402
from bench.hotpath import bench_hotpath  # noqa: E402
from bench.sites import bench_sites  # noqa: E402
from mlcore.engine import onnx_export, synthetic, training  # noqa: E402
from mlcore.engine.inference import Predictor  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def _percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


def bench_inference() -> str:
    """Training time, single-row latency (ONNX vs scikit-learn) and bulk scoring rate."""
    started = time.perf_counter()
    data = training.synthetic_training_data(n_rows=60_000, seed=0)
    trained = training.train_model(data, seed=0, feature_specs=synthetic.FEATURES)
    train_s = time.perf_counter() - started

    onnx_bytes = onnx_export.convert_to_onnx(trained.pipeline, len(trained.manifest.feature_names))
    parity = onnx_export.onnx_parity(trained.pipeline, onnx_bytes, trained.x_test[:5_000])
    fast = Predictor(trained.pipeline, trained.manifest, onnx_bytes=onnx_bytes)
    slow = Predictor(trained.pipeline, trained.manifest)
    row = trained.x_test[0]
    rows = [
        ("predict_proba, 1 row", lambda p: p.predict_proba(row.reshape(1, -1)), 2_000),
        ("predict_one with explanation", lambda p: p.predict_one(row), 2_000),
    ]
    lines = [
        "| path | backend | p50 ms | p95 ms | mean ms |",
        "|---|---|---:|---:|---:|",
    ]
    for label, call, repeat in rows:
        for predictor in (fast, slow):
            call(predictor)  # warm up
            n = repeat if predictor is fast else repeat // 4
            samples = [s * 1000 for s in _timed(functools.partial(call, predictor), n)]
            lines.append(
                f"| {label} | {predictor.backend} | {_percentile(samples, 50):.3f} | "
                f"{_percentile(samples, 95):.3f} | {statistics.fmean(samples):.3f} |"
            )

    bulk = synthetic.generate(200_000, seed=9)[trained.manifest.feature_names].to_numpy()
    bulk_lines = ["| bulk scoring, 200,000 rows | backend | rows/s |", "|---|---|---:|"]
    for predictor in (fast, slow):
        seconds = min(_timed(functools.partial(predictor.predict_proba, bulk), 3))
        bulk_lines.append(f"| predict_proba | {predictor.backend} | {len(bulk) / seconds:,.0f} |")
    # Exact TreeSHAP walks every leaf per row: a smaller block keeps the bench run short.
    explain_rows = bulk[:2_000]
    seconds = min(_timed(lambda: fast.predict_many(explain_rows), 2))
    bulk_lines.append(
        f"| predict_many with exact explanations (2,000 rows) | {fast.backend} | "
        f"{len(explain_rows) / seconds:,.0f} |"
    )
    return "\n".join(
        [
            "## Model engine (mlcore.engine)",
            "",
            f"Training the default model (60,000 synthetic rows, HistGradientBoosting, held-out "
            f"evaluation, reference statistics): **{train_s:.1f} s**; held-out ROC-AUC "
            f"{trained.manifest.metrics['roc_auc']:.3f}. ONNX parity with scikit-learn on 5,000 "
            f"held-out rows: max |Δp| = {parity:.2e}.",
            "",
            *lines,
            "",
            *bulk_lines,
        ]
    )


SECTIONS: dict[str, Callable[[], str]] = {
    "inference": bench_inference,
    "api": bench_api,
    "hotpath": bench_hotpath,
    "batch": bench_batch,
    "sites": bench_sites,
}

# Each block is stored after a marker, so `--only NAME` refreshes one section and keeps the
# others' last numbers instead of wiping them.
_MARKER = re.compile(r"^<!-- bench:section (?P<name>[\w-]+) (?P<at>[^>]*?) -->$", re.MULTILINE)


def _previous_blocks(path: Path) -> dict[str, str]:
    """Marked blocks of an earlier docs/benchmarks.md, by section name (marker included)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    marks = list(_MARKER.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)] if marks else []
    return {m["name"]: text[m.start() : end].strip() for m, end in zip(marks, ends, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    chosen = args.only or list(SECTIONS)
    out = Path(args.out)
    blocks = _previous_blocks(out)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    for name in chosen:
        print(f"bench: {name} ...", flush=True)
        blocks[name] = f"<!-- bench:section {name} {now} -->\n{SECTIONS[name]()}"
    kept = [name for name in SECTIONS if name in blocks and name not in chosen]
    only = " ".join(f"--only {name}" for name in args.only or [])
    command = f'make bench BENCH_ARGS="{only}"' if only else "make bench"
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); numbers from one run, not a test.",
        "",
        f"- command: `{command}` (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})",
        f"- machine: {machine()}",
        f"- run at: {now} (sections: {', '.join(chosen)})",
        *([f"- kept from an earlier run (time in its marker): {', '.join(kept)}"] if kept else []),
        "",
    ]
    ordered = [blocks[name] for name in SECTIONS if name in blocks]
    out.write_text("\n".join([*header, "\n\n".join(ordered), ""]))
    print(out.read_text())


if __name__ == "__main__":
    main()
