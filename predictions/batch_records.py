"""Reading an uploaded CSV record by record in bounded memory, and what makes a record unusable.

``batch_split`` passes every record through here before any chunk file or DataFrame exists, so
pandas only ever sees records of the header's width, of bounded size, without NUL bytes, stray
byte order marks or carriage returns that would split one record into two. A record that fails
is replaced in its chunk by a blank record of the right width (row numbers stay put) and its
reason becomes the row's error.

Cost on ordinary files: one ``readline`` and a few byte scans per line, all in C.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

_BOM = b"\xef\xbb\xbf"


@dataclass
class RawRecord:
    """One CSV record as read, with what was seen while reading it.

    ``data`` is None when the record was longer than the limit: its bytes were read and
    dropped, only the counts below were kept.
    """

    data: bytes | None
    size: int = 0
    commas: int = 0
    quoted: bool = False
    closed: bool = True
    nul: bool = False
    bom: bool = False
    bare_cr: bool = False

    @property
    def blank(self) -> bool:
        return self.data is not None and not self.data.strip()


def read_header(handle: IO[bytes], *, max_bytes: int) -> bytes | None:
    """The first record (the header), or None when it is longer than ``max_bytes``."""
    piece = handle.readline(max_bytes + 1)
    return _collect(piece, handle, max_bytes=max_bytes).data if piece else None


def iter_rows(handle: IO[bytes], *, width: int, max_bytes: int) -> Iterator[bytes | str]:
    """The data records after the header: a record's bytes when it is usable, else (a str) why
    it is refused. Blank lines are skipped; a quoted line break stays inside its record.

    Memory: one record of at most ``max_bytes``; a longer one is read to its end (a quoted
    cell may span lines) but not kept.
    """
    commas = width - 1
    limit = max_bytes + 1
    readline = handle.readline
    while True:
        piece = readline(limit)
        if not piece:
            return
        # The common case, all in C: one whole line of the right width with no quote, NUL,
        # byte order mark or CR (but the one of a CRLF line end).
        if (
            piece[-1:] == b"\n"
            and piece.count(b",") == commas
            and b'"' not in piece
            and b"\x00" not in piece
            and _BOM not in piece
            and piece.find(b"\r") in (-1, len(piece) - 2)
            and (commas or piece.strip())
        ):
            yield piece
            continue
        record = _collect(piece, handle, max_bytes=max_bytes)
        if record.blank:
            continue
        problem = record_problem(record, width=width, max_bytes=max_bytes)
        yield problem or record.data or b""


def _collect(piece: bytes, handle: IO[bytes], *, max_bytes: int) -> RawRecord:
    """The record that starts with ``piece``, reading on while a quoted cell is open."""
    limit = max_bytes + 1
    record = RawRecord(data=None)
    parts: list[bytes] | None = []
    quotes = 0
    while piece:
        record.size += len(piece)
        record.commas += piece.count(b",")
        quotes += piece.count(b'"')
        record.nul = record.nul or b"\x00" in piece
        record.bom = record.bom or _BOM in piece
        if parts is not None:
            if record.size > max_bytes:
                parts = None  # too long: keep counting, stop keeping
            else:
                parts.append(piece)
        # An odd number of quotes so far means a quoted cell continues on the next line.
        if piece[-1:] == b"\n" and quotes % 2 == 0:
            break
        piece = handle.readline(limit)
    record.quoted = quotes > 0
    record.closed = quotes % 2 == 0
    if parts is not None:
        data = b"".join(parts)
        record.data = data if data.endswith(b"\n") else data + b"\n"
        record.bare_cr = record.data.count(b"\r") != record.data.count(b"\r\n")
    return record


def record_fields(data: bytes) -> list[list[str]]:
    """The records csv (and pandas, with the same options) reads from ``data``."""
    text = data.decode("utf-8", errors="replace")
    return list(csv.reader(io.StringIO(text, newline=""), skipinitialspace=True))


def record_problem(record: RawRecord, *, width: int, max_bytes: int) -> str:
    """Why this record cannot be a row of a file whose header has ``width`` columns; "" if fine."""
    if record.nul:
        return "contains a NUL byte (binary data)"
    if record.bom:
        return "contains a byte order mark (U+FEFF): was another file pasted in here?"
    if not record.closed:
        return "has a quoted cell that is never closed"
    if record.data is None:
        cells = record.commas + 1
        if not record.quoted and cells != width:
            return f"has {cells:,} cells, the header has {width:,}"
        return f"is longer than {max_bytes:,} bytes"
    if not record.quoted:
        if record.bare_cr:
            return "has a line break (CR) inside it: save the file with LF or CRLF line ends"
        cells = record.commas + 1
    else:
        parsed = record_fields(record.data)
        if len(parsed) != 1:
            return "has a line break (CR) inside it: save the file with LF or CRLF line ends"
        cells = len(parsed[0])
    if cells != width:
        return f"has {cells:,} cells, the header has {width:,}"
    return ""
