"""``rebeam-operator``: settings, logging, then kopf's loop with our handlers."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import kopf

from rebeam_operator import handlers
from rebeam_operator.settings import Settings, parse

__all__ = ["main"]


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the object if known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        obj = getattr(record, "object", None)
        if obj:
            entry["object"] = obj
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("kopf").setLevel(max(logging.INFO, root.level))
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # "Handler succeeded" per event


def main(argv: list[str] | None = None) -> None:
    settings = parse(argv)
    setup_logging(settings)
    handlers.configure(settings)
    kopf.configure(verbose=False)  # kopf's own logging setup, then ours wins below
    setup_logging(settings)
    kopf.run(
        standalone=True,
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
    )


if __name__ == "__main__":
    main()
