"""Batch scoring services on real files: refusals at submission, then split, score, finish."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from floodsite.exceptions import ApplicationError
from mlcore.engine import synthetic
from predictions import batches
from predictions.models import BatchJob, BatchRowError, BatchStatus, Prediction


def upload(content: bytes | str, name: str = "sites.csv") -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="text/csv")


def sites_csv(rows: int, *, seed: int = 4) -> str:
    return synthetic.generate(rows, seed=seed).drop(columns="flooded").to_csv(index=False)


def run_job(job: BatchJob) -> BatchJob:
    """What the worker does, step by step, in this process."""
    last = False
    for index in batches.batch_split(job_id=str(job.pk)):
        last = batches.batch_chunk_process(job_id=str(job.pk), index=index)
    if last:
        batches.batch_finalize(job_id=str(job.pk))
    job.refresh_from_db()
    return job


@pytest.fixture
def submit(analyst, production_model):
    def submit_file(content, name="sites.csv", **kwargs):
        return batches.batch_create(
            owner=analyst, source="web", upload=upload(content, name), **kwargs
        )

    return submit_file


def test_a_clean_file_is_scored_row_by_row_with_audit_rows(submit, settings):
    settings.BATCH_CHUNK_ROWS = 400
    job = run_job(submit(sites_csv(1_000)))
    assert job.status == BatchStatus.SUCCEEDED
    assert (job.total_rows, job.processed_rows, job.failed_rows) == (1_000, 1_000, 0)
    assert job.chunks_total == 3
    rows = Prediction.objects.filter(batch=job)
    assert rows.count() == 1_000
    assert sorted(rows.values_list("batch_row", flat=True)) == list(range(1, 1_001))
    assert set(rows.values_list("source", flat=True)) == {"batch"}
    results = list(csv.DictReader(io.StringIO(Path(job.result_file.path).read_text())))
    assert len(results) == 1_000
    assert {"row", "rainfall_24h_mm", "probability", "label", "risk_band"} <= set(results[0])
    first = rows.get(batch_row=1)
    assert float(results[0]["probability"]) == pytest.approx(first.probability, abs=1e-6)
    assert results[0]["risk_band"] == first.risk_band


def test_batch_scores_match_single_predictions(submit, api, typical_inputs):
    frame = synthetic.generate(20, seed=8).drop(columns="flooded")
    job = run_job(submit(frame.to_csv(index=False)))
    batch_rows = Prediction.objects.filter(batch=job).order_by("batch_row")
    for (_, inputs), row in zip(frame.iterrows(), batch_rows, strict=True):
        single = api.post("/api/v1/predictions/", {"inputs": inputs.to_dict()}, format="json")
        assert row.probability == pytest.approx(single.json()["probability"], abs=1e-9)


def test_bad_cells_become_row_errors_and_good_rows_still_count(submit):
    frame = synthetic.generate(8, seed=2).drop(columns="flooded").astype(object)
    frame.loc[1, "slope_deg"] = "steep"
    frame.loc[2, "rainfall_24h_mm"] = "NaN"
    frame.loc[3, "elevation_m"] = "inf"
    frame.loc[4, "soil_moisture_pct"] = ""
    frame.loc[5, "historical_flood_count"] = 1.5
    text = frame.to_csv(index=False, lineterminator="\r\n")
    job = run_job(submit("\ufeff" + text))
    assert job.status == BatchStatus.PARTIAL
    assert (job.total_rows, job.failed_rows) == (8, 5)
    assert Prediction.objects.filter(batch=job).count() == 3
    errors = {(e.row_number, e.column): e.reason for e in BatchRowError.objects.filter(job=job)}
    assert errors == {
        (2, "slope_deg"): "must be a finite number",
        (3, "rainfall_24h_mm"): "must be a finite number",
        (4, "elevation_m"): "must be a finite number",
        (5, "soil_moisture_pct"): "required",
        (6, "historical_flood_count"): "must be a whole number",
    }
    report = list(csv.reader(io.StringIO(Path(job.error_file.path).read_text())))
    assert report[0] == ["row", "column", "reason"] and len(report) == 6


def test_quoted_cells_and_ragged_rows(submit):
    header, *lines = sites_csv(3).splitlines()
    quoted = ",".join(f'"{cell}"' for cell in lines[0].split(","))
    ragged = lines[1] + ",7"
    job = run_job(submit("\n".join([header, quoted, ragged, lines[2]]) + "\n"))
    assert Prediction.objects.filter(batch=job).count() == 2
    error = BatchRowError.objects.get(job=job)
    assert error.row_number == 2 and "17 cells" in error.reason


def test_a_chunk_run_twice_writes_nothing_twice(submit, settings):
    settings.BATCH_CHUNK_ROWS = 50
    job = submit(sites_csv(120))
    indexes = batches.batch_split(job_id=str(job.pk))
    assert batches.batch_split(job_id=str(job.pk)) == indexes  # a second delivery re-splits nothing
    batches.batch_chunk_process(job_id=str(job.pk), index=0)
    batches.batch_chunk_process(job_id=str(job.pk), index=0)
    assert Prediction.objects.filter(batch=job).count() == 50
    job.refresh_from_db()
    assert (job.processed_rows, job.chunks_done) == (50, 1)


@pytest.mark.parametrize(
    ("content", "field", "fragment"),
    [
        ("", "file", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "file", "not a CSV"),
        ("rainfall_24h_mm\n".encode("utf-16"), "file", "UTF-16"),
        ("caf\xe9,x\n1,2\n".encode("latin-1"), "file", "not UTF-8"),
        ("station,rainfall_24h_mm\nA,3\n", "missing_columns", "rainfall_72h_mm"),
    ],
)
def test_unusable_files_are_refused_at_once(submit, content, field, fragment):
    with pytest.raises(ApplicationError) as exc:
        submit(content)
    assert exc.value.status_code == 400
    assert fragment in str(exc.value.fields[field]) or fragment in exc.value.message
    assert not BatchJob.objects.exists()


def test_header_problems_name_the_columns(submit):
    header = sites_csv(1).splitlines()[0]
    with pytest.raises(ApplicationError) as exc:
        submit(header + ",station_id,slope_deg\n" + "1," * 17 + "1\n")
    # station_id would pass through (it is not an input); the duplicate input is refused.
    assert set(exc.value.fields) == {"header"}
    assert exc.value.fields["header"] == "duplicate columns: slope_deg"
    with pytest.raises(ApplicationError, match="no data rows"):
        submit(header + "\n")
    wide = ",".join(f"c{i}" for i in range(10_000))
    with pytest.raises(ApplicationError) as exc:
        submit(header + "," + wide + "\n")
    # Columns that are not inputs pass through, at most CONTEXT_MAX_KEYS of them.
    assert exc.value.fields["extra_columns"].startswith("10000 columns that are not model inputs")
    assert "and more" in exc.value.fields["extra_columns"]


def test_size_and_row_limits_are_413(submit, settings):
    settings.BATCH_MAX_ROWS = 10
    with pytest.raises(ApplicationError) as exc:
        submit(sites_csv(11))
    assert exc.value.status_code == 413 and "11 rows" in exc.value.message
    settings.BATCH_MAX_BYTES = 100
    with pytest.raises(ApplicationError) as exc:
        submit(sites_csv(2))
    assert exc.value.status_code == 413
    assert not BatchJob.objects.exists()


def test_cancel_stops_pending_chunks(submit, settings):
    settings.BATCH_CHUNK_ROWS = 10
    job = submit(sites_csv(30))
    indexes = batches.batch_split(job_id=str(job.pk))
    batches.batch_chunk_process(job_id=str(job.pk), index=indexes[0])
    batches.batch_cancel(job=job)
    for index in indexes[1:]:
        batches.batch_chunk_process(job_id=str(job.pk), index=index)
    job.refresh_from_db()
    assert job.status == BatchStatus.CANCELLED
    assert Prediction.objects.filter(batch=job).count() == 10
    with pytest.raises(ApplicationError) as exc:
        batches.batch_cancel(job=job)
    assert exc.value.status_code == 409


def test_results_contain_numbers_only(submit):
    frame = synthetic.generate(3, seed=1).drop(columns="flooded").astype(object)
    frame.loc[0, "slope_deg"] = "+4"
    job = run_job(submit(frame.to_csv(index=False)))
    results = Path(job.result_file.path).read_text()
    assert "+4" not in results
    assert np.isclose(float(next(csv.DictReader(io.StringIO(results)))["slope_deg"]), 4)


def test_batch_row_ids_are_valid_time_ordered_uuids():
    import uuid

    ids = batches._uuid7_hex(5_000)
    parsed = [uuid.UUID(value) for value in ids]
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    assert ids == sorted(ids) and len(set(ids)) == 5_000


def test_a_job_whose_final_step_was_lost_is_finished_when_resumed(submit, settings):
    settings.BATCH_CHUNK_ROWS = 40
    job = submit(sites_csv(100))
    for index in batches.batch_split(job_id=str(job.pk)):
        batches.batch_chunk_process(job_id=str(job.pk), index=index)
    job.refresh_from_db()
    assert job.status == BatchStatus.RUNNING  # the finalize message never arrived
    # What the beat task queues for a job with nothing pending.
    assert batches.batch_split(job_id=str(job.pk)) == []
    job.refresh_from_db()
    assert job.status == BatchStatus.SUCCEEDED
    assert Path(job.result_file.path).read_text().count("\n") == 101


def test_a_task_that_fails_for_good_fails_its_job_instead_of_hanging(submit, settings):
    from predictions.tasks import batch_chunk_task

    settings.BATCH_CHUNK_ROWS = 40
    job = submit(sites_csv(100))
    indexes = batches.batch_split(job_id=str(job.pk))
    batches.batch_chunk_process(job_id=str(job.pk), index=indexes[0])
    # A message no chunk can satisfy: a permanent error, not a retried database hiccup.
    result = batch_chunk_task.apply(args=[str(job.pk), "not-a-chunk"])
    assert result.failed()
    job.refresh_from_db()
    assert job.status == BatchStatus.FAILED
    assert job.finished_at is not None
    assert "internal error" in job.error
    # What the first chunk wrote stays; nothing resumes a failed job.
    assert Prediction.objects.filter(batch=job).count() == 40
    assert [j for j, _ in batches.batch_resume_stalled() if j == str(job.pk)] == []
