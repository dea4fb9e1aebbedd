"""The "sites" section of `make bench`: the site map's data, a site's page and the dashboard's
top-risk table with 10,000 sites and 5,000,000 audit rows on PostgreSQL.

Run by bench/run.py in a subprocess of its own (``python bench/sites.py --measure``) against a
throwaway PostgreSQL database (dropped afterwards): the rows are written in SQL (a few minutes),
then each page is requested through Django's test client in that process, so the times are
server time (views, queries, templates), without a network or a server in front.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITES = 10_000
# BENCH_SITES_ROWS: fewer rows for a quick look at the section (the report says how many).
ROWS = int(os.environ.get("BENCH_SITES_ROWS", "5000000"))
CHUNK = 500_000
DAYS = 90
SITE_SHARE = 0.9  # of the audit rows name a site; the rest are anonymous
REPEAT = 7
TARGET_MS = 200.0


def _fill(model_version_id: int, user_id: int) -> float:
    """10,000 sites and 5,000,000 audit rows over 90 days, in SQL; returns seconds taken."""
    from django.db import connection

    from predictions.models import Prediction, Site

    started = time.perf_counter()
    Site.objects.bulk_create(
        [
            Site(
                code=f"S{number:05d}",
                name=f"Gauge {number}",
                latitude=50 + (number % 100) / 20,
                longitude=-4 + (number // 100) / 20,
            )
            for number in range(1, SITES + 1)
        ],
        batch_size=2_000,
    )
    first_site = Site.objects.order_by("id").values_list("id", flat=True).first()
    expressions = {
        "id": "gen_random_uuid()",
        "created_at": f"now() - random() * interval '{DAYS} days'",
        "user_id": str(user_id),
        "source": "'api'",
        "model_version_id": str(model_version_id),
        "inputs": "'{}'::jsonb",
        "probability": "p",
        "label": "CASE WHEN p >= 0.5 THEN 'flood' ELSE 'no_flood' END",
        "risk_band": "CASE WHEN p >= 0.75 THEN 'severe' WHEN p >= 0.5 THEN 'high' "
        "WHEN p >= 0.25 THEN 'moderate' ELSE 'low' END",
        "explanation": "'[]'::jsonb",
        "out_of_range": "'[]'::jsonb",
        "latency_ms": "1.0",
        "site_id": f"CASE WHEN random() < {SITE_SHARE} THEN {first_site} + "
        f"floor(random() * {SITES})::int END",
    }
    columns, values = [], []
    for field in Prediction._meta.concrete_fields:
        columns.append(connection.ops.quote_name(str(field.column)))
        if field.attname in expressions:
            values.append(expressions[field.attname])
        elif field.null:
            values.append("NULL")
        elif field.get_internal_type() in ("CharField", "TextField"):
            values.append("''")
        else:
            raise RuntimeError(f"the bench has no value for Prediction.{field.attname}")
    table = connection.ops.quote_name(Prediction._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, ROWS, CHUNK):
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 (our own names)
                f"SELECT {', '.join(values)} FROM (SELECT random() AS p "
                f"FROM generate_series(1, {min(CHUNK, ROWS - start)})) AS rows"
            )
            done_rows = min(start + CHUNK, ROWS)
            print(f"bench: sites: {done_rows:,} rows", file=sys.stderr, flush=True)
        cursor.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def _measure() -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from accounts.models import User
    from accounts.roles import Role
    from accounts.services import user_set_role
    from mlcore.models import ModelVersion, Stage
    from predictions.models import Prediction
    from predictions.site_risk import site_risks, sites_top_risk

    # Migrations, the var folders, the secret key and the default model, trained and promoted.
    call_command("setup_site", skip_collectstatic=True, rows=5_000, stdout=io.StringIO())
    version = ModelVersion.objects.get(stage=Stage.PRODUCTION)
    field = User.objects.create_user("field-team")
    fill_s = _fill(version.pk, field.pk)
    viewer = user_set_role(user=User.objects.create_user("bench-analyst"), role=Role.ANALYST)
    auditor = user_set_role(user=User.objects.create_user("bench-auditor"), role=Role.AUDITOR)
    busiest = (
        Prediction.objects.filter(site__isnull=False)
        .values_list("site__code", flat=True)
        .order_by("site__code")
        .first()
    )
    site_rows = Prediction.objects.filter(site__code=busiest).count()

    def timed(fn) -> list[float]:
        fn()
        fn()  # warm: templates compiled, the model's manifest parsed, pages cached by PostgreSQL
        samples = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    def page(user, path):
        client = Client(SERVER_NAME="localhost")
        client.force_login(user)

        def get():
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code}")

        return get

    results = {
        "map data `GET /map/sites.json` (10,000 sites)": timed(page(viewer, "/map/sites.json")),
        f"a site's page `GET /sites/{busiest}/` ({site_rows} predictions)": timed(
            page(viewer, f"/sites/{busiest}/")
        ),
        "the dashboard `GET /` (an analyst: the top-risk table and their own week)": timed(
            page(viewer, "/")
        ),
        "top-risk table alone (`sites_top_risk`)": timed(sites_top_risk),
        "latest per site alone (`site_risks`)": timed(site_risks),
        f"a site's page as an auditor `GET /sites/{busiest}/`": timed(
            page(auditor, f"/sites/{busiest}/")
        ),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('predictions_prediction'))")
        size = cursor.fetchone()[0]
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    return {
        "results": results,
        "fill_s": fill_s,
        "table_size": size,
        "server": server.split()[0],
    }


def bench_sites() -> str:
    """The markdown section: median server time of each page against the 200 ms target."""
    from bench.api import _throwaway_postgres
    from bench.hotpath import subprocess_env

    database = _throwaway_postgres()
    if database is None:
        return "## Sites at scale\n\nNot run: no PostgreSQL on 127.0.0.1:5432."
    try:
        with tempfile.TemporaryDirectory(prefix="floodsite-sites-") as var:
            env = subprocess_env(
                DJANGO_DEBUG="0",
                DATABASE_URL=database.url,
                FLOODSITE_VAR_DIR=var,
                LOG_LEVEL="WARNING",
            )
            done = subprocess.run(
                [sys.executable, str(Path(__file__)), "--measure"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
    finally:
        if database.cleanup:
            database.cleanup()
    data = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    for name, samples in data["results"].items():
        median = statistics.median(samples)
        verdict = "met" if median < TARGET_MS else "**not met**"
        rows.append(
            f"| {name} | {median:.1f} | {min(samples):.1f} | {max(samples):.1f} | {verdict} |"
        )
    return "\n".join(
        [
            f"## Sites at scale (PostgreSQL, {SITES:,} sites, {ROWS:,} audit rows)",
            "",
            f"PostgreSQL {data['server']}, throwaway database (dropped after the run): "
            f"{SITES:,} sites and {ROWS:,} audit rows over {DAYS} days written in SQL "
            f"({data['fill_s']:.0f} s with VACUUM ANALYZE; the audit table with its indexes: "
            f"{data['table_size']}), {SITE_SHARE:.0%} of them naming a random site. Each page "
            f"requested {REPEAT} times after two warm-up requests through Django's test client "
            "in one process (default settings, DEBUG off; no server, no network): "
            "server time. Target: under 200 ms each.",
            "",
            "| page | median ms | fastest | slowest | < 200 ms |",
            "|---|---:|---:|---:|---|",
            *rows,
            "",
            "The latest prediction of each site is one backward probe of the partial index "
            "`prediction_site_created` (site, newest first) per site, and the site's page reads "
            "its newest 500 rows from the same index; no query touches the rows of other sites.",
        ]
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(_measure()))
    else:
        print(bench_sites())
