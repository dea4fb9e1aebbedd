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
import io
import os
import shutil
import time
import uuid
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
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from accounts.roles import ADD_SITE
from floodsite import metrics
from floodsite.exceptions import ApplicationError
from mlcore.engine import schema
from mlcore.engine.inference import score_batch
from mlcore.selectors import loaded_model_get, predictor_get_active
from predictions import batch_records
from predictions.audit_writer import audit_rows_write_shared
from predictions.batch_columns import BlockColumns, SiteLookup, block_columns, header_plan
from predictions.exports import safe_cell
from predictions.models import (
    BatchChunk,
    BatchJob,
    BatchRowError,
    BatchStatus,
    Source,
)
from predictions.sites import sites_create_missing

logger = structlog.get_logger(__name__)

RESULT_COLUMNS = ("probability", "label", "risk_band")
_HEADER_BYTES = 1_000_000
# A chunk file also ends at this size, so a chunk's frame stays small whatever its rows hold.
_CHUNK_MAX_BYTES = 32 << 20


# --- submission ---------------------------------------------------------------------------


def _read_header(upload: IO[bytes]) -> list[str]:
    """The header row, decoded and trimmed; refuses what is not a UTF-8 CSV text file."""
    upload.seek(0)
    head = upload.read(_HEADER_BYTES)
    upload.seek(0)
    if not head.strip():
        raise ApplicationError("The file is empty.", fields={"file": "empty file"})
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ApplicationError(
            "The file is UTF-16 text. Save it as 'CSV UTF-8' and upload it again.",
            fields={"file": "UTF-16, not UTF-8"},
        )
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
    first_line, newline, _ = text.partition("\n")
    if not newline and len(head) == _HEADER_BYTES:
        # Refused before any parsing: a header this long names no model's inputs.
        raise ApplicationError(
            f"The header line is longer than {_HEADER_BYTES:,} bytes (at least "
            f"{first_line.count(',') + 1:,} columns); it should name the model's inputs.",
            fields={"header": f"longer than {_HEADER_BYTES} bytes"},
            code="invalid_header",
        )
    first_line = first_line.removesuffix("\r")
    if "\r" in first_line:
        raise ApplicationError(
            "The file uses carriage returns (CR) alone as line ends. Save it with Windows "
            "(CRLF) or Unix (LF) line ends and upload it again.",
            fields={"file": "CR line ends"},
        )
    return [name.strip() for name in next(csv.reader([first_line]), [])]


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
    *, owner: User, source: str, upload: UploadedFile, idempotency_key: str = ""
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
    passthrough = header_plan(
        _read_header(upload),
        loaded.manifest.feature_names,
        [spec.name for spec in schema.place_features(loaded.manifest)],
    )
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
        passthrough_columns=passthrough,
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


def _chunk_path(job: BatchJob, index: int, kind: str) -> Path:
    return _job_dir(job) / "chunks" / f"{kind}-{index:05d}.csv"


class _ChunkWriter:
    """Chunk files of at most BATCH_CHUNK_ROWS rows (or _CHUNK_MAX_BYTES), each with the header.

    A refused record is written as a blank record of the header's width, so every row keeps
    its position, and its reason goes to the chunk's rejects file.
    """

    def __init__(self, job: BatchJob, header: bytes, width: int) -> None:
        self.job, self.header = job, header
        self.placeholder = b'""' + b"," * (width - 1) + b"\n"
        self.chunks: list[BatchChunk] = []
        self.total = 0
        self._out: IO[bytes] | None = None
        self._rows = self._bytes = 0
        self._rejects: list[tuple[int, str]] = []

    def refuse(self, reason: str) -> None:
        self._rejects.append((self._rows, reason))
        self.add(self.placeholder)

    def add(self, data: bytes) -> None:
        if self._out is None:
            path = _chunk_path(self.job, len(self.chunks), "input")
            self._out = open(path, "wb")  # noqa: SIM115 (closed in close)
            self._out.write(self.header)
        self._out.write(data)
        self._rows += 1
        self._bytes += len(data)
        self.total += 1
        if self._rows == settings.BATCH_CHUNK_ROWS or self._bytes >= _CHUNK_MAX_BYTES:
            self.close()

    def close(self) -> None:
        if self._out is None:
            return
        self._out.close()
        self._out = None
        index = len(self.chunks)
        if self._rejects:
            with open(_chunk_path(self.job, index, "rejects"), "w", newline="") as out:
                csv.writer(out).writerows(self._rejects)
        self.chunks.append(
            BatchChunk(
                job=self.job,
                index=index,
                first_row=self.total - self._rows + 1,
                row_count=self._rows,
            )
        )
        self._rows = self._bytes = 0
        self._rejects = []


