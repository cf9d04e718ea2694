"""The log of the long-running commands (``digest run``, ``digest serve``): one format for
every line, digest's and the web server's alike, human by default (``time level message``)
and one JSON object a line with ``--log-format json``. uvicorn is given no logging of its
own (``log_config=None``): its loggers write through the same handler, warnings and up."""

from __future__ import annotations

import json
import logging

from digest.common.dates import to_iso, utcnow

# uvicorn's own: "uvicorn.error" carries its start-up lines and the app's unhandled errors.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": to_iso(utcnow()), "level": record.levelname.lower(), "message": record.getMessage()}
        for key in ("event", "source", "digest"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(fmt: str) -> None:
    """Send digest's log and the web server's to stderr in format ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    digest = logging.getLogger("digest")
    digest.handlers[:] = [handler]
    digest.setLevel(logging.INFO)
    digest.propagate = False
    for name in _SERVER_LOGGERS:
        server = logging.getLogger(name)
        server.handlers.clear()
        server.setLevel(logging.WARNING)
        server.propagate = name != "uvicorn"
    logging.getLogger("uvicorn").handlers[:] = [handler]
