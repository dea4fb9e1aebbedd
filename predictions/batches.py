"""Batch scoring services: accept a CSV, split it, score chunks, write audit rows, finish.

The flow, each step a thin Celery task in predictions/tasks.py calling one function here:

1. ``batch_create`` (request): checks size and header against the pinned model's manifest,
   stores the file, and queues ``batch_split``; a broker that cannot be reached is a 503 and
   leaves no job behind.
2. ``batch_split`` (worker): cuts the file into chunk files of BATCH_CHUNK_ROWS rows without
   parsing every cell, records the chunks and queues one ``batch_chunk_process`` per chunk,
   so every worker on every machine shares the job.
3. ``batch_chunk_process`` (worker): validates the chunk column by column, scores the valid
   rows, and in ONE transaction writes their audit rows (COPY on PostgreSQL), the row errors,
   and marks the chunk done. A worker killed mid-chunk leaves nothing, the chunk runs again;
   a chunk that already committed is skipped; (batch, batch_row) is unique besides.
4. ``batch_finalize`` (worker, queued by the last chunk): joins the result parts into
   results.csv, writes errors.csv, sets the final status.

``batch_resume_stalled`` (celery beat) re-queues the pending chunks of a job that has made no
progress for BATCH_STALLED_SECONDS, which also covers brokers that cannot redeliver.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import structlog
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from floodsite import metrics
from floodsite.exceptions import ApplicationError
from mlcore.engine import schema
from mlcore.engine.inference import score_batch
from mlcore.selectors import loaded_model_get, predictor_get_active
from predictions.exports import safe_cell
from predictions.models import (
    BatchChunk,
    BatchJob,
    BatchRowError,
    BatchStatus,
    Prediction,
    Source,
)

logger = structlog.get_logger(__name__)

RESULT_COLUMNS = ("probability", "label", "risk_band")
_HEADER_BYTES = 1_000_000


# --- submission ---------------------------------------------------------------------------


def _read_header(upload: IO[bytes]) -> list[str]:
    """The header row, decoded and trimmed; refuses what is not a UTF-8 CSV text file."""
    upload.seek(0)
    head = upload.read(_HEADER_BYTES)
    upload.seek(0)
    if not head.strip():
        raise ApplicationError("The file is empty.", fields={"file": "empty file"})
    if b"\x00" in head:
        raise ApplicationError(
            "This is not a CSV text file (it contains binary data).",
            fields={"file": "not a CSV text file"},
        )
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Only a character cut at the end of the sample is acceptable.
        if exc.start < len(head) - 4:
            raise ApplicationError(
                "The file is not UTF-8 text. Save it as 'CSV UTF-8' and upload it again.",
                fields={"file": "not UTF-8"},
            ) from exc
        text = head[: exc.start].decode("utf-8-sig")
    first_line = text.splitlines()[0] if text.splitlines() else ""
    return [name.strip() for name in next(csv.reader([first_line]), [])]


def _check_header(header: list[str], features: list[str]) -> None:
    problems: dict[str, str] = {}
    seen: set[str] = set()
    duplicates = sorted({n for n in header if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if duplicates:
        problems["header"] = "duplicate columns: " + ", ".join(duplicates[:20])
    missing = [name for name in features if name not in seen]
    unknown = [name for name in header if name not in features]
    if missing:
        problems["missing_columns"] = ", ".join(missing)
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        problems["unknown_columns"] = shown + more
    if problems:
        raise ApplicationError(
            "The header does not match the model's inputs: "
            + "; ".join(f"{key.replace('_', ' ')}: {value}" for key, value in problems.items())
            + ".",
            fields=problems,
            code="invalid_header",
        )


def _count_data_rows(upload: IO[bytes]) -> int:
    """Lines after the header (an upper bound when quoted cells hold line breaks)."""
    upload.seek(0)
    lines = 0
    last = b"\n"
    for block in iter(lambda: upload.read(1 << 20), b""):
        lines += block.count(b"\n")
        last = block[-1:]
    upload.seek(0)
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def batch_create(
    *, owner: Any, source: str, upload: UploadedFile, idempotency_key: str = ""
) -> BatchJob:
    """Accept a CSV for scoring by the production model; refuse bad files before queueing."""
    if upload.size is not None and upload.size > settings.BATCH_MAX_BYTES:
        raise ApplicationError(
            f"The file is {upload.size:,} bytes; the limit is {settings.BATCH_MAX_BYTES:,}.",
            fields={"file": f"at most {settings.BATCH_MAX_BYTES} bytes"},
            code="too_large",
            status_code=413,
        )
    if idempotency_key:
        existing = BatchJob.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            if (existing.original_name, existing.input_file.size) != (upload.name, upload.size):
                raise ApplicationError(
                    "This Idempotency-Key was already used for another file.",
                    fields={"Idempotency-Key": "already used with a different file"},
                    code="idempotency_key_reused",
                    status_code=422,
                )
            return existing
    loaded = predictor_get_active(name=settings.FLOODSITE_MODEL_NAME)
    _check_header(_read_header(upload), loaded.manifest.feature_names)
    rows = _count_data_rows(upload)
    if rows == 0:
        raise ApplicationError(
            "The file has a header but no data rows.", fields={"file": "no data rows"}
        )
    if rows > settings.BATCH_MAX_ROWS:
        raise ApplicationError(
            f"The file has {rows:,} rows; the limit is {settings.BATCH_MAX_ROWS:,}.",
            fields={"file": f"at most {settings.BATCH_MAX_ROWS} rows"},
            code="too_large",
            status_code=413,
        )
    job = BatchJob(
        owner=owner,
        source=source,
        original_name=(upload.name or "upload.csv")[:255],
        model_version=loaded.model_version,
        idempotency_key=idempotency_key,
    )
    job.input_file.save("input.csv", upload, save=False)
    job.save()
    from predictions.tasks import batch_split_task

    try:
        batch_split_task.apply_async(args=[str(job.pk)], retry=False)
    except Exception as exc:  # the broker's client raises several types for "unreachable"
        logger.error("batch_queue_unavailable", job=str(job.pk), error=str(exc))
        _discard(job)
        raise ApplicationError(
            "The batch queue is unavailable; nothing was submitted. Try again in a moment.",
            code="queue_unavailable",
            status_code=503,
        ) from exc
    logger.info("batch_created", job=str(job.pk), rows=rows, model=str(loaded.label))
    return job


def _job_dir(job: BatchJob) -> Path:
    return Path(job.input_file.path).parent


def _discard(job: BatchJob) -> None:
    folder = _job_dir(job)
    BatchJob.objects.filter(pk=job.pk).delete()
    shutil.rmtree(folder, ignore_errors=True)


def batch_cancel(*, job: BatchJob) -> BatchJob:
    """Stop a job: chunks not yet scored are skipped; rows already logged stay logged."""
    updated = BatchJob.objects.filter(
        pk=job.pk, status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING]
    ).update(status=BatchStatus.CANCELLED, finished_at=timezone.now())
    if not updated:
        raise ApplicationError(
            f"The job is already {job.get_status_display().lower()}.",
            code="already_finished",
            status_code=409,
        )
    job.refresh_from_db()
    return job


def batch_mark_notified(*, job: BatchJob) -> None:
    """The owner has seen that the job finished; the site-wide notice goes away."""
    BatchJob.objects.filter(pk=job.pk).update(notified=True)
    job.notified = True


# --- splitting ----------------------------------------------------------------------------


def _iter_records(handle: IO[bytes]) -> Iterator[bytes]:
    """CSV records as raw bytes, keeping quoted line breaks inside their record."""
    pending = b""
    for line in handle:
        pending += line
        # An odd number of quotes so far means a quoted cell continues on the next line.
        if pending.count(b'"') % 2 == 0:
            yield pending if pending.endswith(b"\n") else pending + b"\n"
            pending = b""
    if pending:
        yield pending if pending.endswith(b"\n") else pending + b"\n"


def _chunk_path(job: BatchJob, index: int, kind: str) -> Path:
    return _job_dir(job) / "chunks" / f"{kind}-{index:05d}.csv"


def batch_split(*, job_id: str) -> list[int]:
    """Cut the upload into chunk files and record them; returns the chunk indexes to score."""
    job = BatchJob.objects.filter(pk=job_id).first()
    if job is None or job.finished:  # removed, or a late duplicate delivery
        return []
    existing = list(job.chunks.values_list("index", "done"))
    if existing:  # split already done by an earlier delivery, or a resume of a stalled job
        pending = [index for index, done in existing if not done]
        if not pending:
            # Every chunk is scored but the final step was lost (a worker died after the
            # last chunk committed): finish the job here rather than leave it running.
            batch_finalize(job_id=str(job.pk))
        return pending
    (_job_dir(job) / "chunks").mkdir(parents=True, exist_ok=True)
    size = settings.BATCH_CHUNK_ROWS
    chunks: list[BatchChunk] = []
    with open(job.input_file.path, "rb") as handle:
        records = _iter_records(handle)
        header = next(records, b"")
        if header.startswith(b"\xef\xbb\xbf"):
            header = header[3:]
        out = None
        count = 0
        total = 0
        for record in records:
            if not record.strip():
                continue  # blank lines are not rows
            if count == 0:
                out = open(_chunk_path(job, len(chunks), "input"), "wb")  # noqa: SIM115
                out.write(header)
            out.write(record)
            count += 1
            total += 1
            if count == size:
                out.close()
                chunks.append(
                    BatchChunk(
                        job=job, index=len(chunks), first_row=total - count + 1, row_count=count
                    )
                )
                count = 0
        if count:
            out.close()
            chunks.append(
                BatchChunk(job=job, index=len(chunks), first_row=total - count + 1, row_count=count)
            )
    with transaction.atomic():
        BatchChunk.objects.bulk_create(chunks)
        BatchJob.objects.filter(pk=job.pk).update(
            status=BatchStatus.RUNNING,
            total_rows=total,
            chunks_total=len(chunks),
            started_at=timezone.now(),
            progress_at=timezone.now(),
        )
    logger.info("batch_split", job=str(job.pk), rows=total, chunks=len(chunks))
    if not chunks:
        batch_finalize(job_id=str(job.pk))
    return [chunk.index for chunk in chunks]


# --- scoring ------------------------------------------------------------------------------


def _read_chunk(path: Path) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """The chunk as a frame (one row per record) plus errors for records of the wrong width."""
    try:
        frame = pd.read_csv(
            path,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            encoding_errors="replace",
            skipinitialspace=True,
            dtype=None,
        )
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame, []
    except pd.errors.ParserError:
        pass
    # Some records have too many cells: read cell by cell and report those rows.
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader)]
        rows: list[list[str]] = []
        errors: list[tuple[int, str, str]] = []
        for position, record in enumerate(reader):
            if len(record) != len(header):
                errors.append(
                    (position, "", f"has {len(record)} cells, the header has {len(header)}")
                )
                record = [""] * len(header)
            rows.append(record)
    frame = pd.DataFrame(rows, columns=header)
    return frame, errors


@dataclass
class _FormattedRows:
    """Each scored row's numbers as text, formatted once for the audit rows and the results."""

    cells: list[list[str]]
    probability: list[str]