def _split_records(job: BatchJob, handle: IO[bytes]) -> tuple[list[BatchChunk], int]:
    """Check every record against the header and write the chunk files; (chunks, rows)."""
    max_bytes = settings.BATCH_MAX_ROW_BYTES
    header = batch_records.read_header(handle, max_bytes=max_bytes) or b""
    header = header.removeprefix(b"\xef\xbb\xbf")
    names = batch_records.record_fields(header)
    width = len(names[0]) if len(names) == 1 else 0
    if not width:  # batch_create read the same header; only a changed file gets here
        raise ApplicationError("The file's header can no longer be read.", code="invalid_header")
    writer = _ChunkWriter(job, header, width)
    try:
        for record in batch_records.iter_rows(handle, width=width, max_bytes=max_bytes):
            if isinstance(record, str):
                writer.refuse(record)
            else:
                writer.add(record)
    finally:
        writer.close()
    return writer.chunks, writer.total


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
    with open(job.input_file.path, "rb") as handle:
        chunks, total = _split_records(job, handle)
    with transaction.atomic():
        BatchChunk.objects.bulk_create(chunks)
        BatchJob.objects.filter(pk=job.pk).update(
            total_rows=total,
            chunks_total=len(chunks),
            started_at=timezone.now(),
            progress_at=timezone.now(),
        )
        # A job cancelled while it was being split stays cancelled.
        BatchJob.objects.filter(pk=job.pk, status=BatchStatus.QUEUED).update(
            status=BatchStatus.RUNNING
        )
    logger.info("batch_split", job=str(job.pk), rows=total, chunks=len(chunks))
    if not chunks:
        batch_finalize(job_id=str(job.pk))
    return [chunk.index for chunk in chunks]


# --- scoring ------------------------------------------------------------------------------


def _read_chunk(path: Path, *, block_rows: int, text_columns: list[str]) -> Iterator[pd.DataFrame]:
    """The chunk in frames of ``block_rows`` rows.

    batch_split let through only records of the header's width and bounded size (the rest are
    blank placeholders), so pandas never meets a record it would turn into index levels.
    """
    with pd.read_csv(
        path,
        keep_default_na=False,
        na_values=[""],
        encoding="utf-8-sig",
        encoding_errors="replace",
        skipinitialspace=True,
        # Pass-through cells are kept as written ("007" stays "007"); inputs are parsed.
        dtype={name: str for name in text_columns} or None,
        index_col=False,
        chunksize=block_rows,
    ) as reader:
        for frame in reader:
            frame.columns = [str(c).strip() for c in frame.columns]
            yield frame


def _read_rejects(path: Path) -> dict[int, str]:
    """Position in the chunk -> why batch_split refused that record."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(position): reason for position, reason in csv.reader(handle)}


def _validate_block(
    manifest: Any,
    frame: pd.DataFrame,
    *,
    offset: int,
    rejects: dict[int, str],
    columns: BlockColumns | None = None,
) -> schema.RowValidation:
    """Validate one block; positions in the result count from the chunk's first row.

    A record batch_split refused, and a row whose site or pass-through columns are refused
    (``columns``), is reported with that reason alone.
    """
    checked = schema.validate_frame(manifest, frame)
    refused = {p - offset: ("", r) for p, r in rejects.items() if offset <= p < offset + len(frame)}
    if columns is not None:
        for position, problem in columns.refused.items():
            refused.setdefault(position, problem)
    if refused:
        keep = ~np.isin(checked.valid_index, list(refused))
        checked = schema.RowValidation(
            matrix=checked.matrix[keep],
            valid_index=checked.valid_index[keep],
            errors=[e for e in checked.errors if e[0] not in refused]
            + [(position, column, reason) for position, (column, reason) in refused.items()],
        )
    return schema.RowValidation(
        matrix=checked.matrix,
        valid_index=checked.valid_index + offset,
        errors=sorted((position + offset, column, why) for position, column, why in checked.errors),
    )


def _lease() -> timedelta:
    return timedelta(seconds=settings.BATCH_CHUNK_LEASE_SECONDS)


def _chunk_claim(chunk: BatchChunk) -> bool:
    """Take the chunk's lease; False while another live task holds it (or it is done)."""
    now = timezone.now()
    return bool(
        BatchChunk.objects.filter(pk=chunk.pk, done=False)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + _lease(), attempts=F("attempts") + 1)
    )


