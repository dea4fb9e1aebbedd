"""Hostile batch files, in this process: each one is refused at upload or ends with clear row
errors, and the rows around the bad one are still scored under their own row numbers.

The 100 MB cases and the memory bound run through a real worker in test_batch_worker_limits.py.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from floodsite.exceptions import ApplicationError
from mlcore.engine import synthetic
from predictions import batches
from predictions.models import BatchChunk, BatchJob, BatchStatus, Prediction
from predictions.tests.test_batches import run_job


def good_rows(count: int, *, seed: int = 5) -> tuple[bytes, list[bytes]]:
    """The header line and ``count`` valid data lines of the default model, LF-terminated."""
    text = synthetic.generate(count, seed=seed).drop(columns="flooded").to_csv(index=False)
    header, *lines = text.encode().splitlines(keepends=True)
    return header, lines


def error_report(job: BatchJob) -> list[list[str]]:
    with open(job.error_file.path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def scored_rows(job: BatchJob) -> list[int | None]:
    rows = Prediction.objects.filter(batch=job).order_by("batch_row")
    return list(rows.values_list("batch_row", flat=True))


@pytest.fixture
def submit(analyst, production_model):
    def submit_file(content: bytes) -> BatchJob:
        upload = SimpleUploadedFile("sites.csv", content, content_type="text/csv")
        return batches.batch_create(owner=analyst, source="web", upload=upload)

    return submit_file


BOM_REASON = "contains a byte order mark (U+FEFF): was another file pasted in here?"
CR_REASON = "has a line break (CR) inside it: save the file with LF or CRLF line ends"
WIDE = b"1," * 999_999 + b"1\n"  # 1,000,000 cells in 2 MB, the first report


@pytest.mark.parametrize(
    ("hostile", "at_row", "reason"),
    [
        (WIDE, 1, "has 1,000,000 cells, the header has 16"),
        (b"1,2,3\n", 1, "has 3 cells, the header has 16"),
        (b"1,2,3," + b"4," * 20 + b"5\n", 1, "has 24 cells, the header has 16"),
        (b",".join([b"1"] * 15 + [b"2" * 200_000]) + b"\n", 1, "is longer than 65,536 bytes"),
        (b'"' + b"3" * 200_000 + b'",' + b"1," * 14 + b"1\n", 1, "is longer than 65,536 bytes"),
        (b"\xef\xbb\xbf" + b"1," * 15 + b"1\n", 1, BOM_REASON),
        (b"1," * 15 + b"1\r" + b"1," * 15 + b"1\n", 1, CR_REASON),
    ],
    ids=[
        "wide-first-row",
        "narrow-row",
        "wide-row",
        "oversize-field",
        "oversize-quoted-field",
        "bom-mid-file",
        "bare-cr",
    ],
)
@pytest.mark.parametrize("where", ["first", "middle"])
def test_a_hostile_record_is_one_row_error_and_the_rest_is_scored(
    submit, settings, hostile, at_row, reason, where
):
    settings.BATCH_CHUNK_ROWS = 3  # the bad row sits inside a chunk, not at its start
    header, lines = good_rows(6)
    position = 0 if where == "first" else 4
    lines.insert(position, hostile)
    job = run_job(submit(header + b"".join(lines)))
    bad_row = position + 1
    assert job.status == BatchStatus.PARTIAL, job.error
    assert (job.total_rows, job.processed_rows, job.failed_rows) == (7, 7, 1)
    assert error_report(job) == [[str(bad_row), "", reason]]
    assert scored_rows(job) == [row for row in range(1, 8) if row != bad_row]


def test_mixed_line_ends_keep_every_row_number(submit):
    header, lines = good_rows(5)
    crlf = [line.replace(b"\n", b"\r\n") for line in lines]
    body = header.replace(b"\n", b"\r\n") + crlf[0] + lines[1] + crlf[2] + lines[3] + crlf[4]
    job = run_job(submit(body))
    assert job.status == BatchStatus.SUCCEEDED
    assert scored_rows(job) == [1, 2, 3, 4, 5]


def test_a_quoted_cell_never_closed_is_one_row_error(submit):
    header, lines = good_rows(3)
    job = run_job(submit(header + b"".join(lines) + b'"4,' + b"1," * 14 + b"1\n"))
    assert job.status == BatchStatus.PARTIAL
    assert error_report(job) == [["4", "", "has a quoted cell that is never closed"]]
    assert scored_rows(job) == [1, 2, 3]


def test_quoted_cells_with_commas_and_line_breaks_are_counted_as_csv_counts_them(submit):
    header, lines = good_rows(3)
    broken = b'"2\n",' * 15 + b"1\n"  # 16 cells over 16 lines: a valid row
    comma = b'"1,5",' + b"2," * 14 + b"1\n"  # 16 cells, the first one not a number
    job = run_job(submit(header + lines[0] + broken + comma + lines[1] + lines[2]))
    assert job.total_rows == 5
    assert error_report(job) == [["3", "rainfall_24h_mm", "must be a finite number"]]
    assert scored_rows(job) == [1, 2, 4, 5]


def test_a_nul_byte_past_the_upload_check_is_a_row_error(submit):
    """The upload refuses NUL bytes in its first megabyte; later ones are row errors."""
    header, lines = good_rows(12_500)
    assert sum(map(len, lines)) > 1_000_000
    lines[12_400] = lines[12_400].replace(b",", b",\x00", 1)
    job = run_job(submit(header + b"".join(lines)))
    assert job.status == BatchStatus.PARTIAL
    assert error_report(job) == [["12401", "", "contains a NUL byte (binary data)"]]
    assert len(scored_rows(job)) == 12_499


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            b",".join(b"c%d" % i for i in range(1_000_000)) + b"\n" + b"1," * 15 + b"1\n",
            "The header line is longer than 1,000,000 bytes",
        ),
        ("rainfall_24h_mm,snowmelt_mm\n1,2\n".encode("utf-16"), "UTF-16"),
        ("rainfall_24h_mm,snowmelt_mm\n1,2\n".encode("utf-16-be"), "not a CSV"),
        (b"rainfall_24h_mm,snowmelt_mm\r1,2\r3,4\r", "carriage returns (CR) alone"),
        (b"\x00" * 10, "not a CSV"),
    ],
    ids=["million-column-header", "utf-16", "utf-16-no-bom", "cr-only-line-ends", "binary"],
)
def test_files_that_cannot_be_read_as_csv_are_refused_at_upload(submit, content, fragment):
    with pytest.raises(ApplicationError) as exc:
        submit(content)
    assert exc.value.status_code == 400
    assert fragment in exc.value.message
    assert not BatchJob.objects.exists()


# --- leases: the resumer never queues a chunk whose task is alive --------------------------


def stalled_job(submit, settings) -> BatchJob:
    settings.BATCH_CHUNK_ROWS = 2
    header, lines = good_rows(6)
    job = submit(header + b"".join(lines))
    batches.batch_split(job_id=str(job.pk))
    long_ago = timezone.now() - timedelta(seconds=settings.BATCH_STALLED_SECONDS + 60)
    BatchJob.objects.filter(pk=job.pk).update(created_at=long_ago, progress_at=long_ago)
    return job


def test_the_resumer_skips_a_chunk_with_a_live_lease(submit, settings):
    job = stalled_job(submit, settings)
    # Chunk 0 is being scored by a task that is alive: its lease runs for another minute.
    BatchChunk.objects.filter(job=job, index=0).update(
        lease_until=timezone.now() + timedelta(minutes=1)
    )
    assert batches.batch_resume_stalled() == [(str(job.pk), [1, 2])]
    # A duplicate delivery of chunk 0 meanwhile does nothing.
    assert batches.batch_chunk_process(job_id=str(job.pk), index=0) is False
    assert not Prediction.objects.filter(batch=job).exists()


def test_the_resumer_queues_a_chunk_whose_lease_expired(submit, settings):
    job = stalled_job(submit, settings)
    BatchChunk.objects.filter(job=job, index=0).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert batches.batch_resume_stalled() == [(str(job.pk), [0, 1, 2])]
    assert batches.batch_chunk_process(job_id=str(job.pk), index=0) is False  # not the last
    assert scored_rows(job) == [1, 2]


def test_a_job_whose_chunks_are_all_leased_is_left_alone(submit, settings):
    job = stalled_job(submit, settings)
    BatchChunk.objects.filter(job=job).update(lease_until=timezone.now() + timedelta(minutes=1))
    assert batches.batch_resume_stalled() == []
    assert Path(job.input_file.path).exists()


def test_a_file_of_only_hostile_rows_fails_with_its_error_report(submit):
    header, _ = good_rows(1)
    job = run_job(submit(header + WIDE + b"1,2\n"))
    assert job.status == BatchStatus.FAILED
    assert job.error == "No row could be scored; see the error report."
    assert error_report(job) == [
        ["1", "", "has 1,000,000 cells, the header has 16"],
        ["2", "", "has 2 cells, the header has 16"],
    ]
    assert scored_rows(job) == []