def _format_rows(matrix: np.ndarray, probability: np.ndarray) -> _FormattedRows:
    # repr is the shortest text that reads back as the same float: exact and compact.
    return _FormattedRows(
        cells=[[repr(value) for value in row] for row in matrix.tolist()],
        probability=[repr(value) for value in probability.tolist()],
    )


def _uuid7_hex(count: int) -> list[str]:
    """``count`` time-ordered UUIDs (version 7 layout) as hex, increasing within the call.

    Random version-4 ids land all over the primary-key index; ids that grow with time are
    appended at its right edge, which keeps a million-row COPY from touching the whole index.
    Layout: 48-bit Unix milliseconds, version 7, a 26-bit row counter, variant, 48 random bits.
    """
    millis = time.time_ns() // 1_000_000
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, :6] = np.frombuffer(millis.to_bytes(6, "big"), dtype=np.uint8)
    counter = np.arange(count, dtype=np.uint32)
    raw[:, 6] = 0x70 | ((counter >> 22) & 0x0F).astype(np.uint8)
    raw[:, 7] = ((counter >> 14) & 0xFF).astype(np.uint8)
    raw[:, 8] = 0x80 | ((counter >> 8) & 0x3F).astype(np.uint8)
    raw[:, 9] = (counter & 0xFF).astype(np.uint8)
    text = raw.tobytes().hex()
    return [text[32 * i : 32 * (i + 1)] for i in range(count)]


