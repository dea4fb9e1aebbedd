"""Structured logging: JSON lines in production, readable lines locally, a request id on each."""

from __future__ import annotations

import logging

import structlog
from structlog.typing import Processor

_SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _skip_unused_record_fields() -> None:
    """No formatter of ours, gunicorn's or Celery's prints where a log call was made or from
    which thread, so the standard library need not work them out for every record (the logging
    HOWTO, "Optimization"). Process names and ids stay: gunicorn and Celery print them."""
    logging._srcfile = None  # the HOWTO's documented switch for caller lookup
    logging.logThreads = False


def build_formatter(fmt: str = "console") -> logging.Formatter:
    """Return the formatter the LOGGING setting names; also wires structlog's own loggers.

    Lines from the standard library (Django, Celery, gunicorn) and from structlog pass through
    the same processors, so both carry the request id bound by RequestIDMiddleware.
    """
    _skip_unused_record_fields()
    structlog.configure(
        processors=[
            # Below the logger's level a structlog call stops here, before any other work.
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Processor
    extra: list[Processor]
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        extra = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        extra = []
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *extra, renderer],
    )
