"""One JSON object per log line, for the operator's log pipeline; secrets redacted as everywhere."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from promoter.redaction import install_log_redaction

# Attributes every LogRecord has; anything else was passed with `extra=` (kopf adds the object's
# reference as k8s_ref, and its whole settings object, which no log line needs).
_LEFT_OUT = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "settings", "k8s_skip"}
# Chatty at INFO: kopf reports every successful timer run, aiohttp every liveness probe.
_QUIETER = {"kopf.objects": logging.WARNING, "aiohttp.access": logging.WARNING}
# Libraries that give their logger a handler of their own at import, with propagation off: MLflow
# (`mlflow/__init__.py` runs `_configure_mlflow_loggers`), whose REST registry logs "Waiting up to
# 300 seconds for model version to finish creation" in plain text at every registration.
_OWN_HANDLERS = ("mlflow",)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _LEFT_OUT and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, quieter in _QUIETER.items():
        logging.getLogger(name).setLevel(max(level, quieter))
    logging.captureWarnings(True)  # library warnings become JSON lines too
    install_log_redaction()


def adopt_library_loggers() -> None:
    """After the libraries are imported: their log lines go through the root's JSON handler too."""
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