def _write_result_part(path: Path, *, rows: np.ndarray, text: _FormattedRows, scores: Any) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(
            f"{row},{','.join(cells)},{probability},{label},{band}\n"
            for row, cells, probability, label, band in zip(
                rows.tolist(),
                text.cells,
                text.probability,
                scores.label,
                scores.risk_band,
                strict=True,
            )
        )


def _write_audit_rows(
    *,
    job: BatchJob,
    rows: np.ndarray,
    matrix: np.ndarray,
    text: _FormattedRows,
    scores: Any,
    names: list[str],
    latency_ms: float,
) -> None:
    """Insert one audit row per scored row: COPY on PostgreSQL, bulk_create elsewhere."""
    now = timezone.now()
    outside_names = np.array(names, dtype=object)
    out_of_range = [
        json.dumps(list(outside_names[mask])) if mask.any() else "[]"
        for mask in scores.out_of_range
    ]
    values = matrix.tolist()
    if connection.vendor == "postgresql":
        columns = (
            "id, created_at, user_id, source, model_version_id, inputs, probability, label, "
            "risk_band, explanation, out_of_range, latency_ms, request_id, batch_id, batch_row, "
            "shadow_risk_band, shadow_error"
        )
        keys = [f'"{name}": ' for name in names]
        # Everything but the id, inputs, outputs and row number is the same on every line.
        head = f"\t{now.isoformat()}\t{job.owner_id}\t{Source.BATCH}\t{job.model_version_id}\t"
        tail = f"\t[]\t%s\t{latency_ms:.4f}\tbatch-{job.pk}\t{job.pk}\t"
        lines = [
            uid
            + head
            + "{"
            + ", ".join([key + cell for key, cell in zip(keys, cells, strict=True)])
            + "}\t"
            + f"{probability}\t{label}\t{band}"
            + (tail % outside)
            + str(row)
            + "\t\t"  # no shadow scoring for batches: empty shadow band and error
            for uid, cells, probability, label, band, outside, row in zip(
                _uuid7_hex(len(values)),
                text.cells,
                text.probability,
                scores.label,
                scores.risk_band,
                out_of_range,
                rows.tolist(),
                strict=True,
            )
        ]
        payload = ("\n".join(lines) + "\n").replace("\\", "\\\\")
        sql = f"COPY predictions_prediction ({columns}) FROM STDIN"
        with connection.cursor() as cursor:
            # A crash can only lose a chunk whose done flag is lost with it (the chunk runs
            # again); batch_finalize commits synchronously, which flushes every chunk before
            # the results can be downloaded.
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            with cursor.copy(sql) as copy:
                copy.write(payload)
        return
    Prediction.objects.bulk_create(
        [
            Prediction(
                created_at=now,
                user_id=job.owner_id,
                source=Source.BATCH,
                model_version_id=job.model_version_id,
                inputs=dict(zip(names, values[i], strict=True)),
                probability=float(scores.probability[i]),
                label=scores.label[i],
                risk_band=scores.risk_band[i],
                explanation=[],
                out_of_range=json.loads(out_of_range[i]),
                latency_ms=latency_ms,
                request_id=f"batch-{job.pk}",
                batch_id=job.pk,
                batch_row=int(rows[i]),
            )
            for i in range(len(values))
        ],
        batch_size=2_000,
    )