def _chunk_renew(chunk: BatchChunk) -> bool:
    """Renew the lease between row blocks; False once the job was cancelled (or failed)."""
    return bool(
        BatchChunk.objects.filter(
            pk=chunk.pk, job__status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING]
        ).update(lease_until=timezone.now() + _lease())
    )


def _chunk_release(chunk: BatchChunk) -> None:
    """A task that stops without finishing hands the chunk back at once."""
    try:
        BatchChunk.objects.filter(pk=chunk.pk, done=False).update(lease_until=None)
    except DatabaseError:  # the lease runs out by itself; the original error matters more
        logger.warning("batch_chunk_release_failed", job=str(chunk.job_id), chunk=chunk.index)


@dataclass
class _FormattedRows:
    """Each scored row's numbers as text for the results file."""

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


def _write_result_part(
    path: Path,
    *,
    rows: np.ndarray,
    text: _FormattedRows,
    scores: Any,
    cells: list[list[str]] | None = None,
) -> None:
    if cells is not None:
        # Pass-through text needs quoting, and formula-looking cells are neutralised.
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerows(
                [row, *[safe_cell(cell) for cell in passed], *numbers, probability, label, band]
                for row, passed, numbers, probability, label, band in zip(
                    rows.tolist(),
                    cells,
                    text.cells,
                    text.probability,
                    scores.label,
                    scores.risk_band,
                    strict=True,
                )
            )
        return
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
    scores: Any,
    names: list[str],
    latency_ms: float,
    site_ids: list[int | None] | None = None,
    contexts: list[dict[str, str] | None] | None = None,
) -> None:
    """One audit row per scored row, through the audit log's writer (COPY on PostgreSQL)."""
    if not len(rows):
        return
    outside_names = np.array(names, dtype=object)
    out_of_range: list[list[str]] = [[] for _ in range(len(rows))]
    for i in np.flatnonzero(scores.out_of_range.any(axis=1)).tolist():
        out_of_range[i] = list(outside_names[scores.out_of_range[i]])
    per_row_extra: dict[str, list[Any]] = {}
    if site_ids is not None:
        per_row_extra["site_id"] = site_ids
    if contexts is not None:
        per_row_extra["context"] = contexts
    audit_rows_write_shared(
        count=len(rows),
        shared={
            "created_at": timezone.now(),
            "user_id": job.owner_id,
            "source": Source.BATCH,
            "model_version_id": job.model_version_id,
            "explanation": [],
            "latency_ms": latency_ms,
            "request_id": f"batch-{job.pk}",
            "batch_id": job.pk,
        },
        per_row={
            "id": [uuid.UUID(uid) for uid in _uuid7_hex(len(rows))],
            "inputs": [dict(zip(names, values, strict=True)) for values in matrix.tolist()],
            "probability": scores.probability.tolist(),
            "label": list(scores.label),
            "risk_band": list(scores.risk_band),
            "out_of_range": out_of_range,
            "batch_row": rows.tolist(),
            **per_row_extra,
        },
        # A crash can only lose a chunk whose done flag is lost with it (the chunk runs
        # again); batch_finalize commits synchronously, which flushes every chunk before the
        # results can be downloaded.
        synchronous_commit=False,
    )


