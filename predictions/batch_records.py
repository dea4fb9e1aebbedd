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


def iter_records(handle: IO[bytes], *, max_bytes: int) -> Iterator[RawRecord]:
    """The file's CSV records, a quoted line break kept inside its record.

    No record holds more than ``max_bytes`` + one line in memory: a longer one is read to its
    end (a quoted cell may span lines) and yielded with ``data=None``.
    """
    limit = max_bytes + 1
    readline = handle.readline
    while True:
        piece = readline(limit)
        if not piece:
            return
        if piece[-1:] == b"\n" and b'"' not in piece and len(piece) <= max_bytes:
            # The common case: one whole unquoted line.
            yield RawRecord(
                data=piece,
                size=len(piece),
                commas=piece.count(b","),
                nul=b"\x00" in piece,
                bom=_BOM in piece,
                bare_cr=b"\r" in piece and piece.count(b"\r") != piece.count(b"\r\n"),
            )
            continue
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
            piece = readline(limit)
        record.quoted = quotes > 0
        record.closed = quotes % 2 == 0
        if parts is not None:
            record.data = b"".join(parts)
            if not record.data.endswith(b"\n"):
                record.data += b"\n"
            body = record.data
            record.bare_cr = b"\r" in body and body.count(b"\r") != body.count(b"\r\n")
        yield record


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