def batch_chunk_process(*, job_id: str, index: int) -> bool:
    """Score one chunk and log it; returns True when this chunk was the job's last one."""
    job = BatchJob.objects.select_related("model_version").filter(pk=job_id).first()
    chunk = BatchChunk.objects.filter(job_id=job_id, index=index).first()
    if job is None or chunk is None or chunk.done or job.finished:
        return False
    started = time.perf_counter()
    loaded = loaded_model_get(model_version=job.model_version)
    names = loaded.manifest.feature_names
    frame, width_errors = _read_chunk(_chunk_path(job, index, "input"))
    checked = schema.validate_frame(loaded.manifest, frame)
    bad_width = {position for position, _, _ in width_errors}
    if bad_width:
        keep = ~np.isin(checked.valid_index, list(bad_width))
        checked = schema.RowValidation(
            matrix=checked.matrix[keep],
            valid_index=checked.valid_index[keep],
            errors=[e for e in checked.errors if e[0] not in bad_width] + width_errors,
        )
    scores = score_batch(loaded.predictor, checked.matrix)
    rows = checked.valid_index + chunk.first_row
    latency_ms = (time.perf_counter() - started) * 1000 / max(len(frame), 1)

    # The parsed numbers, not the raw cells: nothing a spreadsheet could run reaches the file.
    text = _format_rows(checked.matrix, scores.probability)
    _write_result_part(_chunk_path(job, index, "result"), rows=rows, text=text, scores=scores)

    failed_rows = len(frame) - len(checked.valid_index)
    with transaction.atomic():
        locked = BatchChunk.objects.select_for_update().get(pk=chunk.pk)
        if locked.done:  # a duplicate delivery finished it while this one was scoring
            return False
        _write_audit_rows(
            text=text,
            job=job,
            rows=rows,
            matrix=checked.matrix,
            scores=scores,
            names=names,
            latency_ms=latency_ms,
        )
        BatchRowError.objects.bulk_create(
            [
                BatchRowError(
                    job=job,
                    row_number=chunk.first_row + position,
                    column=column[:255],
                    reason=reason[:255],
                )
                for position, column, reason in checked.errors
            ],
            batch_size=2_000,
        )
        BatchChunk.objects.filter(pk=chunk.pk).update(
            done=True,
            rows_ok=len(rows),
            rows_failed=failed_rows,
            attempts=F("attempts") + 1,
            finished_at=timezone.now(),
        )
        BatchJob.objects.filter(pk=job.pk).update(
            processed_rows=F("processed_rows") + len(frame),
            failed_rows=F("failed_rows") + failed_rows,
            chunks_done=F("chunks_done") + 1,
            progress_at=timezone.now(),
        )
        done, total = (
            BatchJob.objects.filter(pk=job.pk).values_list("chunks_done", "chunks_total").get()
        )
    metrics.batch_chunk_observed(
        model_version=loaded.label,
        bands=scores.risk_band,
        failed=failed_rows,
        seconds=time.perf_counter() - started,
    )
    return done == total