def batch_chunk_process(*, job_id: str, index: int) -> bool:
    """Score one chunk and log it; returns True when this chunk was the job's last one.

    The chunk is read and validated in blocks of BATCH_BLOCK_ROWS rows; between blocks the
    task renews its lease (so the resumer leaves it alone) and stops if the job was cancelled.
    """
    job = BatchJob.objects.select_related("model_version", "owner").filter(pk=job_id).first()
    if job is None:
        return False
    chunk = BatchChunk.objects.filter(job=job, index=index).first()
    if chunk is None or chunk.done or job.finished:
        return False
    if not _chunk_claim(chunk):
        return False  # a live task is scoring this chunk; a duplicate message does nothing
    try:
        return _chunk_score(job, chunk)
    finally:
        _chunk_release(chunk)


def _chunk_score(job: BatchJob, chunk: BatchChunk) -> bool:
    index = chunk.index
    started = time.perf_counter()
    loaded = loaded_model_get(model_version=job.model_version)
    names = loaded.manifest.feature_names
    passthrough = list(job.passthrough_columns or [])
    place = schema.place_features(loaded.manifest)
    sites = SiteLookup(may_register=bool(passthrough) and job.owner.has_perm(ADD_SITE))
    rejects = _read_rejects(_chunk_path(job, index, "rejects"))
    blocks: list[schema.RowValidation] = []
    extras: list[BlockColumns] = []
    read = 0
    for frame in _read_chunk(
        _chunk_path(job, index, "input"),
        block_rows=settings.BATCH_BLOCK_ROWS,
        text_columns=passthrough,
    ):
        if not _chunk_renew(chunk):
            logger.info("batch_chunk_stopped", job=str(job.pk), chunk=index, rows_read=read)
            return False
        columns = (
            block_columns(frame, passthrough=passthrough, place=place, sites=sites)
            if passthrough
            else None
        )
        blocks.append(
            _validate_block(loaded.manifest, frame, offset=read, rejects=rejects, columns=columns)
        )
        if columns is not None:
            extras.append(columns)
        read += len(frame)
    checked = schema.RowValidation(  # a chunk file holds at least one row: one block or more
        matrix=np.concatenate([block.matrix for block in blocks]),
        valid_index=np.concatenate([block.valid_index for block in blocks]),
        errors=[error for block in blocks for error in block.errors],
    )
    scores = score_batch(loaded.predictor, checked.matrix)
    rows = checked.valid_index + chunk.first_row
    latency_ms = (time.perf_counter() - started) * 1000 / max(read, 1)
    # Positions in the chunk -> what the extra columns said, for the valid rows and the errors.
    cells = [row for block in extras for row in block.cells] if extras else None
    codes = [code for block in extras for code in block.codes] if extras else None
    contexts = [context for block in extras for context in block.contexts] if extras else None
    valid = checked.valid_index.tolist()

    # The parsed numbers, not the raw cells: nothing a spreadsheet could run reaches the file.
    text = _format_rows(checked.matrix, scores.probability)
    _write_result_part(
        _chunk_path(job, index, "result"),
        rows=rows,
        text=text,
        scores=scores,
        cells=[cells[i] for i in valid] if cells is not None else None,
    )

    failed_rows = read - len(checked.valid_index)
    if not _chunk_renew(chunk):
        logger.info("batch_chunk_stopped", job=str(job.pk), chunk=index, rows_read=read)
        return False
    with transaction.atomic():
        locked = BatchChunk.objects.select_for_update().get(pk=chunk.pk)
        if locked.done:  # a duplicate delivery finished it while this one was scoring
            return False
        site_ids = None
        if codes is not None and any(code is not None for code in codes):
            # Sites named only by rows that failed are not registered.
            used = {codes[i] for i in valid if codes[i] is not None}
            ids = {code: known[0] for code, known in sites.known.items() if code in used}
            ids.update(
                sites_create_missing(
                    user=job.owner,
                    names={c: n for c, n in sites.planned.items() if c in used and c not in ids},
                )
            )
            site_ids = [ids.get(codes[i]) if codes[i] else None for i in valid]
        _write_audit_rows(
            job=job,
            rows=rows,
            matrix=checked.matrix,
            scores=scores,
            names=names,
            latency_ms=latency_ms,
            site_ids=site_ids,
            contexts=[contexts[i] for i in valid] if contexts is not None else None,
        )
        BatchRowError.objects.bulk_create(
            [
                BatchRowError(
                    job=job,
                    row_number=chunk.first_row + position,
                    column=column[:255],
                    reason=reason[:255],
                    passthrough=cells[position] if cells is not None else None,
                )
                for position, column, reason in checked.errors
            ],
            batch_size=2_000,
        )
        BatchChunk.objects.filter(pk=chunk.pk).update(
            done=True,
            rows_ok=len(rows),
            rows_failed=failed_rows,
            lease_until=None,
            finished_at=timezone.now(),
        )
        BatchJob.objects.filter(pk=job.pk).update(
            processed_rows=F("processed_rows") + read,
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
    passthrough = list(job.passthrough_columns or [])
    result_path = folder / "results.csv"
    with open(result_path, "wb") as out:
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(
            ["row", *[safe_cell(name) for name in passthrough], *names, *RESULT_COLUMNS]
        )
        out.write(header.getvalue().encode())
        for index in range(job.chunks_total):
            part = _chunk_path(job, index, "result")
            if part.exists():
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
    error_path = folder / "errors.csv"
    with open(error_path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["row", *[safe_cell(name) for name in passthrough], "column", "reason"])
        blank = [""] * len(passthrough)
        for error in job.row_errors.order_by("row_number", "id").iterator(chunk_size=5_000):
            # A record refused before it was read (too long, binary) has no cells to give back.
            passed = error.passthrough if error.passthrough is not None else blank
            writer.writerow(
                [
                    error.row_number,
                    *[safe_cell(cell) for cell in passed],
                    safe_cell(error.column),
                    safe_cell(error.reason),
                ]
            )
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
    if isinstance(error, ApplicationError):  # a reason meant for the owner
        message = f"Scoring stopped: {error.message} Rows scored before it are kept."
    else:
        message = (
            f"Scoring stopped on an internal error ({type(error).__name__}); rows scored "
            "before it are kept. An administrator can find the details in the worker log."
        )
    _fail(job_id, message, log=f"{type(error).__name__}: {error}")


def batch_fail_timed_out(*, job_id: str, index: int | None, seconds: float | None) -> None:
    """A chunk task ran past BATCH_CHUNK_SOFT_TIME_LIMIT (or the hard limit): say so."""
    chunk = (
        None if index is None else BatchChunk.objects.filter(job__pk=job_id, index=index).first()
    )
    rows = (
        f"rows {chunk.first_row:,}-{chunk.first_row + chunk.row_count - 1:,}"
        if chunk
        else "a chunk"
    )
    _fail(
        job_id,
        f"Scoring stopped: {rows} took longer than the {seconds or 0:g}-second limit for one "
        "chunk (BATCH_CHUNK_SOFT_TIME_LIMIT); rows scored before it are kept. Split the file "
        "into smaller ones, or ask an administrator to raise the limit.",
        log=f"time limit in chunk {index}",
    )


def _fail(job_id: str, message: str, *, log: str) -> None:
    updated = BatchJob.objects.filter(
        pk=job_id, status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING]
    ).update(status=BatchStatus.FAILED, finished_at=timezone.now(), error=message)
    if updated:
        logger.error("batch_failed", job=job_id, error=log[:500])


def batch_resume_stalled() -> list[tuple[str, list[int]]]:
    """Jobs with no progress for BATCH_STALLED_SECONDS: which chunks to queue again.

    A chunk whose lease has not run out is being scored by a live task and is never queued
    again; a job whose unfinished chunks are all leased is left alone. An empty list means
    "split again", which also finishes a job whose last step was lost.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.BATCH_STALLED_SECONDS)
    resumed: list[tuple[str, list[int]]] = []
    stalled = BatchJob.objects.filter(
        status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING], created_at__lt=cutoff
    ).exclude(progress_at__gte=cutoff)
    for job in stalled:
        unfinished = job.chunks.filter(done=False)
        pending = list(unfinished.exclude(lease_until__gte=now).values_list("index", flat=True))
        if not pending and unfinished.exists():
            continue  # every unfinished chunk is in the hands of a live task
        BatchJob.objects.filter(pk=job.pk).update(progress_at=timezone.now())
        resumed.append((str(job.pk), pending))
    return resumed