# --- finishing ----------------------------------------------------------------------------


def batch_finalize(*, job_id: str) -> BatchJob | None:
    """Join the result parts, write the error report and set the final status."""
    job = BatchJob.objects.select_related("model_version").filter(pk=job_id).first()
    if job is None or job.finished:
        return job
    folder = _job_dir(job)
    names = [feature["name"] for feature in job.model_version.manifest["features"]]
    result_path = folder / "results.csv"
    with open(result_path, "wb") as out:
        out.write(",".join(["row", *names, *RESULT_COLUMNS]).encode() + b"\n")
        for index in range(job.chunks_total):
            part = _chunk_path(job, index, "result")
            if part.exists():
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
    error_path = folder / "errors.csv"
    with open(error_path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "column", "reason"])
        for error in job.row_errors.order_by("row_number", "id").iterator(chunk_size=5_000):
            writer.writerow([error.row_number, safe_cell(error.column), safe_cell(error.reason)])
    job.refresh_from_db()
    if job.total_rows and job.failed_rows >= job.total_rows:
        status = BatchStatus.FAILED
        job.error = "No row could be scored; see the error report."
    elif job.total_rows == 0:
        status = BatchStatus.FAILED
        job.error = "The file has no data rows."
    elif job.failed_rows:
        status = BatchStatus.PARTIAL
    else:
        status = BatchStatus.SUCCEEDED
    job.result_file.name = str(result_path.relative_to(settings.MEDIA_ROOT))
    job.error_file.name = str(error_path.relative_to(settings.MEDIA_ROOT))
    job.status = status
    job.finished_at = timezone.now()
    job.save(update_fields=["result_file", "error_file", "status", "finished_at", "error"])
    shutil.rmtree(folder / "chunks", ignore_errors=True)
    logger.info(
        "batch_finished",
        job=str(job.pk),
        status=status,
        rows=job.total_rows,
        failed=job.failed_rows,
    )
    return job


def batch_fail(*, job_id: str, error: BaseException) -> None:
    """A task of the job failed for good: the job stops as failed instead of hanging "running".

    The rows of chunks that committed stay in the audit log; the owner sees the reason.
    """
    updated = BatchJob.objects.filter(
        pk=job_id, status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING]
    ).update(
        status=BatchStatus.FAILED,
        finished_at=timezone.now(),
        error=(
            f"Scoring stopped on an internal error ({type(error).__name__}); rows scored "
            "before it are kept. An administrator can find the details in the worker log."
        ),
    )
    if updated:
        logger.error("batch_failed", job=job_id, error=f"{type(error).__name__}: {error}"[:500])


def batch_resume_stalled() -> list[tuple[str, list[int]]]:
    """Jobs with no progress for BATCH_STALLED_SECONDS: which chunks to queue again."""
    cutoff = timezone.now() - timedelta(seconds=settings.BATCH_STALLED_SECONDS)
    resumed: list[tuple[str, list[int]]] = []
    stalled = BatchJob.objects.filter(
        status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING], created_at__lt=cutoff
    ).exclude(progress_at__gte=cutoff)
    for job in stalled:
        pending = list(job.chunks.filter(done=False).values_list("index", flat=True))
        BatchJob.objects.filter(pk=job.pk).update(progress_at=timezone.now())
        resumed.append((str(job.pk), pending))
    return resumed
